"""``dvrl worker --concurrency 2``: two job slots on one machine, the CPUs divided between them,
with the real Redis, PostgreSQL and worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from dvrl_core.threads import available_cpus
from service.db import session_scope
from service.models import Job
from tests.conftest import PG_URL, REDIS_URL, ROOT, upload, wait_for


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        state, parent = text[text.rindex(")") + 2:].split()[:2]
        if int(parent) == pid and state != "Z":
            found.add(int(stat.parent.name))
    return found


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2] == "Z"


def test_two_slots_run_two_jobs_at_once_on_divided_threads_and_stop_on_sigterm(
        client, tables, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DVRL_WORKER_THREADS", "DVRL_WORKER_CONCURRENCY")}
    env |= {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL,
            "DVRL_PROGRESS_INTERVAL_S": "0.2"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        parent = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "worker", "--concurrency",
                                   "2", "--loglevel", "WARNING"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    seen: set[int] = set()
    try:
        slots = _wait(lambda: len(c := _children(parent.pid)) == 2 and c, 60,
                      "two slot processes")
        seen |= slots
        train, valid = tables
        spec = {"dataset_id": upload(client, train), "target": "label", "seed": 0,
                "validation": {"dataset_id": upload(client, valid)},
                "dvrl": {"iterations": 400, "tolerance": 0}}
        ids = [client.post("/v1/jobs", json=spec | {"seed": seed}).json()["id"]
               for seed in (0, 1)]

        def both_running():
            with session_scope() as session:
                rows = session.execute(select(Job.state, Job.lease_holder)
                                       .where(Job.id.in_(ids))).all()
            return all(state == "RUNNING" for state, _ in rows) and rows

        rows = _wait(both_running, 240, f"both jobs RUNNING at once; log: {log_path}")
        assert len({holder for _, holder in rows}) == 2  # two processes, one job each
        jobs = [wait_for(client, job_id, timeout=300) for job_id in ids]
        expected = max(1, available_cpus() // 2)  # 1 on a 2-core machine
        for job in jobs:
            assert job["state"] == "SUCCEEDED", job["error"]
            assert job["summary"]["threads"] == expected
        text = log_path.read_text()
        assert f"2 slots x {expected} thread" in text
        for slot in ("slot1@", "slot2@"):
            assert re.search(rf"dvrl worker {slot}\S+: {expected} threads? \(", text), text

        # a slot that dies is started again
        killed = min(slots)
        os.kill(killed, signal.SIGKILL)
        replaced = _wait(lambda: len(c := _children(parent.pid)) == 2 and killed not in c and c,
                         60, "the killed slot started again")
        seen |= replaced

        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=120) == 0
        for pid in slots | replaced:
            _wait(lambda pid=pid: _gone(pid), 30, f"slot {pid} still running after SIGTERM")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in seen | _children(parent.pid):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_concurrency_below_one_is_refused():
    env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL}
    done = subprocess.run([sys.executable, "-m", "dvrl_cli", "worker", "--concurrency", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: concurrency must be at least 1, not 0"


def test_a_queue_no_job_is_sent_to_or_an_unknown_log_level_is_refused():
    """A worker on a misspelt queue would wait for ever; a misspelt level was a traceback."""
    env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL}
    for args, message in ((["--queues", "dvlr"], "error: --queues: 'dvlr' is not a queue of "
                           "the service's; jobs are sent to "),
                          (["--loglevel", "loud"], "argument --loglevel: 'loud' is not one of "
                           "DEBUG, INFO, WARNING, ERROR, CRITICAL")):
        done = subprocess.run([sys.executable, "-m", "dvrl_cli", "worker", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def test_workers_started_at_once_on_a_new_database_make_its_tables_once(fresh_database,
                                                                       tmp_path):
    """`dvrl worker` migrates as `dvrl serve` does (it polled tables that did not exist, a
    traceback every second); two starting together take turns (one failed on a table the other
    had just made)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, text

    from service.migrate import alembic_config

    env = os.environ | {"DVRL_DATABASE_URL": fresh_database, "DVRL_BROKER_URL": REDIS_URL}
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = []
    for i, log in enumerate(logs):
        with log.open("w") as stderr:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "dvrl_cli", "worker", "--hostname", f"fresh{i}@%h"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr))
    try:
        _wait(lambda: all("ready." in log.read_text() or w.poll() is not None
                          for log, w in zip(logs, workers, strict=True)), 120, "workers up")
        time.sleep(2)  # a round of the webhook sender and the sweeper
        assert [w.poll() for w in workers] == [None, None], [log.read_text() for log in logs]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
    assert not any("Traceback" in log.read_text() for log in logs), logs[0].read_text()
    engine = create_engine(fresh_database)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(fresh_database)).get_current_head()
    assert version == head
