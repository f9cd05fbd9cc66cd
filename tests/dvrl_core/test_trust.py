"""The pooled prior, the trust checks and the guard: behaviour a user of the values notices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dvrl_core import (
    DVRL,
    ConfigError,
    Split,
    detection_auroc,
    found_fraction,
    inject_label_noise,
    prepare,
)
from dvrl_core.controls import CONTROLS, all_controls, marginal_control
from dvrl_core.datasets import make_table
from dvrl_core.methods import make_method
from dvrl_core.prior import (
    DEEP_ROWS,
    PARALLEL_ROWS,
    fit_threads,
    given_label_probability,
    kinds_for,
    pooled_prior,
    source_names,
)
from dvrl_core.trust import (
    Planted,
    TrustCheck,
    learned_values_earn_their_place,
    learned_values_out_of_reach,
    plant,
    removal_check,
    split_check_rows,
    split_halves,
    with_planted,
)


def _noisy(table: pd.DataFrame, n_train: int, seed: int = 0):
    data = prepare(table.iloc[:n_train], "label", table.iloc[n_train:])
    noisy, corrupted = inject_label_noise(data.train.y, 0.2, data.n_classes, random_state=seed)
    return data.with_train_labels(noisy), corrupted


@pytest.fixture(scope="module")
def linear():
    return _noisy(make_table(900, n_features=8, signal=3.0, random_state=3), 600)


@pytest.fixture(scope="module")
def xor():
    """Labels a linear model cannot learn (the sign of x0 * x1): a tree model can."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1400, 4))
    label = np.where(x[:, 0] * x[:, 1] > 0, "a", "b")
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)]).assign(label=label)
    return _noisy(table, 1000)


def test_the_pool_leans_on_the_sources_that_predict_the_validation_labels(xor):
    data, corrupted = xor
    prior = pooled_prior(data, random_state=0)
    assert all(w >= 0 for w in prior.weights.values())
    assert set(prior.weights) == set(source_names(("logistic", "lightgbm", "neighbours")))
    trees = sum(w for name, w in prior.weights.items() if name.endswith("lightgbm"))
    lines = sum(w for name, w in prior.weights.items() if name.endswith("logistic"))
    assert trees > lines  # the linear models know nothing here
    pooled = given_label_probability(data, prior)
    official = marginal_control(data)  # one logistic regression on the validation rows
    assert found_fraction(pooled, corrupted, 0.2) > found_fraction(official, corrupted, 0.2) + 0.2
    assert np.allclose(prior.train_probabilities.sum(1), 1.0)


def test_the_deeper_trees_join_the_pool_on_tables_of_deep_rows_and_more():
    assert kinds_for(DEEP_ROWS - 1, 10, 2) == ("logistic", "lightgbm", "neighbours")
    assert kinds_for(DEEP_ROWS, 10, 2) == ("logistic", "lightgbm", "neighbours", "lightgbm_deep")
    # wide multi-class tables (their folds drawn once) and big ones keep the cheaper pool
    assert "lightgbm_deep" not in kinds_for(5000, 256, 10)
    assert kinds_for(100_000, 10, 2) == ("logistic", "lightgbm")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((DEEP_ROWS + 400, 3))
    label = np.where(x[:, 0] * x[:, 1] > 0, "a", "b")
    table = pd.DataFrame(x, columns=["x0", "x1", "x2"]).assign(label=label)
    data, corrupted = _noisy(table, DEEP_ROWS)
    prior = pooled_prior(data, random_state=0)
    assert set(prior.weights) == set(source_names(kinds_for(DEEP_ROWS, 3, 2)))
    trees = sum(w for name, w in prior.weights.items() if "lightgbm" in name)
    assert trees > 0.5
    assert found_fraction(given_label_probability(data, prior), corrupted, 0.2) > 0.8


