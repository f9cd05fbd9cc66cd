"""Ensemble members: the runs that make one ensemble job (spec ``ensemble`` K > 1).

    job QUEUED ──a member claimed──> RUNNING ──every member SUCCEEDED──> combined ──> SUCCEEDED
                                        │  a member FAILED ──> FAILED (the others stop)
                                        └─ cancel ──> CANCELLING ──last member stopped──> CANCELLED

Each member is a row of its own (models.JobMember) with what a single job has for itself in
service.jobs: a lease renewed by a heartbeat, a checkpoint, attempts. So the K members run on K
workers at once (one message each, service.dispatch), and a member whose worker died is resumed
from its own checkpoint by another worker. ``claim``, ``renew``, ``record_progress``,
``cancel_requested``, ``save_checkpoint``, ``hold`` and ``finish`` have the signatures of
service.jobs' functions of those names, with a member id: the runner's monitor calls them for a
member (service.member_runner).

The job row holds no lease while its members run. Every transaction that writes both a member and
its job locks the job row first (one lock order, so no deadlock), and a member that ends decides
under that lock what its job does next. When the last member has SUCCEEDED the job's lease is
left expired: ``jobs.claim`` then lets exactly one worker (the last member's own, at once, or
any other that the sweeper sends the job to) combine the members' values, evaluate them and write
the results (service.runner). Two members finishing at the same moment cannot both be last (the
row lock), and results are written once whatever happens (the claim).

Cancel: the members stop on their job's own ``cancel_requested``; queued members end CANCELLED at
once, and the job ends CANCELLED when its last running member has stopped. A member that fails
(its data, its time budget, workers dying under it ``max_attempts`` times) ends the job FAILED
and stops the others. Progress: each member's progress write also sums the members' progress into
the job's (iteration and total over all members, mean recent reward, members by state).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from dvrl_core.ensemble import member_seeds

from . import jobs, webhook_events
from .models import Job, JobMember
from .settings import Settings

MEMBER_ACTIVE = ("QUEUED", "RUNNING")
RUNNING_JOB = ("RUNNING", "CANCELLING")


def member_id(job_id: str, number: int) -> str:
    return f"{job_id}.{number}"


def job_of(member: str) -> str:
    return member.rsplit(".", 1)[0]


def add(session: Session, job_id: str, seed: int, count: int, stamp: datetime) -> None:
    """The job's ``count`` members, QUEUED, in the session's transaction (with the job)."""
    for number, member_seed in enumerate(member_seeds(seed, count)):
        session.add(JobMember(id=member_id(job_id, number), job_id=job_id, number=number,
                              seed=member_seed, state="QUEUED", progress={"phase": "queued"},
                              attempts=0, created_at=stamp, dispatched_at=stamp))


def ids(session: Session, job_id: str) -> list[str]:
    """The job's members, in order (none for a single-run job)."""
    return list(session.scalars(select(JobMember.id).where(JobMember.job_id == job_id)
                                .order_by(JobMember.number)))


def _lock_job(session: Session, job_id: str) -> Any:
    """The job row, locked for the rest of the transaction (always before a member's row)."""
    return session.execute(select(Job.id, Job.state, Job.cancel_requested, Job.lease_expires_at,
                                  Job.spec, Job.ensemble, Job.started_at)
                           .where(Job.id == job_id).with_for_update()).one_or_none()


def _members_phase(job: Any) -> bool:
    """The job is queued or its members run (it is not being combined, nor ended)."""
    return job is not None and job.state in jobs.ACTIVE and job.lease_expires_at is None


def _expired(stamp: datetime) -> Any:
    return and_(JobMember.state == "RUNNING",
                or_(JobMember.lease_expires_at.is_(None), JobMember.lease_expires_at < stamp))


def _held(member: str, holder: str) -> Any:
    return and_(JobMember.id == member, JobMember.lease_holder == holder,
                JobMember.state == "RUNNING")


