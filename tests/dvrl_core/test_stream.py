"""Tables read in two streaming passes into a memory-mapped matrix (dvrl_core.stream): the same
encoding as the in-memory path, nothing left on disk, clear errors, and big-table shortcuts in
DVRL (sampled prior, sampled removal test, batch sampling, planting without a second copy) that
keep the values a user gets."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from dvrl_core import DVRL, cli, dvrl, prepare, prior, read_table, stream, trust
from dvrl_core.datasets import make_table
from dvrl_core.errors import (
    DataError,
    MissingColumnError,
    MissingTargetError,
    SingleClassError,
    UnreadableTableError,
)
from dvrl_core.evaluation import detection_auroc
from dvrl_core.noise import with_label_noise


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few kilobytes: every test table is read in many batches."""
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(stream, "PARQUET_BATCH_ROWS", 37)


def _mixed_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    table = make_table(n, n_features=5, random_state=seed)
    rng = np.random.default_rng(seed)
    table.loc[rng.random(n) < 0.1, "x1"] = np.nan
    table.loc[rng.random(n) < 0.1, "cat0"] = None
    table["count"] = rng.integers(0, 9, n)
    table["key"] = [f"row-{i}" for i in range(n)]
    return table


def _assert_same(a, b):
    assert a.feature_names == b.feature_names
    assert a.classes == b.classes
    for name in ("train", "valid", "test"):
        left, right = getattr(a, name), getattr(b, name)
        if left is None:
            assert right is None
            continue
        np.testing.assert_array_equal(left.x, right.x)
        np.testing.assert_array_equal(left.y, right.y)
        np.testing.assert_array_equal(left.ids, right.ids)


@pytest.mark.parametrize(("suffix", "sep", "decimal", "pad"), [
    (".csv", ",", ".", ""), (".csv", ";", ".", ""), (".parquet", None, None, ""),
    (".csv", ";", ",", ""),  # a European spreadsheet's export: "1,5" is one and a half
    (".csv", ",", ".", " "),  # a header written "x0, x1, label"
    (".csv", ",", ".", "\n"),  # names on two lines, quoted: the header is one CSV row
])
def test_streamed_encoding_equals_the_in_memory_one(tmp_path, small_blocks, suffix, sep,
                                                    decimal, pad):
    table = _mixed_table()
    path = tmp_path / f"train{suffix}"
    if sep:
        table.rename(columns=lambda name: f"{pad}{name}{pad}").to_csv(
            path, index=False, sep=sep, decimal=decimal)
    else:
        table.to_parquet(path)
    whole = read_table(path)
    pd.testing.assert_frame_equal(whole[["label", "key"]], table[["label", "key"]])
    if sep:  # numbers read as numbers under the names the user gave, as from the plainest CSV
        table.to_csv(tmp_path / "plain.csv", index=False)
        pd.testing.assert_frame_equal(whole, read_table(tmp_path / "plain.csv"))
        os.remove(tmp_path / "plain.csv")
    held_out = prepare(whole, "label", valid_fraction=0.2, random_state=3)
    streamed = stream.prepare_file(path, "label", valid_fraction=0.2, random_state=3,
                                   scratch=tmp_path)
    _assert_same(held_out, streamed)
    assert isinstance(streamed.train.x, np.memmap)

    valid, test = whole.iloc[:80], whole.iloc[80:160]
    given = prepare(whole, "label", valid, test=test, id_column="key")
    streamed = stream.prepare_file(path, "label", valid, test=test, id_column="key",
                                   scratch=tmp_path)
    _assert_same(given, streamed)
    assert streamed.train.ids[:2].tolist() == ["row-0", "row-1"]
    assert os.listdir(tmp_path) == [path.name]  # the mapped matrix left no file behind


def test_a_sample_fits_the_encoder_the_same_whatever_the_block_size(tmp_path, monkeypatch):
    path = tmp_path / "train.csv"
    _mixed_table(3000).to_csv(path, index=False)
    runs = []
    for block in (2048, 65536):
        monkeypatch.setattr(stream, "BLOCK_BYTES", block)
        runs.append(stream.prepare_file(path, "label", valid_fraction=0.1, sample_rows=500))
    _assert_same(*runs)
    x = np.asarray(runs[0].train.x[:, runs[0].feature_names.index("x0")])
    # fitted on 500 of the rows: standardised all the same, to sampling error
    assert abs(x.mean()) < 0.15 and abs(x.std() - 1) < 0.1


