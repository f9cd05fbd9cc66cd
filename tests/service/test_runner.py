"""The runner, called in-process against the real PostgreSQL (the worker calls the same code)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select

from service import jobs
from service.db import session_scope
from service.models import JobValue
from service.runner import run_job
from tests.conftest import upload


def _create(client, tables, **extra) -> str:
    """A job of the tables' split; DVRL's options unless ``extra`` names another method."""
    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "seed": 0} | extra
    if spec.get("method", "dvrl") == "dvrl":
        spec = {"dvrl": {"iterations": 60, "rollouts": 8}} | spec
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_a_job_runs_to_succeeded_with_values_summary_and_curves(client, tables):
    job_id = _create(client, tables, label_noise=0.2, id_column="customer",
                     evaluations=["removal", "weighted"])
    assert run_job(job_id) == "SUCCEEDED"
    assert run_job(job_id) is None  # a job runs once: the second claim fails
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "SUCCEEDED" and job["progress"]["phase"] == "done"
    assert job["summary"]["rows"] == 360 and job["summary"]["flagged"] == 72
    assert job["summary"]["label_noise"]["flipped"] == 72
    assert job["summary"]["weighted_training"]["metric"] == "auc"
    trust = job["summary"]["trust"]  # 140 validation rows: too few to spare 40 for checks
    assert trust["returned"] == "dvrl" and trust["verdict"].startswith("not checked")
    assert "160" in trust["verdict"] and "trust" not in job["summary"]["diagnostics"]
    curves = client.get(f"/v1/jobs/{job_id}/curves").json()
    assert len(curves["removal"]["removed"]) == 11 and curves["discovery"]["found"][-1] == 1.0
    assert len(curves["reward_trace"]["reward"]) == 60
    iterations = curves["reward_trace"]["iteration"]  # whole numbers, as the job counts them
    assert iterations[0] == 1 and all(type(i) is int for i in iterations)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(JobValue)) == 360


def test_a_job_stops_when_its_values_converge_and_says_after_how_many_iterations(
        client, tables):
    job_id = _create(client, tables, dvrl={"iterations": 5000, "rollouts": 8,
                                           "check_every": 10, "min_iterations": 50})
    assert run_job(job_id) == "SUCCEEDED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    convergence = job["summary"]["diagnostics"]["convergence"]
    used = convergence["iterations_used"]
    assert convergence["converged"] and 50 < used < 5000 and convergence["iterations_max"] == 5000
    curves = client.get(f"/v1/jobs/{job_id}/curves").json()
    assert curves["reward_trace"]["iteration"][-1] <= used
    spec = client.get(f"/v1/jobs/{job_id}").json()["spec"]["dvrl"]
    assert spec["tolerance"] == 0.001  # the default, echoed in the job


def test_data_that_cannot_be_valued_ends_failed_with_a_reason(client, tables):
    """What the stored column names cannot tell when the job is posted (a missing column can:
    422 then), the run finds: here an id column whose names repeat."""
    train, valid = tables
    train = train.assign(customer=[f"c{i % 50}" for i in range(len(train))])
    spec = {"dataset_id": upload(client, train), "target": "label", "id_column": "customer",
            "validation": {"dataset_id": upload(client, valid)}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "FAILED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["error"]["type"] == "/problems/bad-data"
    assert "'customer' names rows" in job["error"]["detail"] and "'c0'" in job["error"]["detail"]
    assert "Traceback" not in str(job)
    assert client.get(f"/v1/jobs/{job_id}/values").status_code == 409


def test_a_regression_target_of_strings_fails_clearly(client, tables):
    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "cat0",
            "validation": {"dataset_id": upload(client, valid)}, "label_noise": 0.1,
            "task": "regression", "dvrl": {"iterations": 5}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "FAILED"
    error = client.get(f"/v1/jobs/{job_id}").json()["error"]
    assert error["type"] == "/problems/target-type" and "must be numeric" in error["detail"]
    assert "for labels use the classification task" in error["detail"]


def test_cancel_stops_a_running_job_within_seconds_and_keeps_no_values(client, tables):
    job_id = _create(client, tables, dvrl={"iterations": 100_000, "rollouts": 8,
                                                     "tolerance": 0})
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("state", run_job(job_id)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (client.get(f"/v1/jobs/{job_id}").json()["progress"].get("iteration") or 0) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.post(f"/v1/jobs/{job_id}:cancel").json()["state"] == "CANCELLING"
    finally:
        with session_scope() as session:  # never leave the loop running past the test
            if jobs.get_job(session, job_id).state == "RUNNING":
                jobs.request_cancel(session, job_id, "alice")
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert outcome["state"] == "CANCELLED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "CANCELLED" and job["summary"] is None
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(JobValue)) == 0


def test_time_budget_ends_the_job_failed(client, tables):
    job_id = _create(client, tables, dvrl={"iterations": 100_000, "rollouts": 8,
                                                     "tolerance": 0},
                     time_budget_s=2)
    assert run_job(job_id) == "FAILED"
    assert client.get(f"/v1/jobs/{job_id}").json()["error"]["type"] == \
        "/problems/time-budget-exceeded"


def test_a_job_no_worker_takes_is_not_sent_again_while_its_message_waits(client, tables,
                                                                         monkeypatch):
    """A "cuda" job on a service without a GPU worker: every sweep sent it again, and copies
    piled up on the GPU queue (4 in 6 minutes). Sent again once its queue is empty."""
    import redis

    from service import dispatch
    from service.settings import get_settings
    from tests.conftest import REDIS_URL

    monkeypatch.setenv("DVRL_REQUEUE_AFTER_S", "0")  # every sweep finds it quiet long enough
    get_settings.cache_clear()
    settings = get_settings()
    broker = redis.Redis.from_url(REDIS_URL)
    job_id = _create(client, tables, device="cuda")
    assert broker.llen(settings.gpu_queue) == 1
    for _ in range(3):
        assert dispatch.sweep(settings) == []
    assert broker.llen(settings.gpu_queue) == 1
    broker.delete(settings.gpu_queue)  # the message is lost (a Redis restart): sent again
    assert dispatch.sweep(settings) == [job_id]
    assert broker.llen(settings.gpu_queue) == 1
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "QUEUED"


def test_a_lease_makes_a_claim_exclusive_until_it_runs_out(client, tables):
    from sqlalchemy import update

    from service.models import Job
    from service.settings import get_settings

    settings = get_settings()
    job_id = _create(client, tables)
    with session_scope() as session:
        assert jobs.claim(session, job_id, "worker-a", settings) is True
        assert jobs.claim(session, job_id, "worker-b", settings) is False
        assert jobs.renew(session, job_id, "worker-a", settings) is True
        # worker-a stops renewing (killed): once the lease has run out, worker-b takes over
        session.execute(update(Job).where(Job.id == job_id).values(
            dispatched_at=jobs.now() - timedelta(seconds=60),
            lease_expires_at=jobs.now() - timedelta(seconds=1)))
        session.commit()
        assert [j for j, _ in jobs.due_for_dispatch(session, settings)] == [job_id]
        assert jobs.due_for_dispatch(session, settings) == []  # sent once, not every sweep
        assert jobs.claim(session, job_id, "worker-b", settings) is True
        # the presumed-dead worker can neither renew, checkpoint nor write results
        assert jobs.renew(session, job_id, "worker-a", settings) is False
        assert jobs.save_checkpoint(session, job_id, "worker-a", b"x") is False
        assert jobs.finish(session, job_id, "worker-a", "SUCCEEDED") is False
        assert jobs.finish(session, job_id, "worker-b", "SUCCEEDED") is True
        session.commit()
        job = jobs.get_job(session, job_id)
        assert job.state == "SUCCEEDED" and job.attempts == 2 and job.lease_holder is None


def _age(job_id: str, seconds: float, **values) -> None:
    """Move the job's first start ``seconds`` into the past (and set other columns)."""
    from sqlalchemy import update

    from service.models import Job

    with session_scope() as session:
        started = jobs.get_job(session, job_id).started_at
        session.execute(update(Job).where(Job.id == job_id).values(
            started_at=started - timedelta(seconds=seconds), **values))


