"""Keys, owners, idempotency and limits, against the real PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, csv_bytes, upload


def _spec(client, tables, **extra) -> dict:
    train, valid = tables
    return {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "seed": 0} | extra


def test_missing_or_bad_keys_are_401_problems(client):
    anonymous = client.__class__(client.app)
    for headers in ({}, {"Authorization": "Bearer dvrl_nope_nope"},
                    {"Authorization": "Basic dXNlcjpwdw=="}):
        response = anonymous.get("/v1/datasets", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["type"] == "/problems/unauthorized"
    assert anonymous.get("/healthz").status_code == 200  # probes need no key
    key = client.headers["Authorization"].split()[1]
    for headers, said in (  # each was "an API key is required", or the first header won
            ([("Authorization", f"Basic {key}")], "(this request says 'Basic')"),
            ([("Authorization", key)], "(this request says no scheme, only a value)"),
            ([("Authorization", f"{key} {key}")], "(this request says a scheme other than "
                                                  "Bearer)"),
            ([("Authorization", f"Bearer {key}"), ("Authorization", "Bearer dvrl_x_y")],
             "send one Authorization header: this request has 2")):
        response = anonymous.get("/v1/datasets", headers=headers)
        assert response.status_code == 401, headers
        assert said in response.json()["detail"] and key not in response.text


def test_another_owners_resources_are_not_found(client, other_client, tables):
    spec = _spec(client, tables, dvrl={"iterations": 5})
    job = client.post("/v1/jobs", json=spec).json()
    dataset_id = spec["dataset_id"]
    for path in (f"/v1/datasets/{dataset_id}", f"/v1/jobs/{job['id']}",
                 f"/v1/jobs/{job['id']}/values", f"/v1/jobs/{job['id']}/values?format=csv",
                 f"/v1/jobs/{job['id']}/corrupted", f"/v1/jobs/{job['id']}/curves"):
        response = other_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["type"] == "/problems/not-found"
    assert other_client.post(f"/v1/jobs/{job['id']}:cancel").status_code == 404
    assert other_client.delete(f"/v1/datasets/{dataset_id}").status_code == 404
    assert other_client.delete(f"/v1/jobs/{job['id']}").status_code == 404
    assert other_client.get("/v1/datasets").json()["items"] == []
    assert other_client.get("/v1/jobs").json()["items"] == []
    # nor can bob start a job on alice's data
    response = other_client.post("/v1/jobs", json=spec)
    assert response.status_code == 422 and response.json()["type"] == "/problems/unknown-dataset"
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "QUEUED"  # untouched


def test_keys_cli_creates_lists_and_revokes(client, service_env):
    def dvrl(*args):
        return subprocess.run([sys.executable, "-m", "dvrl_cli", "keys", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    created = dvrl("create", "--owner", "carol", "--name", "pipeline")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("dvrl_")
    listing = dvrl("list")
    assert "carol" in listing.stdout and "pipeline" in listing.stdout
    _, key_id, secret = token.split("_", 2)  # the secret's alphabet has "_" too
    assert token not in listing.stdout and secret not in listing.stdout
    from service.db import session_scope
    from service.models import ApiKey

    with session_scope() as session:  # only the hash is stored
        assert all(token not in (k.hash, k.id) for k in session.query(ApiKey))
    carol = client.__class__(client.app)
    carol.headers["Authorization"] = f"Bearer {token}"
    assert carol.get("/v1/datasets").status_code == 200
    assert dvrl("revoke", key_id).returncode == 0
    # another process revoked it: this API process forgets its cached answer within seconds
    deadline = time.monotonic() + 10
    while carol.get("/v1/datasets").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert carol.get("/v1/datasets").status_code == 401
    assert dvrl("revoke", "nosuchkey").returncode == 2
    for reserved in ("local", "LOCAL"):  # the owner of what was made while keys were off
        refused = dvrl("create", "--owner", reserved)
        assert refused.returncode == 2 and "reserved" in refused.stderr
    bad = dvrl("create", "--owner", "no spaces allowed")
    assert bad.returncode == 2 and "owner" in bad.stderr
    again = dvrl("revoke", key_id)  # revoking twice says so, and changes nothing
    assert again.returncode == 0 and "revoked already, at" in again.stderr
    for name in ("two\nlines", "\x1b[31mred", "x" * 129):  # `keys list` prints one line each
        refused = dvrl("create", "--owner", "carol", "--name", name)
        assert refused.returncode == 2 and "one line of at most 128" in refused.stderr


def test_keys_cli_errors_are_one_line(tmp_path):
    """A database that does not answer, a URL that is not one, a data folder that is a file
    or has no database: one error line naming it (the password hidden), exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    (tmp_path / "file").write_text("x")
    cases = [
        ({"DVRL_DATABASE_URL": "postgresql://me:secret@127.0.0.1:1/x"}, ["list"],
         "the database at postgresql+psycopg://me:***@127.0.0.1:1/x cannot be used"),
        ({"DVRL_DATABASE_URL": "me:secret@host/db"}, ["create", "--owner", "x"],
         "DVRL_DATABASE_URL is not a database URL (not shown: it may hold a password)"),
        ({"DVRL_DATABASE_URL": "postgresql://me:secret@host:port/db"}, ["list"],
         "DVRL_DATABASE_URL is not a database URL"),
        ({"DVRL_DATA_DIR": str(tmp_path / "file")}, ["create", "--owner", "x"],
         f"{tmp_path / 'file'}: File exists"),
        ({"DVRL_DATA_DIR": str(tmp_path / "none")}, ["list"],  # not made: a typo lists nothing
         f"no database at SQLite {tmp_path / 'none' / 'dvrl.sqlite3'}"),
        # another database than the service's: listed as empty, and migrated, until now
        ({"DVRL_DATA_DIR": str(tmp_path / "other")}, ["list"],
         f"the database at SQLite {tmp_path / 'other' / 'dvrl.sqlite3'} holds no tables of "
         "this service"),
        ({"DVRL_DATABASE_URL": "mysql://me:secret@127.0.0.1/x"}, ["create", "--owner", "x"],
         "needs a driver this install does not have (No module named 'MySQLdb')"),
    ]
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / "dvrl.sqlite3").execute("create table t (x int)")
    for case_env, args, message in cases:
        done = subprocess.run([sys.executable, "-m", "dvrl_cli", "keys", *args], cwd=ROOT,
                              env=env | case_env, capture_output=True, text=True, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            done.stderr
        assert "secret" not in done.stderr
    assert not (tmp_path / "none").exists()
    tables = sqlite3.connect(tmp_path / "other" / "dvrl.sqlite3").execute(
        "select name from sqlite_master where type = 'table'").fetchall()
    assert tables == [("t",)]
    # dvrl migrate says what it did (it printed nothing)
    for said in ("created at revision", "already at revision"):
        done = subprocess.run([sys.executable, "-m", "dvrl_cli", "migrate"], cwd=ROOT,
                              env=env | {"DVRL_DATA_DIR": str(tmp_path / "new")},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and said in done.stderr, done.stderr


def test_idempotent_job_creation(client, tables):
    spec = _spec(client, tables, dvrl={"iterations": 5})
    first = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "run-1"})
    again = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "run-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert len(client.get("/v1/jobs").json()["items"]) == 1
    changed = client.post("/v1/jobs", json=spec | {"seed": 1},
                          headers={"Idempotency-Key": "run-1"})
    assert changed.status_code == 422
    assert changed.json()["type"] == "/problems/idempotency-key-reused"
    other = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "run-2"})
    assert other.json()["id"] != first.json()["id"]
    # the job the key made is deleted: a replay says so (it was a 404 naming that job)
    job_id = other.json()["id"]
    assert client.post(f"/v1/jobs/{job_id}:cancel").status_code == 202
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    replay = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "run-2"})
    assert replay.status_code == 409, replay.text
    assert "has been deleted since; send a new key" in replay.json()["detail"]


