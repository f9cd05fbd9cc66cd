"""The client against the real service (a `dvrl serve` process, PostgreSQL, Redis and a real
Celery worker): the whole valuation in one call, step by step, typed errors, the async twin."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from dvrl_client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    NotFound,
    Unauthorized,
    WaitTimeout,
)
from tests.client.conftest import dvrl_value


def test_value_returns_the_table_dvrl_value_writes(server, key, celery_worker, table_files,
                                                   tmp_path):
    train = pd.read_csv(table_files[0])  # a DataFrame with the types dvrl value reads
    with Client(server.url, api_key=key) as client:
        remote = client.value(train, target="label", valid=table_files[1], seed=0,
                              id_column="customer", label_noise=0.2, dvrl={"iterations": 30},
                              progress=False)
    local = dvrl_value(str(table_files[0]), "--target", "label", "--valid",
                       str(table_files[1]), "--seed", "0", "--id-column", "customer",
                       "--inject-noise", "0.2", "--iterations", "30", "--quiet",
                       "--out", str(tmp_path / "local.csv"))
    assert local.returncode == 0, local.stderr
    expected = pd.read_csv(tmp_path / "local.csv")
    assert list(remote.columns) == list(expected.columns) == [
        "row", "value", "rank", "label", "noise_injected"]
    assert remote["row"].tolist() == expected["row"].tolist()  # input order, ids as given
    assert remote["label"].tolist() == expected["label"].tolist()  # the flipped labels
    assert remote["noise_injected"].tolist() == expected["noise_injected"].tolist()
    np.testing.assert_allclose(remote["value"], expected["value"], atol=1e-6)
    assert remote["rank"].tolist() == expected["rank"].tolist()
    assert remote.attrs["summary"]["label_noise"]["flipped"] == 72
    with Client(server.url, api_key=key) as client:
        assert client.job(remote.attrs["job_id"]).state == "SUCCEEDED"
        # run again, the tables are not sent again: the service has them (same bytes, name)
        uploaded = {d.id for d in client.datasets()}
        again = client.value(train, target="label", valid=table_files[1], seed=1,
                             id_column="customer", dvrl={"iterations": 30}, progress=False)
        assert {d.id for d in client.datasets()} == uploaded
        spec = client.job(again.attrs["job_id"]).spec
        assert {spec["dataset_id"], spec["validation"]["dataset_id"]} <= uploaded
        # the same bytes under another name are a table of their own
        copy = tmp_path / "valid-copy.csv"
        copy.write_bytes(table_files[1].read_bytes())
        renamed = client.value(train, target="label", valid=copy, seed=1,
                               id_column="customer", method="leave_one_out", progress=False)
        assert len({d.id for d in client.datasets()} - uploaded) == 1
        assert len(renamed) == len(train)


def test_an_integer_regression_target_comes_back_as_integers(server, key, celery_worker, tables):
    """As `dvrl value` gives it (the labels came back as 12.0 for 12)."""
    train, valid = (frame.assign(count=(frame["x0"] * 4).round().astype(int) + 20)
                    .drop(columns="label") for frame in tables)
    with Client(server.url, api_key=key) as client:
        remote = client.value(train, target="count", valid=valid, task="regression",
                              method="knn_shapley", id_column="customer", progress=False)
    assert remote["label"].dtype == np.int64
    assert remote["label"].tolist() == train["count"].tolist()
    assert remote["row"].tolist() == train["customer"].tolist()


def test_upload_submit_wait_and_every_result(server, key, celery_worker, tables, table_files):
    with Client(server.url, api_key=key) as client:
        train = client.upload(table_files[0])  # a CSV file, streamed
        valid = client.upload(tables[1])  # a DataFrame, sent as Parquet
        assert (train.rows, valid.rows) == (360, 140)
        assert valid.filename == "dataframe.parquet"
        assert train.column_types() == valid.column_types()
        assert train.column_types()["x0"] == "number"
        job = client.submit({"dataset_id": train.id, "target": "label",
                             "validation": {"dataset_id": valid.id}},
                            label_noise=0.2, dvrl={"iterations": 30},
                            evaluations=["removal"])
        assert job.state == "QUEUED" and not job.done
        job.wait(progress=False)
        assert job.state == "SUCCEEDED" and job.status() == "SUCCEEDED"

        values = job.values()
        assert list(values.columns) == ["row", "value", "rank", "label", "flagged",
                                        "noise_injected"]
        assert values["row"].tolist() == list(range(360))  # row numbers, as integers
        assert sorted(values["rank"]) == list(range(1, 361))
        corrupted = job.corrupted()
        assert len(corrupted) == values["flagged"].sum() == 72  # label_noise 0.2 flags 20%
        assert corrupted["rank"].tolist() == list(range(1, 73))
        assert corrupted["noise_injected"].mean() > 0.5  # flipped labels rank low
        curves = job.curves()
        assert set(curves) == {"reward_trace", "removal", "discovery"}
        assert len(curves["reward_trace"]) == 30
        assert curves["removal"].attrs["metric"] and "remove_lowest" in curves["removal"]

        job.delete()
        with pytest.raises(NotFound):
            job.refresh()
        assert client.jobs() == []
        assert client.dataset(valid.id) == valid
        assert client.datasets() == [valid, train]  # newest first
        client.delete_dataset(valid.id)
        with pytest.raises(NotFound):
            client.dataset(valid.id)
        assert client.datasets() == [train]


def test_wait_shows_iteration_reward_and_eta_while_the_job_trains(server, key, celery_worker,
                                                                  table_files, capsys):
    with Client(server.url, api_key=key) as client:
        train = client.upload(table_files[0])
        job = client.submit(dataset_id=train.id, target="label", validation={"fraction": 0.2},
                            dvrl={"iterations": 100_000, "rollouts": 8, "tolerance": 0})
        seen: list = []
        while not any(p.phase == "training" and p.iteration for p in seen):
            with pytest.raises(WaitTimeout):  # it trains for minutes: wait a second at a time
                job.wait(progress=seen.append, timeout=1)
        training = [p for p in seen if p.phase == "training" and p.iteration]
        assert training[-1].total == 100_000 and training[-1].reward is not None
        # the job as the last poll saw it (it stayed as submitted: QUEUED, no progress)
        assert job.state == "RUNNING" and job.progress.phase == "training"
        assert job.progress.iteration >= training[-1].iteration
        assert training[-1].eta_s is not None and training[-1].elapsed_s is not None
        with pytest.raises(WaitTimeout):
            job.wait(timeout=1)  # the default: a tqdm bar on standard error
        bar = capsys.readouterr().err
        assert f"job {job.id[:8]} training" in bar and "/100000" in bar
        assert "reward" in bar and "ETA" in bar
        job.cancel()
        with pytest.raises(JobCancelled):
            job.wait(progress=False)


def test_every_problem_is_a_typed_error(server, key, celery_worker, table_files):
    with Client(server.url, api_key=key) as client:
        train = client.upload(table_files[0])
        with pytest.raises(InvalidRequest) as bad:
            client.submit(dataset_id=train.id, target="label", validation={"fraction": 0.2},
                          dvrl={"iterations": 0})
        assert bad.value.status == 422 and bad.value.type == "/problems/validation-error"
        assert [e["field"] for e in bad.value.errors] == ["dvrl.iterations"]
        assert "dvrl.iterations" in str(bad.value)
        with pytest.raises(NotFound) as unknown:
            client.job("no-such-job")
        assert unknown.value.type == "/problems/not-found" and "no-such-job" in \
            unknown.value.detail

        long = client.submit(dataset_id=train.id, target="label", validation={"fraction": 0.2},
                             dvrl={"iterations": 100_000, "rollouts": 8, "tolerance": 0})
        with pytest.raises(Conflict):
            long.values()  # no results before it succeeded
        long.cancel()
        with pytest.raises(JobCancelled) as cancelled:
            long.wait(progress=False)
        assert cancelled.value.job_id == long.id and long.state == "CANCELLED"

        failing = client.submit(dataset_id=train.id, target="cat0", task="regression",
                                validation={"fraction": 0.2})  # strings as a number
        with pytest.raises(JobFailed) as failed:
            failing.wait(progress=False)
        assert failed.value.status == 422 and failed.value.type.startswith("/problems/")
        assert "must be numeric" in failed.value.detail and failing.state == "FAILED"
    with Client(server.url) as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.jobs()
    assert refused.value.status == 401


def test_the_async_client_is_a_twin(server, key, celery_worker, tables, table_files):
    train, valid = tables
    spec = {"seed": 1, "label_noise": 0.2, "dvrl": {"iterations": 20}}

    async def scenario():
        async with AsyncClient(server.url, api_key=key) as client:
            table = await client.value(table_files[0], target="label", valid=valid,
                                       progress=False, **spec)
            uploaded = await client.upload(train)
            job = await client.submit(dataset_id=uploaded.id, target="label",
                                      validation={"fraction": 0.3}, dvrl={"iterations": 10})
            await job.wait(progress=False)
            values, curves = await job.values(), await job.curves()
            with pytest.raises(NotFound):
                await client.job("no-such-job")
            return table, job, values, curves

    table, job, values, curves = asyncio.run(scenario())
    assert job.state == "SUCCEEDED" and len(values) == 252 and "reward_trace" in curves
    with Client(server.url, api_key=key) as client:  # the same call, blocking: the same table
        blocking = client.value(table_files[0], target="label", valid=valid, progress=False,
                                **spec)
    pd.testing.assert_frame_equal(table, blocking)


def test_an_integer_id_column_comes_back_as_dvrl_value_gives_it(server, key, celery_worker,
                                                                 tables, tmp_path):
    """From a CSV file, as written (dvrl value reads a CSV's id column as text: it was int64
    from the client, text from the command line); from a DataFrame, as the frame holds it.
    A test table given is used, as dvrl value --test uses it."""
    train, valid = (frame.drop(columns="customer") for frame in tables)
    train = train.assign(uid=np.arange(1000, 1000 + len(train)))
    valid = valid.assign(uid=np.arange(len(valid)))
    train.to_csv(tmp_path / "train.csv", index=False)
    valid.to_csv(tmp_path / "valid.csv", index=False)
    with Client(server.url, api_key=key) as client:
        from_file = client.value(tmp_path / "train.csv", target="label",
                                 valid=tmp_path / "valid.csv", id_column="uid",
                                 method="knn_shapley", progress=False,
                                 test=tmp_path / "valid.csv")
        # a test table is used: the removal test runs on it (it was uploaded, then unused)
        assert "removal" in client.job(from_file.attrs["job_id"]).curves()
        from_frame = client.value(train, target="label", valid=valid, id_column="uid",
                                  method="knn_shapley", progress=False)
    local = dvrl_value(str(tmp_path / "train.csv"), "--target", "label", "--valid",
                       str(tmp_path / "valid.csv"), "--id-column", "uid", "--method",
                       "knn_shapley", "--quiet", "--out", str(tmp_path / "local.parquet"))
    assert local.returncode == 0, local.stderr
    expected = pd.read_parquet(tmp_path / "local.parquet")["row"]
    assert from_file["row"].tolist() == expected.tolist() == [str(i) for i in train["uid"]]
    assert from_frame["row"].dtype == np.int64
    assert from_frame["row"].tolist() == train["uid"].tolist()