def test_the_prior_is_the_same_whatever_the_threads_that_fit_it(monkeypatch, xor):
    """The prior's fits run side by side on a machine with several cores; a user gets the same
    values on one core as on many, to the bit."""
    data, _ = xor
    one, three = (pooled_prior(data, random_state=0, threads=t) for t in (1, 3))
    assert np.array_equal(one.train_probabilities, three.train_probabilities)
    assert one.weights == three.weights
    # tables of up to PARALLEL_ROWS rows fit side by side, as many at once as the budget has
    # threads; bigger ones one at a time, each LightGBM model taking the whole budget
    from dvrl_core import prior as prior_module

    monkeypatch.setattr(prior_module, "thread_budget", lambda: 4)
    assert fit_threads(1400) == 4 and fit_threads(PARALLEL_ROWS) == 4
    assert fit_threads(PARALLEL_ROWS + 1) == 1


def test_the_pool_weights_a_useless_source_at_zero_and_a_good_one_above():
    """The pool's fit: a source that knows the labels gets weight, one that is noise gets none
    (exactly zero, the bound), and the fitted point is a minimum of the penalised likelihood."""
    from dvrl_core.prior import _fit_pool

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    good = np.full((400, 3), 0.1)
    good[np.arange(400), y] = 0.8
    good[rng.random(400) < 0.2] = 1 / 3  # sometimes unsure
    noise = rng.dirichlet(np.ones(3), 400)
    logs = np.log(np.stack([good, noise]))
    weights, bias, nll = _fit_pool(logs, y)
    assert weights[0] > 0.5 and weights[1] == 0.0
    assert nll < np.log(3) - 0.3

    def penalised(w: np.ndarray, b: np.ndarray) -> float:
        scores = np.einsum("k,kmc->mc", w, logs) + b
        scores -= scores.max(1, keepdims=True)
        log_q = scores - np.log(np.exp(scores).sum(1, keepdims=True))
        return -log_q[np.arange(400), y].mean() + 1e-2 * ((w ** 2).sum() + (b ** 2).sum())

    best = penalised(weights, bias)
    for step in ([0.05, 0.0, 0, 0, 0], [-0.05, 0.0, 0, 0, 0], [0, 0.05, 0, 0, 0],
                 [0, 0, 0.05, -0.05, 0]):
        moved = np.concatenate([weights, bias]) + np.array(step)
        assert penalised(moved[:2], moved[2:]) > best


def test_no_row_is_scored_by_a_model_that_saw_it():
    """Labels drawn at random: a tree model that had seen a row would give its label a high
    probability; fitted without it, it can only guess. The training rows and the validation rows
    folded in with them (the joint sources) are both cross-fitted."""
    from dvrl_core.prior import _cross_fit, _fit_predict

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((600, 5)).astype(np.float32), rng.integers(0, 2, 600)
    xv, yv = rng.standard_normal((200, 5)).astype(np.float32), rng.integers(0, 2, 200)
    fitted = _cross_fit("lightgbm", x, y, 2, seed=0, joined=(xv, yv))
    for own, labels in ((fitted.own, y), (fitted.joined, yv)):
        given = own[np.arange(len(labels)), labels]
        assert abs(given.mean() - 0.5) < 0.05  # a guess, not a memory
    memory = _fit_predict("lightgbm", x, y, [x], 2, seed=0)[0]
    assert memory[np.arange(len(y)), y].mean() > 0.6  # what a model that saw the rows says


def test_the_reweighted_round_finds_more_flipped_labels(monkeypatch):
    """The second round weighs each training row by the first pool's belief in its label: the
    models that score the other rows learn less from the flipped ones."""
    from dvrl_core import prior as prior_module

    table = make_table(2200, n_features=10, signal=2.0, random_state=7)
    data = prepare(table.iloc[:2000], "label", table.iloc[2000:])
    noisy, corrupted = inject_label_noise(data.train.y, 0.3, data.n_classes, random_state=1)
    data = data.with_train_labels(noisy)
    reweighted = given_label_probability(data, pooled_prior(data, random_state=0))
    monkeypatch.setattr(prior_module, "REWEIGHTED_ROUNDS", 0)
    once = given_label_probability(data, pooled_prior(data, random_state=0))
    assert detection_auroc(reweighted, corrupted) > detection_auroc(once, corrupted)
    assert found_fraction(reweighted, corrupted, 0.3) > found_fraction(once, corrupted, 0.3)


