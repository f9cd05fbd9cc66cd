"""The embedded default: `dvrl serve` with no configuration (SQLite + in-process worker)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import httpx
import pandas as pd

from tests.conftest import ROOT, free_port, upload, wait_for, wait_until_up


def test_serve_with_no_configuration_values_a_table_end_to_end(tmp_path, tables):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data"), "DVRL_PROGRESS_INTERVAL_S": "0.2",
            "DVRL_WORKER_THREADS": "1"}  # torch's default here: every core
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server)
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/readyz").json()["mode"] == "embedded"
            train, valid = tables
            ids = [upload(client, frame, name)
                   for name, frame in (("train.csv", train), ("valid.csv", valid))]
            job = wait_for(client, client.post("/v1/jobs", json={
                "dataset_id": ids[0], "target": "label", "validation": {"dataset_id": ids[1]},
                "seed": 0, "label_noise": 0.2, "dvrl": {"iterations": 100}}).json()["id"],
                timeout=240)
            assert job["state"] == "SUCCEEDED", job["error"]
            assert job["summary"]["threads"] == 1  # the in-process worker keeps its budget
            # times in UTC with their zone, as on PostgreSQL (SQLite keeps none)
            for moment in (job["created_at"], job["started_at"], job["finished_at"],
                           client.get(f"/v1/datasets/{ids[0]}").json()["created_at"]):
                assert moment.endswith("Z"), moment
            table = pd.read_csv(io.StringIO(client.get(f"/v1/jobs/{job['id']}/values",
                                                       params={"format": "csv"}).text))
            assert len(table) == 360
            assert table.loc[table["noise_injected"], "rank"].median() < 100  # planted: low
        assert (tmp_path / "data" / "dvrl.sqlite3").exists()
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def test_bytes_that_are_not_http_get_a_problem_document_and_lose_nothing(tmp_path, tables):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server)
        with httpx.Client(base_url=base, timeout=30) as client:
            dataset = upload(client, tables[0], "train.csv")
            for garbage in (b"GET /v1/datasets HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
                            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS, not HTTP\r\n\r\n",
                            b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"):
                status, headers, body = _raw_exchange(port, garbage)
                assert (status, headers["content-type"]) == (400, "application/problem+json")
                assert json.loads(body)["type"] == "/problems/malformed-request"
            # a head too long to be a request's: refused as soon as it passes the limit (it was
            # gathered whole, holding every other request back), while others are answered
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                sent = 0
                try:
                    while sent < 64 << 20:
                        sock.sendall(b"a" * (1 << 20))
                        sent += 1 << 20
                        if sent == 4 << 20:  # sent many times the limit in all
                            assert client.get("/healthz", timeout=5).status_code == 200
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:  # the answer, unless the reset of a close with bytes unread overtook it
                    answer = sock.recv(65536)
                except ConnectionResetError:
                    answer = b""
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ") and \
                b"/problems/headers-too-large" in answer
            assert sent < 64 << 20  # closed long before the 64 MB were sent
            status, _, _ = _raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: "
                                         + b"a" * 200_000 + b"\r\nConnection: close\r\n\r\n")
            assert status == 200  # a long, but not outsized, head is served
            # a URL past the parser's 64 KiB says so (it was a "malformed request")
            status, headers, body = _raw_exchange(port, b"GET /healthz?q=" + b"a" * 70_000
                                                  + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (status, headers["content-type"]) == (414, "application/problem+json")
            assert json.loads(body)["type"] == "/problems/uri-too-long"
            # HEAD wherever GET is (it was 405); a 405 lists every method of its path
            for path in ("/healthz", f"/v1/datasets/{dataset}", "/v1/jobs"):
                got, head = client.get(path), client.head(path)
                assert (head.status_code, head.content) == (200, b""), path
                assert head.headers["content-type"] == got.headers["content-type"]
            for method, path, allowed in (("PUT", "/v1/jobs", "GET, HEAD, POST"),
                                          ("POST", f"/v1/datasets/{dataset}",
                                           "DELETE, GET, HEAD"),
                                          # not read as the job "<id>:cancel" (was a 404)
                                          ("GET", f"/v1/jobs/{uuid.uuid4()}:cancel", "POST")):
                refused = client.request(method, path)
                assert refused.status_code == 405 and refused.headers["allow"] == allowed
                assert refused.headers["content-type"] == "application/problem+json"
            assert client.get(f"/v1/datasets/{dataset}").json()["rows"] == len(tables[0])
    finally:
        server.terminate()
        server.wait(timeout=20)


def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes that are not HTTP over a socket; the status, headers and body answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def test_serve_says_when_it_cannot_listen_rather_than_serving_on_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "serving on" not in done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    done = subprocess.run([sys.executable, "-m", "dvrl_cli", "serve", "--port", "99999"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "a port is 1 to 65535, not 99999" in done.stderr


def test_ctrl_c_stops_serve_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    finally:
        server.kill()
    assert server.returncode == 0 and "Traceback" not in output, output


def test_serving_beyond_loopback_needs_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    serve = [sys.executable, "-m", "dvrl_cli", "serve", "--host", "0.0.0.0", "--port", str(port)]
    refused = subprocess.run(serve, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "dvrl keys create" in refused.stderr
    off = subprocess.run(serve, cwd=ROOT, env=env | {"DVRL_AUTH": "off"}, capture_output=True,
                         text=True, timeout=60)
    assert off.returncode == 2
    created = subprocess.run([sys.executable, "-m", "dvrl_cli", "keys", "create", "--owner",
                              "me"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    token = created.stdout.strip()
    server = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server)
        assert httpx.get(f"{base}/v1/jobs").status_code == 401
        authorised = httpx.get(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        assert authorised.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_app_factory_served_by_uvicorn_requires_keys_when_it_cannot_know_the_interface(
        tmp_path):
    """``uvicorn --factory api.app:create_app --host 0.0.0.0`` is another way to start the
    embedded default: the app cannot see the interface, so it requires keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
                               "--host", "0.0.0.0", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server)
        response = httpx.get(f"{base}/v1/jobs")
        assert response.status_code == 401
        assert response.json()["type"] == "/problems/unauthorized"
    finally:
        server.terminate()
        server.wait(timeout=30)
