"""The paper's domain-adaptation use through the HTTP API, with a real Celery worker: source rows
from two domains, validation and test rows from the target, and the training choices in the job's
summary."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from dvrl_core.datasets import make_shifted_domains
from tests.conftest import upload, wait_for


def test_a_domain_adaptation_job_values_the_source_and_reports_the_training_choices(
        client, celery_worker):
    source, valid, test, foreign = make_shifted_domains(600, 200, 1000, random_state=1)
    spec = {
        "dataset_id": upload(client, source, "source.csv"), "target": "label",
        "validation": {"dataset_id": upload(client, valid, "target_valid.csv")},
        "test": {"dataset_id": upload(client, test, "target_test.csv")},
        "predictor": "logistic_regression", "dvrl": {"iterations": 100}, "seed": 0,
        "evaluations": ["training_choices"],
        "evaluation": {"model": "logistic_regression", "metric": "accuracy",
                       "remove_fraction": 0.4},
    }
    job = wait_for(client, client.post("/v1/jobs", json=spec).json()["id"], timeout=300)
    assert job["state"] == "SUCCEEDED", job["error"]
    choices = job["summary"]["training_choices"]
    assert choices["metric"] == "accuracy" and choices["model"] == "logistic_regression"
    assert set(choices) >= {"uniform", "weighted", "without_lowest", "validation_only",
                            "uniform_plus_validation", "weighted_plus_validation",
                            "top_valued_plus_validation", "top_valued_fraction"}
    # the values find the other domain's rows, and training on them as weights helps the target
    values = pd.read_csv(io.StringIO(client.get(f"/v1/jobs/{job['id']}/values",
                                                params={"format": "csv"}).text))
    lowest = values.sort_values("rank")["row"].to_numpy()[: len(foreign)]
    # about half the other domain's rows carry the label the target's rule would give them too;
    # the other half contradict it, and those are the ones that must rank lowest
    target_rule = np.where(source["x0"] > 0, "yes", "no")
    contradicting = foreign[source["label"].to_numpy()[foreign] != target_rule[foreign]]
    assert np.isin(contradicting, lowest).mean() > 0.9
    assert np.isin(lowest, foreign).mean() > 0.55  # random: 0.4
    assert choices["weighted"] > choices["uniform"] + 0.05
    # the way to train with the values that the validation rows recommend beats uniform too
    assert choices["recommended"] in {"weighted", "without_lowest", "weighted_plus_validation",
                                      "top_valued_plus_validation"}
    assert choices["recommended_score"] > choices["uniform"] + 0.05
    assert choices["without_lowest"] > choices["uniform"] + 0.05


def test_training_choices_without_a_test_dataset_is_refused_before_any_work(client):
    source, valid, _, _ = make_shifted_domains(100, 50, 10, random_state=2)
    spec = {"dataset_id": upload(client, source), "target": "label",
            "validation": {"dataset_id": upload(client, valid)},
            "evaluations": ["training_choices"]}
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "needs a test dataset" in response.text
    assert client.get("/v1/jobs").json()["items"] == []
