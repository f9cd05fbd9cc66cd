"""Upload bombs: small files that decode to far more than they weigh are refused before they are
decoded (from a Parquet footer or page headers, from a CSV header), or decoded in batches of
bounded size; legitimate files still come through unchanged.

Where a test says "before decoding", the file's data is spoiled (overwritten, or its compressed
pages made undecompressable) and the same file is shown to be unreadable under generous limits:
the refusal can only have come from what is left, the footer or the page headers. Where memory
is the point, the conversion runs in a child process and its peak resident memory is measured.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service import datasets, parquet_pages, parquet_upload, tabular
from service.errors import BadUpload
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GENEROUS = tabular.Limits(rows=10**9, columns=10**6, cells=10**12, decoded_bytes=1 << 40)


def _parquet(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


def _zeros(columns: int, rows: int) -> pa.Table:
    zeros = pa.array(np.zeros(rows))
    return pa.table({f"c{j}": zeros for j in range(columns)})


def _convert(body: bytes, limits: tabular.Limits = GENEROUS,
             name: str = "t.parquet") -> tuple[tabular.Summary, pa.Table]:
    target = io.BytesIO()
    summary = tabular.convert(io.BytesIO(body), name, target, limits=limits)
    return summary, tabular.read(target.getvalue())


def _refusal(body: bytes, name: str = "t.parquet", **settings) -> BadUpload:
    """The problem the API answers for ``body`` under ``settings``."""
    with pytest.raises(BadUpload) as caught:
        datasets._to_arrow(io.BytesIO(body), name, io.BytesIO(), Settings(**settings))
    assert caught.value.status == 422 and caught.value.slug == "bad-upload"
    return caught.value


def _spoil_data(body: bytes) -> bytes:
    """Everything between the leading magic and the footer overwritten: only the footer is
    left to read."""
    start = len(body) - 8 - int.from_bytes(body[-8:-4], "little")
    return body[:4] + b"\xff" * (start - 4) + body[start:]


def _spoil_pages(body: bytes) -> bytes:
    """Every zstd-compressed page made undecompressable; the page headers are left as they
    were."""
    start = len(body) - 8 - int.from_bytes(body[-8:-4], "little")
    spoiled = body[:start].replace(ZSTD_MAGIC, b"\0\0\0\0")
    assert spoiled != body[:start]
    return spoiled + body[start:]


def _unreadable(body: bytes) -> None:
    """``body`` cannot be decoded at all: a refusal of it did not decode it."""
    with pytest.raises(tabular.TableError) as caught:
        _convert(body)
    assert not isinstance(caught.value, tabular.LimitExceeded)


CHILD = """
import json, sys, tempfile
from pathlib import Path
from service import parquet_upload, tabular

def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10

path, options = sys.argv[1], json.loads(sys.argv[2])
for name, value in options["constants"].items():
    setattr(parquet_upload, name, value)
before = peak()
try:
    with open(path, "rb") as source, tempfile.TemporaryFile() as target:
        summary = tabular.convert(source, path, target, limits=tabular.Limits(**options["limits"]))
        outcome = f"{summary.rows} rows"
except tabular.TableError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
print(json.dumps({"growth": peak() - before, "outcome": outcome}))
"""


def _in_child(path: Path, limits: dict | None = None, **constants) -> tuple[int, str]:
    """Peak resident memory growth (bytes) of converting ``path`` in a fresh process, and the
    outcome (rows, or the error)."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    options = json.dumps({"limits": limits or {}, "constants": constants})
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), options], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    return result["growth"], result["outcome"]


# run-length-encoded wide all-zero columns: the measured bomb (3.3 MB -> 4.8 GB), small


def test_wide_zero_columns_are_refused_by_the_footer_through_the_api(client, monkeypatch):
    from service.settings import get_settings

    body = _parquet(_zeros(300, 20_000), compression="zstd")  # 6M cells in 100 kB
    monkeypatch.setenv("DVRL_MAX_CELLS", "1000000")
    get_settings.cache_clear()
    spoiled = _spoil_data(body)
    _unreadable(spoiled)
    response = client.post("/v1/datasets", files={"file": ("zeros.parquet", spoiled)})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("/bad-upload")
    assert problem["detail"] == ("6000000 cells (20000 rows x 300 columns); at most 1000000 "
                                 "cells (rows x columns) are accepted")
    assert client.get("/v1/datasets").json()["items"] == []