def test_idempotent_upload(client, tables, other_client):
    body = csv_bytes(tables[0])
    headers = {"Idempotency-Key": "upload-1"}
    first = client.post("/v1/datasets", files={"file": ("t.csv", body)}, headers=headers)
    again = client.post("/v1/datasets", files={"file": ("t.csv", body)}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    changed = client.post("/v1/datasets", files={"file": ("t.csv", body + b"c9,1,1,1,1,a,b,x\n")},
                          headers=headers)
    assert changed.status_code == 422
    assert client.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
    replay = client.post("/v1/datasets", files={"file": ("t.csv", body)}, headers=headers)
    assert replay.status_code == 409 and "deleted since" in replay.json()["detail"]
    # keys are per owner: bob's "upload-1" is his own
    bobs = other_client.post("/v1/datasets", files={"file": ("t.csv", body)}, headers=headers)
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]


def test_upload_over_the_limit_is_413_while_streaming(client, monkeypatch):
    from service.settings import get_settings

    monkeypatch.setenv("DVRL_MAX_UPLOAD_BYTES", "100000")
    get_settings.cache_clear()
    big = b"a,b\n" + b"1,2\n" * 100_000  # 400 kB

    def chunks():  # no Content-Length: the limit must cut the stream
        for start in range(0, len(big), 16_384):
            yield big[start:start + 16_384]

    boundary = "xyz"
    def multipart():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
        yield from chunks()
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/v1/datasets", content=multipart(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert response.json()["type"] == "/problems/upload-too-large"
    declared = client.post("/v1/datasets", files={"file": ("big.csv", big)})
    assert declared.status_code == 413
    assert client.get("/v1/datasets").json()["items"] == []  # nothing half-stored


