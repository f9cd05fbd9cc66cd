from __future__ import annotations

import datetime
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from dvrl_core import (
    DVRL,
    ConfigError,
    ConstantTargetError,
    DataError,
    EmptyColumnError,
    MissingColumnError,
    MissingTargetError,
    SingleClassError,
    Split,
    TargetTypeError,
    TooFewRowsError,
    UnreadableTableError,
    UnseenClassError,
    infer_task,
    prepare,
    prepare_file,
    read_table,
    stream,
)
from dvrl_core.datasets import make_table


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table(60, n_features=4, random_state=1)


def test_numeric_columns_are_scaled_with_training_statistics(table):
    valid = table.copy()
    valid["x0"] = valid["x0"] + 100.0
    data = prepare(table, "label", valid)
    column = data.feature_names.index("x0")
    assert data.train.x[:, column].mean() == pytest.approx(0.0, abs=1e-5)
    assert data.train.x[:, column].std() == pytest.approx(1.0, abs=1e-4)
    # the validation shift shows up, measured in training standard deviations
    assert data.valid.x[:, column].mean() > 10


def test_categoricals_are_one_hot_and_unseen_levels_encode_as_zeros(table):
    valid = table.copy()
    valid.loc[0, "cat0"] = "never-seen"
    data = prepare(table, "label", valid)
    columns = [i for i, n in enumerate(data.feature_names) if n.startswith("cat0=")]
    assert len(columns) == table["cat0"].nunique()
    assert np.all(data.train.x[:, columns].sum(1) == 1.0)
    assert data.valid.x[0, columns].sum() == 0.0


def test_missing_numbers_are_imputed_with_an_indicator(table):
    train = table.copy()
    train.loc[[1, 2], "x1"] = np.nan
    data = prepare(train, "label", table)
    assert "x1__missing" in data.feature_names
    flag = data.feature_names.index("x1__missing")
    assert data.train.x[[1, 2], flag].tolist() == [1.0, 1.0]
    assert np.isfinite(data.train.x).all()


def test_booleans_dates_and_integer_labels(table):
    train = table.copy()
    train["flag"] = train["x0"] > 0
    train["when"] = pd.date_range("2020-01-01", periods=len(train), freq="D")
    train["label"] = (train["label"] == "class_1").astype(int) * 7
    data = prepare(train, "label", valid_fraction=0.25)
    assert data.task == "classification" and data.classes == [0, 7]
    # the results' label column: the labels as given, integers (they were Python objects)
    given = data.train_labels()
    assert given.dtype == np.int64
    assert given.tolist() == train.loc[data.train.ids, "label"].tolist()
    assert "flag" in data.feature_names and "when" in data.feature_names
    assert len(data.train) + len(data.valid) == len(train)


def test_an_integer_regression_target_comes_back_as_integers(table, tmp_path):
    """`dvrl value --task regression` on a count printed 12.0 where the table said 12."""
    train = table.copy()
    train["count"] = np.arange(len(train)) * 3 % 17
    train.to_csv(tmp_path / "counts.csv", index=False)
    for data in (prepare(train, "count", valid_fraction=0.25, task="regression"),
                 prepare_file(tmp_path / "counts.csv", "count", valid_fraction=0.25,
                              task="regression")):
        given = data.train_labels()
        assert given.dtype == np.int64
        # the rows' ids: the frame's index, the file's row positions (both 0, 1, ...)
        assert given.tolist() == train["count"].to_numpy()[data.train.ids.astype(int)].tolist()
        # targets moved off whole numbers (label noise) are shown as they are
        moved = data.with_train_labels(data.train.y + 0.5).train_labels()
        assert moved.dtype == np.float64 and moved[0] == given[0] + 0.5
    train["count"] = train["count"] + 0.25
    assert prepare(train, "count", valid_fraction=0.25).train_labels().dtype == np.float64