@pytest.mark.parametrize("settings, words", [
    ({"max_rows": 19_999}, "20000 rows; at most 19999 are accepted"),
    ({"max_columns": 299}, "300 columns; at most 299 are accepted"),
    ({"max_cells": 5_999_999}, "6000000 cells (20000 rows x 300 columns)"),
])
def test_rows_columns_and_cells_are_checked_from_the_footer(settings, words):
    body = _spoil_data(_parquet(_zeros(300, 20_000), compression="zstd"))
    _unreadable(body)
    assert words in str(_refusal(body, **settings))


# deep nesting


@pytest.mark.parametrize("build", ["deep struct", "long lists", "map"])
def test_nested_columns_are_refused_before_decoding(build):
    rows = 10
    if build == "deep struct":
        column = pa.array(np.zeros(rows))
        for _ in range(60):  # under pyarrow's own depth limit of 100
            column = pa.StructArray.from_arrays([column], ["f"])
    elif build == "long lists":  # 10 cells holding a million values each
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * 1_000_000)
        column = pa.ListArray.from_arrays(offsets, pa.array(np.zeros(rows * 1_000_000)))
    else:
        column = pa.array([[("k", 1.0)]] * rows, pa.map_(pa.string(), pa.float64()))
    body = _spoil_data(_parquet(pa.table({"nested": column, "x": np.zeros(rows)}),
                                compression="zstd"))
    _unreadable(body)
    detail = str(_refusal(body))
    assert "column 'nested' holds nested values" in detail
    assert "needs flat columns" in detail


def test_schemas_deeper_than_pyarrow_reads_are_refused_as_nested():
    column = pa.array(np.zeros(3))
    for _ in range(150):
        column = pa.StructArray.from_arrays([column], ["f"])
    detail = str(_refusal(_parquet(pa.table({"deep": column}))))
    assert "deeply nested" in detail and "needs flat columns" in detail


# many tiny row groups


def test_a_footer_of_many_tiny_row_groups_is_refused_unparsed(monkeypatch):
    body = _parquet(_zeros(3, 3000), row_group_size=1)  # 3,000 row groups: a 1 MB footer
    spoiled = _spoil_data(body)
    _unreadable(spoiled)
    monkeypatch.setattr(parquet_upload, "MAX_FOOTER_BYTES", 64 << 10)
    detail = str(_refusal(spoiled))
    assert "footer (its metadata) is" in detail and "at most 65536" in detail
    # under the limit the same file comes through whole
    monkeypatch.setattr(parquet_upload, "MAX_FOOTER_BYTES", 2 << 20)
    summary, table = _convert(body)
    assert summary.rows == 3000 and table.equals(pq.read_table(io.BytesIO(body)))


def test_too_many_pages_are_refused_from_their_headers(monkeypatch):
    body = _parquet(_zeros(2, 100_000), data_page_size=1024, use_dictionary=False,
                    compression="zstd")  # about 800 pages
    monkeypatch.setattr(parquet_pages, "MAX_PAGES", 100)
    detail = str(_refusal(_spoil_pages(body)))
    assert detail == "more than 100 pages; at most 100 are accepted (write larger pages)"


# a huge string: one enormous page, or a huge dictionary value repeated


def test_a_page_larger_than_the_limit_is_refused_from_its_header(monkeypatch):
    table = pa.table({"s": ["a" * (4 << 20)], "x": [1.0]})  # one 4 MiB value: one 4 MiB page
    body = _spoil_pages(_parquet(table, compression="zstd"))
    _unreadable(body)
    monkeypatch.setattr(parquet_pages, "MAX_PAGE_BYTES", 1 << 20)
    detail = str(_refusal(body))
    assert detail.startswith("a page of 419") and "at most 1048576 are accepted" in detail


