"""`dvrl remote value`: `dvrl value`'s arguments and output, run by a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from dvrl_client import Client
from tests.client.conftest import dvrl_value
from tests.conftest import ROOT

# run as on a machine without torch, LightGBM, scikit-learn or the service's own packages
NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'lightgbm', 'sklearn', 'service', 'api', 'worker'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


def remote(*args: str, env: dict[str, str], folder) -> subprocess.CompletedProcess:
    (folder / "sitecustomize.py").write_text(NO_TORCH)
    return subprocess.run([sys.executable, "-m", "dvrl_cli", "remote", "value", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(folder)} | env)


def remote_and_local(train: str, args: list[str], server, key, folder, suffix: str):
    """``dvrl remote value`` and ``dvrl value`` with the same arguments, both succeeded, and
    the tables they wrote (remote, local)."""
    env = {"DVRL_SERVER": server.url, "DVRL_API_KEY": key}
    done = remote(train, *args, "--out", str(folder / f"remote.{suffix}"), env=env,
                  folder=folder)
    assert done.returncode == 0, done.stderr
    local = dvrl_value(train, *args, "--out", str(folder / f"local.{suffix}"))
    assert local.returncode == 0, local.stderr
    read = pd.read_parquet if suffix == "parquet" else pd.read_csv
    return done, local, read(folder / f"remote.{suffix}"), read(folder / f"local.{suffix}")


def test_remote_value_writes_what_dvrl_value_writes(server, key, celery_worker, table_files,
                                                    tmp_path):
    train = str(table_files[0])
    args = ["--target", "label", "--valid-fraction", "0.3", "--iterations", "20",
            "--inject-noise", "0.2", "--seed", "2", "--features", "x0", "x1", "x2"]
    done, local, got, expected = remote_and_local(train, args, server, key, tmp_path, "parquet")
    assert list(got.columns) == ["row", "value", "rank", "label", "noise_injected"]
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    assert len(got) == 252 and got["row"].tolist() == expected["row"].tolist()
    pd.testing.assert_frame_equal(got.drop(columns="value"), expected.drop(columns="value"))
    np.testing.assert_allclose(got["value"], expected["value"], atol=1e-6)
    for line in ("lowest-valued rows (review these first):", "injected noise: 50 labels "
                 "flipped", "trust check", "values written to "):
        assert line in done.stderr and line in local.stderr
    assert f"values written to {tmp_path / 'remote.parquet'}" in done.stderr

    quiet = remote(train, "--target", "label", "--valid-fraction", "0.3", "--iterations", "5",
                   "--quiet", "--server", server.url, env={"DVRL_API_KEY": key},
                   folder=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.splitlines()[0] == "row,value,rank,label"
    assert len(quiet.stdout.splitlines()) == 253


def test_remote_value_errors_are_one_line_and_exit_2(server, key, table_files, tmp_path):
    train = str(table_files[0])
    env = {"DVRL_SERVER": server.url, "DVRL_API_KEY": key}
    cases = [
        (["--valid-fraction", "0.3", "--method", "knn_shapley", "--rollouts", "4"], env,
         "error: --rollouts: options of --method dvrl, not of knn_shapley"),
        (["--valid-fraction", "0.3", "--device", "cuda:1"], env, "--device 'cuda:1'"),
        ([], env, "give --valid TABLE or --valid-fraction F"),
        (["--valid-fraction", "0.3"], {"DVRL_SERVER": "", "DVRL_API_KEY": key},
         "give --server URL or set DVRL_SERVER"),
        (["--valid-fraction", "0.3"], env | {"DVRL_API_KEY": "dvrl_wrong"}, "401 Unauthorized"),
        (["--valid", str(tmp_path / "missing.csv")], env, "missing.csv: no such file"),
        (["--valid-fraction", "0.3", "--predictor", "svm"], env, "predictor"),
        (["--valid-fraction", "0.3", "--out", train], env, "is the train table"),
        (["--valid-fraction", "0.3"], env | {"DVRL_SERVER": "ftp://host"},
         "the service speaks http or https, not ftp"),
        (["--valid-fraction", "0.3"], env | {"DVRL_API_KEY": key + "\nx"},
         "the API key holds characters a key never has"),
        # https to a plain-HTTP port: said at once (one line, so not retried for a minute)
        (["--valid-fraction", "0.3"], env | {"DVRL_SERVER": server.url.replace("http:", "https:")},
         "the TLS handshake failed"),
    ]
    with _another_server() as other:  # something else that answers 200 on that port
        cases.append((["--valid-fraction", "0.3"], env | {"DVRL_SERVER": other},
                      "not as a DVRL service does: is the URL the service's?"))
        for args, case_env, message in cases:
            done = remote(train, "--target", "label", *args, env=case_env, folder=tmp_path)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2, (args, done.stderr)
            assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
                (args, done.stderr)
    done = remote(str(tmp_path), "--target", "label", "--valid-fraction", "0.3", env=env,
                  folder=tmp_path)
    assert done.stderr.strip() == f"error: {tmp_path}: a directory, not a table file"


@contextmanager
def _another_server() -> Iterator[str]:
    """A server that is not DVRL's: 200 and 'ok' to every request."""

    class Handler(BaseHTTPRequestHandler):
        def _ok(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = _ok

        def log_message(self, *args) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{other.server_address[1]}"
    finally:
        other.shutdown()
        other.server_close()


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])  # Ctrl-C; `timeout`, a CI cancel
def test_interrupting_remote_value_cancels_its_job(server, key, table_files, tmp_path, stop):
    (tmp_path / "sitecustomize.py").write_text(NO_TORCH)
    command = [sys.executable, "-m", "dvrl_cli", "remote", "value", str(table_files[0]),
               "--target", "label", "--valid-fraction", "0.3", "--iterations", "100000",
               "--tolerance", "0"]
    env = os.environ | {"PYTHONPATH": str(tmp_path), "DVRL_SERVER": server.url,
                        "DVRL_API_KEY": key}
    # Ctrl-C as at a terminal: tests started in the background by a shell inherit SIGINT
    # ignored (POSIX), and so would the child; this one takes it as a user's would
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with Client(server.url, api_key=key) as client:
        assert process.stderr is not None
        announced = process.stderr.readline()  # submitted (no worker: it stays queued)
        assert announced == f"job {client.jobs()[0].id} on {server.url}\n"
        process.send_signal(getattr(signal, stop))  # SIGTERM left the job running
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130
        job_id = client.jobs()[0].id
        assert stderr.strip().splitlines()[-1] == \
            f"error: interrupted (job {job_id} on the server is cancelled)"
        assert [job.state for job in client.jobs()] == ["CANCELLED"]


