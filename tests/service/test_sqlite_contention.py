"""The embedded default under write contention: SQLite's single write lock held by another
writer is waited for and retried, and at worst answered 503 with Retry-After, never a 500."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import csv_bytes


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    from service.db import dispose_engines
    from service.migrate import upgrade
    from service.settings import get_settings

    for name in [k for k in os.environ if k.startswith("DVRL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DVRL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DVRL_SQLITE_BUSY_TIMEOUT_S", "0.1")  # give up waiting quickly
    monkeypatch.setenv("DVRL_DB_BUSY_RETRY_S", "3")
    get_settings.cache_clear()
    dispose_engines()
    upgrade(get_settings().sqlalchemy_url)
    from api.app import create_app

    with TestClient(create_app(run_embedded_worker=False, listen_host="127.0.0.1")) as client:
        yield client, tmp_path / "dvrl.sqlite3"
    dispose_engines()
    get_settings.cache_clear()


def _hold_write_lock(path, seconds: float, started: threading.Event) -> None:
    """Another writer: takes SQLite's write lock and keeps it for ``seconds``."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


def _with_lock_held(path, seconds: float, request):
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, seconds, started))
    holder.start()
    started.wait(10)
    try:
        return request()
    finally:
        holder.join()


def test_writes_wait_for_a_lock_held_past_the_busy_timeout(embedded, tables):
    client, path = embedded
    train, valid = tables
    ids = [client.post("/v1/datasets", files={"file": (n, csv_bytes(f))}).json()["id"]
           for n, f in (("train.csv", train), ("valid.csv", valid))]
    spec = {"dataset_id": ids[0], "target": "label", "validation": {"dataset_id": ids[1]}}
    # held 1 s, ten times the busy timeout: the request retries until the lock is free
    response = _with_lock_held(path, 1.0, lambda: client.post("/v1/jobs", json=spec))
    assert response.status_code == 202, response.text
    upload = _with_lock_held(path, 1.0, lambda: client.post(
        "/v1/datasets", files={"file": ("again.csv", csv_bytes(train))}))
    assert upload.status_code == 201, upload.text
    assert upload.json()["rows"] == len(train)
    cancel = _with_lock_held(path, 1.0, lambda: client.post(
        f"/v1/jobs/{response.json()['id']}:cancel"))
    assert cancel.status_code == 202 and cancel.json()["state"] == "CANCELLED"
    assert len(client.get("/v1/jobs").json()["items"]) == 1  # retried, not duplicated


def test_a_lock_held_past_every_retry_is_a_503_problem_and_nothing_is_half_written(
        embedded, tables):
    client, path = embedded
    train, _ = tables
    dataset = client.post("/v1/datasets", files={"file": ("t.csv", csv_bytes(train))}).json()
    spec = {"dataset_id": dataset["id"], "target": "label", "validation": {"fraction": 0.3}}
    response = _with_lock_held(path, 5.0, lambda: client.post("/v1/jobs", json=spec))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/database-busy"
    assert int(response.headers["retry-after"]) > 0
    assert client.get("/v1/jobs").json()["items"] == []
    assert client.post("/v1/jobs", json=spec).status_code == 202  # and fine once it is free