def test_date_only_and_duration_columns_are_numbers_not_categories(table, tmp_path):
    """A CSV's date-only column reads as datetime.date objects: they were one-hot encoded,
    one column per date seen in training (an unseen validation date: all zeros)."""
    train = table.copy()
    train["when"] = pd.date_range("2020-01-01", periods=len(train), freq="7D").date
    train["took"] = pd.to_timedelta(np.arange(len(train)) % 9, unit="h")
    train.to_csv(tmp_path / "t.csv", index=False)
    for frame in (train, read_table(tmp_path / "t.csv")):
        data = prepare(frame, "label", valid_fraction=0.25, feature_columns=["x0", "when"])
        assert data.feature_names == ["x0", "when"]
    data = prepare(train, "label", valid_fraction=0.25)
    assert "took" in data.feature_names and not any("=" in n for n in data.feature_names
                                                      if n.startswith(("when", "took")))
    when = data.train.x[:, data.feature_names.index("when")]
    days = (pd.to_datetime(train["when"]).to_numpy()[data.train.ids] -
            np.datetime64("2020-01-01")) / np.timedelta64(1, "D")
    assert np.corrcoef(when, days)[0, 1] > 0.999  # later dates, larger numbers
    # times with the offsets of winter and summer in one column (JSON across daylight saving):
    # each read in UTC, none lost to the median
    zones = [datetime.timezone(datetime.timedelta(hours=1 + i % 2)) for i in range(len(train))]
    train["when"] = [datetime.datetime(2020, 1 + i % 12, 1, tzinfo=zone)
                     for i, zone in enumerate(zones)]
    data = prepare(train, "label", valid_fraction=0.25, feature_columns=["when"])
    assert data.feature_names == ["when"] and len(np.unique(data.train.x)) == 12
    # a validation table whose copy of a duration or date column holds plain numbers: said,
    # not read as nanoseconds (3 hours as 3 ns, every date as 1970)
    for column, numbers in (("took", np.arange(40) % 9), ("when", np.arange(40) + 18_000)):
        valid = train.iloc[:40].assign(**{column: numbers})
        with pytest.raises(DataError, match=f"column '{column}' holds .* in the training rows "
                           "but plain numbers here"):
            prepare(train.iloc[40:], "label", valid=valid, feature_columns=[column])
    # dates as text in another format: said, not read month-first once and missing after
    days = pd.date_range("2020-01-01", periods=40, freq="5D")
    for written, fine in ((days.strftime("%d/%m/%Y"), False), (days.strftime("%Y-%m-%d"), True)):
        valid = train.iloc[:40].assign(when=list(written[:-1]) + ["?"])
        if fine:
            x = prepare(train.iloc[40:], "label", valid=valid, feature_columns=["when"]).valid.x
            assert len(np.unique(x[:-1])) == 39
        else:
            with pytest.raises(DataError, match=r"column 'when' holds dates in the training "
                               r"rows, but 39 of these rows .*such as '01/01/2020'"):
                prepare(train.iloc[40:], "label", valid=valid, feature_columns=["when"])
    empty = train.iloc[:40].assign(took=np.nan)  # no values at all: missing, as before
    assert prepare(train.iloc[40:], "label", valid=empty, feature_columns=["took"]).valid.x.shape \
        == (40, 1)


def test_text_or_dates_in_a_numeric_column_of_the_validation_rows_are_refused_by_name(
        table, tmp_path):
    """They became missing values, filled with the training median, without a word."""
    train, valid = table.iloc[40:], table.iloc[:40]
    cases = {"text": valid.assign(x0=["1,5"] + ["2"] * 39),  # a decimal comma
             "dates": valid.assign(x0=pd.date_range("2020-01-01", periods=40))}
    for frame in cases.values():
        with pytest.raises(DataError, match="column 'x0' holds numbers in the training rows"):
            prepare(train, "label", valid=frame)
    cases["text"].to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataError, match=r"1 of these rows hold something else \(such as '1,5'"):
        prepare(train, "label", valid=read_table(tmp_path / "v.csv"))
    # numbers written as text, empty cells and missing markers read as before
    fine = valid.assign(x0=["2.5", None, "NA", " ? "] + [str(v) for v in valid["x0"].iloc[4:]])
    fine.to_csv(tmp_path / "fine.csv", index=False)
    for frame in (fine, read_table(tmp_path / "fine.csv")):
        x = prepare(train, "label", valid=frame).valid.x
        assert np.isfinite(x).all()


def test_a_training_column_of_numbers_but_for_a_few_cells_is_said(table, tmp_path):
    """One '1,5' made a column of numbers a column of 100 categories, without a word."""
    from dvrl_core.checks import summary_checks

    spoiled = table.assign(x1=table["x1"].astype(object))
    spoiled.loc[5, "x1"] = "1,5"
    spoiled.to_csv(tmp_path / "spoiled.csv", index=False)
    for data in (prepare(spoiled, "label", valid_fraction=0.3),
                 prepare_file(tmp_path / "spoiled.csv", "label", valid_fraction=0.3)):
        assert "x1=1,5" in data.feature_names  # as the table says: categories
        assert data.notes == [f"column 'x1' holds numbers in all but 1 of its {len(table)} "
                              "cells in the training table (such as '1,5'), so it was read as "
                              "categories; if it is a number, give numbers there (a decimal "
                              "point, not a comma) or leave those cells empty"]
        assert data.notes[0] in summary_checks(data)["warnings"]
    # missing markers that made a column text: a column of numbers with missing values
    marked = table.assign(x1=table["x1"].astype(object))
    marked.loc[[3, 9], "x1"] = ["?", "n/a"]
    data = prepare(marked, "label", valid_fraction=0.3)
    assert "x1" in data.feature_names and "x1__missing" in data.feature_names
    assert data.notes == []
    # numbers the user wrote as text, nothing else: the user's categories, as before
    codes = table.assign(x1=(np.arange(len(table)) % 3).astype(str))
    assert "x1=2" in prepare(codes, "label", valid_fraction=0.3).feature_names


