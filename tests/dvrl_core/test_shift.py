"""Covariate shift: where the validation rows resemble only part of the training rows and a model
of the target is better for weighing that part more, the values favour that part; elsewhere they
are the prior's, unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from dvrl_core import DVRL, ConfigError, prepare
from dvrl_core.datasets import make_sites, make_table
from dvrl_core.shift import MIN_EFFECTIVE_SHARE, covariate_shift, weighted_values


@pytest.fixture(scope="module")
def mixed_source():
    """Training rows of both sites (40% a); validation rows of site a alone."""
    train, valid, site_a = make_sites(1200, 400, random_state=3)
    return prepare(train, "sales", valid), site_a


def _top_share(values: np.ndarray, site_a: np.ndarray) -> float:
    """The share of site-a rows among the highest-valued 40%."""
    top = np.argsort(-values, kind="stable")[: int(0.4 * len(values))]
    return float(site_a[top].mean())


def test_rows_that_resemble_the_validation_rows_are_valued_higher(mixed_source):
    data, site_a = mixed_source
    shifted = DVRL(random_state=0, device="cpu").fit(data)
    plain = DVRL(random_state=0, device="cpu", shift="off").fit(data)
    report = shifted.diagnostics["shift"]
    assert report["detected"] and report["applied"]
    assert 0.6 < report["auroc"] < 0.99
    assert report["effective_share"] >= MIN_EFFECTIVE_SHARE
    assert "shift" not in plain.diagnostics and plain.params["shift"] == "off"
    # decided on the trust check's rows, whose removal check scored the values so weighted
    assert shifted.diagnostics["trust"]["shift"]["applied"]
    assert report["validation_gain"] == shifted.diagnostics["trust"]["shift"]["validation_gain"]
    assert shifted.values.min() > 0 and shifted.values.max() <= 1  # still in (0, 1]
    assert report["validation_gain"] > 0  # the weights help a model of the target
    # 40% of the rows are site a: the weighted values put them first
    assert _top_share(shifted.values, site_a) > 0.9
    assert _top_share(shifted.values, site_a) > _top_share(plain.values, site_a) + 0.1


def test_the_weights_favour_the_validation_site_and_repeat_with_the_seed(mixed_source):
    data, site_a = mixed_source
    first, again = covariate_shift(data, 5), covariate_shift(data, 5)
    np.testing.assert_array_equal(first.weights, again.weights)
    assert first.weights.mean() == pytest.approx(1.0)
    assert first.weights[site_a].mean() > 3 * first.weights[~site_a].mean()
    values = np.linspace(0.1, 1.0, len(data.train))
    product = values * first.weights
    np.testing.assert_allclose(weighted_values(values, first), product / product.max())


def test_a_table_past_the_sample_weighs_every_row():
    """Past SAMPLE_ROWS training rows the classifier is cross-fitted on a sample; the other
    rows are scored by the fold models together, and weigh like the sampled ones."""
    from dvrl_core.shift import SAMPLE_ROWS

    train, valid, site_a = make_sites(SAMPLE_ROWS + 10_000, 2_000, random_state=6)
    shift = covariate_shift(prepare(train, "sales", valid), 0)
    assert shift.applied and np.isfinite(shift.weights).all()
    assert shift.weights[site_a].mean() > 3 * shift.weights[~site_a].mean()
    # the sampled rows (out of fold) and the rest (the fold models' mean) weigh alike
    rows = np.sort(np.random.default_rng([0, 29]).choice(len(train), SAMPLE_ROWS,
                                                         replace=False))
    outside = np.ones(len(train), dtype=bool)
    outside[rows] = False
    for site in (site_a, ~site_a):
        assert shift.weights[outside & site].mean() == pytest.approx(
            shift.weights[~outside & site].mean(), rel=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_shift_where_the_validation_rows_are_drawn_like_the_training_rows(seed):
    table = make_table(1400, n_features=8, random_state=seed)
    data = prepare(table.iloc[:1000], "label", table.iloc[1000:])
    shift = covariate_shift(data, seed)
    assert not shift.detected and not shift.applied
    assert abs(shift.auroc - 0.5) < 0.1
    values = np.linspace(0.1, 1.0, len(data.train))
    assert weighted_values(values, shift) is values


def test_values_are_the_priors_where_no_shift_is_found():
    table = make_table(900, n_features=8, random_state=4)
    data = prepare(table.iloc[:600], "label", table.iloc[600:])
    shifted = DVRL(random_state=1, device="cpu").fit(data)
    plain = DVRL(random_state=1, device="cpu", shift="off").fit(data)
    assert shifted.diagnostics["shift"]["applied"] is False
    np.testing.assert_array_equal(shifted.values, plain.values)


def test_no_weights_where_no_training_row_resembles_the_validation_rows():
    train, valid, _ = make_sites(800, 300, random_state=7)
    valid["x0"] += 12.0  # far from every training row: the ratio cannot be estimated
    shift = covariate_shift(prepare(train, "sales", valid), 0)
    assert shift.detected and shift.auroc > 0.99
    assert not shift.applied


def test_no_weights_where_one_model_of_every_row_already_serves_the_target():
    """Sites that differ in their features but not in how the target depends on them: the
    shift is plain to see, but a model of every row predicts site a as well without the
    weights, which would only throw rows away."""
    train, valid, _ = make_sites(1200, 400, random_state=1)
    rng = np.random.default_rng(1)
    for frame in (train, valid):
        frame["sales"] = 5 + 2 * frame["x1"] + rng.normal(0, 0.3, len(frame))
    shift = covariate_shift(prepare(train, "sales", valid), 0)
    assert shift.detected and shift.effective_share >= MIN_EFFECTIVE_SHARE
    assert shift.validation_gain < 0 and not shift.applied


def test_too_few_validation_rows_to_tell_leave_the_values_alone():
    train, valid, _ = make_sites(300, 6, random_state=0)
    shift = covariate_shift(prepare(train, "sales", valid), 0)
    assert not shift.detected and not shift.applied


def test_an_unknown_shift_setting_is_refused():
    with pytest.raises(ConfigError, match="shift"):
        DVRL(shift="sometimes")


def test_an_ensemble_says_which_members_weighted_their_prior(mixed_source):
    from dvrl_core.ensemble import fit_ensemble, member_seeds

    data, site_a = mixed_source
    result = fit_ensemble(data, member_seeds(0, 2), lambda s: DVRL(random_state=s, device="cpu"))
    members = result.diagnostics["ensemble"]["per_member"]
    assert [m["shift_applied"] for m in members] == [True, True]
    shift = result.diagnostics["shift"]
    assert shift["applied"] and (shift["members_applied"], shift["members"]) == (2, 2)
    assert _top_share(result.values, site_a) > 0.9