def test_a_resumed_job_has_only_what_is_left_of_its_time_budget(client, tables):
    from service.settings import get_settings

    job_id = _create(client, tables, time_budget_s=30)
    with session_scope() as session:  # a first worker claims it, runs 40 s, and dies
        assert jobs.claim(session, job_id, "worker-a", get_settings())
    _age(job_id, 40, lease_expires_at=jobs.now() - timedelta(seconds=1))
    assert run_job(job_id) == "FAILED"  # the 60 iterations alone would take a second or two
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["error"]["type"] == "/problems/time-budget-exceeded"


def test_a_job_whose_workers_keep_dying_ends_failed_after_max_attempts(client, tables):
    from service.settings import get_settings

    settings = get_settings()
    job_id = _create(client, tables)
    for attempt in range(settings.max_attempts):  # each worker claims it and dies
        with session_scope() as session:
            assert jobs.claim(session, job_id, f"worker-{attempt}", settings)
        _age(job_id, 0, lease_expires_at=jobs.now() - timedelta(seconds=1))
    with session_scope() as session:
        assert jobs.due_for_dispatch(session, settings) == []  # not sent again
    assert run_job(job_id) is None  # nor claimed again
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "FAILED" and job["error"]["type"] == "/problems/workers-died"
    assert str(settings.max_attempts) in job["error"]["detail"]


