from __future__ import annotations

import pytest

from tests.conftest import upload


def _spec(train_id, valid_id, **extra):
    return {"dataset_id": train_id, "target": "label", "validation": {"dataset_id": valid_id},
            "seed": 0} | extra


def test_create_job_is_queued_with_paper_defaults(client, tables):
    train, valid = tables
    spec = _spec(upload(client, train), upload(client, valid))
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "QUEUED" and job["progress"]["phase"] == "queued"
    dvrl = job["spec"]["dvrl"]
    assert (dvrl["iterations"], dvrl["batch_size"], dvrl["inner_iterations"],
            dvrl["predictor_batch_size"], dvrl["hidden_dim"], dvrl["layer_number"],
            dvrl["comb_dim"], dvrl["learning_rate"]) == (2000, 2000, 100, 256, 100, 5, 10, 0.01)
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "QUEUED"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dvrl": {"iterations": -1}}, "dvrl.iterations"),
        ({"dvrl": {"iterations": 10**9}}, "dvrl.iterations"),
        ({"seed": "zero"}, "seed"),
        ({"surprise": 1}, "surprise"),
        ({"predictor": "svm"}, "predictor"),
        ({"validation": {"dataset_id": "a", "fraction": 0.2}}, "validation"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_specs_name_the_offending_field(client, change, field):
    response = client.post("/v1/jobs", json=_spec("a", "b") | change)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem


def test_unknown_dataset_in_spec(client, tables):
    train, _ = tables
    response = client.post("/v1/jobs", json=_spec(upload(client, train), "nope"))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "validation.dataset_id",
                                          "message": "no dataset 'nope'"}]


def test_list_filter_by_state_and_cancel_a_queued_job(client, tables):
    train, valid = tables
    spec = _spec(upload(client, train), upload(client, valid))
    ids = [client.post("/v1/jobs", json=spec).json()["id"] for _ in range(3)]
    cancelled = client.post(f"/v1/jobs/{ids[0]}:cancel")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "CANCELLED"
    assert client.post(f"/v1/jobs/{ids[0]}:cancel").status_code == 409
    queued = client.get("/v1/jobs", params={"state": "QUEUED"}).json()["items"]
    assert sorted(j["id"] for j in queued) == sorted(ids[1:])
    page = client.get("/v1/jobs", params={"page_size": 2}).json()
    rest = client.get("/v1/jobs", params={"page_token": page["next_page_token"]}).json()
    assert len(page["items"]) + len(rest["items"]) == 3
    assert client.get("/v1/jobs", params={"state": "DONE"}).status_code == 422


def test_results_of_an_unfinished_job_are_409(client, tables):
    train, valid = tables
    job = client.post("/v1/jobs", json=_spec(upload(client, train), upload(client, valid)))
    for path in ("values", "corrupted", "curves"):
        response = client.get(f"/v1/jobs/{job.json()['id']}/{path}")
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/results-not-ready"
    assert client.get("/v1/jobs/nope/values").status_code == 404


def test_dataset_in_use_cannot_be_deleted(client, tables):
    train, valid = tables
    train_id = upload(client, train)
    client.post("/v1/jobs", json=_spec(train_id, upload(client, valid)))
    response = client.delete(f"/v1/datasets/{train_id}")
    assert response.status_code == 409 and response.json()["type"] == "/problems/conflict"


def test_health_readiness_metrics_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["mode"] == "celery"
    assert "dvrl_jobs" in client.get("/metrics").text
    schema = client.get("/openapi.json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"create_dataset", "create_job", "get_job", "list_jobs", "cancel_job", "get_values",
            "get_corrupted", "get_curves"} <= operations
