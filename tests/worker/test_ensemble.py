"""Ensemble jobs on real ``dvrl worker`` processes (real Redis and PostgreSQL): members run on
whichever workers are free at the same time, cancel reaches each of them, and a member whose
worker is killed resumes from its own checkpoint on another worker.

The workers run with the fault tests' short leases and sweeps so that a takeover happens within
a test's time.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from sqlalchemy import select

from service.db import session_scope
from service.models import JobMember
from tests.conftest import WorkerPool, upload, wait_for
from tests.faults.test_faults import FAST


@pytest.fixture
def workers(service_env, tmp_path):
    pool = WorkerPool(tmp_path, FAST)
    yield pool
    pool.stop()


def _submit(client, tables, ensemble: int, iterations: int, seed: int = 5, **extra) -> str:
    train, valid = tables
    response = client.post("/v1/jobs", json={
        "dataset_id": upload(client, train), "target": "label",
        "validation": {"dataset_id": upload(client, valid)}, "seed": seed, "label_noise": 0.2,
        "evaluations": [], "ensemble": ensemble,
        "dvrl": {"iterations": iterations, "rollouts": 8, "tolerance": 0}} | extra)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _members(job_id: str) -> list:
    with session_scope() as session:
        return session.execute(
            select(JobMember.id, JobMember.state, JobMember.lease_holder, JobMember.attempts,
                   JobMember.checkpoint_iteration, JobMember.progress, JobMember.summary,
                   JobMember.values)
            .where(JobMember.job_id == job_id).order_by(JobMember.number)).all()


def _pid(holder: str) -> int:
    return int(holder.split(":")[1])


def _values(client, job_id: str) -> list[dict]:
    return client.get(f"/v1/jobs/{job_id}/values",
                      params={"order": "row", "page_size": 10_000}).json()["items"]


def _until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_an_ensembles_members_run_on_both_workers_at_once_and_it_reports_their_mean(
        client, tables, workers):
    workers.start()
    workers.start()
    job_id = _submit(client, tables, ensemble=3, iterations=150)
    pids_at_once: set[int] = set()
    progress: list[dict] = []
    deadline = time.monotonic() + 400
    while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in (
            "SUCCEEDED", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, job
        running = {_pid(m.lease_holder) for m in _members(job_id)
                   if m.state == "RUNNING" and m.lease_holder}
        if len(running) > len(pids_at_once):
            pids_at_once = running
        progress.append(job["progress"])
        time.sleep(0.1)
    assert job["state"] == "SUCCEEDED", job["error"]
    # two members were RUNNING at the same moment, one on each worker process
    assert pids_at_once == {w.pid for w in workers.processes}
    # progress summed over the members while they ran
    training = [p for p in progress if p.get("members") and p.get("iteration")]
    assert training and all(p["total"] == 450 for p in training)
    assert max(p["iteration"] for p in training) > 150  # more than one member's worth
    assert any(p["members"].get("running", 0) == 2 for p in training)

    stored = np.vstack([np.frombuffer(m.values, dtype="<f8") for m in _members(job_id)])
    values = _values(client, job_id)
    assert len(values) == 360
    assert np.allclose([v["value"] for v in values], stored.mean(axis=0), rtol=0, atol=1e-12)
    assert np.allclose([v["std_error"] for v in values],
                       stored.std(axis=0, ddof=1) / np.sqrt(3), rtol=0, atol=1e-12)
    summary = job["summary"]
    assert summary["ensemble"]["members"] == 3 and summary["ensemble"]["rank_stability"][
        "pairs"] == 3
    assert -1 <= summary["ensemble"]["rank_stability"]["mean_spearman"] <= 1
    assert summary["ensemble"]["std_error"]["median"] > 0
    assert len(summary["trust"]["members"]) == 3
    assert summary["label_noise"]["found_at_20"] > 0.4  # random: 0.2


def test_cancel_stops_every_member_running_on_the_workers(client, tables, workers):
    workers.start()
    workers.start()
    job_id = _submit(client, tables, ensemble=3, iterations=100_000)
    _until(lambda: sum(m.state == "RUNNING" and (m.progress or {}).get("iteration", 0) >= 3
                       for m in _members(job_id)) == 2, 240, "two members training")
    assert client.post(f"/v1/jobs/{job_id}:cancel").json()["state"] == "CANCELLING"
    job = wait_for(client, job_id, timeout=120)  # two loops of 100,000 iterations, stopped
    assert job["state"] == "CANCELLED"
    members = _members(job_id)
    assert [m.state for m in members] == ["CANCELLED"] * 3
    assert client.get(f"/v1/jobs/{job_id}/values").status_code == 409
    # where training stopped, summed over the members, stays on the job (it was dropped)
    reached = sum((m.progress or {}).get("iteration") or 0 for m in members)
    assert job["progress"]["total"] == 300_000
    assert job["progress"]["iteration"] == reached >= 6


def test_a_member_whose_worker_is_killed_resumes_from_its_checkpoint_on_another_worker(
        client, tables, workers):
    workers.start()
    workers.start()
    reference = _submit(client, tables, ensemble=2, iterations=300)
    victim = _submit(client, tables, ensemble=2, iterations=300)  # the same spec and seed

    def checkpointed():  # a victim member that has saved a checkpoint and is still training
        return next((m for m in _members(victim) if m.state == "RUNNING"
                     and (m.checkpoint_iteration or 0) >= 100
                     and (m.progress or {}).get("iteration", 0) < 280), None)

    member = _until(checkpointed, 400, "a victim member's checkpoint")
    os.kill(_pid(member.lease_holder), signal.SIGKILL)
    killed_at = member.checkpoint_iteration
    workers.start()  # a replacement, so that two workers run again
    iterations_after: list[int] = []

    def resumed():
        row = next(m for m in _members(victim) if m.id == member.id)
        if row.attempts == 2 and row.state == "RUNNING":
            iterations_after.append((row.progress or {}).get("iteration", -1))
        return row.state == "SUCCEEDED" and row

    final = _until(resumed, 400, "the killed member to finish on another worker")
    assert final.attempts == 2  # claimed twice: by the killed worker and by its replacement
    # it went on from the checkpoint it had when its worker died, never from iteration 0
    assert final.summary["resumed_from"] >= killed_at >= 100
    assert iterations_after and min(iterations_after) >= killed_at
    job = wait_for(client, victim, timeout=300)
    assert job["state"] == "SUCCEEDED", job["error"]
    assert wait_for(client, reference, timeout=300)["state"] == "SUCCEEDED"
    # the same seed gives the same values, and a resumed member the values of an undisturbed one
    assert _values(client, victim) == _values(client, reference)
    assert len(_values(client, victim)) == 360
