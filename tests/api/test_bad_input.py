"""A corpus of bad uploads and specs: each gets a clear 4xx problem (or, for data that can only
be judged by training, a FAILED job that says why) and never a 500, a traceback or a stuck job."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest

from service.runner import run_job
from tests.conftest import csv_bytes, upload


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


GOOD_PARQUET = _parquet(pd.DataFrame({"x": np.arange(1000.0), "label": [0, 1] * 500}))
# a filter that matched nothing, exported: one row group of no rows, its page offsets left at 0
EMPTY_PARQUET = _parquet(pd.DataFrame({"x": pd.Series([], dtype=float),
                                       "label": pd.Series([], dtype=int)}))


def _bomb() -> bytes:
    """A few kB of Parquet that expand to 20M rows of zeros."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    table = pa.table({"x": pa.array(np.zeros(2_000_000)), "label": pa.array(np.zeros(2_000_000))})
    with pq.ParquetWriter(buffer, table.schema, compression="zstd") as writer:
        for _ in range(10):
            writer.write_table(table)
    return buffer.getvalue()


BAD_UPLOADS = {
    "empty": (b"", "empty"),
    "header only": (b"a,b,label\n", "no rows"),
    "parquet of no rows": (EMPTY_PARQUET, "no rows"),
    "ragged rows": (b"a,b\n1,2\n3,4,5\n", "columns"),
    "non-UTF-8 bytes": (b"name,label\n" + "caf\u00e9".encode("latin-1") + b",1\n", "UTF-8"),
    "a header not in UTF-8": ("gr\u00f6\u00dfe,label\n1,0\n2,1\n".encode("latin-1"), "UTF-8"),
    "UTF-16 text": ("a\tlabel\n1\t0\n2\t1\n".encode("utf-16"), "UTF-16 text"),
    "duplicate column names": (b"a,a,label\n1,2,3\n", "duplicate"),
    "names that repeat without their spaces": (
        b"a, a ,label\n1,2,3\n", "duplicate column names once the spaces around them are "
        "dropped: 'a', ' a '"),
    "empty column name": (b"a,,label\n1,2,3\n", "column [2] (counting from 1) has no name; "
                          "name them"),
    # an export's trailing delimiters: said as such, counted from 1 (it said "positions [2, 3]")
    "trailing delimiters": (b"a,label,,\n1,0,,\n2,1,,\n", "columns [3, 4] (counting from 1) "
                            "have no name: delimiters at the end of the header line"),
    "10k+1 columns": (",".join(f"c{i}" for i in range(10_001)).encode() + b"\n" +
                      ",".join("1" * 10_001).encode() + b"\n", "columns"),
    "truncated parquet": (GOOD_PARQUET[: len(GOOD_PARQUET) // 2], "cannot read"),
    "corrupt parquet": (b"PAR1" + b"\x00garbage" * 100 + b"PAR1", "cannot read"),
    "compressed-size bomb": (_bomb(), "rows"),
    "binary junk": (bytes(range(256)) * 40, "cannot read"),
    "gzip-compressed CSV": (gzip.compress(b"a,label\n1,0\n2,1\n" * 50), "gzip-compressed"),
    # named for what they are, not as a CSV's parse error or "zip-compressed"
    "an Excel workbook": (b"PK\x03\x04" + bytes(200), "export the sheet as CSV", "t.xlsx"),
    "an old Excel workbook": (b"\xd0\xcf\x11\xe0" + bytes(200), "spreadsheet workbook"),
    "a JSON file": (b'[{"a": 1, "label": 0}]', "the file is JSON", "t.json"),
    # a column of tags, its target option "<svg xmlns=..."
    "an SVG named .csv": (b'<svg xmlns="http://www.w3.org/2000/svg">\n<rect x="0"/>\n' * 3
                          + b"</svg>\n", "XML or HTML markup"),
    "a web page": (b"\n<!DOCTYPE html>\n<html><body>Sign in</body></html>\n", "markup"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_are_clear_4xx_problems(client, case, monkeypatch):
    from service.settings import get_settings

    monkeypatch.setenv("DVRL_MAX_ROWS", "1000000")
    get_settings.cache_clear()
    body, words, *named = BAD_UPLOADS[case]
    name = named[0] if named else "t.parquet" if "parquet" in case or "bomb" in case else "t.csv"
    response = client.post("/v1/datasets", files={"file": (name, body)})
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert words.lower() in problem["detail"].lower(), (case, problem)
    assert "Traceback" not in response.text
    assert client.get("/v1/datasets").json()["items"] == []  # nothing stored


# Starlette leaves the temporary file of a part cut off before its end unclosed (CPython closes
# it as it drops it, with a ResourceWarning)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_unparsable_multipart_body_says_what_to_send(client):
    name = "a" * 5_000 + ".csv"  # the part's headers over python-multipart's 4 KB
    response = client.post("/v1/datasets", files={"file": (name, b"x,label\n1,0\n")})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-multipart"
    assert "a very long file name" in response.json()["detail"]
    # a body cut before its closing boundary, a part named otherwise, a CSV sent raw: each
    # was "file: Field required"
    cut = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n'
           b'Content-Type: text/csv\r\n\r\nx,label\n1,0\n')
    for body, kind, said in (
            (cut, "multipart/form-data; boundary=xyz", "to its closing boundary"),
            (cut.replace(b'name="file"', b'name="table"') + b"\r\n--xyz--\r\n",
             "multipart/form-data; boundary=xyz", "no complete part named 'file'"),
            (b"x,label\n1,0\n", "text/csv", "this request says 'text/csv'")):
        response = client.post("/v1/datasets", content=body, headers={"content-type": kind})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "file"
        assert said in response.json()["detail"]
    assert client.get("/v1/datasets").json()["items"] == []


def test_empty_row_groups_among_full_ones_are_skipped(client):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"x": np.arange(100.0), "label": np.arange(100) % 2})
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, table.schema) as writer:
        for part in (table.slice(0, 0), table, table.slice(0, 0)):
            writer.write_table(part)
    response = client.post("/v1/datasets", files={"file": ("t.parquet", buffer.getvalue())})
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 100