def test_every_control_scores_every_training_row(linear):
    data, corrupted = linear
    controls = all_controls(data, random_state=0)
    assert set(controls) == set(CONTROLS)
    for name, values in controls.items():
        assert values.shape == (len(data.train),), name
        assert detection_auroc(values, corrupted) > 0.7, name  # informative, each of them


def test_a_check_tells_informative_values_from_random_ones(linear):
    data, corrupted = linear
    reward, check = split_check_rows(data, 0.4, random_state=0)
    assert check is not None and len(reward.valid) + len(check) == len(data.valid)
    truth = np.ones(len(data.train))
    truth[corrupted] = 0.0  # values that know exactly which rows were flipped
    noise = np.random.default_rng(0).random(len(data.train))
    report = removal_check(reward, check, {"truth": truth, "noise": noise}, ours="truth")
    assert report.scores["truth"] > report.random > report.scores["noise"] - 3 * report.random_std
    assert report.verdict.startswith("confirmed")
    assert report.judge("noise").startswith("not confirmed")


def test_values_are_called_worse_than_the_control_only_beyond_the_check_rows_chance(linear):
    data, corrupted = linear
    reward, check = split_check_rows(data, 0.4, random_state=0)
    truth = np.ones(len(data.train))
    truth[corrupted] = 0.0
    noise = np.random.default_rng(0).random(len(data.train))
    report = removal_check(reward, check, {"noise": noise, "control": truth}, ours="noise",
                           control="control")
    assert report.verdict.startswith("worse than the simple control")
    assert report.scores["control"] - report.scores["noise"] > report.control_margin > 0
    assert set(report.to_dict()) >= {"margin", "control_margin", "verdict", "scores"}
    assert "losses" not in report.to_dict()

    # the same means, but one check row's loss makes the whole difference: chance, not a call
    lucky = np.zeros(50)
    lucky[0] = 50 * 0.3
    made = TrustCheck("mse", 50, 0.2, -1.0, {"ours": -1.0, "control": -0.7}, -1.2, 0.01, "",
                      losses={"ours": np.full(50, 1.0), "control": np.full(50, 1.0) - lucky})
    assert made.judge("ours", "control").startswith("confirmed")  # 0.2 over random, 0.02 asked
    assert made.control_margin > 0.3
    steady = TrustCheck("mse", 50, 0.2, -1.0, {"ours": -1.0, "control": -0.7}, -1.2, 0.01, "",
                        losses={"ours": np.full(50, 1.0),
                                "control": np.full(50, 0.7) + np.linspace(-0.01, 0.01, 50)})
    assert steady.judge("ours", "control").startswith("worse than the simple control")


def test_planted_rows_never_reach_the_result_and_the_report_says_what_was_returned(linear):
    data, _ = linear
    result = DVRL(iterations=40, rollouts=8, random_state=0, device="cpu").fit(data)
    assert len(result.values) == len(data.train)
    assert list(result.ids) == list(data.train.ids)
    trust = result.diagnostics["trust"]
    assert trust["returned"] in ("dvrl", "prior")
    planted = trust["planted"]
    assert planted["flipped"] == planted["rows"] // 2 and planted["rows"] > 0
    assert set(planted["auroc"]) == {"dvrl", "prior", "control"}
    assert trust["check_rows"] + planted["rows"] + 225 >= len(data.valid)


