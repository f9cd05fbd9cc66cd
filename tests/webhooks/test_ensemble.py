"""An ensemble job's webhook events: its progress milestones over all members, once each, and
one job.finished when the last member's values are combined."""

from __future__ import annotations

from sqlalchemy import select

from service.db import session_scope
from service.member_runner import run_member
from service.models import JobMember, WebhookDelivery
from tests.webhooks.conftest import tiny_job


def test_an_ensemble_sends_each_milestone_once_and_one_finished_event(client, tables,
                                                                      receiver_factory):
    assert client.post("/v1/webhook-secret").status_code == 201
    job = tiny_job(client, tables, {"url": receiver_factory().url,
                                    "events": ["job.finished", "job.progress"]},
                   ensemble=3, dvrl={"iterations": 30, "rollouts": 2})
    with session_scope() as session:
        member_ids = session.scalars(select(JobMember.id).where(
            JobMember.job_id == job["id"]).order_by(JobMember.number)).all()
    for member_id in member_ids:
        assert run_member(member_id) == "SUCCEEDED"
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "SUCCEEDED"
    with session_scope() as session:
        events = session.scalars(select(WebhookDelivery.event).where(
            WebhookDelivery.job_id == job["id"])).all()
    assert sorted(events) == ["job.finished", "job.progress.25", "job.progress.50",
                              "job.progress.75"]