def test_two_tables_in_one_upload_are_refused_not_one_dropped(client):
    response = client.post("/v1/datasets", files=[("file", ("a.csv", b"x,label\n1,0\n")),
                                                  ("file", ("b.csv", b"x,label\n2,1\n"))])
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "one table per upload" in response.json()["detail"]
    assert client.get("/v1/datasets").json()["items"] == []


def test_awkward_but_valid_uploads_are_accepted(client):
    cases = {
        "semicolons": (b"a;b;label\n1;2;x\n3;4;y\n", {"a", "b", "label"}),
        "tabs": (b"a\tb\tlabel\n1\t2\tx\n", {"a", "b", "label"}),
        "quoted newlines": (b'a,note,label\n1,"two\nlines",x\n', {"a", "note", "label"}),
        "mixed types": (b"a,label\n1,x\ntwo,y\n3.5,x\n", {"a", "label"}),
        "NaN and inf": (b"a,label\nnan,x\ninf,y\n-inf,x\n1e308,y\n", {"a", "label"}),
        "formula cells": (b"a,label\n=1+2,x\n@SUM(A1),y\n", {"a", "label"}),
        "spaces around names": (b"a , b, label\n1, 2, x\n", {"a", "b", "label"}),
        "decimal commas": (b"a;b;label\n1,5;2;x\n-3,25;4;y\n", {"a", "b", "label"}),
    }
    for case, (body, columns) in cases.items():
        response = client.post("/v1/datasets", files={"file": (f"{case}.csv", body)})
        assert response.status_code == 201, (case, response.text)
        assert {c["name"] for c in response.json()["columns"]} == columns, case
    response = client.post("/v1/datasets", files={"file": ("d.csv", cases["decimal commas"][0])})
    types = {c["name"]: c["type"] for c in response.json()["columns"]}
    assert types == {"a": "number", "b": "integer", "label": "string"}  # numbers, not text


def test_path_like_file_names_are_reduced_to_a_name(client):
    for name, expected in (("../../etc/passwd.csv", "passwd.csv"),
                           ("C:\\Users\\me\\t.csv", "t.csv"), ("/abs/t.csv", "t.csv")):
        response = client.post("/v1/datasets", files={"file": (name, b"a,label\n1,x\n")})
        assert response.status_code == 201 and response.json()["filename"] == expected


def _table(n=300, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2],
                         "label": np.where(x[:, 0] + rng.standard_normal(n) > 0, "yes", "no")})


def _spec(client, train, valid, **extra) -> dict:
    return {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)},
            "dvrl": {"iterations": 20, "rollouts": 4}, "evaluations": []} | extra


