"""End to end with a real Celery worker process on the real Redis and PostgreSQL."""

from __future__ import annotations

import io
import time

import pandas as pd

from dvrl_core import found_fraction
from tests.conftest import upload, wait_for


def _spec(client, tables, **extra):
    train, valid = tables
    return {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "seed": 0} | extra


def test_upload_job_poll_page_download_and_planted_noise_ranks_low(client, tables,
                                                                   celery_worker):
    spec = _spec(client, tables, label_noise=0.2, id_column="customer",
                 dvrl={"iterations": 150})
    job = client.post("/v1/jobs", json=spec).json()
    assert job["state"] == "QUEUED"
    seen_running = False
    deadline = time.monotonic() + 240
    while job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}").json()
        seen_running |= job["state"] == "RUNNING" and bool(job["progress"].get("iteration"))
    assert job["state"] == "SUCCEEDED", job["error"]
    assert seen_running  # progress was visible while it ran
    page = client.get(f"/v1/jobs/{job['id']}/values", params={"page_size": 50}).json()
    assert len(page["items"]) == 50 and page["items"][0]["rank"] == 1
    csv = pd.read_csv(io.StringIO(client.get(f"/v1/jobs/{job['id']}/values",
                                             params={"format": "csv"}).text))
    assert list(csv.columns[:3]) == ["row", "value", "rank"] and len(csv) == 360
    planted = csv.index[csv["noise_injected"]].to_numpy()
    assert found_fraction(csv["value"].to_numpy(), planted, 0.2) > 0.6  # random: 0.2
    assert job["summary"]["label_noise"]["found_at_20"] > 0.6


def test_lightgbm_predictor_runs_in_the_worker_without_hanging(client, tables, celery_worker):
    spec = _spec(client, tables, predictor="lightgbm", dvrl={"iterations": 4, "rollouts": 2},
                 evaluations=["removal"])
    job = wait_for(client, client.post("/v1/jobs", json=spec).json()["id"], timeout=240)
    assert job["state"] == "SUCCEEDED", job["error"]
    assert job["summary"]["predictor"] == "lightgbm"


def test_cancel_reaches_the_worker_loop_within_seconds(client, tables, celery_worker):
    spec = _spec(client, tables, dvrl={"iterations": 100_000, "rollouts": 8, "tolerance": 0})
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while (client.get(f"/v1/jobs/{job_id}").json()["progress"].get("iteration") or 0) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.post(f"/v1/jobs/{job_id}:cancel")
    job = wait_for(client, job_id, timeout=60)  # a loop of 100,000 iterations, stopped
    assert job["state"] == "CANCELLED"
    assert client.get(f"/v1/jobs/{job_id}/values").status_code == 409


def test_a_class_with_one_row_gets_its_values_and_removal_curves(client, celery_worker):
    """Three classes, one of them a single row: the removal curves drop that row's class from
    some of their models, and the job still succeeds with every row valued (it once failed
    after training, its values thrown away)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    label = np.where(x[:, 0] > 0, "cat", "dog").astype(object)
    label[7] = "bird"
    table = pd.DataFrame(x, columns=["a", "b", "c"]).assign(label=label)
    spec = {"dataset_id": upload(client, table), "target": "label",
            "validation": {"fraction": 0.3}, "seed": 0, "dvrl": {"iterations": 50}}
    job = wait_for(client, client.post("/v1/jobs", json=spec).json()["id"])
    assert job["state"] == "SUCCEEDED", job["error"]
    assert "evaluation_errors" not in job["summary"]
    removal = client.get(f"/v1/jobs/{job['id']}/curves").json()["removal"]
    assert len(removal["removed"]) > 5 and all(v is not None for v in removal["remove_lowest"])
    values = client.get(f"/v1/jobs/{job['id']}/values", params={"page_size": 1000}).json()
    assert len(values["items"]) == job["summary"]["rows"]