def test_bad_big_tables_get_the_in_memory_path_s_errors(tmp_path, small_blocks):
    table = _mixed_table()
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    with pytest.raises(MissingColumnError, match="'income'"):
        stream.prepare_file(path, "income", valid_fraction=0.2)
    one_class = table.assign(label="same")
    one_class.to_csv(path, index=False)
    with pytest.raises(SingleClassError, match="one class"):
        stream.prepare_file(path, "label", valid_fraction=0.2)
    empty = table.copy()
    empty.loc[[5, 400], "label"] = None
    empty.to_csv(path, index=False)
    with pytest.raises(MissingTargetError, match="empty in 2"):
        stream.prepare_file(path, "label", valid_fraction=0.2)
    # numbers in the first megabyte (where the types are inferred), text deep in the file
    changing = _mixed_table(20_000).astype({"count": object})
    changing.loc[19_000, "count"] = "many"
    changing.to_csv(path, index=False)
    assert path.stat().st_size > 1 << 20
    with pytest.raises(UnreadableTableError, match="cannot read as a table"):
        stream.prepare_file(path, "label", valid_fraction=0.2)
    path.write_bytes(b"\x00\xff\xfe broken")
    with pytest.raises(UnreadableTableError):
        stream.prepare_file(path, "label", valid_fraction=0.2)
    # a workbook saved under the table's name: named for what it is, as read_table does
    path.write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))
    with pytest.raises(UnreadableTableError, match="spreadsheet workbook"):
        stream.prepare_file(path, "label", valid_fraction=0.2)
    # a column named twice, and ids that repeat (in different blocks)
    columns = list(table.columns)
    table.to_csv(path, index=False, header=[columns[0], *columns[:-1]][: len(columns)])
    with pytest.raises(UnreadableTableError, match="duplicate column names"):
        stream.prepare_file(path, "label", valid_fraction=0.2)
    table.assign(key=np.arange(len(table)) % 300).to_csv(path, index=False)
    with pytest.raises(DataError, match="'key' names rows"):
        stream.prepare_file(path, "label", valid_fraction=0.2, id_column="key")


def test_the_command_line_streams_big_files_to_the_same_values(tmp_path, monkeypatch):
    table = make_table(400, n_features=6, random_state=5)
    train, valid = tmp_path / "train.csv", tmp_path / "valid.csv"
    table.iloc[:300].to_csv(train, index=False)
    table.iloc[300:].to_csv(valid, index=False)
    outputs = {}
    for limit in (1 << 40, 0):  # in memory, then streamed
        monkeypatch.setattr(cli, "STREAM_BYTES", limit)
        out = tmp_path / f"values-{limit}.csv"
        assert cli.main(["value", str(train), "--target", "label", "--valid", str(valid),
                         "--iterations", "40", "--out", str(out), "--quiet",
                         "--threads", "1"]) == 0
        outputs[limit] = pd.read_csv(out)
    pd.testing.assert_frame_equal(outputs[1 << 40], outputs[0])


def test_planting_into_a_mapped_matrix_gives_the_same_values(tmp_path):
    table = make_table(500, n_features=6, random_state=2)
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    kinds = {}
    for name, data in (("memory", prepare(read_table(path), "label", valid_fraction=0.4)),
                       ("mapped", stream.prepare_file(path, "label", valid_fraction=0.4))):
        kinds[name] = DVRL(iterations=30, random_state=1).fit(data)
    np.testing.assert_array_equal(kinds["memory"].values, kinds["mapped"].values)
    assert kinds["mapped"].diagnostics["trust"]["planted"]["rows"] > 0


def test_stack_rows_copies_a_mapped_matrix_and_lets_its_pages_go(tmp_path):
    top = stream._mapped_matrix((5000, 64), tmp_path)
    top[:] = np.arange(5000 * 64, dtype=np.float32).reshape(5000, 64)
    bottom = np.full((3, 64), -1.0, dtype=np.float32)
    joined = stream.stack_rows(top, bottom)
    assert isinstance(joined, np.memmap)
    np.testing.assert_array_equal(joined, np.concatenate([top, bottom]))
    plain = stream.stack_rows(np.asarray(top[:10]).copy(), bottom)
    assert not isinstance(plain, np.memmap) and plain.shape == (13, 64)


def test_batches_of_a_big_table_are_distinct_uniform_and_seeded(monkeypatch):
    monkeypatch.setattr(dvrl, "PERMUTATION_ROWS", 1000)
    device = torch.device("cpu")

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return [dvrl._batch_rows(5000, 2000, generator, device) for _ in range(50)]

    first, again = draw(0), draw(0)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(len(torch.unique(rows)) == 2000 for rows in first)
    counts = torch.bincount(torch.cat(first), minlength=5000).float()
    assert counts.mean() == 20 and counts.std() < 6  # binomial(50, 0.4): sd 3.5


def test_a_big_table_s_shortcuts_still_find_the_noise(monkeypatch):
    """The prior cross-fitted on a sample, the removal test on a sample, batches drawn without
    a permutation: the values still find flipped labels, and the trust check still speaks."""
    monkeypatch.setattr(prior, "CROSS_FIT_ROWS", 300)
    monkeypatch.setattr(stream, "PREDICT_CHUNK", 256)
    monkeypatch.setattr(trust, "CHECK_TRAIN_ROWS", 400)
    monkeypatch.setattr(dvrl, "PERMUTATION_ROWS", 500)
    data = prepare(make_table(1500, n_features=8, random_state=4), "label", valid_fraction=0.3)
    noisy, flipped = with_label_noise(data, 0.2, 0)
    result = DVRL(iterations=60, batch_size=400, random_state=0).fit(noisy)
    assert np.isfinite(result.values).all() and len(result.values) == len(noisy.train)
    assert detection_auroc(result.values, flipped) > 0.75
    assert result.diagnostics["trust"]["verdict"]


def test_take_rows_gathers_a_sample_of_a_mapped_matrix(tmp_path):
    top = stream._mapped_matrix((20_000, 40), tmp_path)
    top[:] = np.random.default_rng(0).standard_normal((20_000, 40)).astype(np.float32)
    rows = np.sort(np.random.default_rng(1).choice(20_000, 700, replace=False))
    taken = stream.take_rows(top, rows)
    assert not isinstance(taken, np.memmap)
    np.testing.assert_array_equal(taken, np.asarray(top)[rows])
    np.testing.assert_array_equal(stream.take_rows(np.asarray(top), rows), taken)
