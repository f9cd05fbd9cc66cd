"""The summary's warnings about the validation rows: a class they barely show."""

from __future__ import annotations

import numpy as np

from dvrl_core import checks, prepare
from dvrl_core.datasets import make_table


def _three_classes(rare_in_valid: int):
    table = make_table(400, n_features=3, n_classes=3, random_state=0)
    train, valid = table.iloc[:250], table.iloc[250:]
    rare = valid["label"] == "class_2"
    valid = valid[~rare | (rare.cumsum() <= rare_in_valid)]
    return prepare(train, "label", valid)


def test_a_class_with_few_validation_rows_is_named_with_its_training_rows():
    data = _three_classes(rare_in_valid=1)
    training = int(np.sum(data.train.y == data.classes.index("class_2")))
    warning = checks.thin_class_warning(data)
    assert warning.startswith(f"few validation rows show class 'class_2' (1 validation row, "
                              f"{training} training): the values of those classes' training "
                              "rows rest on them alone")
    assert checks.summary_checks(data)["warnings"] == [warning]


def test_enough_rows_of_every_class_and_regression_warn_of_nothing():
    assert checks.thin_class_warning(_three_classes(rare_in_valid=5)) is None
    regression = make_table(120, n_features=3, task="regression", random_state=0)
    assert checks.thin_class_warning(prepare(regression, "label", regression)) is None


def test_labels_that_differ_only_in_case_or_spaces_are_said():
    """'>50K' and '>50K ' (an export's slip) were valued as two classes without a word: the
    lowest-valued rows were all of the one written with a space."""
    table = make_table(400, n_features=3, random_state=0)
    rng = np.random.default_rng(0)
    slips = {"class_0": ["class_0", "Class_0", "class_0 "], "class_1": ["class_1"]}
    table["label"] = [rng.choice(slips[label]) for label in table["label"]]
    data = prepare(table.iloc[:300], "label", table.iloc[300:])
    warning = checks.look_alike_class_warning(data)
    assert warning == ("classes whose labels differ only in case or surrounding spaces are "
                       "valued as different classes: 'Class_0', 'class_0', 'class_0 '. If they "
                       "are one class, write its label one way")
    assert warning in checks.summary_checks(data)["warnings"]
    assert checks.look_alike_class_warning(_three_classes(rare_in_valid=5)) is None
