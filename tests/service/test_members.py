"""Ensemble jobs' members, run in-process against the real PostgreSQL (the workers call the same
code; tests/worker/test_ensemble.py runs them on real worker processes)."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, select, update

from dvrl_core.ensemble import fit_ensemble, member_seeds
from dvrl_core.result import ValuationResult
from service import jobs, members
from service.db import session_scope
from service.member_runner import run_member
from service.models import JobMember, JobValue
from service.runner import _prepare, _valuer, run_job
from service.settings import get_settings
from service.specs import JobSpec
from tests.conftest import upload


def _spec(client, tables, **extra) -> dict:
    train, valid = tables
    return {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "seed": 4,
            "dvrl": {"iterations": 40, "rollouts": 8}, "evaluations": []} | extra


def _create(client, tables, **extra) -> str:
    response = client.post("/v1/jobs", json=_spec(client, tables, **extra))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _members(job_id: str) -> list:
    with session_scope() as session:
        return session.execute(select(JobMember.id, JobMember.state, JobMember.seed,
                                      JobMember.values, JobMember.attempts,
                                      JobMember.summary)
                               .where(JobMember.job_id == job_id)
                               .order_by(JobMember.number)).all()


def _values(client, job_id: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(client.get(f"/v1/jobs/{job_id}/values",
                                              params={"format": "csv"}).text))


def test_an_ensembles_values_are_its_members_mean_with_standard_errors(client, tables):
    job_id = _create(client, tables, ensemble=3, label_noise=0.2, evaluations=["removal"])
    queued = _members(job_id)
    assert [m.state for m in queued] == ["QUEUED"] * 3
    assert [m.seed for m in queued] == member_seeds(4, 3)  # the library's seeds for seed 4
    assert run_job(job_id) is None  # the job itself is not run: its members are
    assert run_member(queued[0].id) == "SUCCEEDED"
    assert run_member(queued[1].id) == "SUCCEEDED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "RUNNING"  # one member still to run
    assert job["progress"]["members"] == {"succeeded": 2, "queued": 1}
    assert (job["progress"]["iteration"], job["progress"]["total"]) == (80, 120)
    assert run_member(queued[2].id) == "SUCCEEDED"  # the last one combines them
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "SUCCEEDED", job["error"]
    assert job["progress"]["phase"] == "done" and job["progress"]["total"] == 120

    stored = np.vstack([np.frombuffer(m.values, dtype="<f8") for m in _members(job_id)])
    table = _values(client, job_id)
    assert list(table.columns) == ["row", "value", "rank", "label", "flagged",
                                   "noise_injected", "std_error"]
    assert np.allclose(table["value"], stored.mean(axis=0), rtol=0, atol=1e-12)
    assert np.allclose(table["std_error"], stored.std(axis=0, ddof=1) / np.sqrt(3), atol=1e-12)
    summary = job["summary"]
    ensemble = summary["ensemble"]
    pairs = pd.DataFrame(stored.T).corr(method="spearman").to_numpy()[np.triu_indices(3, 1)]
    assert ensemble["members"] == 3 and ensemble["seeds"] == member_seeds(4, 3)
    assert abs(ensemble["rank_stability"]["mean_spearman"] - pairs.mean()) < 1e-6
    assert abs(ensemble["rank_stability"]["min_spearman"] - pairs.min()) < 1e-6
    assert ensemble["std_error"]["max"] >= ensemble["std_error"]["median"] > 0
    # each member's trust verdict (140 validation rows: too few to hold 40 out)
    assert [m["verdict"][:11] for m in summary["trust"]["members"]] == ["not checked"] * 3
    assert summary["trust"]["returned"] == "dvrl"
    assert summary["label_noise"]["flipped"] == 72
    assert len(client.get(f"/v1/jobs/{job_id}/curves").json()["removal"]["removed"]) == 11

    # the same members through the library, on the job's own data, give the same values
    spec = JobSpec.model_validate(job["spec"])
    data, _ = _prepare(job_id, spec)
    library = fit_ensemble(data, member_seeds(4, 3), lambda seed: _valuer(spec, data, seed)[0])
    assert np.allclose(library.values, table["value"], atol=1e-6)
    with session_scope() as session:  # combined once
        assert jobs.get_job(session, job_id).attempts == 1


def _fake_result(data, seed: int) -> ValuationResult:
    values = np.random.default_rng(seed).random(len(data.train))
    return ValuationResult(values, data.train.ids, data.train.y, np.zeros(5),
                           params={"predictor": "logistic_regression", "metric": "log_loss"})


def test_two_members_finishing_at_the_same_moment_write_the_results_once(client, tables):
    settings = get_settings()
    for _ in range(5):
        job_id = _create(client, tables, ensemble=2)
        spec = JobSpec.model_validate(client.get(f"/v1/jobs/{job_id}").json()["spec"])
        data, _ = _prepare(job_id, spec)
        both = [m.id for m in _members(job_id)]
        with session_scope() as session:
            for holder, member in zip(("a", "b"), both, strict=True):
                assert members.claim(session, member, holder, settings)
        start = threading.Barrier(2)
        ran: list = []

        def finish_and_combine(member: str, holder: str, start=start, ran=ran, data=data,
                               job_id=job_id) -> None:
            start.wait()
            with session_scope() as session:
                assert members.hold(session, member, holder)
                members.store_values(session, member, _fake_result(data, len(ran)), None)
                assert members.finish(session, member, holder, "SUCCEEDED")
                session.commit()
            ran.append(run_job(job_id))

        threads = [threading.Thread(target=finish_and_combine, args=(member, holder))
                   for holder, member in zip(("a", "b"), both, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(ran, key=str) == [None, "SUCCEEDED"]  # one of them combined the job
        with session_scope() as session:
            assert jobs.get_job(session, job_id).attempts == 1
            assert session.scalar(select(func.count()).select_from(JobValue)
                                  .where(JobValue.job_id == job_id)) == 360


def test_cancel_stops_the_running_member_and_ends_the_queued_ones(client, tables):
    job_id = _create(client, tables, ensemble=3,
                     dvrl={"iterations": 100_000, "rollouts": 8, "tolerance": 0})
    first, *others = [m.id for m in _members(job_id)]
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("state", run_member(first)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (client.get(f"/v1/jobs/{job_id}").json()["progress"].get("iteration") or 0) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.post(f"/v1/jobs/{job_id}:cancel").json()["state"] == "CANCELLING"
        assert [m.state for m in _members(job_id)][1:] == ["CANCELLED", "CANCELLED"]
    finally:
        with session_scope() as session:  # never leave the loop running past the test
            if jobs.get_job(session, job_id).state == "RUNNING":
                jobs.request_cancel(session, job_id, "alice")
        thread.join(timeout=60)
    assert outcome["state"] == "CANCELLED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "CANCELLED" and job["summary"] is None
    assert [m.state for m in _members(job_id)] == ["CANCELLED"] * 3
    assert run_member(others[0]) is None  # a late message for a cancelled member does nothing
    assert client.get(f"/v1/jobs/{job_id}/values").status_code == 409


def test_a_queued_ensemble_cancelled_ends_at_once_with_its_members(client, tables):
    job_id = _create(client, tables, ensemble=2)
    assert client.post(f"/v1/jobs/{job_id}:cancel").json()["state"] == "CANCELLED"
    assert [m.state for m in _members(job_id)] == ["CANCELLED"] * 2


def test_a_member_that_fails_fails_the_job_and_stops_the_others(client, tables):
    train, _ = tables
    repeated = train.assign(customer=[f"c{i % 50}" for i in range(len(train))])
    spec = _spec(client, tables, ensemble=2) | {
        "dataset_id": upload(client, repeated), "id_column": "customer"}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    first, second = [m.id for m in _members(job_id)]
    assert run_member(first) == "FAILED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "FAILED" and job["error"]["type"] == "/problems/bad-data"
    assert job["error"]["detail"].startswith("ensemble member 1 of 2 (seed ")
    assert [m.state for m in _members(job_id)] == ["FAILED", "CANCELLED"]
    assert run_member(second) is None


def test_a_dead_members_lease_runs_out_then_it_is_sent_again_and_taken_over(client, tables):
    settings = get_settings()
    job_id = _create(client, tables, ensemble=2)
    member = _members(job_id)[0].id
    with session_scope() as session:
        assert members.claim(session, member, "worker-a", settings)
        assert members.claim(session, member, "worker-b", settings) is False
        assert jobs.get_job(session, job_id).state == "RUNNING"
        session.execute(update(JobMember).where(JobMember.id == member).values(
            dispatched_at=jobs.now() - timedelta(seconds=60),
            lease_expires_at=jobs.now() - timedelta(seconds=1)))
        session.execute(update(JobMember).where(JobMember.id != member).values(
            dispatched_at=jobs.now()))  # the other member's message is not lost
        session.commit()
        assert members.due_for_dispatch(session, settings) == [(member, "auto")]
        assert members.due_for_dispatch(session, settings) == []  # sent once
        assert jobs.due_for_dispatch(session, settings) == []  # the job itself is not sent
        assert members.claim(session, member, "worker-b", settings)
        assert members.renew(session, member, "worker-a", settings) is False
        assert members.save_checkpoint(session, member, "worker-a", b"x") is False
        assert members.hold(session, member, "worker-a") is False
        session.commit()


def test_a_member_whose_workers_keep_dying_fails_the_job(client, tables):
    settings = get_settings()
    job_id = _create(client, tables, ensemble=2)
    member = _members(job_id)[1].id
    for attempt in range(settings.max_attempts):
        with session_scope() as session:
            assert members.claim(session, member, f"worker-{attempt}", settings)
            session.execute(update(JobMember).where(JobMember.id == member).values(
                lease_expires_at=jobs.now() - timedelta(seconds=1)))
            session.commit()
    with session_scope() as session:
        assert members.due_for_dispatch(session, settings) == []  # not sent again: failed
        assert jobs.get_job(session, job_id).state == "FAILED"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["error"]["type"] == "/problems/workers-died"
    assert job["error"]["detail"].startswith("ensemble member 2 of 2")
    assert [m.state for m in _members(job_id)] == ["CANCELLED", "FAILED"]


def test_ensemble_1_is_a_single_run_as_before(client, tables):
    plain = _create(client, tables, label_noise=0.2)
    one = _create(client, tables, label_noise=0.2, ensemble=1)
    assert run_job(plain) == "SUCCEEDED" and run_job(one) == "SUCCEEDED"
    assert _members(one) == []
    assert _values(client, one).equals(_values(client, plain))
    assert "std_error" not in _values(client, one).columns
    summary = client.get(f"/v1/jobs/{one}").json()["summary"]
    assert "ensemble" not in summary and summary["trust"]["returned"] == "dvrl"
    page = client.get(f"/v1/jobs/{one}/values", params={"page_size": 2}).json()["items"]
    assert page[0]["std_error"] is None


def test_bad_ensembles_are_refused_with_a_problem(client, tables):
    spec = _spec(client, tables)
    for ensemble, field in ((0, "ensemble"), (33, "ensemble"), ("three", "ensemble"),
                            (2.5, "ensemble")):
        response = client.post("/v1/jobs", json=spec | {"ensemble": ensemble})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == field
    baseline = {key: value for key, value in spec.items() if key != "dvrl"}
    response = client.post("/v1/jobs", json=baseline | {"ensemble": 3, "method": "knn_shapley"})
    assert response.status_code == 422 and "not DVRL" in response.text
    (error,) = response.json()["errors"]  # the field it is about, pydantic's prefix dropped
    assert error["field"] == "ensemble" and error["message"].startswith("ensemble: an ensemble")
    for options in ({"dvrl": {"iterations": 5}}, {"predictor": "lightgbm"}):
        response = client.post("/v1/jobs", json=baseline | {"method": "data_oob"} | options)
        assert response.status_code == 422, response.text  # as dvrl value --method refuses them
        problem = response.json()
        assert problem["type"] == "/problems/validation-error"
        assert problem["errors"][0]["field"] == next(iter(options))
        assert problem["errors"][0]["message"].startswith("an option of method dvrl, not of "
                                                          "data_oob")
    # a baseline job's spec as GET shows it (predictor null, the default dvrl block) is sent
    # again as it is: those defaults are not options given
    made = client.post("/v1/jobs", json=baseline | {"method": "data_oob"})
    assert made.status_code == 202, made.text
    shown = client.get(f"/v1/jobs/{made.json()['id']}").json()["spec"]
    assert shown["predictor"] is None and shown["dvrl"]["iterations"] > 0
    again = client.post("/v1/jobs", json=shown)
    assert again.status_code == 202, again.text
    assert again.json()["spec"] == shown
    for job in (made, again):
        assert client.post(f"/v1/jobs/{job.json()['id']}:cancel").status_code == 202
    response = client.post("/v1/jobs", json=spec | {"ensemble": 21})  # 20 jobs in flight
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "ensemble"
    assert {j["state"] for j in client.get("/v1/jobs").json()["items"]} == {"CANCELLED"}


def test_each_member_counts_towards_the_jobs_in_flight(client, tables):
    spec = _spec(client, tables)
    assert client.post("/v1/jobs", json=spec | {"ensemble": 12}).status_code == 202
    assert client.post("/v1/jobs", json=spec | {"ensemble": 8}).status_code == 202
    refused = client.post("/v1/jobs", json=spec)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
