"""Retention: deleting a finished job removes its results; unfinished jobs and the datasets they
use cannot be deleted; finished jobs older than the configured age expire."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from service import retention
from service.db import session_scope
from service.models import IdempotencyKey, Job, JobValue
from service.runner import run_job
from tests.conftest import upload


def _job(client, tables, key: str | None = None) -> str:
    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "evaluations": [],
            "dvrl": {"iterations": 10, "rollouts": 4}}
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/jobs", json=spec, headers=headers).json()["id"]


def _values(job_id: str) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(JobValue)
                              .where(JobValue.job_id == job_id))


def test_delete_a_finished_job_removes_its_results(client, tables):
    job_id = _job(client, tables)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 409  # still queued
    assert client.delete(f"/v1/datasets/{job['spec']['dataset_id']}").status_code == 409
    assert run_job(job_id) == "SUCCEEDED" and _values(job_id) == 360
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert _values(job_id) == 0
    assert client.delete(f"/v1/datasets/{job['spec']['dataset_id']}").status_code == 204


def test_old_finished_jobs_expire(client, tables, monkeypatch):
    from service.settings import get_settings

    old, recent, queued = (_job(client, tables, key) for key in ("a", "b", "c"))
    assert run_job(old) == run_job(recent) == "SUCCEEDED"
    with session_scope() as session:
        ten_days = jobs_now() - timedelta(days=10)
        session.execute(update(Job).where(Job.id.in_([old, queued])).values(
            finished_at=ten_days, created_at=ten_days))
        session.execute(update(IdempotencyKey).where(IdempotencyKey.key == "a").values(
            created_at=ten_days))
    assert retention.expire(get_settings()) == 0  # off unless configured
    monkeypatch.setenv("DVRL_RESULTS_TTL_DAYS", "7")
    get_settings.cache_clear()
    assert retention.expire(get_settings()) == 1
    assert client.get(f"/v1/jobs/{old}").status_code == 404 and _values(old) == 0
    assert client.get(f"/v1/jobs/{recent}").json()["state"] == "SUCCEEDED"
    assert client.get(f"/v1/jobs/{queued}").json()["state"] == "QUEUED"  # unfinished: kept
    with session_scope() as session:
        assert session.get(IdempotencyKey, ("alice", "create_job", "a")) is None


def jobs_now():
    from service.jobs import now

    return now()


def test_an_old_job_whose_webhook_event_is_still_retried_waits_for_it(client, tables,
                                                                      monkeypatch):
    """Retention deleted a job with its events, and an event still being retried (for up to
    24 h) was never sent."""
    import uuid

    from service.models import WebhookDelivery
    from service.settings import get_settings

    job_id = _job(client, tables)
    assert run_job(job_id) == "SUCCEEDED"
    ten_days = jobs_now() - timedelta(days=10)
    event = str(uuid.uuid4())
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(finished_at=ten_days))
        session.add(WebhookDelivery(
            id=event, job_id=job_id, owner="alice", event="job.finished", type="job.finished",
            url="https://hooks.example.com/", body="{}", state="PENDING", attempts=3,
            created_at=ten_days, due_at=jobs_now(), give_up_at=jobs_now() + timedelta(hours=1)))
    monkeypatch.setenv("DVRL_RESULTS_TTL_DAYS", "7")
    get_settings.cache_clear()
    assert retention.expire(get_settings()) == 0
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "SUCCEEDED"
    with session_scope() as session:  # given up (or delivered): the job goes
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == event)
                        .values(state="FAILED"))
    assert retention.expire(get_settings()) == 1
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
