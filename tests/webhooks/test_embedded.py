"""Webhooks in the embedded default: `dvrl serve` with no database or broker configured sends a
job's signed event from its own process, with a service key it made itself."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx

from tests.conftest import ROOT, free_port, wait_for, wait_until_up
from tests.webhooks.conftest import ALLOWED, FAST_RETRIES, tiny_job, wait_deliveries


def test_the_embedded_service_posts_a_signed_event_when_a_job_ends(tmp_path, tables,
                                                                   receiver_factory):
    receiver = receiver_factory(statuses=(503,))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data"), "DVRL_PROGRESS_INTERVAL_S": "0.2"}
    env |= ALLOWED | FAST_RETRIES
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server, log=log_path)
        with httpx.Client(base_url=base, timeout=30) as client:
            created = client.post("/v1/webhook-secret")
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            job = tiny_job(client, tables, {"url": receiver.url})
            assert wait_for(client, job["id"], timeout=240)["state"] == "SUCCEEDED"
            (delivery,) = wait_deliveries(
                client, job["id"], lambda d: d and d[0]["state"] != "PENDING")
        assert delivery["state"] == "DELIVERED"
        assert [a["status_code"] for a in delivery["attempts"]] == [503, 200]
        events = receiver.verified(secret)
        assert [e["job"]["id"] for e in events] == [job["id"]] * 2
        assert events[-1]["job"]["state"] == "SUCCEEDED"
        key = tmp_path / "data" / "webhook.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600  # the service key, its own only
        assert secret.encode() not in (tmp_path / "data" / "dvrl.sqlite3").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def test_an_emptied_service_key_file_stops_serve_with_what_to_do(tmp_path):
    """An empty webhook.key would sign every event with a key derived from the database
    alone: `dvrl serve` refuses to start and says what to do; a fresh folder gets a new key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "data").mkdir()
    key = tmp_path / "data" / "webhook.key"
    key.write_text("short\n")
    done = subprocess.run([sys.executable, "-m", "dvrl_cli", "serve", "--port",
                           str(free_port())], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "serving on" not in done.stderr
    assert f"error: {key} holds a key of 5 characters, under the 32" in done.stderr
    assert "Traceback" not in done.stderr

    from service.webhook_secrets import _key_file  # made whole on first use, 0600

    made = _key_file((tmp_path / "fresh").resolve())
    assert len(made) >= 32 and os.listdir(tmp_path / "fresh") == ["webhook.key"]
    assert stat.S_IMODE((tmp_path / "fresh" / "webhook.key").stat().st_mode) == 0o600
