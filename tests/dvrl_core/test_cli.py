from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dvrl_core.datasets import make_sites, make_table


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvrl_core.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def run_cli_here(*args: str) -> subprocess.CompletedProcess:
    """As :func:`run_cli`, in this process: for error paths that end before any valuation (a
    process of their own costs seconds of imports each). An exception the command does not
    turn into its one error line fails the test."""
    from dvrl_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    table = make_table(500, n_features=6, signal=3.0, random_state=5)
    table.insert(0, "customer", [f"c{i:04d}" for i in range(len(table))])
    table.iloc[:350].to_csv(folder / "train.csv", index=False)
    table.iloc[350:].to_parquet(folder / "valid.parquet")
    return folder


def test_value_writes_one_row_per_training_row_in_input_order(tables):
    out = tables / "values.csv"
    done = run_cli("value", str(tables / "train.csv"), "--target", "label", "--valid",
                   str(tables / "valid.parquet"), "--iterations", "40", "--seed", "3",
                   "--id-column", "customer", "--inject-noise", "0.2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    values = pd.read_csv(out)
    assert {"row", "value", "rank", "label", "noise_injected"} <= set(values.columns)
    assert values["row"].tolist() == [f"c{i:04d}" for i in range(350)]
    assert sorted(values["rank"]) == list(range(1, 351))
    assert values["noise_injected"].sum() == 70
    assert "lowest-valued rows" in done.stderr and "found among the lowest" in done.stderr
    assert "official marginal alone" in done.stderr and "trust check" in done.stderr
    assert "warning" not in done.stderr  # the validation rows are apart from the training rows


def test_parquet_output_row_numbers_and_same_seed_same_file(tables):
    outputs = []
    for name in ("a.parquet", "b.parquet"):
        done = run_cli("value", str(tables / "train.csv"), "--target", "label",
                       "--valid-fraction", "0.3", "--iterations", "10", "--quiet",
                       "--out", str(tables / name))
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        outputs.append(pd.read_parquet(tables / name))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    rows = outputs[0]["row"].tolist()
    assert rows == sorted(rows) and len(rows) == 245 and max(rows) < 350


def test_values_to_standard_output(tables, tmp_path):
    done = run_cli("value", str(tables / "train.csv"), "--target", "label", "--valid",
                   str(tables / "valid.parquet"), "--iterations", "5", "--quiet")
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "row,value,rank,label"
    assert len(done.stdout.splitlines()) == 351
    every_feature = done.stdout
    # "--out -" is standard output too (it wrote a file named "-"); --features names the
    # columns to use (a column the tables share no values of could not be left out)
    done = run_cli("value", str(tables / "train.csv"), "--target", "label", "--valid",
                   str(tables / "valid.parquet"), "--iterations", "5", "--features", "x0",
                   "x1", "--out", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 351 and not (tmp_path / "-").exists()
    assert done.stdout != every_feature  # two features value the rows otherwise


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "no column 'nope'"),
        (["--target", "label", "--predictor", "svm"],
         "unknown predictor 'svm'; choose one of ['auto', "),
        (["--target", "label", "--iterations", "0"], "iterations"),
        (["--target", "label", "--inject-noise", "1.5"], "between 0 and 1"),
        (["--target", "label", "--device", "tpu"], "device must be auto, cpu or cuda"),
        (["--target", "label", "--seed", "-1"], "--seed must be between 0 and 2147483647"),
        (["--target", "label", "--seed", str(2**31)], "--seed must be between 0 and"),
        (["--target", "label", "--predictor", ""], "--predictor is empty"),
        (["--target", "label", "--out", ""], "--out is empty"),  # it wrote to stdout
        # refused before the run, which would otherwise be lost
        (["--target", "label", "--out", "/nonexistent/dir/v.csv"], "does not exist"),
        (["--target", "label", "--out", "/proc/v.csv"], "/proc/v.csv: cannot be written"),
        (["--target", "label", "--out", "values.xlsx"], ".xlsx is not written here"),
        (["--target", "label", "--features", "x0", "nope"], "no column 'nope'"),
    ],
)
def test_errors_print_one_line_and_exit_2(tables, args, message):
    done = run_cli_here("value", str(tables / "train.csv"), "--valid",
                   str(tables / "valid.parquet"), *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in done.stderr


def test_a_regression_target_takes_injected_noise_and_finds_the_moved_targets(tmp_path):
    """--inject-noise on a regression target moves targets far (it used to be refused): the
    summary says how many, and the values rank most of them lowest."""
    table = make_table(700, n_features=5, task="regression", random_state=1)
    table.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[400:].to_csv(tmp_path / "valid.csv", index=False)
    out = tmp_path / "values.csv"
    done = run_cli("value", str(tmp_path / "train.csv"), "--target", "label", "--valid",
                   str(tmp_path / "valid.csv"), "--inject-noise", "0.2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "injected noise: 80 targets moved" in done.stderr
    values = pd.read_csv(out)
    moved = values["noise_injected"].to_numpy()
    lowest = values.nsmallest(80, "value")
    assert moved.sum() == 80 and lowest["noise_injected"].mean() > 0.6  # random: 0.2


def test_missing_file_and_missing_validation(tables):
    done = run_cli_here("value", str(tables / "nothing.csv"), "--target", "label",
                        "--valid-fraction", "0.2")
    assert done.returncode == 2 and "no such file" in done.stderr
    done = run_cli_here("value", str(tables / "train.csv"), "--target", "label")
    assert done.returncode == 2 and "--valid" in done.stderr


def test_tables_that_cannot_be_valued_are_named_without_a_traceback(tmp_path):
    """A header without rows, a column name twice, text that is not UTF-8, a folder given as
    the table, and a validation fraction that leaves too few rows: one line each, exit 2."""
    good = make_table(80, n_features=2, random_state=0)
    (tmp_path / "header.csv").write_text("x0,x1,label\n")
    good.to_csv(tmp_path / "twice.csv", index=False, header=["x0", "x0", "label"])
    latin = good.assign(label=np.where(good["label"] == good["label"].iloc[0], "caf\u00e9",
                                       "th\u00e9"))
    (tmp_path / "latin1.csv").write_bytes(latin.to_csv(index=False).encode("latin-1"))
    (tmp_path / "latin1_header.csv").write_bytes(
        good.to_csv(index=False, header=["gr\u00f6\u00dfe", "x1", "label"]).encode("latin-1"))
    (tmp_path / "utf16.csv").write_bytes(good.to_csv(index=False, sep="\t").encode("utf-16"))
    good.to_csv(tmp_path / "t.csv.gz", index=False)  # its bytes came back as a parse error
    (tmp_path / "excel.csv").write_text("sep=;\r\n" + good.to_csv(index=False, sep=";"))
    cases = [("t.csv.gz", "0.3", "the file is gzip-compressed; give the CSV uncompressed"),
             ("excel.csv", "0.3", "the file's first line is Excel's delimiter hint (sep=...)"),
             ("header.csv", "0.3", "the training table has no rows"),
             ("latin1_header.csv", "0.3", "not UTF-8 text"),
             ("utf16.csv", "0.3", "the file is UTF-16 text, not UTF-8; save it as UTF-8"),
             ("twice.csv", "0.3", "duplicate column names: ['x0']"),
             ("latin1.csv", "0.3", "not UTF-8 text (columns ['label'])"),
             (".", "0.3", "a directory, not a table file")]
    for name, fraction, message in cases:
        done = run_cli_here("value", str(tmp_path / name), "--target", "label", "--valid-fraction",
                       fraction)
        assert done.returncode == 2, (name, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (name, lines)
    good.to_csv(tmp_path / "good.csv", index=False)
    # a test table the removal test's AUC cannot score: said before the run, not after it
    good[good["label"] == good["label"].iloc[0]].to_csv(tmp_path / "one.csv", index=False)
    done = run_cli_here("value", str(tmp_path / "good.csv"), "--target", "label",
                        "--valid-fraction", "0.3", "--test", str(tmp_path / "one.csv"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: the test rows hold one class only")
    assert "give a --test table with rows of both classes" in done.stderr
    done = run_cli_here("value", str(tmp_path / "good.csv"), "--target", "label",
                        "--valid-fraction", "0.99")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "after holding out 99% of the table's 80 rows" in done.stderr
    assert "hold out a smaller fraction" in done.stderr


def test_demo_values_a_generated_table(tmp_path):
    done = run_cli("demo", "--rows", "300", "--iterations", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "injected noise: 60 labels flipped" in done.stderr
    assert len(pd.read_csv(tmp_path / "dvrl-demo-values.csv")) == 300


def test_method_data_oob_values_every_row_and_reports_the_noise_found(tables):
    out = tables / "oob.csv"
    done = run_cli("value", str(tables / "train.csv"), "--target", "label", "--valid",
                   str(tables / "valid.parquet"), "--method", "data_oob", "--seed", "1",
                   "--id-column", "customer", "--inject-noise", "0.2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    values = pd.read_csv(out)
    assert values["row"].tolist() == [f"c{i:04d}" for i in range(350)]
    assert sorted(values["rank"]) == list(range(1, 351)) and values["value"].between(0, 1).all()
    assert "with data_oob" in done.stderr and "found among the lowest" in done.stderr
    assert "step 300/300" in done.stderr and "reward" not in done.stderr  # trees, no reward
    found = values.sort_values("rank").head(70)["noise_injected"].mean()
    assert found > 0.4  # random inspection: 0.2


def test_dvrl_options_are_refused_with_a_baseline(tables):
    done = run_cli_here("value", str(tables / "train.csv"), "--target", "label",
                        "--valid-fraction", "0.3", "--method", "knn_shapley", "--rollouts", "4")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --rollouts: options of --method dvrl, not of knn_shapley"
    done = run_cli_here("value", str(tables / "train.csv"), "--target", "label",
                        "--valid-fraction", "0.3", "--method", "data_oob", "--iterations", "20")
    assert done.stderr.strip() == "error: --iterations: options of --method dvrl, not of data_oob"


def test_values_are_never_written_over_an_input_table(tables, tmp_path):
    """--out naming the training or the validation table (by another path, too) is refused
    before the run: the table is still there, unchanged."""
    shutil.copy(tables / "train.csv", tmp_path / "train.csv")
    shutil.copy(tables / "train.csv", tmp_path / "valid.csv")
    before = (tmp_path / "train.csv").read_bytes()
    for out, which in ((tmp_path / "train.csv", "train"), (tmp_path / "sub/../valid.csv", "valid")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        done = run_cli_here("value", str(tmp_path / "train.csv"), "--target", "label",
                            "--valid", str(tmp_path / "valid.csv"), "--iterations", "5",
                            "--out", str(out))
        assert done.returncode == 2
        assert f"is the {which} table" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "train.csv").read_bytes() == before
    assert (tmp_path / "valid.csv").read_bytes() == before


def test_a_path_that_is_not_a_file_is_named_for_what_it_is(tables):
    done = run_cli_here("value", os.devnull, "--target", "label", "--valid-fraction", "0.3")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {os.devnull}: not a table file (a device, a pipe...)"


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    # `dvrl value ... | head`: more output than a pipe holds, the reader gone after one line
    make_table(6000, n_features=4, signal=3.0, random_state=2).to_csv(tmp_path / "t.csv",
                                                                      index=False)
    with subprocess.Popen(
            [sys.executable, "-m", "dvrl_core.cli", "value", str(tmp_path / "t.csv"), "--target",
             "label", "--valid-fraction", "0.1", "--iterations", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith("row,value,rank,label")
        process.stdout.close()
        error = process.stderr.read()
        assert process.wait(timeout=300) == 0, error
    assert "Traceback" not in error and "BrokenPipe" not in error


def test_a_test_table_adds_the_removal_test_to_the_summary(tmp_path):
    """With --test the summary says what removing the lowest-valued rows does to a model scored
    on the user's test rows: on a table with flipped labels, more good than removing the
    highest-valued ones."""
    import re

    table = make_table(1100, n_features=6, signal=3.0, random_state=8)
    table.iloc[:600].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[600:800].to_csv(tmp_path / "valid.csv", index=False)
    table.iloc[800:].to_csv(tmp_path / "test.csv", index=False)
    done = run_cli("value", str(tmp_path / "train.csv"), "--target", "label", "--valid",
                   str(tmp_path / "valid.csv"), "--test", str(tmp_path / "test.csv"),
                   "--iterations", "10", "--inject-noise", "0.3", "--out",
                   str(tmp_path / "values.csv"))
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("removal test"))
    assert "(lightgbm, auc, 600 training rows)" in line
    lowest = re.search(r"lowest-valued 10%/20%/30% ([\d.]+)/([\d.]+)/([\d.]+)", line)
    highest = re.search(r"highest-valued ([\d.]+)/([\d.]+)/([\d.]+)", line)
    assert lowest and highest, line
    lowest, highest = [float(s) for s in lowest.groups()], [float(s) for s in highest.groups()]
    assert lowest[-1] > highest[-1] + 0.05


def test_validation_rows_from_one_site_weight_its_rows_and_the_summary_says_so(tmp_path):
    """Validation rows from one of the two sites the training rows come from: the summary
    reports the covariate shift, the rows of that site are valued highest, and --shift off
    leaves the values unweighted."""
    train, valid, site_a = make_sites(900, 300, random_state=2)
    train.to_csv(tmp_path / "train.csv", index=False)
    valid.to_csv(tmp_path / "valid.csv", index=False)
    tops = {}
    for setting in ("auto", "off"):
        out = tmp_path / f"values_{setting}.csv"
        done = run_cli("value", str(tmp_path / "train.csv"), "--target", "sales", "--valid",
                       str(tmp_path / "valid.csv"), "--shift", setting, "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert ("covariate shift: a classifier tells the validation rows from the training "
                "rows" in done.stderr) == (setting == "auto")
        values = pd.read_csv(out)["value"].to_numpy()
        tops[setting] = site_a[np.argsort(-values, kind="stable")[:360]].mean()
    assert tops["auto"] > 0.9 and tops["auto"] > tops["off"] + 0.1  # 40% are site a


def test_the_training_table_as_its_own_validation_table_is_warned_about(tables):
    done = run_cli("value", str(tables / "train.csv"), "--target", "label", "--valid",
                   str(tables / "train.csv"), "--iterations", "5", "--out",
                   str(tables / "self.csv"))
    assert done.returncode == 0, done.stderr
    assert ("warning: 350 of the 350 validation rows (100%) repeat a training row as the model "
            "sees it"
            in done.stderr)


def test_values_that_cannot_be_written_to_standard_output_are_one_error_line(tables):
    """> /dev/full raised a pandas OSError with a traceback and exit 1."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "dvrl_core.cli", "value",
                               str(tables / "train.csv"), "--target", "label",
                               "--valid-fraction", "0.3", "--iterations", "1", "--quiet"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: cannot write the values to standard output (No space "
                                  "left on device); give --out FILE")