def test_numbers_written_for_people_are_said_as_numbers_not_as_ids(table, tmp_path):
    """'$1,200.50', '12%' and '77,516' were categories with the many-categories note, which
    pointed at the id column: the note says they are numbers written as text."""
    rng = np.random.default_rng(0)
    amounts = rng.uniform(0, 5000, len(table))
    written = {"dollars": [f"${v:,.2f}" for v in amounts],
               "share": [f"{v / 50:.0f}%" for v in amounts],
               "count": [f"{int(v * 20):,}" for v in amounts]}
    for column, cells in written.items():
        spoiled = table.assign(x1=cells)
        spoiled.loc[3, "x1"] = None  # a missing cell changes nothing
        spoiled.to_csv(tmp_path / "written.csv", index=False)
        for data in (prepare(spoiled, "label", valid_fraction=0.3, max_categories=5),
                     prepare_file(tmp_path / "written.csv", "label", valid_fraction=0.3,
                                  max_categories=5)):
            first = cells[0]
            assert data.notes == [f"column 'x1' holds numbers written as text (such as "
                                  f"{first!r}), so it was read as categories; if it is a "
                                  "number, give plain numbers there (1200.5: a decimal point, "
                                  "no currency or percent signs, no thousands separators)"], column
    # words, codes and plain digits written as text as before: no such note
    for cells in (["red", "green"] * (len(table) // 2), [f"A-{i}" for i in range(len(table))],
                  [f"{v:.2f}" for v in amounts]):
        notes = prepare(table.assign(x1=cells), "label", valid_fraction=0.3,
                        max_categories=5).notes
        assert not any("written as text" in note for note in notes)


def test_a_training_column_of_dates_but_for_a_few_cells_is_said(table, tmp_path):
    """One 'unknown' among dates made them categories, and the note said to give a column of
    dates as the id column (a value per row)."""
    days = pd.date_range("2020-01-01", periods=len(table)).strftime("%Y-%m-%d")
    spoiled = table.assign(when=days)
    spoiled.loc[5, "when"] = "unknown"
    spoiled.to_csv(tmp_path / "spoiled.csv", index=False)
    for data in (prepare(spoiled, "label", valid_fraction=0.3, max_categories=5),
                 prepare_file(tmp_path / "spoiled.csv", "label", valid_fraction=0.3,
                              max_categories=5)):
        assert data.notes == [f"column 'when' holds dates in all but 1 of its {len(table)} "
                              "cells in the training table (such as 'unknown'), so it was read "
                              "as categories; write dates as ISO 8601 (2020-03-05) there or "
                              "leave those cells empty"]
    # every cell a date (or missing): days, no note
    table.assign(when=days).to_csv(tmp_path / "dates.csv", index=False)
    data = prepare(read_table(tmp_path / "dates.csv"), "label", valid_fraction=0.3)
    assert "when" in data.feature_names and data.notes == []


def test_a_column_of_more_categories_than_are_kept_is_said(table):
    named = table.assign(customer=[f"c{i}" for i in range(len(table))],
                         city=[f"t{i % 10}" for i in range(len(table))])
    data = prepare(named, "label", valid_fraction=0.3, max_categories=5)
    assert data.notes == [
        f"column 'customer' has {len(data.train)} distinct values in the training rows; its 5 "
        "most frequent are categories and the others read as none of them; a value per row: "
        "if it names the rows, give it as the id column",
        "column 'city' has 10 distinct values in the training rows; its 5 most frequent are "
        "categories and the others read as none of them"]
    assert prepare(named, "label", valid_fraction=0.3, id_column="customer").notes == []


def test_a_binary_parquet_column_is_read_as_categories_even_when_not_utf8(table, tmp_path):
    """Bytes that are not UTF-8 raised UnicodeDecodeError (the service: an internal error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    codes = [b"\x00\xff", b"ok", None, b"\xfe"]
    frame = table.assign(code=[codes[i % 4] for i in range(len(table))])
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "b.parquet")
    read = read_table(tmp_path / "b.parquet")
    assert isinstance(read["code"].dropna().iloc[0], bytes)
    for prepared in (prepare(read, "label", valid_fraction=0.3, random_state=0),
                     prepare_file(tmp_path / "b.parquet", "label", valid_fraction=0.3)):
        names = [n for n in prepared.feature_names if n.startswith("code")]
        assert names == ["code=\x00\\xff", "code=\\xfe", "code=ok", "code__missing"]
        column = prepared.train.x[:, prepared.feature_names.index("code=ok")]
        assert 0 < column.sum() < len(column)


def test_a_frame_made_from_an_array_and_other_frames_that_are_not_tables(table):
    """pd.DataFrame(array) names its columns 0, 1, ...: a KeyError deep in pandas; the rest
    failed in pandas, torch or NumPy."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    frame = pd.DataFrame(x)
    frame["y"] = (x[:, 0] > 0).astype(int)
    data = prepare(frame.iloc[:80], "y", valid=frame.iloc[80:])
    assert data.feature_names == ["0", "1", "2"]
    np.testing.assert_allclose(data.train.x[:, 0].std(), 1.0, atol=1e-3)
    # columns named as feature_names name them: "3" is column 3 (no column '3' before)
    whole = pd.DataFrame(np.column_stack([x, frame["y"]]))
    named = prepare(whole.iloc[:80], "3", valid=whole.iloc[80:], feature_columns=["0", "2"])
    assert named.feature_names == ["0", "2"] and named.classes == [0.0, 1.0]
    np.testing.assert_array_equal(named.train.x, data.train.x[:, [0, 2]])
    with pytest.raises(TypeError, match="pd.DataFrame\\(array\\) for a NumPy array"):
        prepare(frame.to_numpy(), "y", valid=frame)
    twice = pd.concat([frame[[0]], frame], axis=1)
    with pytest.raises(DataError, match="the train table has duplicate column names: \\['0'\\]"):
        prepare(twice, "y", valid_fraction=0.3)
    with pytest.raises(ConfigError, match="a list of column names, not one string: \\['x0'\\]"):
        prepare(table, "label", valid_fraction=0.3, feature_columns="x0")


def test_rows_of_a_frame_whose_index_repeats_are_told_apart(table):
    """pd.concat of two frames repeats index labels: the rows' ids were those labels, each
    naming two rows; they are the positions then (a unique index keeps its labels)."""
    twice = pd.concat([table, table])
    assert sorted(prepare(twice, "label", table).train.ids) == list(range(2 * len(table)))
    labelled = table.set_axis([f"r{i}" for i in range(len(table))])
    assert list(prepare(labelled, "label", table).train.ids[:2]) == ["r0", "r1"]


def test_validation_fraction_is_stratified_and_ids_are_input_row_numbers(table):
    data = prepare(table, "label", valid_fraction=0.25, random_state=3)
    assert abs(len(data.valid) - 15) <= 1
    share = (table["label"] == "class_1").mean()
    held = np.mean(np.asarray(data.classes)[data.valid.y] == "class_1")
    assert abs(held - share) < 0.05
    assert sorted(set(data.train.ids)) == sorted(data.train.ids)
    assert len(data.train) + len(data.valid) == 60 and data.train.ids.max() < 60


def test_id_column_names_rows(table, tmp_path):
    table["key"] = [f"r{i}" for i in range(len(table))]
    data = prepare(table, "label", table, id_column="key")
    assert list(data.train.ids[:2]) == ["r0", "r1"]
    assert not any(n.startswith("key") for n in data.feature_names)
    with pytest.raises(ConfigError, match="the id column 'label' is the target"):
        prepare(table, "label", table, id_column="label")
    # names that repeat could not be joined back to the rows: refused, with an example
    table["key"] = [f"r{i % 7}" for i in range(len(table))]
    with pytest.raises(DataError, match="'key' names rows, but .* share a name.*'r0'"):
        prepare(table, "label", table, id_column="key")
    table["key"] = np.arange(len(table)) % 5
    with pytest.raises(DataError, match=r"for instance 0\).*The ids were read as numbers: "
                                        "007 and 7"):
        prepare(table, "label", table, id_column="key")
    # ids in a CSV file are read as written: 007 and 7 are two rows, 00042 keeps its zeros
    table["key"] = [f"{i:05d}" for i in range(len(table))]
    table.loc[7, "key"] = "7"
    table.to_csv(tmp_path / "zeros.csv", index=False)
    for data in (prepare_file(tmp_path / "zeros.csv", "label", valid_fraction=0.3,
                              id_column="key"),
                 prepare(read_table(tmp_path / "zeros.csv", text_columns=["key"]), "label",
                         valid_fraction=0.3, id_column="key")):
        assert set(data.train.ids) <= set(table["key"])  # "00042", not 42
    # a column of digits with leading zeros is text wherever it is read, as the service's
    # upload reads it (codes: ZIP codes, account numbers); one without is numbers
    table["zip"] = [f"0{1000 + i}" for i in range(len(table))]
    table.to_csv(tmp_path / "zip.csv", index=False)
    assert read_table(tmp_path / "zip.csv")["zip"].iloc[0] == "01000"
    assert read_table(tmp_path / "zip.csv")["x0"].dtype == np.float64
    streamed = prepare_file(tmp_path / "zip.csv", "label", valid_fraction=0.3)
    assert any(name.startswith("zip=010") for name in streamed.feature_names)
    # a row without a name could not be joined back either (the service failed on storing
    # it, after the whole run): refused, the rows named, from a file too
    table["key"] = np.where(np.arange(len(table)) < 3, np.nan, np.arange(len(table)))
    with pytest.raises(DataError, match=r"'key' names rows, but 3 rows have no id in the "
                                        r"training table \(0-based rows 0, 1, 2;"):
        prepare(table, "label", table, id_column="key")
    table["key"] = [f"r{i}" for i in range(len(table))]
    table.loc[7, "key"] = "NA"
    table.to_csv(tmp_path / "named.csv", index=False)
    for prepared in (prepare_file, lambda *a, **k: prepare(read_table(a[0]), *a[1:], **k)):
        with pytest.raises(DataError, match=r"1 row has no id in the training table "
                                            r"\(0-based rows 7;"):
            prepared(tmp_path / "named.csv", "label", valid_fraction=0.3, id_column="key")


def test_a_hold_out_that_leaves_too_few_rows_says_which_way_to_move():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"a": rng.normal(size=200), "r": rng.normal(size=200),
                          "label": np.where(rng.random(200) > 0.5, "x", "y")})
    with pytest.raises(TooFewRowsError, match="holding out 99% of the table's 200 rows.*"
                       "hold out a smaller fraction"):
        prepare(table, "label", valid_fraction=0.99)
    with pytest.raises(TooFewRowsError, match="holding out 1% .*hold out a larger fraction"):
        prepare(table, "label", valid_fraction=0.01)
    # a number taken for classes: every value is a class of one row, and none can be held out
    with pytest.raises(TooFewRowsError, match="200 distinct values in 200 rows.*regression"):
        prepare(table, "r", valid_fraction=0.3, task="classification")


