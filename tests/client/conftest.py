"""The client against the real service: ``dvrl serve`` processes on the real PostgreSQL and
Redis (keys required, as on any PostgreSQL deployment) and a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL, REDIS_URL, ROOT, api_key, free_port, wait_until_up


class Server:
    """A ``dvrl serve`` process that can be stopped and started again on the same port."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL,
                                 "DVRL_PROGRESS_INTERVAL_S": "0.2"} | env
        self.folder = folder
        self.starts = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.starts += 1
        log_path = self.folder / f"serve-{self.port}-{self.starts}.log"
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dvrl_cli", "serve", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until_up(self.url, self.process, log=log_path)

    def stop(self) -> None:
        """SIGTERM: uvicorn stops listening at once, finishes the requests it holds, exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_server(service_env, tmp_path) -> Iterator:
    """``start_server(**env)``: a running server with extra DVRL_* settings."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(tmp_path, env)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


@pytest.fixture
def key(service_env) -> str:
    """An API key of the owner alice."""
    return api_key("alice")


@pytest.fixture
def table_files(tables, tmp_path) -> tuple[Path, Path]:
    """The shared tables as CSV files: train.csv (360 rows) and valid.csv (140 rows)."""
    train, valid = tables
    paths = tmp_path / "train.csv", tmp_path / "valid.csv"
    train.to_csv(paths[0], index=False)
    valid.to_csv(paths[1], index=False)
    return paths


def dvrl_value(*args: str) -> subprocess.CompletedProcess:
    """The local ``dvrl value`` command, for comparison."""
    return subprocess.run([sys.executable, "-m", "dvrl_cli", "value", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