def claim(session: Session, member: str, holder: str, settings: Settings) -> bool:
    """Take the member: a QUEUED one, or a RUNNING one whose lease ran out, of a job that is
    queued or running its members; the job becomes RUNNING with its first member. A member out
    of attempts ends FAILED here (and its job with it)."""
    stamp = jobs.db_now(session)
    job = _lock_job(session, job_of(member))
    claimed = 0
    if _members_phase(job):
        claimed = session.execute(update(JobMember).where(  # type: ignore[attr-defined]
            JobMember.id == member, or_(JobMember.state == "QUEUED", _expired(stamp)),
            JobMember.attempts < settings.max_attempts).values(
            state="RUNNING", started_at=func.coalesce(JobMember.started_at, stamp),
            heartbeat_at=stamp, attempts=JobMember.attempts + 1, lease_holder=holder,
            lease_expires_at=stamp + timedelta(seconds=settings.lease_s))).rowcount
    if claimed:
        resumed = session.scalar(select(JobMember.checkpoint_iteration)
                                 .where(JobMember.id == member))
        session.execute(update(JobMember).where(JobMember.id == member).values(
            progress={"phase": "loading"} | ({"iteration": resumed} if resumed else {})))
        session.execute(update(Job).where(Job.id == job.id, Job.state == "QUEUED").values(
            state="RUNNING", started_at=func.coalesce(Job.started_at, stamp)))
        _aggregate(session, job.id, stamp)
    else:
        fail_exhausted(session, settings, stamp, member)
    session.commit()
    return bool(claimed)


def renew(session: Session, member: str, holder: str, settings: Settings) -> bool:
    stamp = jobs.db_now(session)
    renewed = session.execute(update(JobMember).where(_held(member, holder)).values(  # type: ignore[attr-defined]
        lease_expires_at=stamp + timedelta(seconds=settings.lease_s),
        heartbeat_at=stamp)).rowcount
    session.commit()
    return bool(renewed)


def record_progress(session: Session, member: str, holder: str, progress: dict[str, Any],
                    settings: Settings) -> bool:
    """Write the member's progress (and renew its lease), then its job's sum of all members'."""
    stamp = jobs.db_now(session)
    job = _lock_job(session, job_of(member))
    written = session.execute(update(JobMember).where(_held(member, holder)).values(  # type: ignore[attr-defined]
        progress=progress | {"heartbeat": stamp.isoformat()}, heartbeat_at=stamp,
        lease_expires_at=stamp + timedelta(seconds=settings.lease_s))).rowcount
    if written and _members_phase(job):
        _aggregate(session, job.id, stamp)
    session.commit()
    return bool(written)


def cancel_requested(session: Session, member: str) -> bool:
    """The member stops when its job is cancelled (or has failed)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_of(member))))


def save_checkpoint(session: Session, member: str, holder: str, state: bytes,
                    iteration: int | None = None) -> bool:
    saved = session.execute(update(JobMember).where(_held(member, holder)).values(  # type: ignore[attr-defined]
        checkpoint=state, checkpoint_iteration=iteration)).rowcount
    session.commit()
    return bool(saved)


def hold(session: Session, member: str, holder: str) -> bool:
    """Lock the job row, then the member's if it is still ours (before its last writes)."""
    _lock_job(session, job_of(member))
    query = select(JobMember.id).where(_held(member, holder)).with_for_update()
    return session.scalar(query) is not None


def store_values(session: Session, member: str, result: Any,
                 resumed_from: int | None) -> dict[str, Any]:
    """Keep a member's values and reward trace (float64) for the job's combination; returns
    the member's summary (its record, diagnostics and trust check)."""
    session.execute(update(JobMember).where(JobMember.id == member).values(
        values=np.asarray(result.values, dtype="<f8").tobytes(),
        reward_trace=np.asarray(result.reward_trace, dtype="<f8").tobytes()))
    return {"rows": len(result), "params": result.params, "versions": result.versions,
            "device": result.device,
            "timings": {k: round(float(v), 3) for k, v in result.timings.items()},
            "diagnostics": result.diagnostics, "resumed_from": resumed_from}


