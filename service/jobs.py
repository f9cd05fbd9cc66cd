"""The job state machine.

    QUEUED ──claim──> RUNNING ──> SUCCEEDED | FAILED | CANCELLED
       │                 │
       └──cancel──> CANCELLED     RUNNING ──cancel──> CANCELLING ──(loop sees it)──> CANCELLED

The job row is committed (QUEUED) before any message is sent; a worker claims it with one
conditional UPDATE, so a job runs on at most one worker at a time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .datasets import get_dataset
from .errors import Conflict, NotFound
from .models import Job
from .paging import newest_first
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


def now() -> datetime:
    return datetime.now(UTC)


def create_job(session: Session, spec: JobSpec) -> Job:
    references: list[tuple[tuple[str, ...], str]] = [(("dataset_id",), spec.dataset_id)]
    if spec.validation.dataset_id:
        references.append((("validation", "dataset_id"), spec.validation.dataset_id))
    if spec.test:
        references.append((("test", "dataset_id"), spec.test.dataset_id))
    for field, dataset_id in references:
        try:
            get_dataset(session, dataset_id)
        except NotFound as exc:
            raise UnknownDataset(field, dataset_id) from exc
    job = Job(id=str(uuid.uuid4()), state="QUEUED", spec=spec.model_dump(mode="json"),
              progress={"phase": "queued"}, cancel_requested=False, attempts=0)
    session.add(job)
    session.commit()  # committed before the message is sent
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(session: Session, limit: int, after: str | None, state: str | None) -> list[Job]:
    conditions = [] if state is None else [Job.state == state]
    return newest_first(session, Job, limit, after, *conditions)


def request_cancel(session: Session, job_id: str) -> Job:
    job = get_job(session, job_id)
    if job.state in TERMINAL:
        raise Conflict(f"job {job_id!r} has already finished ({job.state})")
    if job.state == "QUEUED":
        session.execute(update(Job).where(Job.id == job_id, Job.state == "QUEUED").values(
            state="CANCELLED", cancel_requested=True, finished_at=now(),
            progress={"phase": "cancelled"}))
    else:
        session.execute(update(Job).where(Job.id == job_id, Job.state.in_(ACTIVE)).values(
            state="CANCELLING", cancel_requested=True))
    session.commit()
    session.refresh(job)
    return job


def claim(session: Session, job_id: str) -> bool:
    """QUEUED -> RUNNING, atomically; False when another worker has it or it was cancelled."""
    claimed = session.execute(  # type: ignore[attr-defined]
        update(Job).where(Job.id == job_id, Job.state == "QUEUED").values(
            state="RUNNING", started_at=now(), heartbeat_at=now(), attempts=Job.attempts + 1,
            progress={"phase": "loading"})
    ).rowcount
    session.commit()
    return bool(claimed)


def record_progress(session: Session, job_id: str, progress: dict[str, Any]) -> None:
    stamp = now()
    session.execute(update(Job).where(Job.id == job_id).values(
        progress=progress | {"heartbeat": stamp.isoformat()}, heartbeat_at=stamp))
    session.commit()


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def save_checkpoint(session: Session, job_id: str, state: bytes) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(checkpoint=state))
    session.commit()


def finish(
    session: Session, job_id: str, state: str, *, error: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None, curves: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {"state": state, "finished_at": now(), "error": error,
                              "summary": summary, "curves": curves, "checkpoint": None}
    if progress is not None:
        values["progress"] = progress
    session.execute(update(Job).where(Job.id == job_id).values(**values))
    session.commit()
