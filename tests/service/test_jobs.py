"""The job state machine under races, against the real PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from service import jobs
from service.db import session_scope
from service.errors import NotFound
from service.settings import get_settings
from tests.conftest import upload


def test_cancel_racing_a_claim_is_never_lost(client, tables):
    """One statement decides: either the claim came first (the job is CANCELLING and its
    worker stops) or the cancel did (CANCELLED, and the claim fails). Never a 202 for a cancel
    that did nothing."""
    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "dvrl": {"iterations": 3}}
    settings = get_settings()
    outcomes = {"claim first": 0, "cancel first": 0}
    for _ in range(150):
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        start = threading.Barrier(2)
        result: dict[str, object] = {}

        def claim(job_id: str = job_id, start: threading.Barrier = start,
                  result: dict = result) -> None:
            start.wait()
            with session_scope() as session:
                result["claimed"] = jobs.claim(session, job_id, "worker", settings)

        def cancel(job_id: str = job_id, start: threading.Barrier = start,
                   result: dict = result) -> None:
            start.wait()
            with session_scope() as session:
                result["answer"] = jobs.request_cancel(session, job_id, "alice").state

        threads = [threading.Thread(target=claim), threading.Thread(target=cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        with session_scope() as session:
            job = jobs.get_job(session, job_id)
            assert job.cancel_requested, result
            if result["claimed"]:
                assert job.state == "CANCELLING" == result["answer"], result
                outcomes["claim first"] += 1
                jobs.finish(session, job_id, "worker", "CANCELLED")  # as its loop would
            else:
                assert job.state == "CANCELLED" == result["answer"], result
                outcomes["cancel first"] += 1
    assert sum(outcomes.values()) == 150


def test_cancelling_a_finished_job_is_a_conflict(client, tables):
    from service.runner import run_job

    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "dvrl": {"iterations": 3}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    response = client.post(f"/v1/jobs/{job_id}:cancel")
    assert response.status_code == 409 and "SUCCEEDED" in response.json()["detail"]
    with session_scope() as session, pytest.raises(NotFound):  # another owner's: not found
        jobs.request_cancel(session, job_id, "bob")