def test_the_guard_returns_the_prior_when_learning_made_things_worse(linear):
    """Learned values that tell the planted flips apart worse than the prior are not returned:
    the prior is, and the report says so; better learned values are returned as they are."""
    data, corrupted = linear
    reward, check = split_check_rows(data, 0.25, random_state=0)
    to_plant, held_out = split_halves(check, 0)
    planted = plant(to_plant, data.n_classes, 0)
    joined = with_planted(reward, planted)
    n = len(data.train)
    truth = np.ones(len(joined.train))
    truth[corrupted] = 0.0
    truth[n + planted.flipped] = 0.0
    prior = truth + np.random.default_rng(1).normal(0, 1.0, len(truth))  # informative
    scrambled = np.random.default_rng(2).random(len(truth))  # what a lost run would give
    dvrl = DVRL(random_state=0)
    values, report = dvrl._check(joined, n, planted, held_out, scrambled, prior, seed=0)
    assert report["returned"] == "prior" and np.array_equal(values, prior[:n])
    assert report["planted"]["auroc"]["prior"] > report["planted"]["auroc"]["dvrl"]
    assert len(values) == n  # planted rows never reach the result
    values, report = dvrl._check(joined, n, planted, held_out, truth, prior, seed=0)
    assert report["returned"] == "dvrl" and np.array_equal(values, truth[:n])
    assert report["verdict"].startswith("confirmed")
    unguarded = DVRL(random_state=0, guard=False)
    assert unguarded._check(joined, n, planted, held_out, scrambled, prior,
                            seed=0)[1]["returned"] == "dvrl"
    with pytest.raises(ConfigError):
        DVRL(check_fraction=1.0)


def test_the_guard_asks_for_two_standard_errors_of_the_priors_auroc():
    """Adult, 5,000 rows, split 0, seed 1: learned values at planted AUROC 0.997 against the
    prior's 0.971 (25 flipped of 50 planted rows; one standard error 0.025) found fewer flipped
    rows than the prior (0.689 against 0.735). That tie is kept out; a clear gain is not."""
    rows = Split(np.zeros((50, 1)), np.zeros(50, dtype=int), np.arange(50))
    planted = Planted(rows, np.arange(25))
    assert not learned_values_earn_their_place({"dvrl": 0.997, "prior": 0.971}, planted)
    assert learned_values_earn_their_place({"dvrl": 1.0, "prior": 0.9}, planted)


def test_a_run_gives_up_on_learned_values_a_standard_error_short_of_the_guards_bar():
    """The Adult protocol, seed 0, at iteration 200: the averaged values told the planted flips
    (25 of 50 rows) apart with AUROC 0.925, above the prior's 0.899 but far from the bar (0.991,
    one standard error 0.046): the run gives up. Values within a standard error of the bar go
    on; values that clear it are not given up on."""
    rows = Split(np.zeros((50, 1)), np.zeros(50, dtype=int), np.arange(50))
    planted = Planted(rows, np.arange(25))
    assert learned_values_out_of_reach({"dvrl": 0.925, "prior": 0.899}, planted)
    assert learned_values_out_of_reach({"dvrl": 0.85, "prior": 0.899}, planted)
    assert not learned_values_out_of_reach({"dvrl": 0.96, "prior": 0.899}, planted)
    assert not learned_values_out_of_reach({"dvrl": 1.0, "prior": 0.899}, planted)
    assert not learned_values_earn_their_place({"dvrl": 0.96, "prior": 0.899}, planted)


def test_methods_resolve_by_name():
    assert isinstance(make_method("dvrl", iterations=3), DVRL)
    with pytest.raises(ConfigError, match="unknown method"):
        make_method("nope")


