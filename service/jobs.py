"""The job state machine.

    QUEUED ──claim──> RUNNING ──> SUCCEEDED | FAILED | CANCELLED
       │                 │
       └──cancel──> CANCELLED     RUNNING ──cancel──> CANCELLING ──(loop sees it)──> CANCELLED

The job row is committed (QUEUED) before any message is sent. A worker claims it with one
conditional UPDATE that also takes a lease (``lease_holder``, ``lease_expires_at``), renewed by
its heartbeat: a job runs on at most one worker at a time, and a job whose worker died (its lease
ran out) can be claimed again and resumes from its last checkpoint. Every write a worker makes
to a claimed job is conditional on still holding the lease, so results are written once.

Leases and heartbeats are stamped with the database's clock (``db_now``), never a worker's own,
so workers on hosts whose clocks disagree do not take live jobs from each other. A job is
attempted at most ``max_attempts`` times: one whose workers keep dying (out of memory, a crash
in native code) ends FAILED instead of taking down one worker after another.

Each way into a final state (``finish``, the cancel of a QUEUED job, ``fail_exhausted``) writes
the job's webhook event (service.webhook_events) in the transaction that makes the change.

An ensemble job (spec ``ensemble`` > 1) runs as members (service.members), each with its own
lease; the job row itself holds no lease while they run, and is claimed here only to combine
them once the last one has finished (its lease then left expired).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import idempotency, members, webhook_events, webhook_secrets, webhook_targets
from .datasets import get_dataset
from .errors import Conflict, NotFound, ServiceError, TooManyJobs
from .models import Job
from .paging import newest_first
from .settings import Settings
from .specs import JobSpec

ACTIVE = ("QUEUED", "RUNNING", "CANCELLING")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
STATES = ACTIVE + TERMINAL


class UnknownDataset(Exception):
    """A spec names a dataset that does not exist (mapped to 422 with the field's location)."""

    def __init__(self, field: tuple[str, ...], dataset_id: str) -> None:
        super().__init__(f"no dataset {dataset_id!r}")
        self.field = field
        self.dataset_id = dataset_id


class SpecRefused(ServiceError):
    """A spec its schema accepted, refused when the job is created; ``errors`` name the fields."""

    slug, status, title = "validation-error", 422, "Invalid request"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class SpecOverLimit(SpecRefused):
    """A spec within the API's static bounds but over this deployment's configured limits."""

    slug, title = "limit-exceeded", "Over a configured limit"


def now() -> datetime:
    return datetime.now(UTC)


def db_now(session: Session) -> datetime:
    """The database server's clock (PostgreSQL); SQLite is embedded, so its clock is ours."""
    if session.get_bind().dialect.name == "postgresql":
        stamp = session.scalar(text("SELECT clock_timestamp()"))
        assert isinstance(stamp, datetime)
        return stamp
    return now()


def check_limits(spec: JobSpec, settings: Settings) -> None:
    errors = []
    if spec.dvrl.iterations > settings.max_iterations:
        errors.append({"field": "dvrl.iterations",
                       "message": f"at most {settings.max_iterations} on this service"})
    if spec.dvrl.batch_size > settings.max_batch_size:
        errors.append({"field": "dvrl.batch_size",
                       "message": f"at most {settings.max_batch_size} on this service"})
    if spec.time_budget_s is not None and spec.time_budget_s > settings.max_time_budget_s:
        errors.append({"field": "time_budget_s",
                       "message": f"at most {settings.max_time_budget_s} on this service"})
    if spec.ensemble > settings.max_jobs_in_flight:
        errors.append({"field": "ensemble", "message": f"at most {settings.max_jobs_in_flight} "
                       "on this service (each member counts as a job in flight)"})
    if errors:
        raise SpecOverLimit(errors)


def create_job(session: Session, spec: JobSpec, owner: str, settings: Settings,
               idempotency_key: str | None = None) -> tuple[Job, bool]:
    """A new QUEUED job (committed), or the one an earlier request with the same
    ``idempotency_key`` and spec made; returns the job and whether it is new."""
    request = idempotency.request_hash(spec.model_dump(mode="json"))
    if idempotency_key is not None:
        earlier = idempotency.find(session, owner, "create_job", idempotency_key, request)
        if earlier is not None:
            return idempotency.made_earlier(lambda: get_job(session, earlier, owner), "job",
                                            earlier, "start another job"), False
    check_method_options(spec)
    check_limits(spec, settings)
    references: list[tuple[tuple[str, ...], str]] = [(("dataset_id",), spec.dataset_id)]
    if spec.validation.dataset_id is not None:  # "" names no dataset: refused as unknown
        references.append((("validation", "dataset_id"), spec.validation.dataset_id))
    if spec.test:
        references.append((("test", "dataset_id"), spec.test.dataset_id))
    tables = {}
    for field, dataset_id in references:
        try:
            tables[field[0]] = get_dataset(session, dataset_id, owner)
        except NotFound as exc:
            raise UnknownDataset(field, dataset_id) from exc
    _check_columns(spec, tables)
    # an ensemble's members count one job each: each takes a worker
    in_flight = session.scalar(select(func.coalesce(func.sum(Job.ensemble), 0)).where(
        Job.owner == owner, Job.state.in_(ACTIVE)))
    if in_flight is not None and in_flight + spec.ensemble > settings.max_jobs_in_flight:
        raise TooManyJobs(f"{in_flight} jobs are queued or running for this owner; at most "
                          f"{settings.max_jobs_in_flight} at a time: retry when one has "
                          "finished", settings.retry_after_s)
    if spec.notify is not None:  # a signable event to a permitted address, or 422 now
        webhook_secrets.require(session, owner, settings)
        webhook_targets.resolve(spec.notify.url, settings)
    stamp = db_now(session)
    job = Job(id=str(uuid.uuid4()), owner=owner, state="QUEUED",
              spec=spec.model_dump(mode="json"), progress={"phase": "queued"},
              cancel_requested=False, attempts=0, dispatched_at=stamp, ensemble=spec.ensemble)
    session.add(job)
    if spec.ensemble > 1:
        members.add(session, job.id, spec.seed, spec.ensemble, stamp)
    if idempotency_key is not None:
        idempotency.remember(session, owner, "create_job", idempotency_key, request, job.id)
    try:
        session.commit()  # committed before the message is sent
    except IntegrityError:  # a concurrent request with the same key won: answer with its job
        session.rollback()
        earlier = idempotency.find(session, owner, "create_job", idempotency_key or "", request)
        if earlier is None:
            raise
        return get_job(session, earlier, owner), False
    return job, True


def _check_columns(spec: JobSpec, tables: dict[str, Any]) -> None:
    """The columns a spec names exist in its datasets (422 at once, not a failed job later)."""
    errors = []
    training = [c["name"] for c in tables["dataset_id"].columns]
    # the validation and test tables need the target and every feature the training rows use
    features = spec.features or [c for c in training if c not in (spec.target, spec.id_column)]
    for where, dataset in tables.items():
        columns = [c["name"] for c in dataset.columns]
        # a validation or test table's missing target is that table's fault: its field
        named = [("target" if where == "dataset_id" else f"{where}.dataset_id", spec.target)]
        if where == "dataset_id":
            named += [("id_column", spec.id_column)] if spec.id_column else []
            named += [(f"features.{i}", f) for i, f in enumerate(spec.features or [])]
        else:
            missing = [f for f in features if f not in columns and f in training]
            named += [(f"{where}.dataset_id", f) for f in missing[:5]]
        for field, column in named:
            if column not in columns:
                hint = f"; it has {columns[:20]}" if len(columns) <= 20 else \
                    f"; it has {len(columns)} columns"
                dataset_field = "dataset_id" if where == "dataset_id" else f"{where}.dataset_id"
                errors.append({"field": field, "message": f"no column {column!r} in the "
                               f"dataset of {dataset_field}{hint}"})
    if errors:
        raise UnknownColumns(errors)


def check_method_options(spec: JobSpec) -> None:
    """A baseline ``method`` refuses the options it would not use (``predictor``, ``dvrl``), as
    ``dvrl value --method`` does. Checked when a job is created, on the fields the request gave:
    not in the spec's schema, which also reads back stored specs, every field filled in. Their
    defaults pass (``"predictor": null``, the default ``dvrl`` block): a baseline job's spec as
    ``GET /v1/jobs/{id}`` shows it can be sent again."""
    if spec.method == "dvrl":
        return
    defaults = JobSpec.model_fields
    given = [name for name in ("predictor", "dvrl") if name in spec.model_fields_set
             and getattr(spec, name) != defaults[name].get_default(call_default_factory=True)]
    if given:
        raise SpecRefused([
            {"field": name, "message": f"an option of method dvrl, not of {spec.method}, which "
             f"uses its own defaults and the seed (leave {name} out)"} for name in given])


class UnknownColumns(ServiceError):
    slug, status, title = "unknown-column", 422, "Unknown column"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


def get_job(session: Session, job_id: str, owner: str | None = None) -> Job:
    """The job; another owner's job is not found (``owner`` None: any owner)."""
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(session: Session, owner: str, limit: int, after: str | None,
              state: str | None) -> list[Job]:
    conditions = [] if state is None else [Job.state == state]
    return newest_first(session, Job, limit, after, owner, *conditions)


def delete_job(session: Session, job_id: str, owner: str) -> None:
    """Delete a finished job with its results (409 while it is queued or running)."""
    job = get_job(session, job_id, owner)
    if job.state in ACTIVE:
        raise Conflict(f"job {job_id!r} is {job.state}; cancel it and delete it once it has "
                       "ended")
    session.delete(job)
    session.commit()


def request_cancel(session: Session, job_id: str, owner: str) -> Job:
    """Cancel a job: a QUEUED one ends CANCELLED at once, a running one becomes CANCELLING (its
    loop sees the flag). One statement decides, so a claim racing the cancel either happens
    before it (the job is CANCELLING and its worker stops) or finds it CANCELLED."""
    queued = Job.state == "QUEUED"
    cancelled = {"phase": "cancelled"}
    stamp = db_now(session)
    changed = session.execute(update(Job).where(  # type: ignore[attr-defined]
        Job.id == job_id, Job.owner == owner, Job.state.in_(ACTIVE)).values(
        state=case((queued, "CANCELLED"), else_="CANCELLING"), cancel_requested=True,
        finished_at=case((queued, stamp), else_=Job.finished_at),
        progress=case((queued, literal(cancelled, Job.progress.type)), else_=Job.progress),
    )).rowcount
    if changed:  # an ensemble's queued members end now; it ends if none is left running
        members.on_cancel(session, job_id, stamp)
    if changed and session.scalar(select(Job.state).where(Job.id == job_id)) == "CANCELLED":
        webhook_events.job_ended(session, job_id, stamp)  # ended here, not by a worker
    session.commit()
    job = get_job(session, job_id, owner)
    if not changed:
        raise Conflict(f"job {job_id!r} has already finished ({job.state})")
    session.refresh(job)
    return job


def _lease_ends(stamp: datetime, settings: Settings) -> datetime:
    return stamp + timedelta(seconds=settings.lease_s)


def _expired(stamp: datetime) -> Any:
    """Running on a worker whose lease ran out (it died, or lost the database for too long).
    An ensemble job has no lease while its members run; one left expired is due to be
    combined."""
    return and_(Job.state.in_(("RUNNING", "CANCELLING")),
                or_(and_(Job.lease_expires_at.is_(None), Job.ensemble == 1),
                    Job.lease_expires_at < stamp))


def _queued_alone() -> Any:
    """A QUEUED job that runs as one (an ensemble's members are claimed, not the job)."""
    return and_(Job.state == "QUEUED", Job.ensemble == 1)


def claim(session: Session, job_id: str, holder: str, settings: Settings) -> bool:
    """Take the job: a QUEUED one, or a RUNNING / CANCELLING one whose lease ran out (its worker
    died) and that has attempts left. False when another worker holds it or it has ended; a job
    out of attempts ends FAILED here."""
    stamp = db_now(session)
    claimed = session.execute(  # type: ignore[attr-defined]
        update(Job).where(Job.id == job_id, or_(_queued_alone(), _expired(stamp)),
                          Job.attempts < settings.max_attempts).values(
            state=case((Job.state == "CANCELLING", "CANCELLING"), else_="RUNNING"),
            started_at=func.coalesce(Job.started_at, stamp), heartbeat_at=stamp,
            attempts=Job.attempts + 1, lease_holder=holder,
            lease_expires_at=_lease_ends(stamp, settings), progress={"phase": "loading"})
    ).rowcount
    if not claimed:
        fail_exhausted(session, settings, stamp, job_id)
    session.commit()
    return bool(claimed)


def fail_exhausted(session: Session, settings: Settings, stamp: datetime,
                   job_id: str | None = None) -> int:
    """End FAILED every job (or ``job_id``) whose worker died on its last allowed attempt; the
    caller commits. Returns how many ended."""
    condition = and_(_expired(stamp), Job.attempts >= settings.max_attempts)
    if job_id is not None:
        condition = and_(condition, Job.id == job_id)
    error = {"type": "/problems/workers-died", "title": "Workers died", "status": 500,
             "detail": f"the job was started {settings.max_attempts} times and each time its "
             "worker stopped without finishing it (killed, out of memory, or crashed): it is "
             "not tried again. Try a smaller table or fewer iterations, or ask the operator "
             "for the worker's log"}
    ended = session.scalars(update(Job).where(condition).values(
        state="FAILED", error=error, finished_at=stamp, lease_holder=None,
        lease_expires_at=None, checkpoint=None, progress={"phase": "failed"})
        .returning(Job.id)).all()
    for ended_id in ended:
        webhook_events.job_ended(session, ended_id, stamp)
    return len(ended)


def elapsed_since_start(session: Session, job_id: str) -> float:
    """Seconds since the job's first start, on the database's clock: a resumed job's time budget
    counts from there, not from its latest attempt."""
    started = session.scalar(select(Job.started_at).where(Job.id == job_id))
    if started is None:
        return 0.0
    stamp = db_now(session)
    if started.tzinfo is None:  # SQLite returns naive UTC
        started = started.replace(tzinfo=UTC)
    return max(0.0, (stamp - started).total_seconds())


def _held(job_id: str, holder: str) -> Any:
    return and_(Job.id == job_id, Job.lease_holder == holder,
                Job.state.in_(("RUNNING", "CANCELLING")))


def renew(session: Session, job_id: str, holder: str, settings: Settings) -> bool:
    """Extend the lease; False when it is no longer ours (the caller must stop)."""
    stamp = db_now(session)
    renewed = session.execute(update(Job).where(_held(job_id, holder)).values(  # type: ignore[attr-defined]
        lease_expires_at=_lease_ends(stamp, settings), heartbeat_at=stamp)).rowcount
    session.commit()
    return bool(renewed)


def record_progress(session: Session, job_id: str, holder: str, progress: dict[str, Any],
                    settings: Settings) -> bool:
    """Write progress (and renew the lease); False when the job is no longer ours."""
    stamp = db_now(session)
    written = session.execute(update(Job).where(_held(job_id, holder)).values(  # type: ignore[attr-defined]
        progress=progress | {"heartbeat": stamp.isoformat()}, heartbeat_at=stamp,
        lease_expires_at=_lease_ends(stamp, settings))).rowcount
    session.commit()
    return bool(written)


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def save_checkpoint(session: Session, job_id: str, holder: str, state: bytes) -> bool:
    saved = session.execute(update(Job).where(_held(job_id, holder)).values(  # type: ignore[attr-defined]
        checkpoint=state)).rowcount
    session.commit()
    return bool(saved)


def hold(session: Session, job_id: str, holder: str) -> bool:
    """Lock the job row for the rest of the transaction if it is still ours (before writing
    results: with the lock held, no other worker can claim it until the commit)."""
    query = select(Job.id).where(_held(job_id, holder)).with_for_update()
    return session.scalar(query) is not None


def finish(
    session: Session, job_id: str, holder: str, state: str, *,
    error: dict[str, Any] | None = None, summary: dict[str, Any] | None = None,
    curves: dict[str, Any] | None = None, progress: dict[str, Any] | None = None,
) -> bool:
    """Set the final state in the session's transaction (the caller commits); False when the
    job is no longer ours."""
    stamp = db_now(session)
    values: dict[str, Any] = {"state": state, "finished_at": stamp, "error": error,
                              "summary": summary, "curves": curves, "checkpoint": None,
                              "lease_holder": None, "lease_expires_at": None}
    if progress is not None:
        values["progress"] = progress
    done = session.execute(update(Job).where(_held(job_id, holder)).values(**values)).rowcount  # type: ignore[attr-defined]
    if done:  # the event is committed with the final state, or not at all
        webhook_events.job_ended(session, job_id, stamp)
    return bool(done)


def due_for_dispatch(session: Session, settings: Settings,
                     waiting: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Jobs whose message may be lost: QUEUED and not sent for ``requeue_after_s`` (unless their
    queue is among ``waiting``, the queues with messages not yet taken), or running on a worker
    whose lease ran out. Each is marked as sent now (one sweeper re-sends it, however many run);
    returns (job id, device). Jobs whose workers died on their last attempt end FAILED
    instead."""
    stamp = db_now(session)
    fail_exhausted(session, settings, stamp)
    quiet = or_(Job.dispatched_at.is_(None),
                Job.dispatched_at < stamp - timedelta(seconds=settings.requeue_after_s))
    lost_worker = and_(Job.state.in_(("RUNNING", "CANCELLING")), Job.lease_expires_at < stamp,
                       or_(quiet, Job.dispatched_at < Job.lease_expires_at))
    candidates = session.execute(select(Job.id, Job.spec, Job.state).where(
        or_(and_(_queued_alone(), quiet), lost_worker)).order_by(Job.created_at)
        .limit(1000)).all()
    due = []
    for job_id, spec, state in candidates:
        device = (spec or {}).get("device", "auto")
        if state == "QUEUED" and settings.queue_for(device) in waiting:
            continue  # its message most likely waits there still
        marked = session.execute(update(Job).where(  # type: ignore[attr-defined]
            Job.id == job_id, or_(and_(_queued_alone(), quiet), lost_worker)).values(
            dispatched_at=stamp)).rowcount
        if marked:
            due.append((job_id, device))
    session.commit()
    return due
