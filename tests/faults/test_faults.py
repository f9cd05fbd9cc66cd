"""Fault injection with real processes: workers killed with SIGKILL, Redis and PostgreSQL
restarted, the API restarted while clients poll. Every job must still finish, with the values an
undisturbed run gives.

The workers run with short leases and sweeps (seconds, not the production minutes) so that a
takeover happens within a test's time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import PG_URL, REDIS_URL, ROOT, WorkerPool, api_key, csv_bytes, free_port

FAST = {"DVRL_LEASE_S": "3", "DVRL_SWEEP_INTERVAL_S": "0.5", "DVRL_REQUEUE_AFTER_S": "3",
        "DVRL_CHECKPOINT_INTERVAL_S": "0.3", "DVRL_PROGRESS_INTERVAL_S": "0.2",
        "DVRL_DB_RETRY_S": "120"}
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


@pytest.fixture
def workers(service_env, tmp_path):
    pool = WorkerPool(tmp_path, FAST)
    yield pool
    pool.stop()


def _job(client, tables, iterations: int, **extra) -> str:
    train, valid = tables
    ids = [client.post("/v1/datasets", files={"file": (n, csv_bytes(f))}).json()["id"]
           for n, f in (("train.csv", train), ("valid.csv", valid))]
    response = client.post("/v1/jobs", json={
        "dataset_id": ids[0], "target": "label", "validation": {"dataset_id": ids[1]},
        "seed": 3, "label_noise": 0.2, "evaluations": [],
        "dvrl": {"iterations": iterations, "rollouts": 8, "tolerance": 0}} | extra)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _row(job_id: str):
    from service.db import session_scope
    from service.models import Job

    with session_scope() as session:
        return session.execute(select(Job.state, Job.lease_holder, Job.attempts,
                                      Job.checkpoint.isnot(None), Job.progress)
                               .where(Job.id == job_id)).one()


def _wait(client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        if response.status_code == 200 and response.json()["state"] in (
                "SUCCEEDED", "FAILED", "CANCELLED"):
            return response.json()
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {_row(job_id)}")


def _wait_until(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _values(client, job_id: str) -> list[float]:
    return [row["value"] for row in
            client.get(f"/v1/jobs/{job_id}/values", params={"order": "row",
                                                           "page_size": 10_000}).json()["items"]]


def test_a_worker_killed_mid_job_is_replaced_and_the_job_resumes(client, tables, workers):
    workers.start()
    workers.start()
    reference = _job(client, tables, iterations=400)
    assert _wait(client, reference)["state"] == "SUCCEEDED"
    victim = _job(client, tables, iterations=400)
    # once it has trained a while and saved a checkpoint, kill its worker outright
    _wait_until(lambda: _row(victim)[3] and (_row(victim)[4] or {}).get("iteration", 0) >= 100,
                what="a checkpoint")
    holder = _row(victim)[1]
    pid = int(holder.split(":")[1])
    os.kill(pid, signal.SIGKILL)
    job = _wait(client, victim)
    assert job["state"] == "SUCCEEDED", job
    state, holder_after, attempts, _, _ = _row(victim)
    assert attempts == 2  # claimed twice: once by the killed worker, once by its replacement
    assert _values(client, victim) == _values(client, reference)  # resumed == undisturbed
    assert len(_values(client, victim)) == 360  # and written once


def _redis_answers() -> bool:
    return b"PONG" in subprocess.run(["redis-cli", "ping"], capture_output=True).stdout


def _stop_redis() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
                   capture_output=True, timeout=30)
    _wait_until(lambda: not _redis_answers(), 30, "redis to stop")


def _start_redis() -> None:
    subprocess.run(REDIS_START, check=True, timeout=30)
    _wait_until(_redis_answers, 30, "redis")


def _restart_redis() -> None:
    _stop_redis()
    _start_redis()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server here")
@pytest.mark.alone  # stops a service every xdist worker shares
def test_a_job_submitted_while_the_broker_is_down_is_accepted_and_runs_later(
        client, tables, workers, caplog):
    train, valid = tables
    ids = [client.post("/v1/datasets", files={"file": (n, csv_bytes(f))}).json()["id"]
           for n, f in (("train.csv", train), ("valid.csv", valid))]
    _stop_redis()
    try:
        response = client.post("/v1/jobs", json={
            "dataset_id": ids[0], "target": "label", "validation": {"dataset_id": ids[1]},
            "dvrl": {"iterations": 20}})
        assert response.status_code == 202, response.text  # saved; sent once Redis is back
        job_id = response.json()["id"]
        assert response.json()["state"] == "QUEUED"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["detail"] == "the broker does not answer"
        # a line in the log for each probe, not a traceback (probes come every few seconds)
        (said,) = [r for r in caplog.records if r.name == "api.routes.health"]
        assert said.getMessage().startswith("readyz: the broker does not answer: ")
        assert said.exc_info is None and "\n" not in said.getMessage()
    finally:
        _start_redis()
    workers.start()  # its sweeper finds the job that was never sent
    assert _wait(client, job_id)["state"] == "SUCCEEDED"
    assert _row(job_id)[2] == 1


def test_a_job_that_kills_every_worker_ends_failed_after_max_attempts(client, tables, workers):
    workers.env |= {"DVRL_MAX_ATTEMPTS": "2"}
    job_id = _job(client, tables, iterations=100_000)
    for attempt in (1, 2):  # each worker that takes the job dies (as out of memory would)
        worker = workers.start()
        _wait_until(lambda attempt=attempt: _row(job_id)[0] == "RUNNING"
                    and _row(job_id)[2] == attempt, what=f"attempt {attempt}")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    workers.start()  # a healthy worker: its sweeper ends the job rather than running it
    job = _wait(client, job_id, timeout=120)
    assert job["state"] == "FAILED" and job["error"]["type"] == "/problems/workers-died"
    assert _row(job_id)[2] == 2  # never claimed a third time


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server here")
@pytest.mark.alone  # stops a service every xdist worker shares
def test_jobs_survive_a_redis_restart(client, tables, workers):
    workers.start()
    running = _job(client, tables, iterations=300)
    queued = [_job(client, tables, iterations=30) for _ in range(2)]
    _wait_until(lambda: _row(running)[0] == "RUNNING", what="the first job to run")
    _restart_redis()  # the queue (and the queued jobs' messages) are gone
    for job_id in [running, *queued]:
        assert _wait(client, job_id)["state"] == "SUCCEEDED", _row(job_id)


def _pg_cluster() -> list[str] | None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").exists():
        return None
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


@pytest.mark.skipif(_pg_cluster() is None, reason="needs a local PostgreSQL cluster to restart")
@pytest.mark.alone  # stops a service every xdist worker shares
def test_a_job_survives_a_postgres_restart(client, tables, workers):
    workers.start()
    job_id = _job(client, tables, iterations=400)
    _wait_until(lambda: (_row(job_id)[4] or {}).get("iteration", 0) >= 50, what="training")
    subprocess.run([*_pg_cluster(), "restart"], check=True, timeout=120)
    job = _wait(client, job_id)
    assert job["state"] == "SUCCEEDED", job
    assert len(_values(client, job_id)) == 360


def test_restarting_the_api_affects_no_job(service_env, tables, workers, tmp_path):
    workers.start()
    port = free_port()
    env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL}
    command = [sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)]

    def serve() -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        _wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "the API")
        return process

    api = serve()
    try:
        headers = {"Authorization": f"Bearer {api_key('alice')}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=30) as client:
            job_id = _job(client, tables, iterations=300)
            _wait_until(lambda: _row(job_id)[0] == "RUNNING", what="the job to run")
            api.send_signal(signal.SIGKILL)  # the API dies while the client polls
            api.wait()
            api = serve()
            job = _wait_with_retries(client, job_id)
            assert job["state"] == "SUCCEEDED"
            assert len(_values(client, job_id)) == 360
            assert _row(job_id)[2] == 1  # the job itself never noticed: claimed once
    finally:
        api.terminate()
        api.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait_with_retries(client, job_id: str) -> dict:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return job
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")