BAD_SPECS = {
    "wrong type": {"seed": "zero"},
    "negative iterations": {"dvrl": {"iterations": -5}},
    "huge iterations": {"dvrl": {"iterations": 10**12}},
    "unknown field": {"learning_rte": 0.1},
    "unknown nested field": {"dvrl": {"iteratons": 5}},
    "fraction out of range": {"validation": {"fraction": 1.5}},
    "both validation kinds": {"validation": {"fraction": 0.2, "dataset_id": "x"}},
    "unknown predictor": {"predictor": "xgboost"},
    "missing target column": {"target": "income"},
    "unknown id column": {"id_column": "customer"},
    "unknown feature": {"features": ["x0", "nope"]},
    "null target": {"target": None},
    "label noise of 1": {"label_noise": 1.0},
    "unknown shift setting": {"dvrl": {"shift": "sometimes"}},
    # a feature named 200,000 times once kept a worker busy for minutes
    "a feature named twice": {"features": ["x0", "x1", "x0"]},
    "no features": {"features": []},
    "true for a number": {"dvrl": {"iterations": True}},
    "false for a seed": {"seed": False},
    # pydantic reads "2" as 2: a client sending strings has a bug it should see
    "a string for a number": {"ensemble": "2"},
    "a string for a nested number": {"dvrl": {"learning_rate": "0.01"}},
    "the target as a feature": {"features": ["x0", "label"]},
    # accepted, then failed as repeated ids once it ran
    "the target as the id column": {"id_column": "label"},
    # a form's "a validation table" with none picked: was a job that failed later
    "an empty validation dataset id": {"validation": {"dataset_id": ""}},
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_are_422_with_the_fields(client, case):
    spec = _spec(client, _table(), _table(seed=1)) | BAD_SPECS[case]
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, (case, response.text)
    problem = response.json()
    assert problem["errors"], problem
    assert client.get("/v1/jobs").json()["items"] == []


def test_a_problem_does_not_repeat_a_huge_input_in_full(client):
    """A 900 KB target name came back twice in a 1.8 MB answer."""
    spec = _spec(client, _table(), _table(seed=1))
    for huge, field in (({"target": "t" * 900_000}, "target"), ({"x" * 100_000: 1}, "xxxxx")):
        response = client.post("/v1/jobs", json=spec | huge)
        assert response.status_code == 422 and len(response.content) < 20_000
        problem = response.json()
        assert problem["errors"][0]["field"].startswith(field)  # still named
        assert all(len(e["message"]) <= 2100 for e in problem["errors"])
        assert len(problem["detail"]) <= 2100
    # 20,000 wrong evaluations in 200 KB were a 5 MB answer: the first 50 are listed
    response = client.post("/v1/jobs", json=spec | {"evaluations": ["nope"] * 20_000})
    assert response.status_code == 422 and len(response.content) < 50_000
    problem = response.json()
    assert len(problem["errors"]) == 50 and problem["errors"][0]["field"] == "evaluations.0"
    assert problem["detail"].endswith("(the first 50 of 20000 errors are listed)")
    # a body over 1 MiB is a request too large, not an upload
    response = client.post("/v1/jobs", json=spec | {"target": "t" * (1 << 20)})
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/request-too-large"


def test_a_validation_table_without_a_feature_is_422_naming_it(client):
    """Caught when the job is posted, not by a failed job later: the validation table lacks a
    column the training rows are valued on."""
    spec = _spec(client, _table(), _table(seed=1).drop(columns=["x2"]))
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == "validation.dataset_id"
    assert "no column 'x2' in the dataset of validation.dataset_id" in problem["detail"]
    # with features that leave it out, the same tables make a job
    spec["features"] = ["x0", "x1"]
    assert client.post("/v1/jobs", json=spec).status_code == 202


def _failed_or_succeeded(client, spec) -> dict:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert run_job(job_id) in ("SUCCEEDED", "FAILED")  # ends: never stuck
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert "Traceback" not in str(job)
    return job


@pytest.mark.parametrize("case", ["one class", "constant target", "all-empty target",
                                  "some empty labels"])
def test_targets_that_cannot_be_learned_fail_with_a_reason(client, case):
    train, valid = _table(), _table(seed=1)
    if case == "one class":
        train["label"] = "yes"
    elif case == "constant target":
        train["label"] = 1.0
        valid["label"] = 1.0
    elif case == "all-empty target":
        train["label"] = np.nan
    else:  # empty fields in a text column: missing, not a class named ""
        train.loc[[3, 8], "label"] = None
    job = _failed_or_succeeded(client, _spec(client, train, valid))
    assert job["state"] == "FAILED", job
    assert job["error"]["status"] == 422 and job["error"]["detail"], job["error"]
    if case == "some empty labels":
        assert "empty in 2 training rows" in job["error"]["detail"], job["error"]
    values = client.get(f"/v1/jobs/{job['id']}/values")
    assert values.status_code == 409
    assert "FAILED and has no results; its error says why" in values.json()["detail"]


def test_a_body_that_is_not_json_is_said_to_be_so(client):
    response = client.post("/v1/jobs", content=b'{"target": "label", not json',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"].startswith("the body is not valid JSON")
    assert response.json()["errors"][0]["field"] == "body"
    # JSON too deep for the parser, a number of 5,000 digits: a 400 "error parsing the body"
    # named nothing; 1e30 as the seed spoke of parsing an "input string"
    spec = _spec(client, _table(), _table(seed=1))
    for body in (b"[" * 100_000 + b"]" * 100_000,
                 json.dumps(spec)[:-1].encode() + b', "seed": ' + b"9" * 5000 + b"}"):
        response = client.post("/v1/jobs", content=body,
                               headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "body"
        assert "nests too deeply or holds a number" in response.json()["detail"]
    response = client.post("/v1/jobs", json=spec | {"seed": 1e30})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "seed", "message": "a whole number is needed, and this one is far too large"}]
    assert client.get("/v1/jobs").json()["items"] == []


def test_json_sent_as_a_form_or_with_nan_is_said_to_be_so(client):
    """curl -d sends a form's content type: the answer spoke of "a valid dictionary"; a NaN
    fraction was "should be less than 1"."""
    spec = b'{"dataset_id": "x", "target": "label", "validation": {"fraction": 0.2}}'
    for kind in ("application/x-www-form-urlencoded", "text/plain", None):
        response = client.post("/v1/jobs", content=spec,
                               headers={"content-type": kind} if kind else {})
        assert response.status_code == 422
        assert response.json()["detail"] == (
            "send the body as JSON with Content-Type: application/json (this request says "
            f"{kind or 'no content type'!r})")
    for number in (b"NaN", b"Infinity"):
        response = client.post("/v1/jobs", content=spec.replace(b"0.2", number),
                               headers={"content-type": "application/json"})
        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error == {"field": "validation.fraction",
                         "message": "Input should be a finite number"}


def test_extreme_values_and_many_categories_end_cleanly(client):
    train, valid = _table(2000), _table(seed=1)
    train.loc[::7, "x1"] = np.inf
    train.loc[::11, "x2"] = np.nan
    train.loc[::13, "x0"] = 1e300
    train["many"] = [f"cat{i}" for i in range(len(train))]  # a level per row
    valid["many"] = "cat0"
    job = _failed_or_succeeded(client, _spec(client, train, valid))
    if job["state"] == "FAILED":  # allowed, if it says why in the user's terms
        assert job["error"]["status"] == 422, job["error"]
    else:
        assert job["summary"]["rows"] == 2000


def test_formula_cells_are_neutralised_in_csv_downloads(client):
    train = _table()
    names = ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@A1", "\tcmd"] * 60
    train.insert(0, "name", [f"{n}{i}" for i, n in enumerate(names)])
    spec = _spec(client, train, _table(seed=1), id_column="name")
    job = _failed_or_succeeded(client, spec)
    assert job["state"] == "SUCCEEDED", job
    text = client.get(f"/v1/jobs/{job['id']}/values", params={"format": "csv"}).text
    rows = pd.read_csv(io.StringIO(text), keep_default_na=False)["row"]
    assert len(rows) == 300 and rows.str.startswith("'").all()  # quoted: shown as text


def test_negative_numbers_in_csv_downloads_stay_numbers(client):
    """-1.2e-06 began with a minus and was quoted like a formula: a numeric target read back
    as text."""
    train, valid = _table(n=120, seed=3), _table(n=80, seed=4)
    for frame in (train, valid):
        frame["label"] = (frame["x0"] + frame["x1"]) * 1e-6  # a regression, most cells < 0
    job = _failed_or_succeeded(client, _spec(client, train, valid))
    assert job["state"] == "SUCCEEDED", job
    text = client.get(f"/v1/jobs/{job['id']}/values", params={"format": "csv"}).text
    labels = pd.read_csv(io.StringIO(text))["label"]
    assert labels.dtype == np.float64 and (labels < 0).any() and "e-" in text


def test_a_column_with_100k_distinct_categories(client):
    rng = np.random.default_rng(0)
    n = 100_000
    train = pd.DataFrame({"x0": rng.standard_normal(n), "code": [f"k{i}" for i in range(n)]})
    train["label"] = np.where(train["x0"] + rng.standard_normal(n) > 0, "yes", "no")
    response = client.post("/v1/datasets", files={"file": ("wide.csv", csv_bytes(train))})
    assert response.status_code == 201
    spec = {"dataset_id": response.json()["id"], "target": "label",
            "validation": {"fraction": 0.02}, "evaluations": [],
            "dvrl": {"iterations": 3, "rollouts": 2, "batch_size": 512}}
    job = _failed_or_succeeded(client, spec)
    assert job["state"] == "SUCCEEDED", job  # encoded over its 100 most frequent levels
    assert job["summary"]["rows"] == 98_000
