"""Uploads to Arrow slice by slice: the same table as reading the whole file at once."""

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from service import tabular


@pytest.fixture(autouse=True)
def small_slices(monkeypatch):
    monkeypatch.setattr(tabular, "SLICE_BYTES", 256)  # many slices even for small tables


def convert(body: bytes, filename: str = "t.csv", **kwargs) -> tuple[tabular.Summary, pa.Table]:
    target = io.BytesIO()
    summary = tabular.convert(io.BytesIO(body), filename, target, **kwargs)
    return summary, tabular.read(target.getvalue())


def test_slices_end_at_row_boundaries_outside_quotes():
    body = b'a,b\n1,"x\ny"\n' + b'2,"long\n\n""quoted""\ntext"\n' * 40 + b"3,z"
    pieces = list(tabular.csv_slices(io.BytesIO(body), slice_bytes=7))
    assert b"".join(pieces) == body
    for piece in pieces[:-1]:
        assert piece.endswith(b"\n") and piece.count(b'"') % 2 == 0


def test_same_table_as_the_whole_file_reader():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.standard_normal(500), "n": rng.integers(0, 9, 500),
                          "s": rng.choice(["a", "b,c", 'q"q', "new\nline"], 500),
                          "label": rng.integers(0, 2, 500)})
    body = frame.to_csv(index=False).encode()
    summary, table = convert(body)
    expected = pacsv.read_csv(io.BytesIO(body),
                              parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert summary.rows == 500
    assert table.equals(expected)


def test_columns_widen_when_later_slices_need_it():
    body = (b"n,f,e,t\n" + b"1,2,,a\n" * 100 + b"2.5,2,7,b\n" + b"3,x,,c\n" * 50)
    summary, table = convert(body)
    types = {f.name: f.type for f in summary.schema}
    assert types == {"n": pa.float64(), "f": pa.string(), "e": pa.int64(), "t": pa.string()}
    assert summary.rows == 151 and table.num_rows == 151
    assert table.column("n").to_pylist()[100] == 2.5
    assert table.column("f").to_pylist()[-1] == "x"


def test_parquet_is_copied_batch_by_batch(tmp_path):
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float), "label": ["a", "b"] * 500})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    summary, table = convert(path.read_bytes(), "t.parquet")
    assert summary.rows == 1000
    pd.testing.assert_frame_equal(table.to_pandas(), frame)
    # tables stored before IPC (Parquet bytes) still read
    assert tabular.read(path.read_bytes()).num_rows == 1000


@pytest.mark.parametrize("body, message", [
    (b"", "empty"),
    (b'a,b\n1,"never closed\n' + b"2,3\n" * 400, "quote"),
    (b"a,b\n1,2\n3,4,5\n", "Expected 2 columns"),
])
def test_unreadable_files_say_why(body, message, monkeypatch):
    monkeypatch.setattr(tabular, "MAX_ROW_BYTES", 1024)
    with pytest.raises(tabular.TableError, match=message):
        convert(body)


def test_limits_are_checked_while_converting():
    seen = []

    def check(schema, rows):
        seen.append(rows)
        if rows > 100:
            raise OverflowError("too many rows")

    with pytest.raises(OverflowError):
        convert(b"a,b\n" + b"1,2\n" * 1000, check=check)
    assert seen[0] == 0 and seen[-1] < 1000  # stopped before the end of the file