def test_column_data_larger_than_the_limit_once_decompressed_is_refused_from_page_headers():
    table = _zeros(4, 250_000)  # 8 MB of zeros once decompressed, a few kB stored
    body = _spoil_pages(_parquet(table, compression="zstd", use_dictionary=False))
    _unreadable(body)
    detail = str(_refusal(body, max_decoded_bytes=4 << 20))
    assert "bytes once decompressed; at most 4194304 are accepted" in detail


def _dictionary_bomb(value_bytes: int, rows: int) -> bytes:
    """One long string as the only dictionary value, repeated on every row, stored without an
    Arrow schema so that it reads back as plain text (value_bytes x rows once decoded)."""
    indices = pa.array(np.zeros(rows, dtype=np.int32))
    column = pa.DictionaryArray.from_arrays(indices, pa.array(["a" * value_bytes]))
    return _parquet(pa.table({"s": column, "x": np.zeros(rows)}), compression="zstd",
                    store_schema=False)


def test_a_repeated_dictionary_string_is_measured_before_it_is_spelled_out(tmp_path):
    path = tmp_path / "dictionary.parquet"
    path.write_bytes(_dictionary_bomb(256 << 10, 4096))  # a few kB; 1 GiB once decoded
    assert path.stat().st_size < 100_000
    growth, outcome = _in_child(path, {"decoded_bytes": 64 << 20})
    assert outcome == ("LimitExceeded: the table is more than 67108864 bytes once decoded; at "
                       "most 67108864 are accepted")
    assert growth < 64 << 20, growth >> 20  # decoding it would take 1 GiB
    detail = str(_refusal(path.read_bytes(), max_decoded_bytes=64 << 20))
    assert "more than 67108864 bytes once decoded" in detail


def test_a_repeated_dictionary_string_within_the_limits_is_spelled_out_in_slices(monkeypatch):
    monkeypatch.setattr(parquet_upload, "BATCH_BYTES", 1 << 20)
    body = _dictionary_bomb(300 << 10, 50)  # 15 MB once decoded
    target = io.BytesIO()
    summary = tabular.convert(io.BytesIO(body), "t.parquet", target, limits=GENEROUS)
    batches = list(pa.ipc.open_stream(target.getvalue()))
    assert summary.rows == 50 and len(batches) >= 15  # a slice holds at most 3 such rows
    assert all(b.get_total_buffer_size() < 2 << 20 for b in batches)
    expected = pq.read_table(io.BytesIO(body))
    assert pa.Table.from_batches(batches).equals(expected)


def test_a_row_longer_than_the_limit_is_refused_before_it_is_spelled_out(monkeypatch):
    monkeypatch.setattr(parquet_upload, "MAX_ROW_BYTES", 1 << 20)
    body = _parquet(pa.table({"s": ["short", "b" * (2 << 20)]}), compression="zstd")
    detail = str(_refusal(body))
    assert detail.startswith("a row is 209") and "at most 1048576 are accepted" in detail


# one enormous row group, and wide row groups whose pages add up


def test_one_enormous_row_group_is_streamed_not_read_whole(tmp_path):
    rng = np.random.default_rng(0)
    table = pa.table({f"x{j}": rng.standard_normal(3_000_000) for j in range(8)})
    path = tmp_path / "one-group.parquet"
    pq.write_table(table, path, compression="none", row_group_size=3_000_000)  # 194 MB
    growth, outcome = _in_child(path)
    assert outcome == "3000000 rows"
    assert growth < 128 << 20, growth >> 20  # reading the row group whole takes 234 MB


def test_wide_row_groups_are_decoded_a_group_of_columns_at_a_time(tmp_path, monkeypatch):
    # 2,000 columns of zeros without dictionaries: 64 MB of pages once decompressed, all of
    # which a reader of every column holds at once, from a file of 500 kB
    path = tmp_path / "wide.parquet"
    pq.write_table(_zeros(2000, 4000), path, compression="zstd", use_dictionary=False)
    growth, outcome = _in_child(path, PAGES_BYTES=8 << 20, BATCH_BYTES=2 << 20)
    assert outcome == "4000 rows"
    assert growth < 64 << 20, growth >> 20  # all columns at once: about 200 MB
    monkeypatch.setattr(parquet_upload, "PAGES_BYTES", 8 << 20)
    monkeypatch.setattr(parquet_upload, "BATCH_BYTES", 2 << 20)
    summary, table = _convert(path.read_bytes())
    assert summary.rows == 4000 and table.equals(pq.read_table(path))
    assert all(len(group) < 2000 for group in _groups(path))


