"""Combining ensemble members' values, fitting an ensemble, and ``dvrl value --ensemble``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dvrl_core import DVRL, ConfigError, prepare
from dvrl_core.datasets import make_table
from dvrl_core.ensemble import (
    MAX_MEMBERS,
    combine,
    combine_results,
    ensemble_trust,
    fit_ensemble,
    member_seeds,
)
from dvrl_core.result import ValuationResult
from dvrl_core.seeding import child_seeds
from tests.dvrl_core.test_cli import (  # noqa: F401 - the CLI's tables fixture
    run_cli,
    run_cli_here,
    tables,
)


def test_combine_gives_the_mean_its_standard_error_and_spearman_with_ties():
    members = [np.array([0.1, 0.4, 0.4, 0.9, 0.2]), np.array([0.2, 0.3, 0.5, 0.8, 0.1]),
               np.array([0.9, 0.1, 0.2, 0.3, 0.4])]
    combined = combine(members)
    assert np.allclose(combined.values, [0.4, 0.8 / 3, 1.1 / 3, 2.0 / 3, 0.7 / 3])
    by_hand = [np.std([m[i] for m in members], ddof=1) / np.sqrt(3) for i in range(5)]
    assert np.allclose(combined.std_errors, by_hand)
    # pandas' Spearman gives tied values their average rank too
    reference = pd.DataFrame(np.vstack(members).T).corr(method="spearman").to_numpy()
    assert np.allclose(combined.spearman, reference)
    assert np.isclose(combined.rank_stability, reference[np.triu_indices(3, 1)].mean())
    report = combined.report()
    assert report["members"] == 3 and report["rank_stability"]["pairs"] == 3
    assert report["std_error"]["max"] == pytest.approx(max(by_hand), abs=1e-6)


def test_identical_members_are_perfectly_stable_and_a_constant_one_is_left_out():
    values = np.linspace(0, 1, 50)
    same = combine([values, values.copy()])
    assert same.rank_stability == pytest.approx(1.0) and np.all(same.std_errors == 0)
    flat = combine([values, values[::-1], np.full(50, 0.5)])
    assert flat.rank_stability == pytest.approx(-1.0)  # the constant member's pairs: undefined
    alone = combine([values])
    assert alone.rank_stability is None and np.isnan(alone.std_errors).all()
    with pytest.raises(ConfigError):
        combine([])
    with pytest.raises(ConfigError):
        combine([values, values[:10]])


def test_members_seeds_are_the_seeds_children():
    assert member_seeds(7, 4) == child_seeds(7, 4)
    assert len(set(member_seeds(7, MAX_MEMBERS))) == MAX_MEMBERS
    assert member_seeds(7, 3) == member_seeds(7, 4)[:3]  # a bigger ensemble adds members


def test_the_ensembles_trust_report_shows_each_members_verdict():
    confirmed = {"verdict": "confirmed: removing ...", "returned": "dvrl",
                 "planted": {"auroc": {"dvrl": 0.8, "prior": 0.7}}}
    prior = {"verdict": "not confirmed: ...", "returned": "prior",
             "planted": {"auroc": {"dvrl": 0.6, "prior": 0.7}}}
    report = ensemble_trust([confirmed, prior, confirmed], [1, 2, 3])
    assert report["returned"] == "mixed" and report["returned_counts"] == {"dvrl": 2, "prior": 1}
    assert report["verdict"].startswith("members differ: 2 of 3: confirmed")
    assert [m["seed"] for m in report["members"]] == [1, 2, 3]
    assert report["planted_auroc"] == {"dvrl": pytest.approx(2.2 / 3), "prior": 0.7}
    agreed = ensemble_trust([confirmed, confirmed], [1, 2])
    assert agreed["returned"] == "dvrl" and agreed["verdict"] == confirmed["verdict"]
    assert ensemble_trust([None, None], [1, 2]) is None


def test_results_of_different_rows_are_not_combined():
    one = ValuationResult(np.ones(3), np.arange(3), np.zeros(3), np.zeros(2))
    other = ValuationResult(np.ones(3), np.array([5, 6, 7]), np.zeros(3), np.zeros(2))
    with pytest.raises(ConfigError, match="different rows"):
        combine_results([one, other])


def test_fit_ensemble_is_the_mean_of_one_run_per_seed_with_progress_over_all_runs():
    table = make_table(500, n_features=5, signal=3.0, random_state=2)
    data = prepare(table.iloc[:350], "label", table.iloc[350:], random_state=0)
    seeds = member_seeds(11, 3)
    seen = []
    result = fit_ensemble(data, seeds, lambda s: DVRL(iterations=15, rollouts=4, random_state=s),
                          on_progress=lambda p: seen.append((p.iteration, p.total)))
    alone = [DVRL(iterations=15, rollouts=4, random_state=s).fit(data) for s in seeds]
    assert np.allclose(result.values, np.mean([r.values for r in alone], axis=0))
    assert np.allclose(result.std_errors,
                       np.std([r.values for r in alone], axis=0, ddof=1) / np.sqrt(3))
    assert seen[0] == (1, 45) and seen[-1] == (45, 45)
    assert [i for i, _ in seen] == list(range(1, 46))
    assert result.diagnostics["ensemble"]["seeds"] == seeds
    assert len(result.diagnostics["trust"]["members"]) == 3
    assert "std_error" in result.to_dataframe().columns
    assert "random_state" not in result.params  # each member had its own
    assert "; mean of 3 runs; returned: " in repr(result)
    assert result.diagnostics["warnings"] == alone[0].diagnostics["warnings"] == []
    with pytest.raises(ConfigError):
        fit_ensemble(data, [], lambda s: DVRL(random_state=s))


def test_an_ensemble_of_members_that_stop_early_reports_progress_to_its_true_end():
    table = make_table(500, n_features=5, signal=3.0, random_state=2)
    data = prepare(table.iloc[:350], "label", table.iloc[350:], random_state=0)
    seen = []
    result = fit_ensemble(data, member_seeds(3, 2), lambda s: DVRL(
        iterations=1000, rollouts=4, check_every=10, min_iterations=30, random_state=s),
        on_progress=lambda p: seen.append((p.iteration, p.total)))
    used = [m["iterations_used"] for m in result.diagnostics["ensemble"]["per_member"]]
    assert all(u < 1000 for u in used)
    assert seen[-1] == (sum(used), sum(used))  # the last report says the ensemble is done
    assert [i for i, _ in seen] == list(range(1, sum(used) + 1))


def test_cli_ensemble_writes_the_mean_with_standard_errors_and_reports_stability(
        tables):  # noqa: F811 - the CLI's tables fixture
    out = tables / "ensemble.csv"
    done = run_cli("value", str(tables / "train.csv"), "--target", "label", "--valid",
                   str(tables / "valid.parquet"), "--iterations", "15", "--rollouts", "4",
                   "--seed", "3", "--ensemble", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    values = pd.read_csv(out)
    assert list(values.columns) == ["row", "value", "rank", "label", "std_error"]
    assert len(values) == 350 and (values["std_error"] > 0).all()
    assert "ensemble of 3 runs" in done.stderr and "rank stability" in done.stderr
    assert "iteration 45/45" in done.stderr  # progress over the three runs
    assert str(member_seeds(3, 3)) in done.stderr


def test_cli_ensemble_1_is_a_single_run_and_bad_ensembles_are_refused(
        tables):  # noqa: F811 - the CLI's tables fixture
    common = ["value", str(tables / "train.csv"), "--target", "label", "--valid",
              str(tables / "valid.parquet"), "--iterations", "5", "--quiet"]
    single, one = run_cli(*common), run_cli(*common, "--ensemble", "1")
    assert single.returncode == one.returncode == 0
    assert single.stdout == one.stdout
    for bad in (["--ensemble", "0"], ["--ensemble", str(MAX_MEMBERS + 1)],
                ["--ensemble", "2", "--method", "knn_shapley"]):
        refused = run_cli_here(*common, *bad)
        assert refused.returncode == 2 and refused.stderr.startswith("error: --ensemble")


def test_the_services_ensemble_bound_is_the_librarys():
    from service.specs import MAX_ENSEMBLE

    assert MAX_ENSEMBLE == MAX_MEMBERS