def test_table_limits(client, monkeypatch):
    from service.settings import get_settings

    monkeypatch.setenv("DVRL_MAX_ROWS", "50")
    monkeypatch.setenv("DVRL_MAX_COLUMNS", "5")
    monkeypatch.setenv("DVRL_MAX_CELLS", "120")
    get_settings.cache_clear()
    cases = {"rows": b"a,b\n" + b"1,2\n" * 51, "columns": b"a,b,c,d,e,f\n1,2,3,4,5,6\n",
             "cells": b"a,b,c\n" + b"1,2,3\n" * 41}
    for what, body in cases.items():
        response = client.post("/v1/datasets", files={"file": ("t.csv", body)})
        assert response.status_code == 422, what
        assert what.rstrip("s") in response.json()["detail"], (what, response.json())
    assert client.post("/v1/datasets", files={"file": ("t.csv", b"a,b\n1,2\n")}).status_code == 201


def test_spec_limits_and_jobs_in_flight(client, tables, monkeypatch):
    from service.settings import get_settings

    spec = _spec(client, tables, dvrl={"iterations": 5, "batch_size": 50})
    monkeypatch.setenv("DVRL_MAX_ITERATIONS", "10")
    monkeypatch.setenv("DVRL_MAX_BATCH_SIZE", "100")
    monkeypatch.setenv("DVRL_MAX_JOBS_IN_FLIGHT", "2")
    monkeypatch.setenv("DVRL_RETRY_AFTER_S", "7")
    get_settings.cache_clear()
    over = client.post("/v1/jobs", json=spec | {"dvrl": {"iterations": 11, "batch_size": 200}})
    assert over.status_code == 422
    assert {e["field"] for e in over.json()["errors"]} == {"dvrl.iterations", "dvrl.batch_size"}
    created = [client.post("/v1/jobs", json=spec) for _ in range(2)]
    assert [r.status_code for r in created] == [202, 202], created[-1].text
    ids = [r.json()["id"] for r in created]
    refused = client.post("/v1/jobs", json=spec)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
    assert refused.json()["type"] == "/problems/too-many-jobs"
    client.post(f"/v1/jobs/{ids[0]}:cancel")  # a QUEUED job cancels at once
    assert client.post("/v1/jobs", json=spec).status_code == 202


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"dataset_id": 5}', b"x" * (2 << 20)])
def test_bad_json_bodies_are_4xx(client, body):
    response = client.post("/v1/jobs", content=body,
                           headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
