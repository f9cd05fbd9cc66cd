from __future__ import annotations

import numpy as np
import pytest

from dvrl_core import (
    ConfigError,
    DataError,
    detection_auroc,
    discovery_curve,
    found_fraction,
    inject_label_noise,
    prepare,
    removal_curves,
    training_choices,
    weighted_training,
)
from dvrl_core.datasets import make_shifted_domains, make_table
from dvrl_core.evaluation import VALIDATION_WEIGHT_RATIOS


def test_noise_injection_moves_exactly_the_fraction_to_other_classes():
    y = np.repeat(np.arange(3), 100)
    noisy, corrupted = inject_label_noise(y, 0.2, 3, random_state=5)
    assert len(corrupted) == 60
    assert np.all(noisy[corrupted] != y[corrupted])
    untouched = np.setdiff1d(np.arange(300), corrupted)
    assert np.array_equal(noisy[untouched], y[untouched])
    again, same = inject_label_noise(y, 0.2, 3, random_state=5)
    assert np.array_equal(again, noisy) and np.array_equal(same, corrupted)
    with pytest.raises(ConfigError):
        inject_label_noise(y, 1.5, 3)


def test_target_noise_moves_the_fraction_far_to_values_the_table_holds():
    """A regression target's noise: each chosen row takes another chosen row's target from the
    other half of their order, so every moved target is real and far from its own."""
    from dvrl_core.noise import inject_target_noise

    y = np.random.default_rng(0).standard_normal(500)
    noisy, corrupted = inject_target_noise(y, 0.2, random_state=3)
    assert len(corrupted) == 100 and np.array_equal(np.sort(corrupted), corrupted)
    untouched = np.setdiff1d(np.arange(500), corrupted)
    assert np.array_equal(noisy[untouched], y[untouched])
    assert np.array_equal(np.sort(noisy[corrupted]), np.sort(y[corrupted]))  # the same values
    ranks = np.argsort(np.argsort(y[corrupted]))
    new_ranks = np.argsort(np.argsort(noisy[corrupted]))
    assert np.all(np.abs(ranks - new_ranks) == 50)  # half the chosen rows away, every one
    again, same = inject_target_noise(y, 0.2, random_state=3)
    assert np.array_equal(again, noisy) and np.array_equal(same, corrupted)
    with pytest.raises(ConfigError):
        inject_target_noise(y, -0.1)


def test_discovery_figures_for_perfect_and_inverted_values():
    values = np.arange(100, dtype=float)
    corrupted = np.arange(20)  # the 20 lowest values are the corrupted rows
    assert found_fraction(values, corrupted, 0.2) == 1.0
    assert found_fraction(-values, corrupted, 0.2) == 0.0
    assert detection_auroc(values, corrupted) == 1.0
    assert detection_auroc(-values, corrupted) == 0.0
    curve = discovery_curve(values, corrupted, steps=11)
    assert curve["found"].tolist() == curve["optimal"].tolist()
    assert curve["random"].iloc[-1] == 1.0 and curve["found"].iloc[0] == 0.0


def test_removal_curves_show_removing_corrupted_rows_helps():
    table = make_table(700, n_features=6, random_state=3)
    data = prepare(table.iloc[:400], "label", table.iloc[400:550], test=table.iloc[550:])
    noisy, corrupted = inject_label_noise(data.train.y, 0.3, 2, random_state=0)
    data = data.with_train_labels(noisy)
    oracle = np.ones(len(noisy))
    oracle[corrupted] = 0.0  # perfect values: corrupted rows lowest
    curves = removal_curves(data, oracle, model="logistic_regression", random_repeats=2,
                            fractions=np.array([0.0, 0.1, 0.3]))
    assert list(curves.columns) == ["removed", "remove_lowest", "remove_highest", "random",
                                    "random_std"]
    assert curves.attrs["metric"] == "auc"
    final = curves.iloc[-1]
    assert final["remove_lowest"] > final["random"] > final["remove_highest"]
    weighted = weighted_training(data, oracle, model="logistic_regression")
    assert weighted["weighted"] > weighted["unweighted"]


