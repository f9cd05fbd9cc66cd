"""Validation rows that repeat training rows (dvrl_core.overlap): counted, and warned about."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dvrl_core import checks, overlap, prepare
from dvrl_core.datasets import make_table


def _with_copies(copies: int, relabelled: int = 0):
    """400 training rows and 100 validation rows, ``copies`` of them copied from training rows,
    ``relabelled`` more copied with their label changed."""
    table = make_table(600, n_features=4, random_state=1)
    train, fresh = table.iloc[:400], table.iloc[400:]
    copied = train.iloc[:copies]
    changed = train.iloc[copies:copies + relabelled].copy()
    changed["label"] = np.where(changed["label"] == table["label"].iloc[0],
                                table["label"][table["label"] != table["label"].iloc[0]].iloc[0],
                                table["label"].iloc[0])
    valid = pd.concat([copied, changed, fresh.iloc[: 100 - copies - relabelled]])
    return prepare(train, "label", valid)


def test_copies_of_training_rows_are_counted_and_a_changed_label_is_no_copy(monkeypatch):
    data = _with_copies(30, relabelled=20)
    assert overlap.copied_validation_rows(data) == 30
    monkeypatch.setattr(overlap, "HASH_ROWS", 7)  # the same across blocks of any size
    assert overlap.copied_validation_rows(data) == 30


def test_a_job_warns_when_a_quarter_of_its_validation_rows_are_copies():
    few, many = _with_copies(10), _with_copies(60)
    assert checks.summary_checks(few) == {"validation_copies": 10, "warnings": []}
    report = checks.summary_checks(many)
    assert report["validation_copies"] == 60
    assert report["warnings"][0].startswith("60 of the 100 validation rows (60%) repeat a "
                                            "training row as the model sees it")


def test_a_valuation_in_a_notebook_carries_the_warning_and_shows_in_one_short_line():
    from dvrl_core import DVRL

    result = DVRL(iterations=1, random_state=0).fit(_with_copies(60))
    assert result.diagnostics["validation_copies"] == 60
    assert result.diagnostics["warnings"][0].startswith("60 of the 100 validation rows")
    shown = repr(result)
    assert shown.startswith("<ValuationResult: 400 rows; values ")
    assert "returned: learned values; trust: not checked" in shown
    assert "; 1 warning; cpu, " in shown
    assert len(shown) < 400 and "\n" not in shown  # no arrays of numbers
