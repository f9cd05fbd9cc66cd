"""Webhook events: what a job's receiver is told, written to the outbox in the transaction that
changes the job, so an event exists exactly when its change was committed.

A job spec's ``notify`` names a URL and the events to send there:

* ``job.finished``: the job ended (SUCCEEDED, FAILED or CANCELLED); always one per job;
* ``job.progress``: training passed 25%, 50% and 75% of its steps (at most three per job).

The body, fixed when the event is made (every retry sends the same bytes)::

    {"id": "<event id>", "type": "job.finished", "created_at": "<ISO 8601>",
     "job": {"id", "state", "created_at", "started_at", "finished_at", "error", "summary",
             "links": {"self", "values", "corrupted", "curves", "deliveries"}}}

``summary`` holds the figures a receiver may act on (method, rows, flagged, label-noise
discovery), never the owner or the spec. Links are paths, absolute when ``DVRL_PUBLIC_URL`` is
set. Sending is service.webhooks' business.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Job, WebhookDelivery
from .settings import Settings, get_settings

EventName = Literal["job.finished", "job.progress"]
MILESTONES = (25, 50, 75)
SUMMARY_FIELDS = ("method", "rows", "task", "predictor", "metric", "flagged", "label_noise")


def _iso(stamp: datetime | None) -> str | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:  # SQLite returns naive UTC
        stamp = stamp.replace(tzinfo=UTC)
    # written as the API writes its times (api.schemas.Moment): UTC, ...Z
    return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")


def links(job_id: str, state: str, settings: Settings) -> dict[str, str]:
    base = f"{(settings.public_url or '').rstrip('/')}/v1/jobs/{job_id}"
    found = {"self": base, "deliveries": f"{base}/deliveries"}
    if state == "SUCCEEDED":
        found |= {"values": f"{base}/values", "corrupted": f"{base}/corrupted",
                  "curves": f"{base}/curves"}
    return found


def _subscribed(spec: dict[str, Any], event: EventName) -> str | None:
    """The URL the spec sends ``event`` to, or None."""
    notify = (spec or {}).get("notify")
    if not notify or event not in notify.get("events", ()):
        return None
    return str(notify["url"])


def _enqueue(session: Session, job: Any, event: str, kind: EventName, content: dict[str, Any],
             url: str, stamp: datetime, settings: Settings) -> None:
    """Add the event to the outbox unless the job has it already (a resumed job passes its
    milestones again); the caller commits."""
    exists = session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.job_id == job.id, WebhookDelivery.event == event))
    if exists is not None:
        return
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "type": kind, "created_at": _iso(stamp), "job": content}
    session.add(WebhookDelivery(
        id=event_id, job_id=job.id, owner=job.owner, event=event, type=kind, url=url,
        body=json.dumps(body, separators=(",", ":")), state="PENDING", attempts=0,
        created_at=stamp, due_at=stamp,
        give_up_at=stamp + timedelta(seconds=settings.webhook_retry_for_s)))


def _row(session: Session, job_id: str) -> Any:
    return session.execute(select(
        Job.id, Job.owner, Job.state, Job.spec, Job.created_at, Job.started_at,
        Job.finished_at, Job.error, Job.summary).where(Job.id == job_id)).one_or_none()


def job_ended(session: Session, job_id: str, stamp: datetime) -> None:
    """In the transaction that ended the job: its ``job.finished`` event, if asked for."""
    job = _row(session, job_id)
    url = None if job is None else _subscribed(job.spec, "job.finished")
    if url is None:
        return
    settings = get_settings()
    summary = None if job.summary is None else \
        {k: job.summary[k] for k in SUMMARY_FIELDS if k in job.summary}
    content = {"id": job.id, "state": job.state, "created_at": _iso(job.created_at),
               "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
               "error": job.error, "summary": summary,
               "links": links(job.id, job.state, settings)}
    _enqueue(session, job, "job.finished", "job.finished", content, url, stamp, settings)


def milestone(iteration: int, total: int) -> int | None:
    """The highest progress milestone (percent) that ``iteration`` of ``total`` has passed."""
    if total <= 0:
        return None
    passed = [m for m in MILESTONES if iteration * 100 >= m * total]
    return passed[-1] if passed else None


def progress_reached(session: Session, job_id: str, percent: int, progress: dict[str, Any],
                     stamp: datetime) -> None:
    """A ``job.progress`` event for a milestone, if asked for (once per job and milestone)."""
    job = _row(session, job_id)
    url = None if job is None else _subscribed(job.spec, "job.progress")
    if url is None:
        return
    settings = get_settings()
    content = {"id": job.id, "state": job.state,
               "progress": {"percent": percent, "phase": progress.get("phase"),
                            "iteration": progress.get("iteration"),
                            "total": progress.get("total")},
               "links": links(job.id, job.state, settings)}
    _enqueue(session, job, f"job.progress.{percent}", "job.progress", content, url, stamp,
             settings)
