"""Retention: finished jobs (with their values) older than ``results_ttl_days`` are deleted,
with the idempotency keys of the same age; a job whose webhook events are still being retried
waits until they are delivered or given up. Run by the sweeper; off unless configured."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, select

from .db import session_scope
from .jobs import db_now
from .models import IdempotencyKey, Job, WebhookDelivery
from .settings import Settings

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def expire(settings: Settings) -> int:
    """Delete what has outlived its retention; returns how many jobs went."""
    if settings.results_ttl_days is None:
        return 0
    with session_scope() as session:
        cutoff = db_now(session) - timedelta(days=settings.results_ttl_days)
        retrying = exists(select(WebhookDelivery.id).where(
            WebhookDelivery.job_id == Job.id, WebhookDelivery.state == "PENDING"))
        gone = session.execute(delete(Job).where(  # type: ignore[attr-defined]
            Job.state.in_(TERMINAL), Job.finished_at < cutoff, ~retrying)).rowcount
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(gone or 0)
