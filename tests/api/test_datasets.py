from __future__ import annotations

import hashlib

import pandas as pd

from tests.conftest import csv_bytes, upload

PROBLEM = "application/problem+json"


def test_upload_csv_describes_the_table(client, tables):
    train, _ = tables
    body = csv_bytes(train)
    response = client.post("/v1/datasets", files={"file": ("train.csv", body)})
    assert response.status_code == 201
    dataset = response.json()
    assert response.headers["location"] == f"/v1/datasets/{dataset['id']}"
    assert dataset["rows"] == 360 and dataset["n_columns"] == train.shape[1]
    assert dataset["sha256"] == hashlib.sha256(body).hexdigest()
    types = {c["name"]: c["type"] for c in dataset["columns"]}
    assert types["x0"] == "number" and types["label"] == "string"
    assert client.get(f"/v1/datasets/{dataset['id']}").json() == dataset


def test_upload_parquet(client, tables, tmp_path):
    train, _ = tables
    train.to_parquet(tmp_path / "t.parquet")
    response = client.post("/v1/datasets",
                           files={"file": ("t.parquet", (tmp_path / "t.parquet").read_bytes())})
    assert response.status_code == 201 and response.json()["rows"] == 360


def test_list_pages_with_tokens_and_delete(client, tables):
    train, _ = tables
    ids = [upload(client, train.head(20)) for _ in range(3)]
    first = client.get("/v1/datasets", params={"page_size": 2}).json()
    assert len(first["items"]) == 2 and first["next_page_token"]
    second = client.get("/v1/datasets", params={"page_size": 2,
                                                "page_token": first["next_page_token"]}).json()
    seen = [d["id"] for d in first["items"] + second["items"]]
    assert sorted(seen) == sorted(ids) and second["next_page_token"] is None
    assert client.delete(f"/v1/datasets/{ids[0]}").status_code == 204
    missing = client.get(f"/v1/datasets/{ids[0]}")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["type"] == "/problems/not-found"


def test_datasets_are_found_by_the_digest_of_their_file(client, tables):
    """A client asks whether a table is here already before sending it again."""
    train, _ = tables
    body = csv_bytes(train.head(30))
    made = [client.post("/v1/datasets", files={"file": (name, body)}).json()["id"]
            for name in ("a.csv", "b.csv")]
    upload(client, train.head(31))  # other bytes
    digest = hashlib.sha256(body).hexdigest()
    for given in (digest, digest.upper()):
        found = client.get("/v1/datasets", params={"sha256": given}).json()["items"]
        assert [d["id"] for d in found] == made[::-1]  # newest first
    assert client.get("/v1/datasets", params={"sha256": "0" * 64}).json()["items"] == []
    refused = client.get("/v1/datasets", params={"sha256": "abc"})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["errors"][0]["field"] == "sha256"


def test_bad_uploads_are_problems_not_500s(client):
    cases = {
        "empty.csv": b"",
        "header-only.csv": b"a,b,c\n",
        "dup.csv": b"a,a\n1,2\n",
        "broken.parquet": b"PAR1 this is not parquet",
        "ragged.csv": b"a,b\n1,2\n3,4,5\n",
    }
    for name, body in cases.items():
        response = client.post("/v1/datasets", files={"file": (name, body)})
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/bad-upload"
    response = client.post("/v1/datasets", data={"not_file": "x"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"


def test_pandas_round_trip_of_types(client):
    frame = pd.DataFrame({"flag": [True, False, True], "when": pd.date_range("2024-01-01",
                                                                              periods=3),
                          "n": [1, 2, 3]})
    dataset = client.post("/v1/datasets", files={"file": ("t.csv", csv_bytes(frame))}).json()
    types = {c["name"]: c["type"] for c in dataset["columns"]}
    assert types == {"flag": "boolean", "when": "datetime", "n": "integer"}


def test_a_wider_type_after_the_first_block_is_accepted(client, monkeypatch):
    from service import tabular

    monkeypatch.setattr(tabular, "SLICE_BYTES", 1024)  # so the change comes slices later
    body = b"n,label\n" + b"1,a\n" * 2000 + b"2.5,b\n"
    response = client.post("/v1/datasets", files={"file": ("late.csv", body)})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["rows"] == 2001
    assert {c["name"]: c["type"] for c in dataset["columns"]}["n"] == "number"
