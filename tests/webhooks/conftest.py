"""Webhook fixtures: a real receiving HTTP server on 127.0.0.1 that checks signatures with the
README's own verification code, and real ``dvrl worker`` processes with short retry settings."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import ROOT, WorkerPool

# the API in the tests may reach the receiver on 127.0.0.1, and nothing else private
ALLOWED = {"DVRL_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
# retries seconds apart, not minutes; polls twice a second
FAST_RETRIES = {"DVRL_WEBHOOK_BACKOFF_S": "0.3", "DVRL_WEBHOOK_BACKOFF_MAX_S": "1",
                "DVRL_WEBHOOK_RETRY_FOR_S": "120", "DVRL_WEBHOOK_POLL_S": "0.5",
                "DVRL_WEBHOOK_TIMEOUT_S": "5"}


def readme_verify():
    """The ``verify`` function of README.md's Webhooks section, run as printed there."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Webhooks"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    code = next(block for block in blocks if "def verify(" in block)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md (Webhooks)", "exec"), namespace)  # noqa: S102 - our README
    return namespace["verify"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A webhook endpoint on 127.0.0.1. Answers each POST with the next of ``statuses`` (200
    once they run out); with ``hold_first``, holds the first request until ``release()``."""

    def __init__(self, statuses: tuple[int, ...] = (), hold_first: bool = False) -> None:
        self.statuses = list(statuses)
        self.received: list[Received] = []
        self.first_arrived = threading.Event()
        self._release = threading.Event()
        if not hold_first:
            self._release.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    first = len(receiver.received) == 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if first:
                    receiver.first_arrived.set()
                    receiver._release.wait(timeout=120)
                with contextlib.suppress(OSError):  # the sender may be gone (killed)
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/dvrl"

    def release(self) -> None:
        self._release.set()

    def wait_for(self, count: int, timeout: float = 120) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} requests"
            time.sleep(0.1)
        return list(self.received)

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request's event, each checked with the README's verification code."""
        verify = readme_verify()
        events = []
        for request in self.received:
            assert verify(secret, request.headers["dvrl-signature"], request.body), request
            events.append(request.event)
        return events


@pytest.fixture
def receiver_factory() -> Iterator:
    made: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        receiver.thread.start()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.release()
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(autouse=True)
def allow_the_receiver(monkeypatch):
    """The in-process API allows 127.0.0.1 (as the workers do unless a test says otherwise)."""
    from service.settings import get_settings

    for name, value in (ALLOWED | FAST_RETRIES).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def workers(service_env, tmp_path) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path, loglevel="WARNING")
    yield pool
    pool.stop()


def tiny_job(client, tables, notify: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """A job of a few DVRL iterations and no evaluations; the created job's body."""
    from tests.conftest import upload

    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "seed": 0,
            "evaluations": [], "dvrl": {"iterations": 8, "rollouts": 2}} | extra
    if notify is not None:
        spec["notify"] = notify
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()


def wait_deliveries(client, job_id: str, done, timeout: float = 120) -> list[dict[str, Any]]:
    """The job's deliveries once ``done(items)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        items = client.get(f"/v1/jobs/{job_id}/deliveries").json()["items"]
        if done(items):
            return items
        assert time.monotonic() < deadline, items
        time.sleep(0.2)