def _groups(path: Path) -> list[range]:
    """How the (only) row group of ``path`` is split into groups of columns."""
    with open(path, "rb") as source:
        metadata = pq.ParquetFile(source).metadata
        return parquet_upload._column_groups(parquet_pages.walk(source, metadata)[0])


# legitimate files


def _mixed_table(rows: int = 5000) -> pa.Table:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "x": rng.standard_normal(rows), "n": rng.integers(-5, 5, rows),
        "flag": rng.random(rows) < 0.5,
        "word": rng.choice(["alpha", "beta", None, "gamma" * 30], rows),
        "id": [f"row-{i}" for i in range(rows)],
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], rows)),
        "when": pd.date_range("2020-01-01", periods=rows, freq="h"),
        "gap": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows)),
    })
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.append_column("raw", pa.array([bytes([i % 256]) * (i % 7)
                                                for i in range(rows)]))


@pytest.mark.parametrize("pages_bytes, batch_bytes, version", [
    (128 << 20, 32 << 20, "1.0"), (8 << 10, 4 << 10, "1.0"), (8 << 10, 4 << 10, "2.0")])
def test_a_legitimate_parquet_file_round_trips_unchanged(pages_bytes, batch_bytes, version,
                                                         monkeypatch):
    # the small sizes decode every row group a few columns at a time, in small slices
    monkeypatch.setattr(parquet_upload, "PAGES_BYTES", pages_bytes)
    monkeypatch.setattr(parquet_upload, "BATCH_BYTES", batch_bytes)
    body = _parquet(_mixed_table(), row_group_size=700, data_page_size=2048,
                    data_page_version=version, compression="zstd")
    assert pq.ParquetFile(io.BytesIO(body)).metadata.num_row_groups == 8
    summary, table = _convert(body, tabular.Limits(rows=5000, columns=9, cells=45_000,
                                                   decoded_bytes=8 << 20))
    expected = pq.read_table(io.BytesIO(body))
    assert summary.rows == 5000 and summary.schema.equals(expected.schema, check_metadata=True)
    assert table.equals(expected)
    assert isinstance(table.schema.field("colour").type, pa.DictionaryType)  # as uploaded


# a CSV of one enormous line


def test_a_csv_header_wider_than_the_limit_is_refused_before_it_is_gathered():
    body = b"0," * (8 << 20) + b"0"  # one 16 MiB line of 8M columns, no newline
    tracemalloc.start()
    try:
        detail = str(_refusal(body, "line.csv", max_columns=10_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert detail == "more than 32769 columns; at most 10000 are accepted"
    assert peak < 1 << 20, peak  # the first 64 KiB told


def test_a_csv_header_wider_than_the_limit_is_refused_before_it_is_parsed():
    # long names: the first 64 KiB hold fewer than 10,000, the line holds 20,000; the rows
    # after it are ragged, so parsing would fail differently
    header = b",".join(b"a_rather_long_column_name_%06d" % j for j in range(20_000))
    body = header + b"\n1,2,3\n"
    assert "Expected 20000 columns" in str(_refusal(body, "wide.csv", max_columns=10**6))
    assert str(_refusal(body, "wide.csv")) == "20000 columns; at most 10000 are accepted"


def test_a_csv_line_longer_than_the_limit_is_refused_in_bounded_memory(monkeypatch):
    monkeypatch.setattr(tabular, "MAX_ROW_BYTES", 1 << 20)
    monkeypatch.setattr(tabular, "SLICE_BYTES", 64 << 10)
    body = b"a" * (16 << 20)  # no delimiter, no newline
    tracemalloc.start()
    try:
        detail = str(_refusal(body, "line.csv"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "a row longer than 1 MiB" in detail
    assert peak < 4 << 20, peak  # about two copies of 1 MiB, not the 16 MiB line