def test_output_paths_are_checked_before_the_work(tmp_path):
    from dvrl_core.io import check_writable, write_table

    for fine in (tmp_path / "v.csv", tmp_path / "v.csv.gz", tmp_path / "v.parquet",
                 tmp_path / "values", "/dev/stdout"):
        check_writable(fine)  # CSV, compressed CSV, Parquet, no suffix (CSV), a device
    assert not (tmp_path / "v.csv").exists()  # tried, and removed again
    for path, words in ((tmp_path / "v.xlsx", ".xlsx is not written here"),
                        (tmp_path / "v.tsv", ".tsv is not written here"),
                        (tmp_path, "a directory"),
                        (tmp_path / "nowhere" / "v.csv", "does not exist"),
                        # a folder no file can be made in: found after the run, a traceback
                        ("/proc/v.csv", "cannot be written")):
        with pytest.raises(ConfigError, match=words):
            check_writable(path)
    with pytest.raises(ConfigError, match="/dev/full: cannot be written \\(No space left"):
        write_table(pd.DataFrame({"a": range(10_000)}), "/dev/full")  # full once written


def test_task_inference():
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([0, 1, 1, 0])) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_task(pd.Series(np.arange(100))) == "regression"


def test_regression_targets(table):
    regression = make_table(60, n_features=4, task="regression")
    data = prepare(regression, "label", regression)
    assert data.task == "regression" and data.train.y.dtype == np.float64


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda t: t.drop(columns="label"), MissingColumnError, "no column 'label'"),
        (lambda t: t.assign(label="same"), SingleClassError, "one class"),
        (lambda t: t.head(5), TooFewRowsError, "at least"),
        (lambda t: t.assign(label=t["label"].where(t.index != 3)), MissingTargetError, "empty"),
        (lambda t: t.assign(x0=np.nan), EmptyColumnError, "'x0'"),
    ],
)
def test_bad_training_tables_raise_specific_errors(table, change, error, words):
    with pytest.raises(error, match=words):
        prepare(change(table.copy()), "label", table)


