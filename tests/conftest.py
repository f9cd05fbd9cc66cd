"""Shared fixtures: the real PostgreSQL (database ``test``) through the real migrations, the real
Redis, and real worker processes."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("DVRL_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DVRL_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
TEST_WEBHOOK_KEY = "test-webhook-key-" + "0" * 32


def _configure(database_url: str | None, broker_url: str | None) -> None:
    from service.db import dispose_engines
    from service.dispatch import celery_app
    from service.settings import get_settings

    for name, value in (("DVRL_DATABASE_URL", database_url), ("DVRL_BROKER_URL", broker_url)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.environ["DVRL_PROGRESS_INTERVAL_S"] = "0.2"
    # configured like a deployment with webhooks on (the API and the workers share the key)
    os.environ["DVRL_WEBHOOK_KEY"] = TEST_WEBHOOK_KEY
    get_settings.cache_clear()
    celery_app.cache_clear()
    dispose_engines()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A clean schema in the ``test`` database, migrated to head."""
    from sqlalchemy import create_engine, text

    from service.migrate import upgrade

    engine = create_engine(PG_URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(PG_URL)
    yield PG_URL


@pytest.fixture
def service_env(postgres) -> Iterator[str]:
    """Settings pointing at PostgreSQL and Redis; tables and the test queue emptied."""
    import redis
    from sqlalchemy import text

    _configure(postgres, REDIS_URL)
    from service.db import get_engine

    with get_engine().begin() as connection:
        connection.execute(text("TRUNCATE job_values, jobs, datasets, dataset_parts, api_keys, "
                                "idempotency_keys, webhook_secrets CASCADE"))
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield postgres
    _configure(None, None)


def api_key(owner: str) -> str:
    """A new API key for ``owner`` in the configured database."""
    from service.db import session_scope
    from service.keys import create_key

    with session_scope() as session:
        return create_key(session, owner, "tests")[1]


@pytest.fixture
def client(service_env):
    """A client of the API (keys required, as on any PostgreSQL deployment) as owner alice."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(run_embedded_worker=False)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {api_key('alice')}"
        yield test_client


@pytest.fixture
def other_client(client):
    """The same API as another owner (bob)."""
    from fastapi.testclient import TestClient

    other = TestClient(client.app)
    other.headers["Authorization"] = f"Bearer {api_key('bob')}"
    return other


def csv_bytes(frame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@pytest.fixture(scope="session")
def tables():
    """A generated classification table: 360 training rows, 140 validation rows."""
    from dvrl_core.datasets import make_table

    table = make_table(500, n_features=6, signal=3.0, random_state=7)
    table.insert(0, "customer", [f"c{i:04d}" for i in range(len(table))])
    return table.iloc[:360].reset_index(drop=True), table.iloc[360:].reset_index(drop=True)


def upload(client, frame, name="train.csv") -> str:
    response = client.post("/v1/datasets", files={"file": (name, csv_bytes(frame))})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for(client, job_id: str, states=("SUCCEEDED", "FAILED", "CANCELLED"),
             timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s: {job}")


@pytest.fixture
def celery_worker(service_env, tmp_path) -> Iterator[subprocess.Popen]:
    """A real ``dvrl worker`` process on the real Redis and PostgreSQL (log in tmp_path)."""
    env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL,
                        "DVRL_PROGRESS_INTERVAL_S": "0.2"}
    with open(tmp_path / "worker.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "worker", "--loglevel",
                                    "WARNING"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        yield process
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WorkerPool:
    """Real ``dvrl worker`` processes on the test PostgreSQL and Redis, each logging to a file in
    ``folder``; ``env`` (settable between starts) holds their settings, ``start(**settings)``
    adds more for one worker."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None,
                 loglevel: str = "INFO") -> None:
        self.folder = folder
        self.env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL,
                                 "DVRL_PROGRESS_INTERVAL_S": "0.2"} | (env or {})
        self.loglevel = loglevel
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []

    def start(self, **settings: str) -> subprocess.Popen:
        log = open(self.folder / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
        self.logs.append(log)
        process = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "worker", "--loglevel",
                                    self.loglevel], cwd=ROOT, env=self.env | settings,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(
            self.folder.glob("worker-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 120,
                  log: Path | None = None) -> None:
    """Until ``base``/healthz answers 200; fails at once if the server exits, and after
    ``timeout`` seconds (with its log when given)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, log.read_text() if log else "the server exited"
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, (f"no answer from {base} within {timeout} s"
                                             + (f": {log.read_text()}" if log else ""))
        time.sleep(0.2)
