"""An ensemble job in the embedded default (`dvrl serve` with no configuration: SQLite and the
in-process worker thread), whose members run one after another."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd

from tests.conftest import ROOT, free_port, upload, wait_for, wait_until_up


def test_the_embedded_service_runs_an_ensembles_members_one_after_another(tmp_path, tables):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVRL_")}
    env |= {"DVRL_DATA_DIR": str(tmp_path / "data"), "DVRL_PROGRESS_INTERVAL_S": "0.2"}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server)
        with httpx.Client(base_url=base, timeout=30) as client:
            train, valid = tables
            spec = {"dataset_id": upload(client, train), "target": "label",
                    "validation": {"dataset_id": upload(client, valid)}, "seed": 2,
                    "label_noise": 0.2, "ensemble": 2, "evaluations": [],
                    "dvrl": {"iterations": 60, "rollouts": 8}}
            job = wait_for(client, client.post("/v1/jobs", json=spec).json()["id"],
                           timeout=300)
            assert job["state"] == "SUCCEEDED", job["error"]
            assert job["summary"]["ensemble"]["members"] == 2
            table = pd.read_csv(io.StringIO(client.get(f"/v1/jobs/{job['id']}/values",
                                                       params={"format": "csv"}).text))
        with sqlite3.connect(tmp_path / "data" / "dvrl.sqlite3") as database:
            rows = database.execute(
                "SELECT state, started_at, finished_at, \"values\" FROM job_members "
                "WHERE job_id = ? ORDER BY number", (job["id"],)).fetchall()
        assert [row[0] for row in rows] == ["SUCCEEDED", "SUCCEEDED"]
        assert rows[1][1] >= rows[0][2]  # the second started once the first had finished
        stored = np.vstack([np.frombuffer(row[3], dtype="<f8") for row in rows])
        assert np.allclose(table["value"], stored.mean(axis=0), rtol=0, atol=1e-12)
        assert np.allclose(table["std_error"], stored.std(axis=0, ddof=1) / np.sqrt(2),
                           rtol=0, atol=1e-12)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