def test_validation_classes_the_training_table_lacks(table):
    valid = table.copy()
    valid.loc[0, "label"] = "class_9"
    with pytest.raises(UnseenClassError, match="class_9"):
        prepare(table, "label", valid)
    # the same labels typed otherwise, and numbers as text read as classes: said so
    texts = table.assign(label=np.where(table["label"] == "class_1", "1", "0"))
    numbers = texts.assign(label=texts["label"].astype(int))
    with pytest.raises(UnseenClassError, match=r"lacks: \[0, 1\]; training classes are "
                       r"\['0', '1'\]; they are the training classes written as another type"):
        prepare(texts, "label", numbers)
    amounts = table.assign(label=(np.arange(60) % 30 * 7).astype(str))  # 30 twice each
    with pytest.raises(UnseenClassError, match="classes that are all numbers: if it is a number "
                       "to predict, set the task to regression"):
        prepare(amounts, "label", amounts.assign(label="1001"))
    amounts = table.assign(label=(table["x0"] * 100).round().astype(int).astype(str))
    with pytest.raises(TargetTypeError, match="most rows a class of their own: if it is a "
                       "number to predict, the task is regression"):
        prepare(amounts.iloc[:40], "label", amounts.iloc[40:])  # 38 classes in 40 rows
    assert prepare(amounts.iloc[:40], "label", amounts.iloc[40:], task="regression").task == \
        "regression"