def finish(session: Session, member: str, holder: str, state: str, *,
           error: dict[str, Any] | None = None, summary: dict[str, Any] | None = None,
           curves: dict[str, Any] | None = None, progress: dict[str, Any] | None = None) -> bool:
    """End the member (after ``hold``, in its transaction; the caller commits) and decide what
    its job does next; False when the member is no longer ours."""
    stamp = jobs.db_now(session)
    values: dict[str, Any] = {"state": state, "finished_at": stamp, "error": error,
                              "checkpoint": None, "lease_holder": None, "lease_expires_at": None}
    if summary is not None:
        values["summary"] = summary
    if progress is not None:
        values["progress"] = progress
    done = session.execute(update(JobMember).where(_held(member, holder))  # type: ignore[attr-defined]
                           .values(**values)).rowcount
    if not done:
        return False
    if state == "FAILED":
        _fail_job(session, member, error or {}, stamp)
    else:
        settle(session, job_of(member), stamp)
    return True


def _fail_job(session: Session, member: str, error: dict[str, Any], stamp: datetime) -> None:
    """A failed member fails its job (if still running) and stops the other members."""
    row = session.execute(select(JobMember.number, JobMember.seed, Job.ensemble)
                          .join(Job, Job.id == JobMember.job_id)
                          .where(JobMember.id == member)).one()
    job_id = job_of(member)
    detail = (f"ensemble member {row.number + 1} of {row.ensemble} (seed {row.seed}) failed: "
              f"{error.get('detail', 'no detail')}")
    failed = session.execute(update(Job).where(  # type: ignore[attr-defined]
        Job.id == job_id, Job.state.in_(jobs.ACTIVE)).values(
        state="FAILED", error=error | {"detail": detail}, finished_at=stamp,
        cancel_requested=True, lease_holder=None, lease_expires_at=None,
        progress={"phase": "failed"})).rowcount
    if failed:
        _cancel_queued(session, job_id, stamp)
        webhook_events.job_ended(session, job_id, stamp)


def _cancel_queued(session: Session, job_id: str, stamp: datetime) -> None:
    session.execute(update(JobMember).where(JobMember.job_id == job_id,
                                            JobMember.state == "QUEUED").values(
        state="CANCELLED", finished_at=stamp, progress={"phase": "cancelled"}))


def on_cancel(session: Session, job_id: str, stamp: datetime) -> None:
    """In the transaction that cancelled the job (its row locked by that update): queued
    members end now, and the job ends CANCELLED if no member is left running. The caller
    writes the job's event."""
    _cancel_queued(session, job_id, stamp)
    settle(session, job_id, stamp, announce=False)


def settle(session: Session, job_id: str, stamp: datetime, announce: bool = True) -> None:
    """With the job row locked: once no member is queued or running, end the job CANCELLED if
    it was cancelled, or leave its lease expired so that one worker combines the members."""
    job = _lock_job(session, job_id)
    if job is None or job.state not in RUNNING_JOB or job.lease_expires_at is not None:
        return
    counts = _counts(session, job_id)
    if any(counts.get(state.lower()) for state in MEMBER_ACTIVE):
        _aggregate(session, job_id, stamp)
        return
    total = _iterations(job.spec) * job.ensemble
    if job.cancel_requested or counts.get("cancelled") or counts.get("failed"):
        # where training stopped, summed over the members (as a single job keeps it)
        session.execute(update(Job).where(Job.id == job_id).values(
            state="CANCELLED", finished_at=stamp, lease_holder=None, lease_expires_at=None,
            progress={"phase": "cancelled", "members": counts, "total": total,
                      "iteration": _iterations_done(session, job_id, _iterations(job.spec))}))
        if announce:
            webhook_events.job_ended(session, job_id, stamp)
        return
    # every member SUCCEEDED: due to be combined (jobs.claim takes a job whose lease ran out)
    session.execute(update(Job).where(Job.id == job_id).values(
        lease_holder=None, lease_expires_at=stamp - timedelta(seconds=1), heartbeat_at=stamp,
        progress={"phase": "combining", "iteration": total, "total": total,
                  "members": counts}))


def _iterations(spec: dict[str, Any]) -> int:
    return int((spec.get("dvrl") or {}).get("iterations", 2000))


def _member_iterations(state: str, progress: dict[str, Any] | None, per_member: int) -> int:
    """A member's iterations: all of them once it SUCCEEDED, else where its progress is."""
    return per_member if state == "SUCCEEDED" else int((progress or {}).get("iteration") or 0)


