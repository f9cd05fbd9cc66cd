"""Shared fixtures: the real PostgreSQL (database ``test``) through the real migrations, the real
Redis, and real worker processes.

The suite runs in pytest-xdist worker processes (``-n`` in pyproject.toml): most tests wait on
other processes (workers, servers, a browser), so two at once finish sooner. Each xdist worker
has its own database (``test``, ``test_1``, ...), its own Redis database (15, 14, ...) and its
own CPU (its affinity, which the processes it starts inherit: each sizes its threads to one CPU,
so two tests never spin their thread pools against each other). A test marked ``alone`` (it
stops or restarts Redis or PostgreSQL, which every worker shares) runs while no other test runs:
:func:`_machine_share`.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...; "" without xdist
WORKER_INDEX = int(XDIST_WORKER[2:]) if XDIST_WORKER.startswith("gw") else 0
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = os.environ.get("DVRL_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/"
                        + ("test" if WORKER_INDEX == 0 else f"test_{WORKER_INDEX}"))
REDIS_URL = os.environ.get("DVRL_TEST_BROKER_URL",
                           f"redis://127.0.0.1:6379/{15 - WORKER_INDEX % 15}")
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


def pytest_configure(config) -> None:
    """In an xdist worker: this process, and every process it starts, on one CPU of those it may
    use (set before torch or any BLAS loads here, so their pools start at one thread)."""
    if XDIST_WORKER and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[WORKER_INDEX % len(cpus)]})


@contextlib.contextmanager
def _locked(path: Path, operation: int) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, operation)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _machine_share(request) -> Iterator[None]:
    """Under xdist, every test holds the run's lock shared, and a test marked ``alone`` holds it
    alone. A gate taken before the lock keeps new tests from starting while an ``alone`` test
    waits for the running ones to end (no starving it)."""
    if not XDIST_WORKER:
        yield
        return
    folder = Path(tempfile.gettempdir()) / f"dvrl-tests-{os.environ['PYTEST_XDIST_TESTRUNUID']}"
    folder.mkdir(exist_ok=True)
    gate, lock = folder / "gate", folder / "lock"
    if request.node.get_closest_marker("alone"):
        with _locked(gate, fcntl.LOCK_EX), _locked(lock, fcntl.LOCK_EX):
            yield
        return
    with _locked(gate, fcntl.LOCK_EX):
        pass
    with _locked(lock, fcntl.LOCK_SH):
        yield


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"dvrl_fresh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A clean schema in this worker's database (created when missing), migrated to head."""
    import psycopg
    from sqlalchemy import create_engine, make_url, text

    from service.migrate import upgrade

    name = make_url(PG_URL).database
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() \
                is None:
            admin.execute(f'CREATE DATABASE "{name}"')
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