def test_the_top_valued_source_rows_added_to_the_validation_rows_beat_either_alone():
    """Three in four source rows come from another domain: training on the validation rows
    alone, or on all the source rows with them (whatever their share), loses to adding only
    the source rows the values rank highest, and the cross-validation keeps no more of them
    than the target's own share."""
    source, valid, test, foreign = make_shifted_domains(800, 60, 1000, foreign=0.75,
                                                        n_features=20, random_state=0)
    data = prepare(source, "label", valid, test=test)
    values = np.random.default_rng(0).uniform(0.0, 0.1, len(source))
    values[np.setdiff1d(np.arange(len(source)), foreign)] += 1.0
    table = training_choices(data, values, model="logistic_regression", metric="accuracy")
    assert table["top_valued_fraction"] <= 0.25
    assert table["top_valued_plus_validation"] > table["validation_only"] + 0.03
    assert table["top_valued_plus_validation"] > table["tuned_uniform_plus_validation"] + 0.05
    assert table["top_valued_validation_weight_ratio"] in VALIDATION_WEIGHT_RATIOS
    # the way to train that the validation rows recommend is one that beats them alone
    assert table["recommended_score"] == table[table["recommended"]]
    assert table["recommended_score"] > table["validation_only"] + 0.03


def test_the_validation_rows_share_is_tuned_past_ten_times_where_the_source_misleads():
    """Every source row follows another rule: the cross-validation gives the validation rows
    more than 10 times the source's weight (where a shorter grid stopped), and the tuned mix
    does as well as the validation rows alone, a fair bar for what the values add."""
    source, valid, test, _ = make_shifted_domains(800, 200, 1000, foreign=1.0, n_features=20,
                                                  random_state=0)
    data = prepare(source, "label", valid, test=test)
    table = training_choices(data, np.ones(len(source)), model="logistic_regression",
                             metric="accuracy")
    assert table["uniform_validation_weight_ratio"] > 10
    assert table["tuned_uniform_plus_validation"] >= table["validation_only"]
    assert table["uniform_plus_validation"] < table["validation_only"] - 0.2


def test_the_recommended_way_to_train_is_chosen_on_the_validation_rows_not_the_test():
    """The recommendation is the best validation score among the four ways with the values, and
    it does not move when the test rows change (a user has no test labels to choose by)."""
    source, valid, test, _ = make_shifted_domains(600, 200, 1000, random_state=3)
    values = np.random.default_rng(1).uniform(0.2, 1.0, len(source))
    tables = [training_choices(prepare(source, "label", valid, test=part), values,
                               model="logistic_regression", metric="accuracy")
              for part in (test.iloc[:500], test.iloc[500:])]
    ways = ("weighted", "without_lowest", "weighted_plus_validation",
            "top_valued_plus_validation")
    for table in tables:
        on_valid = {way: table[f"validation_score_{way}"] for way in ways}
        # the best validation score (where two ways tie, either is the best)
        assert on_valid[table["recommended"]] == max(on_valid.values())
        assert table["recommended_score"] == table[table["recommended"]]
    assert tables[0]["recommended"] == tables[1]["recommended"]
    assert [tables[0][f"validation_score_{way}"] for way in ways] == \
        [tables[1][f"validation_score_{way}"] for way in ways]


def test_evaluations_refuse_rows_their_metric_cannot_score():
    """The AUC of test rows of one class is undefined: said, not returned as NaN."""
    source, valid, test, _ = make_shifted_domains(300, 100, 200, random_state=4)
    one_class = test[test["label"] == test["label"].iloc[0]]
    data = prepare(source, "label", valid, test=one_class)
    values = np.ones(len(source))
    for evaluate in (removal_curves, weighted_training):
        with pytest.raises(DataError, match="the test rows hold one class only"):
            evaluate(data, values)
    with pytest.raises(DataError, match="one class only"):
        training_choices(data, values)
    # accuracy can score them
    assert weighted_training(data, values, metric="accuracy")["weighted"] >= 0


def test_training_choices_show_what_each_way_of_training_is_worth():
    """Source rows from two domains, one labelled by another rule: weights that drop the other
    domain's rows make the target model better than uniform training, and the table also holds
    what a user gets from the validation rows alone or added to the source rows."""
    source, valid, test, foreign = make_shifted_domains(600, 200, 1000, random_state=0)
    data = prepare(source, "label", valid, test=test)
    weights = np.ones(len(source))
    weights[foreign] = 0.0
    table = training_choices(data, weights, model="logistic_regression", remove_fraction=0.4)
    assert table["metric"] == "auc" and table["model"] == "logistic_regression"
    assert table["weighted"] > table["uniform"] + 0.05
    assert table["without_lowest"] == pytest.approx(table["weighted"], abs=0.02)
    assert table["weighted_plus_validation"] >= table["weighted"] - 0.02
    assert 0.5 < table["validation_only"] <= 1.0
    assert table["uniform"] < table["uniform_plus_validation"] + 0.05
    with pytest.raises(ConfigError, match="test split"):
        training_choices(prepare(source, "label", valid), weights)
    with pytest.raises(ConfigError, match="non-negative"):
        training_choices(data, -weights)