def test_leases_follow_the_database_clock_not_a_skewed_worker_clock(client, tables,
                                                                     monkeypatch):
    from datetime import datetime

    from service.settings import get_settings

    settings = get_settings()
    job_id = _create(client, tables)
    with session_scope() as session:
        assert jobs.claim(session, job_id, "worker-a", settings)
    # a worker on a host whose clock runs an hour ahead must not see worker-a's lease as expired
    ahead = datetime.now(jobs.UTC) + timedelta(hours=1)
    monkeypatch.setattr(jobs, "now", lambda: ahead)
    with session_scope() as session:
        assert jobs.claim(session, job_id, "worker-b", settings) is False
        assert jobs.due_for_dispatch(session, settings) == []
        assert jobs.renew(session, job_id, "worker-a", settings)
        lease = jobs.get_job(session, job_id).lease_expires_at
    assert lease < ahead  # stamped by the database, not by the skewed clock


def test_a_job_reports_its_trust_checks_on_held_out_validation_rows(client):
    from dvrl_core.datasets import make_table

    table = make_table(800, n_features=6, signal=3.0, random_state=9)
    spec = {"dataset_id": upload(client, table.iloc[:500]), "target": "label",
            "validation": {"dataset_id": upload(client, table.iloc[500:])}, "seed": 0,
            "label_noise": 0.2, "evaluations": [],
            "dvrl": {"iterations": 40, "rollouts": 8, "tolerance": 0}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    trust = client.get(f"/v1/jobs/{job_id}").json()["summary"]["trust"]
    assert abs(trust["check_rows"] + trust["planted"]["rows"] - 75) <= 2  # 25% of 300, by class
    assert trust["returned"] in ("dvrl", "prior") and trust["verdict"]
    assert {"dvrl", "prior", "control"} <= set(trust["scores"])
    assert set(trust["planted"]["auroc"]) == {"dvrl", "prior", "control"}
    values = client.get(f"/v1/jobs/{job_id}/values", params={"page_size": 1000}).json()
    assert len(values["items"]) == 500  # planted rows are never among the values
    # with the default tolerance the run ends as soon as the guard has decided: on this table
    # the prior is too good for any learned values to beat on the planted rows
    spec["dvrl"] = {"iterations": 40, "rollouts": 8}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    summary = client.get(f"/v1/jobs/{job_id}").json()["summary"]
    convergence = summary["diagnostics"]["convergence"]
    assert convergence["iterations_used"] == 0 and "guard's bar" in convergence["decided"]
    assert summary["trust"]["returned"] == "prior" and summary["trust"]["verdict"]
    assert set(summary["trust"]["planted"]["auroc"]) == {"prior", "control"}
    decided = client.get(f"/v1/jobs/{job_id}/values", params={"page_size": 1000}).json()
    assert [row["value"] for row in decided["items"]] == [row["value"] for row in values["items"]]


def test_a_job_with_another_method_runs_through_the_same_job_and_results(client, tables):
    job_id = _create(client, tables, method="knn_shapley", label_noise=0.2,
                     evaluations=["removal", "weighted"])
    assert run_job(job_id) == "SUCCEEDED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    summary = job["summary"]
    assert summary["method"] == "knn_shapley" and summary["rows"] == 360
    assert job["progress"]["total"] == 140  # one step per validation row
    noise = summary["label_noise"]
    assert noise["flipped"] == 72 and noise["found_at_20"] > 0.4  # random: 0.2
    assert summary["weighted_training"]["weights"] == "values scaled to [0, 1]"
    assert "trust" not in summary
    curves = client.get(f"/v1/jobs/{job_id}/curves").json()
    assert len(curves["removal"]["removed"]) == 11 and curves["reward_trace"]["reward"] == []
    values = client.get(f"/v1/jobs/{job_id}/values", params={"page_size": 1000}).json()
    assert len(values["items"]) == 360


def test_a_regression_job_with_knn_shapley_values_the_moved_targets_low(client):
    from dvrl_core.datasets import make_table

    table = make_table(500, n_features=5, task="regression", random_state=2)
    train, valid = table.iloc[:360], table.iloc[360:]
    spec = {"dataset_id": upload(client, train), "target": "label", "task": "regression",
            "validation": {"dataset_id": upload(client, valid)}, "method": "knn_shapley",
            "label_noise": 0.2}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    summary = client.get(f"/v1/jobs/{job_id}").json()["summary"]
    assert summary["method"] == "knn_shapley" and summary["rows"] == 360
    assert summary["label_noise"]["found_at_20"] > 0.35  # random: 0.2


def test_a_job_whose_validation_rows_come_from_one_site_values_that_sites_rows_highest(client):
    """The spec's dvrl.shift (default auto): validation rows from one of the training rows' two
    sites; the summary reports the covariate shift and the values rank that site's rows first.
    With shift off, they do not."""
    import numpy as np

    from dvrl_core.datasets import make_sites

    train, valid, _ = make_sites(800, 300, random_state=4)
    train.insert(0, "store", [f"{site}-{i:04d}" for i, site in enumerate(train["site"])])
    spec = {"dataset_id": upload(client, train), "target": "sales", "id_column": "store",
            "validation": {"dataset_id": upload(client, valid)}}
    top_share = {}
    for setting in ("auto", "off"):
        job_id = client.post("/v1/jobs", json=spec | {"dvrl": {"shift": setting}}).json()["id"]
        assert run_job(job_id) == "SUCCEEDED"
        summary = client.get(f"/v1/jobs/{job_id}").json()["summary"]
        shift = summary["diagnostics"].get("shift")
        if setting == "auto":
            assert shift["applied"] and shift["detected"] and 0.6 < shift["auroc"] < 0.99
        else:
            assert shift is None
        items = client.get(f"/v1/jobs/{job_id}/values", params={"page_size": 1000}).json()
        ranked = sorted(items["items"], key=lambda row: -row["value"])[:320]
        top_share[setting] = np.mean([row["row"].startswith("a-") for row in ranked])
    assert top_share["auto"] > 0.9 and top_share["auto"] > top_share["off"] + 0.05


def test_an_evaluation_that_cannot_score_its_rows_is_skipped_and_the_values_kept(client, tables):
    """A test table of one class: the removal curves' AUC cannot score it. The job succeeds
    with its values, and the summary says which evaluation was skipped and why."""
    _, valid = tables
    one_class = valid[valid["label"] == valid["label"].iloc[0]]
    job_id = _create(client, tables, test={"dataset_id": upload(client, one_class)},
                     evaluations=["removal", "weighted"])
    assert run_job(job_id) == "SUCCEEDED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    skipped = job["summary"]["evaluation_errors"]
    assert set(skipped) == {"removal", "weighted"}
    assert "the test rows hold one class only" in skipped["removal"]
    assert client.get(f"/v1/jobs/{job_id}/curves").json()["removal"] is None
    values = client.get(f"/v1/jobs/{job_id}/values", params={"page_size": 1000}).json()
    assert len(values["items"]) == job["summary"]["rows"] == 360


def test_a_checkpoint_that_does_not_fit_the_run_is_dropped_and_the_job_starts_again(
        client, tables):
    """A job checkpointed by an earlier version that prepared its table into other features
    (a date column became days instead of one-hot levels): the worker that takes it over starts
    again, and the job ends with the values it would have had, not an internal error."""
    import pytest

    from dvrl_core import DVRL, RunStopped, prepare
    from service.settings import get_settings

    train, valid = tables
    fewer = prepare(train.drop(columns=["x0"]), "label", valid.drop(columns=["x0"]))
    saved: list[bytes] = []
    with pytest.raises(RunStopped):
        DVRL(iterations=60, rollouts=8, tolerance=None).fit(
            fewer, should_stop=lambda: bool(saved), checkpoint_every=10,
            on_checkpoint=lambda state, _: saved.append(state))
    job_id = _create(client, tables)
    with session_scope() as session:  # a first worker claims it, checkpoints, and dies
        assert jobs.claim(session, job_id, "worker-a", get_settings())
        assert jobs.save_checkpoint(session, job_id, "worker-a", saved[0])
        session.commit()
    _age(job_id, 0, lease_expires_at=jobs.now() - timedelta(seconds=1))
    assert run_job(job_id) == "SUCCEEDED"
    fresh = _create(client, tables)
    assert run_job(fresh) == "SUCCEEDED"

    def values(job: str) -> list[float]:
        items = client.get(f"/v1/jobs/{job}/values", params={"page_size": 1000}).json()["items"]
        return [item["value"] for item in items]

    assert values(job_id) == values(fresh) and len(values(fresh)) == 360


def test_the_phases_after_training_keep_the_iterations_reached(client, tables):
    """Evaluating or combining wrote a progress without them: a progress bar went back to
    nothing, then to full."""
    from dvrl_core.dvrl import Progress
    from service.runner import _Monitor
    from service.settings import get_settings

    settings = get_settings()
    job_id = _create(client, tables)
    with session_scope() as session:
        assert jobs.claim(session, job_id, "worker-a", settings) is True
    monitor = _Monitor(job_id, settings, budget_s=600, holder="worker-a")
    monitor.on_progress(Progress(iteration=60, total=60, reward=0.1, elapsed_s=1.0))
    monitor.phase("evaluating")
    progress = client.get(f"/v1/jobs/{job_id}").json()["progress"]
    assert progress["phase"] == "evaluating"
    assert (progress["iteration"], progress["total"]) == (60, 60)


def test_a_running_jobs_heartbeat_is_the_leases_renewal(client, tables):
    """A job evaluating for minutes writes no progress: its heartbeat read three minutes old,
    a job that looked hung, while the worker renewed its lease all along."""
    from service.settings import get_settings

    settings = get_settings()
    job_id = _create(client, tables)
    with session_scope() as session:
        assert jobs.claim(session, job_id, "worker-a", settings) is True
        assert jobs.record_progress(session, job_id, "worker-a", {"phase": "evaluating"},
                                    settings) is True
    written = client.get(f"/v1/jobs/{job_id}").json()["progress"]["heartbeat"]
    time.sleep(0.05)
    with session_scope() as session:
        assert jobs.renew(session, job_id, "worker-a", settings) is True
        renewed = jobs.get_job(session, job_id).heartbeat_at
    progress = client.get(f"/v1/jobs/{job_id}").json()["progress"]
    assert progress["phase"] == "evaluating" and progress["heartbeat"] > written
    assert progress["heartbeat"] == renewed.isoformat().replace("+00:00", "Z")