def test_single_class_validation(table):
    with pytest.raises(SingleClassError, match="validation"):
        prepare(table, "label", table.assign(label="class_0"))


def test_a_target_with_one_value_is_refused_by_name(tmp_path):
    """Every training row's target 1.0: as regression there is nothing to predict (values
    would be noise, with 'corrupted' rows among them); as inferred, one value, not 'class'."""
    table = make_table(60, n_features=3, random_state=0).assign(label=1.0)
    with pytest.raises(ConstantTargetError, match="'label' is 1 in every training row"):
        prepare(table, "label", table, task="regression")
    with pytest.raises(SingleClassError, match="one value only \\(1.0\\)"):
        prepare(table, "label", table)
    table.to_csv(tmp_path / "t.csv", index=False)  # and so does the streamed path
    with pytest.raises(ConstantTargetError):
        prepare_file(tmp_path / "t.csv", "label", valid_fraction=0.3, task="regression",
                     scratch=tmp_path)


def test_non_numeric_regression_target(table):
    with pytest.raises(TargetTypeError, match="numeric"):
        prepare(table, "label", table, task="regression")


def test_validation_table_without_feature_columns(table):
    with pytest.raises(MissingColumnError, match="validation"):
        prepare(table, "label", table.drop(columns="x1"))


def test_exactly_one_validation_source(table):
    with pytest.raises(ConfigError):
        prepare(table, "label")
    with pytest.raises(ConfigError):
        prepare(table, "label", table, valid_fraction=0.2)
    with pytest.raises(ConfigError):
        prepare(table, "label", valid_fraction=1.5)


def test_read_table_csv_parquet_and_garbage(tmp_path, table):
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.csv").shape == table.shape
    assert read_table(tmp_path / "t.parquet").shape == table.shape
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UnreadableTableError):
        read_table(tmp_path / "bad.parquet")
    with pytest.raises(UnreadableTableError, match="no such file"):
        read_table(tmp_path / "missing.csv")


def test_a_workbook_or_a_json_file_is_named_for_what_it_is(tmp_path):
    """Not a CSV parse error about an empty block: what the file is, and what to give instead."""
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04" + bytes(100))
    (tmp_path / "old.csv").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))  # .xls, renamed
    (tmp_path / "rows.json").write_text('[{"a": 1, "label": 0}]')
    for name in ("sheet.xlsx", "old.csv"):
        with pytest.raises(UnreadableTableError, match="spreadsheet workbook.*export the sheet "
                           "as CSV"):
            read_table(tmp_path / name)
    with pytest.raises(UnreadableTableError, match="the file is JSON.*CSV or Parquet"):
        read_table(tmp_path / "rows.json")
    # told by what the bytes are: a web app's tab-separated .xls export is a text table
    (tmp_path / "export.xls").write_text("a\tlabel\n1\t0\n2\t1\n")
    assert read_table(tmp_path / "export.xls").columns.tolist() == ["a", "label"]


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_with_another_delimiter_reads_as_the_comma_one(tmp_path, table, sep):
    """Spreadsheet exports in many locales separate by ';' (or tabs): the header tells."""
    table.to_csv(tmp_path / "comma.csv", index=False)
    table.to_csv(tmp_path / "other.csv", index=False, sep=sep)
    pd.testing.assert_frame_equal(read_table(tmp_path / "other.csv"),
                                  read_table(tmp_path / "comma.csv"))