@pytest.mark.parametrize("model", ["logistic_regression", "bernoulli_naive_bayes"])
def test_values_weigh_rows_relative_to_each_other_whatever_their_scale(model):
    """Values are relative weights: ten times the values, or a tenth of them, train the same
    models every way, and values all equal train the uniform model, although the model's
    regularisation (an L2 penalty, Laplace smoothing) does not grow with the rows' total."""
    source, valid, test, foreign = make_shifted_domains(600, 200, 1000, random_state=5)
    data = prepare(source, "label", valid, test=test)
    values = np.random.default_rng(2).uniform(0.05, 0.6, len(source))
    values[foreign] *= 0.2
    tables = [training_choices(data, values * scale, model=model, remove_fraction=0.4)
              for scale in (1.0, 10.0, 0.1)]
    for table in tables[1:]:
        for way, figure in tables[0].items():
            assert table[way] == (pytest.approx(figure) if isinstance(figure, float) else figure)
    plain = weighted_training(data, np.full(len(source), 0.05), model=model)
    assert plain["weighted"] == pytest.approx(plain["unweighted"])


def test_values_that_are_not_one_number_per_training_row_are_said_by_every_evaluation():
    """A wrong length or a 2-D array raised IndexError in weighted_training; NaN, negative or
    all-zero weights were used as given (all zeros scored 0.5)."""
    source, valid, test, _ = make_shifted_domains(300, 100, 200, random_state=4)
    data = prepare(source, "label", valid, test=test)
    n = len(source)
    nan = np.ones(n)
    nan[3] = np.nan
    for evaluate in (removal_curves, weighted_training, training_choices):
        with pytest.raises(ConfigError, match=f"one .* per training row is needed: {n} in a "
                                              r"flat array, not an array of shape \(5,\)"):
            evaluate(data, np.ones(5))
        with pytest.raises(ConfigError, match=r"not an array of shape \(300, 2\)"):
            evaluate(data, np.ones((n, 2)))
        with pytest.raises(ConfigError, match="1 .*s are NaN or infinite"):
            evaluate(data, nan)
    for evaluate in (weighted_training, training_choices):
        with pytest.raises(ConfigError, match="non-negative and not all zero"):
            evaluate(data, np.zeros(n))
    assert len(removal_curves(data, -np.arange(n), model="logistic_regression")) > 0


def test_settings_out_of_range_are_refused_by_name():
    """Each was accepted into nonsense (a row for removing 150% of the rows, NaN columns, an
    average over twice the run) or failed in Python (ZeroDivisionError, TypeError)."""
    from dvrl_core import DVRL, prepare, removal_curves
    from dvrl_core.datasets import make_table
    from dvrl_core.errors import ConfigError
    from dvrl_core.methods import make_method

    table = make_table(200, n_features=3, random_state=0)
    data = prepare(table.iloc[:150], "label", table.iloc[150:])
    for call, said in (
            (lambda: DVRL(average_fraction=2.0), "average_fraction is the share"),
            (lambda: DVRL(iterations=3).fit(data, checkpoint_every=0), "checkpoint_every"),
            (lambda: make_method("knn_shapley", bogus=1), "knn_shapley takes no option 'bogus'"),
            (lambda: found_fraction(np.arange(10.0), [1], 1.5), "inspected is the share"),
            (lambda: removal_curves(data, np.ones(150), fractions=np.array([0, 1.5])),
             "fractions are shares of the rows to remove, in [0, 1), not [1.5]"),
            (lambda: removal_curves(data, np.ones(150), random_repeats=0), "random_repeats"),
            (lambda: prepare(table, "label", valid_fraction=0.2, max_categories=-1),
             "max_categories must be a positive whole number")):
        with pytest.raises(ConfigError, match=said):
            call()
