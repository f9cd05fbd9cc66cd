from __future__ import annotations

import io

import pandas as pd

from service.runner import run_job
from tests.conftest import upload


def _succeeded_job(client, tables) -> str:
    train, valid = tables
    train = train.copy()
    train.loc[0, "customer"] = "=HYPERLINK(\"http://x\")"  # a formula cell
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "id_column": "customer",
            "label_noise": 0.2, "dvrl": {"iterations": 40, "rollouts": 8}, "evaluations": []}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    return job_id


def test_values_pages_in_rank_and_row_order_and_downloads(client, tables):
    job_id = _succeeded_job(client, tables)
    seen, token = [], None
    while True:
        params = {"page_size": 100} | ({"page_token": token} if token else {})
        page = client.get(f"/v1/jobs/{job_id}/values", params=params).json()
        seen += page["items"]
        token = page["next_page_token"]
        if token is None:
            break
    assert [v["rank"] for v in seen] == list(range(1, 361))
    values = [v["value"] for v in seen]
    assert values == sorted(values)
    by_row = client.get(f"/v1/jobs/{job_id}/values", params={"order": "row",
                                                              "page_size": 5}).json()
    assert [v["row"] for v in by_row["items"][1:]] == ["c0001", "c0002", "c0003", "c0004"]

    csv = client.get(f"/v1/jobs/{job_id}/values", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(csv.text))
    assert list(table.columns[:3]) == ["row", "value", "rank"] and len(table) == 360
    assert table["row"].iloc[0].startswith("'=")  # neutralised for spreadsheets
    assert table["row"].iloc[1] == "c0001"
    parquet = client.get(f"/v1/jobs/{job_id}/values", params={"format": "parquet"})
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(frame) == 360 and frame["noise_injected"].sum() == 72
    # a download in rank order was silently in row order: refused, naming what it ignores
    for params in ({"format": "csv", "order": "rank"},
                   {"format": "parquet", "page_size": 10, "page_token": "x"}):
        refused = client.get(f"/v1/jobs/{job_id}/values", params=params)
        assert refused.status_code == 400, refused.text
        problem = refused.json()
        assert problem["type"] == "/problems/unused-parameter"
        assert [e["field"] for e in problem["errors"]] == [p for p in params if p != "format"]
        assert "applies to JSON pages" in problem["detail"]


def test_corrupted_lists_flagged_rows_lowest_first(client, tables):
    job_id = _succeeded_job(client, tables)
    rows = client.get(f"/v1/jobs/{job_id}/corrupted", params={"page_size": 1000}).json()
    assert len(rows["items"]) == 72 and all(r["flagged"] for r in rows["items"])
    assert [r["rank"] for r in rows["items"]] == list(range(1, 73))


def test_a_regression_job_with_label_noise_reports_the_moved_targets_it_found(client):
    """label_noise on a regression target moves that fraction of targets far (once refused):
    the summary counts them and the values rank most of them lowest; the trust check planted
    moved targets of its own."""
    from dvrl_core.datasets import make_table

    table = make_table(700, n_features=5, task="regression", random_state=4)
    spec = {"dataset_id": upload(client, table.iloc[:400]), "target": "label",
            "validation": {"dataset_id": upload(client, table.iloc[400:])},
            "label_noise": 0.2, "seed": 1, "evaluations": []}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    summary = client.get(f"/v1/jobs/{job_id}").json()["summary"]
    assert summary["task"] == "regression" and summary["label_noise"]["flipped"] == 80
    assert summary["label_noise"]["found_at_20"] > 0.6  # random: 0.2
    assert summary["trust"]["planted"]["flipped"] > 0
    flagged = client.get(f"/v1/jobs/{job_id}/corrupted", params={"page_size": 1000}).json()
    assert len(flagged["items"]) == 80


def test_a_job_validated_on_its_own_training_table_says_so(client, tables):
    """The same dataset as training and validation table: the job runs, and its summary warns
    that the validation rows are copies of training rows (a clean job's has no warning)."""
    train, valid = tables
    train_id = upload(client, train)
    runs = {}
    for name, valid_id in (("itself", train_id), ("apart", upload(client, valid))):
        spec = {"dataset_id": train_id, "target": "label", "validation": {"dataset_id": valid_id},
                "id_column": "customer",  # a value per row: as a feature, a warning of its own
                "dvrl": {"iterations": 20, "rollouts": 4}, "evaluations": []}
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        assert run_job(job_id) == "SUCCEEDED"
        runs[name] = client.get(f"/v1/jobs/{job_id}").json()["summary"]
    assert runs["itself"]["validation_copies"] == len(train)
    assert runs["itself"]["warnings"][0].startswith(
        f"{len(train)} of the {len(train)} validation rows (100%) repeat a training row")
    assert (runs["apart"]["validation_copies"], runs["apart"]["warnings"]) == (0, [])


def test_ids_written_with_leading_zeros_come_back_as_written(client, tables):
    """An uploaded CSV's column of digits was stored as numbers: 00042 came back as 42, and 007
    and 7 were one id (the job failed as repeated ids)."""
    train, valid = tables
    train = train.assign(customer=[f"{i:05d}" for i in range(len(train))])
    train.loc[7, "customer"] = "7"  # and 00007 is another row
    response = client.post("/v1/datasets", files={"file": ("t.csv", train.to_csv(index=False))})
    columns = {c["name"]: c["type"] for c in response.json()["columns"]}
    assert columns["customer"] == "string" and columns["x0"] != "string"
    spec = {"dataset_id": response.json()["id"], "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "id_column": "customer",
            "dvrl": {"iterations": 5}, "evaluations": []}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id) == "SUCCEEDED"
    text = client.get(f"/v1/jobs/{job_id}/values", params={"format": "csv"}).text
    rows = pd.read_csv(io.StringIO(text), dtype={"row": str})["row"]
    assert rows.tolist() == train["customer"].tolist()
