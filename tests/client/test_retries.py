"""Retries against the real service: a call that outlives an API restart makes its job once
(the Idempotency-Key), and a real 429 (too many jobs in flight) is waited out."""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import create_engine, func, select, text

from dvrl_client import (
    Client,
    ProblemError,
    Retry,
    ServiceUnreachable,
    TooManyRequests,
    UnexpectedAnswer,
)
from tests.conftest import PG_URL, free_port


def _wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _retried(caplog, why: str) -> list[str]:
    return [r.getMessage() for r in list(caplog.records)
            if r.name == "dvrl_client" and f": {why}; retrying" in r.getMessage()]


def _count(table: str, where: str = "true") -> int:
    from service.db import session_scope

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(text(table))
                                  .where(text(where))) or 0)


def test_a_submit_retried_through_a_restarted_api_makes_one_job(server, key, table_files,
                                                                 caplog):
    """The first attempt reaches the API and makes the job, but its answer is lost (the table
    is locked until the client gave up on it, and the API is stopped meanwhile); the client
    retries through the downtime with the same Idempotency-Key and, once the API is started
    again on the same port, gets that job rather than a second one."""
    caplog.set_level(logging.WARNING, logger="dvrl_client")
    with Client(server.url, api_key=key) as client:
        train = client.upload(table_files[0])
    spec = {"dataset_id": train.id, "target": "label", "validation": {"fraction": 0.2}}
    answer: dict = {}

    def submit() -> None:
        with Client(server.url, api_key=key, timeout=2.0,
                    retry=Retry(total_s=240, unreachable_s=240)) as slow:
            answer["job"] = slow.submit(spec)

    engine = create_engine(PG_URL)
    try:
        with engine.connect() as lock:
            lock.execute(text("LOCK TABLE jobs IN SHARE MODE"))  # a job's INSERT waits
            caller = threading.Thread(target=submit)
            caller.start()
            _wait_for(lambda: _retried(caplog, "ReadTimeout"), what="the first attempt to "
                      "time out")
            server.process.terminate()  # stops listening; finishes the requests it holds
            _wait_for(lambda: _retried(caplog, "ConnectError"), what="a refused attempt")
            lock.commit()  # the held attempt(s) make the job now, for nobody to hear
        server.process.wait(timeout=60)
        assert _count("jobs") == 1  # made by an attempt whose answer was lost
        server.start()  # the same port
        caller.join(timeout=240)
        assert not caller.is_alive()
    finally:
        engine.dispose()
    with Client(server.url, api_key=key) as client:
        jobs = client.jobs()
    assert [job.id for job in jobs] == [answer["job"].id]  # the same job, not a second one
    # every attempt sent the one key
    assert _count("idempotency_keys", "operation = 'create_job'") == 1


def test_a_429_is_waited_out_and_gives_up_past_the_retry_budget(start_server, key,
                                                                 table_files, caplog):
    server = start_server(DVRL_MAX_JOBS_IN_FLIGHT="1", DVRL_RETRY_AFTER_S="1")
    caplog.set_level(logging.WARNING, logger="dvrl_client")
    with Client(server.url, api_key=key) as client:
        train = client.upload(table_files[0])
        spec = {"dataset_id": train.id, "target": "label", "validation": {"fraction": 0.2}}
        first = client.submit(spec, dvrl={"iterations": 100_000})  # no worker: stays queued

        with Client(server.url, api_key=key, retry=Retry(total_s=0.5)) as impatient, \
                pytest.raises(TooManyRequests) as refused:
            impatient.submit(spec)  # Retry-After (1 s) is past its budget: raised at once
        assert refused.value.status == 429 and refused.value.retry_after == 1.0
        assert refused.value.type == "/problems/too-many-jobs"

        def cancel_the_first_after_a_429() -> None:
            _wait_for(lambda: _retried(caplog, "429 Too Many Requests"), what="a 429")
            with Client(server.url, api_key=key) as other:
                other.job(first.id).cancel()

        canceller = threading.Thread(target=cancel_the_first_after_a_429)
        canceller.start()
        second = client.submit(spec, dvrl={"iterations": 5})  # 429 until the first ends
        canceller.join(timeout=60)
        assert second.state == "QUEUED" and first.refresh().state == "CANCELLED"
        assert {job.id for job in client.jobs()} == {first.id, second.id}
    waits = _retried(caplog, "429 Too Many Requests")
    assert waits and all(w.endswith("retrying in 1.0s") for w in waits)  # its Retry-After


def test_a_service_that_never_answers_is_given_up_after_unreachable_s(caplog):
    caplog.set_level(logging.WARNING, logger="dvrl_client")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, retry=Retry(unreachable_s=2)) as client, \
            pytest.raises(ServiceUnreachable, match="ConnectError") as gave_up:
        client.jobs()
    assert url in str(gave_up.value)
    assert len(_retried(caplog, "ConnectError")) >= 2  # tried again before giving up


def test_an_upload_to_a_server_that_never_answers_is_given_up_within_the_retry_budget(tmp_path):
    """A socket that accepts and never answers held an upload for 10 minutes, whatever the
    client's timeout and Retry said (reading its list of datasets gave up in seconds)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    accepting = threading.Thread(target=lambda: [held.append(listener.accept())
                                                 for _ in range(8)], daemon=True)
    accepting.start()
    (tmp_path / "t.csv").write_text("x,label\n1,0\n2,1\n")
    started = time.monotonic()
    try:
        with Client(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2,
                    retry=Retry(total_s=6, unreachable_s=6)) as client, \
                pytest.raises(ServiceUnreachable, match="ReadTimeout"):
            client.upload(tmp_path / "t.csv")
        assert time.monotonic() - started < 120  # 600 s and more before
    finally:
        listener.close()
        for connection, _ in held:
            connection.close()


def test_json_that_cannot_be_read_is_an_unexpected_answer():
    """A 200 with a JSON body cut short was a raw JSONDecodeError."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "10")
            self.end_headers()
            self.wfile.write(b'{"weird":1')

        def log_message(self, *args) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with Client(f"http://127.0.0.1:{other.server_address[1]}") as client, \
                pytest.raises(UnexpectedAnswer, match="with JSON that cannot be read"):
            client.datasets()
    finally:
        other.shutdown()
        other.server_close()


def test_a_503_that_says_webhooks_are_off_is_not_retried(start_server, key, table_files,
                                                         caplog):
    """It says how the service is set up: the client retried it for five minutes."""
    server = start_server(DVRL_WEBHOOK_KEY="")
    caplog.set_level(logging.WARNING, logger="dvrl_client")
    with Client(server.url, api_key=key) as client:
        train = client.upload(table_files[0])
        spec = {"dataset_id": train.id, "target": "label", "validation": {"fraction": 0.2}}
        with pytest.raises(ProblemError) as refused:
            client.submit(spec, notify={"url": "https://hooks.example/dvrl"})
    assert refused.value.status == 503
    assert refused.value.type == "/problems/webhooks-not-configured"
    assert "DVRL_WEBHOOK_KEY" in str(refused.value)
    assert _retried(caplog, "503 Service Unavailable") == []
