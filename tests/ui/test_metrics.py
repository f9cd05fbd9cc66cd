"""/metrics after real requests and real jobs on a real Celery worker: requests by route
template and status, jobs' outcomes and durations, the queue, and the workers' heartbeats."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, upload, wait_for


def scrape(client) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of /metrics by name: [(labels, value)]."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name: str, **labels: str) -> float:
    matching = [v for have, v in samples.get(name, []) if labels.items() <= have.items()]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return matching[0]


def wait_training(client, job_id: str, timeout: float = 120.0) -> dict:
    """The job once its worker reports training iterations."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if (job["progress"].get("iteration") or 0) > 0:
            return job
        assert job["state"] in ("QUEUED", "RUNNING"), job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not training within {timeout} s")


def test_metrics_count_requests_jobs_queue_and_heartbeats(client, celery_worker, tables):
    train, valid = tables
    train_id, valid_id = upload(client, train), upload(client, valid, "valid.csv")
    one_class = train.assign(label="only")
    one_class_id = upload(client, one_class, "one-class.csv")
    spec = {"dataset_id": train_id, "target": "label", "validation": {"dataset_id": valid_id},
            "seed": 0}

    # a long job, observed while its worker holds it, then cancelled
    long = client.post("/v1/jobs", json=spec | {"dvrl": {"iterations": 50_000}}).json()
    running = wait_training(client, long["id"])
    samples = scrape(client)
    seen = set(samples)
    workers = samples["dvrl_worker_jobs"]
    assert [v for _, v in workers] == [1.0]
    worker = workers[0][0]["worker"]
    beat = value(samples, "dvrl_worker_last_heartbeat_timestamp_seconds", worker=worker)
    assert beat >= datetime.fromisoformat(running["started_at"]).timestamp()
    assert value(samples, "dvrl_jobs", state="RUNNING") == 1
    assert value(samples, "dvrl_jobs_lease_expired") == 0
    client.post(f"/v1/jobs/{long['id']}:cancel")
    assert wait_for(client, long["id"])["state"] == "CANCELLED"

    # one that succeeds, one that fails on its data
    good = client.post("/v1/jobs", json=spec | {"dvrl": {"iterations": 20}}).json()
    assert wait_for(client, good["id"])["state"] == "SUCCEEDED"
    bad = client.post("/v1/jobs", json=spec | {"dataset_id": one_class_id}).json()
    failed = wait_for(client, bad["id"])
    assert failed["state"] == "FAILED"
    # and one no worker here takes (the GPU queue): it waits
    queued = client.post("/v1/jobs", json=spec | {"device": "cuda"}).json()
    assert client.get("/v1/jobs/no-such-job").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/openapi.json").status_code == 200

    samples = scrape(client)
    seen |= set(samples)
    finished = "dvrl_jobs_finished_total"
    assert value(samples, finished, state="SUCCEEDED", reason="") == 1
    assert value(samples, finished, state="CANCELLED", reason="") == 1
    assert value(samples, finished, state="FAILED", reason=failed["error"]["type"]) == 1
    assert value(samples, "dvrl_job_duration_seconds_count", state="SUCCEEDED") == 1
    assert value(samples, "dvrl_job_duration_seconds_sum", state="SUCCEEDED") > 0
    assert value(samples, "dvrl_job_duration_seconds_bucket", state="SUCCEEDED", le="+Inf") == 1
    assert value(samples, "dvrl_job_queue_wait_seconds_count") == 3
    assert value(samples, "dvrl_queue_depth") == 1
    assert value(samples, "dvrl_jobs", state="QUEUED") == 1
    assert value(samples, "dvrl_jobs", state="SUCCEEDED") == 1
    assert value(samples, "dvrl_queue_oldest_age_seconds") > 0
    assert samples.get("dvrl_worker_jobs", []) == []  # nothing running: no stale worker series
    assert value(samples, "dvrl_metrics_database_up") == 1

    # requests by template and status, never by raw path
    requests = "dvrl_http_requests_total"
    polls = value(samples, requests, method="GET", route="/v1/jobs/{job_id}", status="200")
    assert polls >= 4
    assert value(samples, requests, method="POST", route="/v1/datasets", status="201") == 3
    assert value(samples, requests, method="POST", route="/v1/jobs", status="202") == 4
    assert value(samples, requests, method="POST", route="/v1/jobs/{job_id}:cancel",
                 status="202") == 1
    assert value(samples, requests, method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, requests, method="GET", route="/openapi.json", status="200") == 1
    assert ("unmatched", "200") not in {(labels["route"], labels["status"])
                                        for labels, _ in samples[requests]}
    latency = "dvrl_http_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route="/v1/jobs/{job_id}", status="200") == polls
    assert value(samples, "dvrl_http_request_duration_seconds_bucket", method="POST",
                 route="/v1/datasets", status="201", le="+Inf") == 3
    routes = {labels["route"] for labels, _ in samples[requests]}
    assert not any(job in route for route in routes for job in (long["id"], good["id"]))

    # a job finished before is counted once, however often Prometheus scrapes
    again = scrape(client)
    assert value(again, finished, state="SUCCEEDED", reason="") == 1
    assert value(again, requests, method="GET", route="/metrics", status="200") >= 2
    # one cancelled and deleted between two scrapes is counted (it was never seen finished)
    client.post(f"/v1/jobs/{queued['id']}:cancel")
    assert client.delete(f"/v1/jobs/{queued['id']}").status_code == 204
    assert value(scrape(client), finished, state="CANCELLED", reason="") == 2

    # the Grafana dashboard's queries parse and name only series /metrics serves
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10
    for query in queries:
        promql_parser.parse(query)  # ValueError on a syntax error
        for name in re.findall(r"\bdvrl_[a-z_]+", query):
            assert name in seen, (name, query)


def test_prometheus_scrapes_the_compose_api_service():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose["services"]
    assert f"{port}:{port}" in compose["services"][host]["ports"]