def test_a_decimal_comma_reads_as_a_number_where_the_file_uses_one(tmp_path):
    """A ';' export from a European locale writes 1,5 for one and a half: read as the number
    (as text it would be a category). A ';' file with decimal dots still reads as before, and a
    text column with commas in it stays text."""
    names = ["Smith, J", "Doe, A", "Roe, B"]
    (tmp_path / "comma.csv").write_text(
        "x;n;name;label\n1,5;3;Smith, J;a\n-0,25;4;Doe, A;b\n2;5;Roe, B;a\n", encoding="utf-8")
    (tmp_path / "dot.csv").write_text(
        "x;n;name;label\n1.5;3;Smith, J;a\n-0.25;4;Doe, A;b\n2;5;Roe, B;a\n", encoding="utf-8")
    for name in ("comma.csv", "dot.csv"):
        frame = read_table(tmp_path / name)
        assert frame["x"].tolist() == [1.5, -0.25, 2.0], name
        assert frame["n"].tolist() == [3, 4, 5] and frame["name"].tolist() == names, name
    # told from whole rows: past the first 64 KiB a quoted note on two lines is not cut in half
    rows = "".join(f'{i},5;"line one\nline two";{i % 2}\n' for i in range(5000))
    (tmp_path / "notes.csv").write_text("x;note;label\n" + rows, encoding="utf-8")
    assert read_table(tmp_path / "notes.csv")["x"].iloc[:2].tolist() == [0.5, 1.5]
    (tmp_path / "short.csv").write_text("x;label\n1,5;a", encoding="utf-8")  # no last newline
    assert read_table(tmp_path / "short.csv")["x"].tolist() == [1.5]


def test_column_names_lose_the_spaces_around_them(tmp_path):
    """``x, y, label`` (a space after each comma) names the target ``label``."""
    (tmp_path / "t.csv").write_text(" x , y, label\n1, 2.5, a\n3, 4.5, b\n", encoding="utf-8")
    frame = read_table(tmp_path / "t.csv")
    assert list(frame.columns) == ["x", "y", "label"]
    assert frame["y"].tolist() == [2.5, 4.5]
    # names that repeat only without their spaces: said as written (it said ['x'], which the
    # header does not repeat)
    (tmp_path / "twice.csv").write_text("x, x ,label\n1,2,a\n", encoding="utf-8")
    said = ("duplicate column names once the spaces around them are dropped: 'x', ' x '; "
            "rename one of each")
    for read in (read_table, stream._first_columns):
        with pytest.raises(UnreadableTableError, match=re.escape(said)):
            read(tmp_path / "twice.csv")
    (tmp_path / "twice.csv").write_text("x,x,label\n1,2,a\n", encoding="utf-8")
    with pytest.raises(UnreadableTableError, match="duplicate column names: \\['x'\\]"):
        read_table(tmp_path / "twice.csv")


def test_an_empty_label_in_a_csv_is_missing_not_a_class(tmp_path):
    table = make_table(60, n_features=3, random_state=2)
    table.loc[[4, 9], "label"] = None
    table.loc[[1], "cat0"] = None
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)  # the missing values are written as empty fields
    frame = read_table(path)
    assert frame["label"].isna().sum() == 2 and frame["cat0"].isna().sum() == 1
    with pytest.raises(MissingTargetError, match="empty in 2 training rows"):
        prepare(frame, "label", valid_fraction=0.3)


def test_a_target_of_about_one_class_a_row_is_refused_with_what_it_may_be():
    """A date or an id named as the target made one class a row: 35 s of fitting for
    near-constant values, with dates for labels."""
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=200)})
    valid = pd.DataFrame({"x": rng.normal(size=100)})
    for target, task, said in (
            (pd.date_range("2020-01-01", periods=300), "auto", "not an id, a date or free text"),
            ([f"user-{i}" for i in range(300)], "auto", "not an id, a date or free text"),
            (np.arange(300) * 1.5, "classification", "the task is regression")):
        values = pd.Series(target)
        with pytest.raises(TargetTypeError, match="most rows a class of their own") as refused:
            prepare(train.assign(t=values[:200].to_numpy()), "t",
                    valid.assign(t=values[200:].to_numpy()), task=task)
        assert said in str(refused.value)
    many = np.arange(300) % 26  # 26 classes of about eight rows each: a task, not an id
    data = prepare(train.assign(t=many[:200]), "t", valid.assign(t=many[200:]),
                   task="classification")
    assert data.n_classes == 26


def test_labels_that_do_not_fit_are_refused_by_name(table):
    """A Series as the target failed in pandas ("unhashable type"); labels of another length
    given to with_train_labels failed in NumPy's broadcasting, in the prior."""
    data = prepare(table.iloc[:40], "label", table.iloc[40:])
    with pytest.raises(ConfigError, match="the name of the label column"):
        prepare(table.drop(columns="label"), table["label"], valid_fraction=0.25)
    with pytest.raises(ConfigError, match="one label for each of the 40 training rows"):
        data.with_train_labels(data.train.y[:10])
    with pytest.raises(ConfigError, match="one label for each of the 40 rows of data.train.x"):
        DVRL(iterations=2).fit(replace(data, train=Split(data.train.x, data.train.y[:10],
                                                         data.train.ids)))