def _iterations_done(session: Session, job_id: str, per_member: int) -> int:
    rows = session.execute(select(JobMember.state, JobMember.progress)
                           .where(JobMember.job_id == job_id)).all()
    return sum(_member_iterations(state, progress, per_member) for state, progress in rows)


def _counts(session: Session, job_id: str) -> dict[str, int]:
    rows = session.execute(select(JobMember.state, func.count()).where(
        JobMember.job_id == job_id).group_by(JobMember.state)).all()
    return {state.lower(): int(count) for state, count in rows}


def _aggregate(session: Session, job_id: str, stamp: datetime) -> None:
    """The job's progress from its members': iterations summed over all members, the running
    members' mean recent reward, an ETA from their summed rate, the members by state; with
    ``job.progress`` in the spec's notify, the milestones of that sum."""
    job = session.execute(select(Job.spec, Job.started_at, Job.ensemble)
                          .where(Job.id == job_id)).one()
    per_member = _iterations(job.spec)
    members = session.execute(select(JobMember.state, JobMember.progress)
                              .where(JobMember.job_id == job_id)).all()
    done, rewards, rate, training = 0, [], 0.0, False
    for state, progress in members:
        progress = progress or {}
        iteration = _member_iterations(state, progress, per_member)
        done += iteration
        if state != "RUNNING":
            continue
        training |= progress.get("phase") == "training"
        if progress.get("reward") is not None:
            rewards.append(float(progress["reward"]))
        eta = progress.get("eta_s")
        if eta:
            rate += max(per_member - iteration, 0) / float(eta)
    total = per_member * job.ensemble
    counts = Counter(state.lower() for state, _ in members)
    started = job.started_at
    if started is not None and started.tzinfo is None:  # SQLite returns naive UTC
        started = started.replace(tzinfo=stamp.tzinfo)
    aggregate: dict[str, Any] = {
        "phase": "training" if training or done else
        ("preparing" if counts.get("running") else "queued"),
        "iteration": done, "total": total,
        "reward": float(np.mean(rewards)) if rewards else None,
        "elapsed_s": round((stamp - started).total_seconds(), 3) if started else None,
        "eta_s": round((total - done) / rate, 1) if rate > 0 else None,
        "members": dict(counts), "heartbeat": stamp.isoformat(),
    }
    session.execute(update(Job).where(Job.id == job_id, Job.state.in_(RUNNING_JOB),
                                      Job.lease_expires_at.is_(None)).values(
        progress=aggregate, heartbeat_at=stamp))
    percent = webhook_events.milestone(done, total)
    if percent is not None and "job.progress" in ((job.spec or {}).get("notify") or {}).get(
            "events", ()):  # members' progress comes in steps: each milestone passed, once
        for passed in (m for m in webhook_events.MILESTONES if m <= percent):
            webhook_events.progress_reached(session, job_id, passed, aggregate, stamp)


def fail_exhausted(session: Session, settings: Settings, stamp: datetime,
                   member: str | None = None) -> int:
    """End FAILED every member (or ``member``) whose worker died on its last allowed attempt,
    and its job with it; the caller commits. Returns how many members ended."""
    condition = and_(_expired(stamp), JobMember.attempts >= settings.max_attempts)
    if member is not None:
        condition = and_(condition, JobMember.id == member)
    ended = 0
    for found in session.scalars(select(JobMember.id).where(condition).limit(1000)).all():
        _lock_job(session, job_of(found))
        error = {"type": "/problems/workers-died", "title": "Workers died", "status": 500,
                 "detail": f"it was started {settings.max_attempts} times and each time its "
                 "worker stopped without finishing it (killed, out of memory, or crashed): it "
                 "is not tried again. Try a smaller table or fewer iterations, or ask the "
                 "operator for the worker's log"}
        if session.execute(update(JobMember).where(condition, JobMember.id == found).values(  # type: ignore[attr-defined]
                state="FAILED", error=error, finished_at=stamp, lease_holder=None,
                lease_expires_at=None, checkpoint=None,
                progress={"phase": "failed"})).rowcount:
            _fail_job(session, found, error, stamp)
            ended += 1
    return ended