def test_a_prior_that_is_returned_has_seen_every_validation_row(linear):
    """One iteration learns nothing that earns its place: the prior comes back, fitted again on
    all validation rows once the check has decided (the held-out rows are clean data too)."""
    from dvrl_core.seeding import child_seeds

    data, _ = linear
    result = DVRL(iterations=1, rollouts=4, random_state=0, device="cpu").fit(data)
    assert result.diagnostics["trust"]["returned"] == "prior"
    every_row = given_label_probability(data, pooled_prior(data, child_seeds(0)[3]))
    assert np.allclose(result.values, every_row, rtol=0, atol=1e-6)  # via the float32 marginal


def test_a_regression_table_with_enough_validation_rows_is_checked_with_a_regression_model():
    """Regression jobs hold validation rows out too: half are planted among the training rows
    with their targets moved, half score the removal test, which needs a model that does
    regression (it once tried a logistic regression and the job failed)."""
    from dvrl_core import DVRL, prepare

    table = make_table(700, n_features=5, task="regression", random_state=3)
    data = prepare(table.iloc[:400], "label", table.iloc[400:])  # 300 validation rows
    result = DVRL(iterations=5, random_state=0).fit(data)
    trust = result.diagnostics["trust"]
    assert trust["metric"] == "mse" and trust["check_rows"] == 38
    assert trust["planted"]["rows"] == 37 and trust["planted"]["flipped"] == 18
    assert trust["planted"]["auroc"]["prior"] > 0.9  # moved targets stand out
    assert np.isfinite(result.values).all() and len(result.values) == 400


@pytest.fixture(scope="module")
def curved():
    """A regression target a linear model cannot fit (y = x0^2 + x1), 20% of training targets
    moved far: the tree model of the pool sees what the linear controls miss."""
    from dvrl_core.noise import inject_target_noise

    rng = np.random.default_rng(2)
    x = rng.standard_normal((1400, 4))
    y = x[:, 0] ** 2 + x[:, 1] + 0.3 * rng.standard_normal(1400)
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)]).assign(label=y)
    data = prepare(table.iloc[:1000], "label", table.iloc[1000:], task="regression")
    noisy, moved = inject_target_noise(data.train.y, 0.2, random_state=0)
    return data.with_train_labels(noisy), moved


def test_a_regression_prior_finds_moved_targets_better_than_every_control(curved):
    from dvrl_core.prior import standardised_errors

    data, moved = curved
    prior = pooled_prior(data, random_state=0)
    ours = -np.abs(standardised_errors(data, prior))
    found = found_fraction(ours, moved, 0.2)
    controls = {name: found_fraction(v, moved, 0.2) for name, v in all_controls(data).items()}
    assert found > max(controls.values()) + 0.05, (found, controls)
    assert set(prior.weights) == set(source_names(kinds_for(1000, 4, 0), regression=True))
    assert prior.weights["joint_lightgbm"] > prior.weights["joint_linear"]
    assert prior.residual_scale is not None and prior.residual_scale > 0
    again = pooled_prior(data, random_state=0, threads=3)  # any threads: the same prior
    assert np.array_equal(again.train_probabilities, prior.train_probabilities)


def test_a_regression_prior_scores_a_big_tables_rows_a_chunk_at_a_time(monkeypatch, curved):
    """Past PREDICT_CHUNK rows the models score a chunk at a time (a 300,000-row regression
    table once failed there: the regression models answered one dimension, not a column)."""
    from dvrl_core import stream

    data, _ = curved
    whole = pooled_prior(data, random_state=0)
    official = DVRL(prior="validation").marginal(data)  # a linear model's 1-D predictions
    monkeypatch.setattr(stream, "PREDICT_CHUNK", 64)
    chunked = pooled_prior(data, random_state=0)
    assert np.array_equal(chunked.train_probabilities, whole.train_probabilities)
    assert np.allclose(DVRL(prior="validation").marginal(data), official, rtol=1e-5)