def test_a_boolean_column_missing_cells_and_its_words_in_another_table(table):
    """pandas' nullable boolean NA read as False, without the missing indicator a CSV's empty
    cell gets; a validation table's "True" / "False" text failed in pandas."""
    train, valid = table.iloc[:40].copy(), table.iloc[40:].copy()
    train["flag"] = pd.array([True, None, False, True] * 10, dtype="boolean")
    valid["flag"] = ["True", "false", None, "1"] * 5
    data = prepare(train, "label", valid)
    at = data.feature_names.index("flag")
    assert data.feature_names[at + 1] == "flag__missing"
    assert data.train.x[:4, at + 1].tolist() == [0, 1, 0, 0]
    assert data.valid.x[:4, at].tolist() == [1, 0, 0, 1]
    assert data.valid.x[:4, at + 1].tolist() == [0, 0, 1, 0]
    valid["flag"] = ["True", "maybe"] * 10
    with pytest.raises(DataError, match="column 'flag' holds True or False in the training rows, "
                                        "but 10 of these rows hold something else"):
        prepare(train, "label", valid)


def test_prepared_data_reads_as_a_line_in_a_notebook(table):
    """Its repr printed every array: 17 kB for 300 rows."""
    data = prepare(table.iloc[:40], "label", table.iloc[40:])
    shown = repr(data)
    assert shown.startswith("PreparedData(classification of 'label', 2 classes ")
    assert "40 training rows x " in shown and "20 validation rows, no test rows" in shown
    assert len(shown) < 300


def test_infinite_cells_are_read_as_missing_and_said(table):
    """They became the median and a missing flag without a word."""
    train = table.iloc[:40].copy()
    train.loc[train.index[:3], "x0"] = [np.inf, -np.inf, np.inf]
    data = prepare(train, "label", table.iloc[40:])
    assert "column 'x0' holds 3 infinite values in the training rows; read as missing" in \
        data.notes
    assert "x0__missing" in data.feature_names


def test_an_id_column_may_name_a_parquet_files_index(table, tmp_path):
    """pandas writes a named index into Parquet and reads it back as the index: the rows were
    named by it, yet naming it as the id column said "no column 'id'"."""
    table.index = pd.Index([f"r{i}" for i in range(len(table))], name="id")
    table.to_parquet(tmp_path / "t.parquet")
    data = prepare(read_table(tmp_path / "t.parquet"), "label", valid_fraction=0.25,
                   id_column="id")
    assert all(str(i).startswith("r") for i in data.train.ids)
    assert "id" not in data.feature_names


@pytest.mark.parametrize("huge", [np.inf, 1e300, -1e39])
def test_a_regression_target_beyond_what_the_models_hold_is_refused_naming_its_rows(huge):
    """1e300 is finite, yet infinite in the models' float32: the prior's fit raised a
    ValueError (a 500 in the service, a traceback from the CLI)."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60) * 100})
    table.loc[[4, 9], "y"] = huge
    with pytest.raises(TargetTypeError, match=r"holds 2 infinite value\(s\) or value\(s\) "
                       r"beyond \+-3\.4e\+38 \(first rows: \[4, 9\]\)"):
        prepare(table.iloc[:40], "y", table.iloc[40:], task="regression")


def test_a_decimal_target_from_parquet_is_a_regression_target(tmp_path):
    """pandas reads a Parquet decimal column as Python objects: the target was taken for
    labels, a class per value (230 classes, a job 100 times slower)."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    counts = [decimal.Decimal(int(v)) for v in np.round(200 + 60 * x + rng.normal(size=300))]
    pq.write_table(pa.table({"x": x, "count": pa.array(counts, type=pa.decimal128(10, 0))}),
                   tmp_path / "counts.parquet")
    table = read_table(tmp_path / "counts.parquet")
    assert infer_task(table["count"]) == "regression"
    data = prepare(table, "count", valid_fraction=0.3, random_state=0)
    assert data.task == "regression" and data.train.y.dtype == np.float64


def test_a_column_whose_only_values_were_held_out_says_so():
    """It said "no values in the training table" of a table that has one: the only value fell
    in the rows held out for validation (with another seed the job ran)."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.normal(size=100), "promo": [None] * 100,
                          "label": np.where(rng.normal(size=100) > 0, "yes", "no")})
    row = int(prepare(table.drop(columns="promo"), "label", valid_fraction=0.2,
                      random_state=0).valid.ids[0])
    table.loc[row, "promo"] = "gold"
    with pytest.raises(EmptyColumnError, match=r"column 'promo' has no values in the training "
                       r"rows: its 1 value\(s\) are all in the rows held out for validation"):
        prepare(table, "label", valid_fraction=0.2, random_state=0)
    table.loc[:, "promo"] = None
    with pytest.raises(EmptyColumnError, match="no values in the training table;"):
        prepare(table, "label", valid_fraction=0.2, random_state=0)