def _remote_against(handler, folder):
    """A fake server answering with ``handler``, and ``dvrl remote value`` on a one-row table
    against it, started as at a terminal (it takes Ctrl-C)."""
    fake = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.daemon_threads = True
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{fake.server_address[1]}"
    (folder / "sitecustomize.py").write_text(NO_TORCH)
    (folder / "t.csv").write_text("a,label\n1,0\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "dvrl_cli", "remote", "value", str(folder / "t.csv"),
         "--target", "label", "--valid-fraction", "0.3", "--server", url], cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(folder)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return fake, process


def _answer_no_datasets(handler: BaseHTTPRequestHandler) -> None:
    """A fake service's answer to the client's question whether it has a table: none."""
    body = b'{"items": [], "next_page_token": null}'
    handler.send_response(200)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_an_interrupted_remote_value_says_when_its_job_could_not_be_cancelled(tmp_path):
    """The server is gone when Ctrl-C comes: the job goes on there, and the line says so (it
    said the job was cancelled)."""
    accepted = threading.Event()

    class Handler(BaseHTTPRequestHandler):  # takes the upload and the job, then goes away
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            created = self.path == "/v1/jobs"
            body = (b'{"id": "j1", "state": "QUEUED", "spec": {}}' if created else
                    b'{"id": "d1", "filename": "t.csv", "rows": 1, "n_columns": 1, '
                    b'"columns": [], "sha256": "", "size_bytes": 1, "created_at": ""}')
            self.send_response(202 if created else 201)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if created:
                accepted.set()

        def do_GET(self) -> None:
            if self.path.startswith("/v1/datasets?"):  # has it the table already? no
                _answer_no_datasets(self)
                return
            self.send_response(503)
            self.send_header("retry-after", "1")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    fake, process = _remote_against(Handler, tmp_path)
    try:
        assert accepted.wait(60)
    finally:
        fake.shutdown()
        fake.server_close()  # the cancel finds nobody listening
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted (job j1 on the server could not be cancelled (")
    assert last.endswith("it goes on; cancel it with POST /v1/jobs/j1:cancel once the server "
                         "answers)")


def test_remote_value_interrupted_while_its_job_is_submitted_cancels_that_job(tmp_path):
    """Ctrl-C after the server made the job but before its answer came: the job was left
    running with no id said. The submission sent again with its Idempotency-Key finds the job,
    which is then cancelled."""
    keys: list[str] = []
    cancelled = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/v1/jobs":
                keys.append(self.headers["idempotency-key"])
                if len(keys) == 1:  # made, but the answer is slow: the user presses Ctrl-C
                    time.sleep(30)
                    return
                body, status = b'{"id": "j1", "state": "QUEUED", "spec": {}}', 202
            elif self.path == "/v1/jobs/j1:cancel":
                body, status = b'{"id": "j1", "state": "CANCELLED", "spec": {}}', 202
                cancelled.set()
            else:
                body, status = (b'{"id": "d1", "filename": "t.csv", "rows": 1, "n_columns": 1, '
                                b'"columns": [], "sha256": "", "size_bytes": 1, '
                                b'"created_at": ""}'), 201
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer_no_datasets  # has it the table already? no

        def log_message(self, *args) -> None:
            pass

    fake, process = _remote_against(Handler, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not keys and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keys, "the job was never submitted"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        fake.shutdown()
        fake.server_close()
    assert process.returncode == 130 and cancelled.is_set()
    assert len(keys) == 2 and keys[0] == keys[1]  # the same submission, found again
    assert stderr.strip().splitlines()[-1] == \
        "error: interrupted (job j1 on the server is cancelled)"


def test_remote_value_read_by_head_ends_quietly(server, key, celery_worker, table_files,
                                                tmp_path):
    """`dvrl remote value ... | head` (a reader that leaves early) was a BrokenPipeError
    traceback and exit status 1; `dvrl value` ends quietly with 0."""
    (tmp_path / "sitecustomize.py").write_text(NO_TORCH)
    command = (f"{sys.executable} -m dvrl_cli remote value {table_files[0]} --target label "
               "--valid-fraction 0.3 --iterations 5 --quiet | head -1; "
               "echo status ${PIPESTATUS[0]} >&2")
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=os.environ | {"PYTHONPATH": str(tmp_path),
                                                         "DVRL_SERVER": server.url,
                                                         "DVRL_API_KEY": key})
    assert done.stdout == "row,value,rank,label\n"
    assert done.stderr == "status 0\n"


def test_remote_value_with_a_test_table_and_an_ensemble_prints_and_writes_what_dvrl_value_does(
        server, key, celery_worker, table_files, tmp_path):
    """--test: the removal test's line (the job ran no removal curve, so there was no line);
    --ensemble: the std_error column (the client dropped it)."""
    train, valid = map(str, table_files)
    test = str(tmp_path / "test.csv")
    pd.read_csv(valid).iloc[::-1].to_csv(test, index=False)  # other rows' order: the same task
    args = ["--target", "label", "--valid", valid, "--test", test, "--iterations", "10",
            "--ensemble", "2", "--seed", "1"]
    done, local, got, expected = remote_and_local(train, args, server, key, tmp_path, "csv")
    removal = [[line for line in run.stderr.splitlines()
                if line.startswith("removal test on the test table")] for run in (done, local)]
    assert len(removal[0]) == 1 and removal[0] == removal[1], removal
    assert list(got.columns) == list(expected.columns) == \
        ["row", "value", "rank", "label", "std_error"]
    np.testing.assert_allclose(got["std_error"], expected["std_error"], atol=1e-6)