def test_a_regression_run_values_with_the_pooled_prior_and_guards_its_learning(curved):
    """DVRL on a regression target starts from the pooled prior (its values, when returned,
    are 1 / (1 + each row's absolute standardised error): in (0, 1], usable as weights) and its
    guard judges the learned values on planted moved targets, as for classification."""
    from dvrl_core.prior import standardised_errors
    from dvrl_core.seeding import child_seeds

    data, moved = curved
    result = DVRL(random_state=0).fit(data)
    trust = result.diagnostics["trust"]
    assert trust["planted"]["flipped"] > 0 and "prior" in trust["planted"]["auroc"]
    decided = result.diagnostics["convergence"]["decided"]
    assert decided is None or "planted moved targets" in decided  # not "flips"
    assert "validation_linear" in result.diagnostics["prior_weights"]
    assert found_fraction(result.values, moved, 0.2) > 0.8
    assert np.all((result.values > 0) & (result.values <= 1))
    if trust["returned"] == "prior":  # fitted again on every validation row
        errors = np.abs(standardised_errors(data, pooled_prior(data, child_seeds(0)[3])))
        assert np.allclose(result.values, 1 / (1 + errors), rtol=0, atol=1e-5)
    official = DVRL(prior="validation", iterations=1, random_state=0).fit(data)
    assert "prior_weights" not in official.diagnostics  # the official marginal: no pool


def test_folds_drawn_twice_make_the_prior_steadier_across_seeds(monkeypatch, linear):
    """Which rows share a fold moves one split's out-of-fold probabilities; averaged over two
    splits, the prior's ranking depends less on the seed."""
    from dvrl_core import prior as prior_module
    from dvrl_core.dvrl import _spearman

    data, _ = linear

    def agreement() -> float:
        a, b = (given_label_probability(data, pooled_prior(data, random_state=s)) for s in (0, 1))
        return _spearman(a, b)

    twice = agreement()
    monkeypatch.setattr(prior_module, "REPEATS", 1)
    once = agreement()
    assert twice > once


@pytest.mark.filterwarnings("ignore:The number of unique classes is greater than 50%")
def test_a_table_of_many_classes_with_a_row_or_two_each_is_valued_without_a_check():
    """100 classes, two rows each: no class can spare a row for the check, so none is held
    (it held out zero rows and the check's model failed on them); the run still values
    every row, with finite values, and says the check was not made."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200),
                          "label": [f"class_{i % 100}" for i in range(200)]})
    data = prepare(table, "label", table)
    assert split_check_rows(data, DVRL().check_fraction, random_state=0)[1] is None
    # held out: two rows of each class valued, two held (a class a training row is refused:
    # test_data's test_a_target_of_about_one_class_a_row_is_refused_with_what_it_may_be)
    twice = pd.concat([table, table.assign(a=table["a"] + 0.1)], ignore_index=True)
    held = prepare(twice, "label", valid_fraction=0.5, random_state=0)
    verdicts = []
    for prepared in (data, held):
        result = DVRL(iterations=2, inner_iterations=10, random_state=0).fit(prepared)
        assert np.isfinite(result.values).all() and len(result.values) == len(prepared.train)
        verdicts.append(result.diagnostics["trust"]["verdict"])
        assert verdicts[-1].startswith("not checked")
    # the first has 200 validation rows, enough to hold 40 out: the verdict says what was short
    assert "100 classes have few rows each" in verdicts[0]


def test_a_checked_run_gives_an_integer_regression_target_back_as_integers():
    """The trust check rebuilt the data without the labels' type: with it on (the default, on
    enough validation rows) a count came back as 12.0, without it as 12."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 4))
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    table["count"] = np.round(10 + 3 * x[:, 0] + rng.normal(size=600)).astype(int)
    data = prepare(table.iloc[:350], "count", table.iloc[350:], task="regression")
    result = DVRL(iterations=3, tolerance=None, random_state=0).fit(data)
    assert result.diagnostics["trust"]["check_rows"] > 0  # the check ran
    assert result.labels.dtype == np.int64
    assert result.labels.tolist() == table["count"].iloc[:350].tolist()