def _due(stamp: datetime, settings: Settings) -> Any:
    """Members whose message may be lost: QUEUED and not sent for ``requeue_after_s``, or
    RUNNING on a worker whose lease ran out (and not sent again since)."""
    quiet = or_(JobMember.dispatched_at.is_(None),
                JobMember.dispatched_at < stamp - timedelta(seconds=settings.requeue_after_s))
    lost = and_(JobMember.state == "RUNNING", JobMember.lease_expires_at < stamp,
                or_(quiet, JobMember.dispatched_at < JobMember.lease_expires_at))
    return or_(and_(JobMember.state == "QUEUED", quiet), lost)


def due_for_dispatch(session: Session, settings: Settings,
                     waiting: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Members to send again, each marked as sent now (one sweeper sends it, however many
    run); returns (member id, device). A QUEUED member of a queue among ``waiting`` (messages
    not yet taken) is left for later, as jobs.due_for_dispatch leaves a job. Members out of
    attempts end FAILED instead."""
    stamp = jobs.db_now(session)
    fail_exhausted(session, settings, stamp)
    session.commit()
    candidates = session.execute(
        select(JobMember.id, Job.spec, JobMember.state).join(Job, Job.id == JobMember.job_id)
        .where(Job.state.in_(jobs.ACTIVE), Job.lease_expires_at.is_(None), _due(stamp, settings))
        .order_by(Job.created_at, JobMember.number).limit(1000)).all()
    due = []
    for found, spec, state in candidates:  # one row a transaction: no lock held across members
        device = (spec or {}).get("device", "auto")
        if state == "QUEUED" and settings.queue_for(device) in waiting:
            continue
        marked = session.execute(update(JobMember).where(  # type: ignore[attr-defined]
            JobMember.id == found, _due(stamp, settings)).values(dispatched_at=stamp)).rowcount
        session.commit()
        if marked:
            due.append((found, device))
    return due


def undispatched(session: Session, job_id: str) -> None:
    """The broker could not take the members' messages: due at the next sweep."""
    session.execute(update(JobMember).where(JobMember.job_id == job_id,
                                            JobMember.state == "QUEUED")
                    .values(dispatched_at=None))
    session.commit()


def next_due(session: Session) -> tuple[str, datetime] | None:
    """The embedded worker's next member (oldest job first): QUEUED, or RUNNING on a worker
    that died; with its job's creation time."""
    stamp = jobs.db_now(session)
    found = session.execute(
        select(JobMember.id, Job.created_at).join(Job, Job.id == JobMember.job_id)
        .where(Job.state.in_(jobs.ACTIVE), Job.lease_expires_at.is_(None),
               or_(JobMember.state == "QUEUED", _expired(stamp)))
        .order_by(Job.created_at, JobMember.number).limit(1)).first()
    return None if found is None else (found[0], found[1])


def load_results(session: Session, job_id: str, data: Any) -> tuple[list[Any], list[int]]:
    """The SUCCEEDED members' results on ``data`` (the job's prepared data), in member order,
    with their seeds: what dvrl_core.ensemble.combine_results combines."""
    from dvrl_core.errors import ConfigError
    from dvrl_core.result import ValuationResult

    rows = session.execute(select(JobMember.seed, JobMember.values, JobMember.reward_trace,
                                  JobMember.summary)
                           .where(JobMember.job_id == job_id, JobMember.state == "SUCCEEDED")
                           .order_by(JobMember.number)).all()
    labels = np.asarray(data.classes, dtype=object)[data.train.y] \
        if data.task == "classification" else data.train.y
    results = []
    for seed, values, trace, summary in rows:
        member_values = np.frombuffer(values, dtype="<f8").copy()
        if len(member_values) != len(data.train):
            raise ConfigError("a member valued a different number of rows than the job has")
        summary = summary or {}
        results.append(ValuationResult(
            values=member_values, ids=data.train.ids, labels=labels,
            reward_trace=np.frombuffer(trace, dtype="<f8").copy(),
            params=(summary.get("params") or {}) | {"random_state": seed},
            versions=summary.get("versions") or {}, device=summary.get("device", "cpu"),
            timings=summary.get("timings") or {}, diagnostics=summary.get("diagnostics") or {}))
    return results, [int(row.seed) for row in rows]
