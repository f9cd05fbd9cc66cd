from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from dvrl_core import (
    DVRL,
    CheckpointMismatchError,
    ConfigError,
    PreparedData,
    RunStopped,
    Split,
    detection_auroc,
    found_fraction,
    inject_label_noise,
    make_predictor,
    prepare,
)
from dvrl_core.datasets import make_table

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def noisy_data():
    table = make_table(700, n_features=8, signal=3.0, random_state=11)
    data = prepare(table.iloc[:500], "label", table.iloc[500:])
    noisy, corrupted = inject_label_noise(data.train.y, 0.2, 2, random_state=0)
    return data.with_train_labels(noisy), corrupted


def small(**params):
    """A short run of every iteration (no early stop): the loop's mechanics."""
    base = dict(iterations=30, rollouts=8, random_state=0, device="cpu", tolerance=None)
    return DVRL(**(base | params))


def stopped_after(dvrl, data, checkpoints, every):
    """Run ``dvrl`` until it has saved ``checkpoints`` checkpoints, ``every`` iterations apart:
    the RunStopped it raises, and the checkpoints by iteration."""
    saved: dict[int, bytes] = {}
    with pytest.raises(RunStopped) as stopped:
        dvrl.fit(data, should_stop=lambda: len(saved) == checkpoints,
                 on_checkpoint=lambda state, i: saved.setdefault(i, state), checkpoint_every=every)
    return stopped.value, saved


def test_same_seed_same_values_other_seed_other_values(noisy_data):
    data, _ = noisy_data
    first = small().fit(data).values
    assert np.array_equal(first, small().fit(data).values)
    assert not np.array_equal(first, small(random_state=1).fit(data).values)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(noisy_data):
    data, _ = noisy_data
    whole = small().fit(data)
    stopped, checkpoints = stopped_after(small(), data, 2, every=10)
    assert stopped.iteration == 20 and stopped.total == 30
    resumed = small().fit(data, resume_from=stopped.checkpoint)
    assert np.array_equal(resumed.values, whole.values)
    assert np.array_equal(resumed.reward_trace, whole.reward_trace)
    from_first = small().fit(data, resume_from=checkpoints[10])
    assert np.array_equal(from_first.values, whole.values)


def test_the_run_stops_once_its_values_stop_moving(noisy_data):
    data, _ = noisy_data
    seen = []
    early = small(iterations=2000, check_every=10, min_iterations=100, tolerance=0.01,
                  guard=False).fit(
        data, on_progress=seen.append)
    convergence = early.diagnostics["convergence"]
    used = convergence["iterations_used"]
    assert convergence["converged"] and 100 < used < 2000 and used % 10 == 0
    assert convergence["rank_change"] < 0.01
    assert len(early.reward_trace) == used == len(seen)
    assert seen[-1].iteration == seen[-1].total == used  # the last report says it is done
    assert all(p.total == 2000 for p in seen[:-1])
    # stopping is only truncation: a run told to do that many iterations gives the same values
    fixed = small(iterations=used, tolerance=None, guard=False).fit(data)
    assert np.array_equal(early.values, fixed.values)
    assert not fixed.diagnostics["convergence"]["converged"]
    # no tolerance: every iteration runs
    full = small(iterations=200, check_every=10, tolerance=None).fit(data)
    assert full.diagnostics["convergence"]["iterations_used"] == 200


def test_a_resumed_run_stops_where_the_uninterrupted_one_does(noisy_data):
    data, _ = noisy_data
    params = dict(iterations=2000, check_every=10, min_iterations=100, tolerance=0.01,
                  guard=False)
    whole = small(**params).fit(data)
    stopped, _ = stopped_after(small(**params), data, 2, every=20)
    assert stopped.iteration == 40
    assert whole.diagnostics["convergence"]["iterations_used"] > 40
    resumed = small(**params).fit(data, resume_from=stopped.checkpoint)
    assert resumed.diagnostics["convergence"] == whole.diagnostics["convergence"]
    assert np.array_equal(resumed.values, whole.values)


def test_no_loop_where_no_learned_values_could_beat_the_prior(noisy_data):
    """The prior tells this table's planted flips apart so well that even a perfect ranking
    would not clear the guard's bar: the loop does not run, and the user gets what every
    iteration would have given them (the prior), told why."""
    data, _ = noisy_data
    quick = small(iterations=300, tolerance=0.001).fit(data)
    whole = small(iterations=300).fit(data)  # no tolerance: every iteration runs
    convergence = quick.diagnostics["convergence"]
    assert convergence["iterations_used"] == 0 and len(quick.reward_trace) == 0
    assert "no learned values could clear the guard's bar" in convergence["decided"]
    assert whole.diagnostics["convergence"]["iterations_used"] == 300
    assert quick.diagnostics["trust"]["returned"] == whole.diagnostics["trust"]["returned"]
    assert quick.diagnostics["trust"]["returned"] == "prior"
    assert np.array_equal(quick.values, whole.values)
    assert set(quick.diagnostics["trust"]["planted"]["auroc"]) == {"prior", "control"}


def test_the_run_gives_up_when_its_values_are_far_below_the_guards_bar():
    """A weak table: at the first check the averaged values tell the planted flips apart too
    badly to reach the guard's bar (a standard error or more short of it), so the run stops
    there and returns the prior, as every iteration would have; a resumed run stops at the same
    place."""
    table = make_table(700, n_features=8, signal=1.0, random_state=12)
    data = prepare(table.iloc[:500], "label", table.iloc[500:])
    data = data.with_train_labels(inject_label_noise(data.train.y, 0.2, 2, random_state=0)[0])
    params = dict(iterations=300, min_iterations=20, check_every=10, tolerance=0.001)
    seen = []
    early = small(**params).fit(data, on_progress=seen.append)
    convergence = early.diagnostics["convergence"]
    assert convergence["iterations_used"] == 20 and not convergence["converged"]
    assert "short of the guard's bar" in convergence["decided"]
    assert seen[-1].iteration == seen[-1].total == 20
    planted = early.diagnostics["trust"]["planted"]["auroc"]
    assert planted["dvrl"] <= planted["prior"]
    whole = small(iterations=300).fit(data)
    assert early.diagnostics["trust"]["returned"] == "prior"
    assert whole.diagnostics["trust"]["returned"] == "prior"
    assert np.array_equal(early.values, whole.values)
    stopped, _ = stopped_after(small(**params), data, 1, every=10)
    assert stopped.iteration == 10
    resumed = small(**params).fit(data, resume_from=stopped.checkpoint)
    assert resumed.diagnostics["convergence"] == convergence


def test_a_stop_asked_while_the_prior_is_fitted_ends_the_run_there(noisy_data, monkeypatch):
    """A big table's prior takes minutes: a stop (a cancelled job) ends it at its next fit,
    not once the loop starts. Nothing is resumable yet, and resuming says so."""
    import dvrl_core.dvrl as dvrl_module

    monkeypatch.setattr(dvrl_module, "STOP_POLL_GRACE_S", 0.0)
    monkeypatch.setattr(dvrl_module, "STOP_POLL_EVERY_S", 0.001)
    data, _ = noisy_data
    asked = []

    def stop() -> bool:
        asked.append(threading.current_thread().name)
        return True

    with pytest.raises(RunStopped) as stopped:
        small().fit(data, should_stop=stop)
    assert stopped.value.iteration == 0 and stopped.value.checkpoint == b""
    assert asked == ["dvrl-stop-poller"]  # the loop never asked: it never began
    with pytest.raises(ConfigError, match="nothing to resume"):
        small().fit(data, resume_from=stopped.value.checkpoint)
    # an error in the stop check (the service's lost lease) is the run's to raise
    def lost() -> bool:
        raise TimeoutError("lease lost")

    with pytest.raises(TimeoutError, match="lease lost"):
        small().fit(data, should_stop=lost)


def test_a_stop_asked_while_auto_tries_its_predictors_ends_the_run_there(noisy_data,
                                                                           monkeypatch):
    """predictor="auto" trains every candidate on all rows first (minutes on a big table): a
    cancel then trains no further candidate."""
    import dvrl_core.dvrl as dvrl_module

    monkeypatch.setattr(dvrl_module, "STOP_POLL_GRACE_S", 0.0)
    monkeypatch.setattr(dvrl_module, "STOP_POLL_EVERY_S", 0.001)
    data, _ = noisy_data
    asked, built = threading.Event(), []
    build = dvrl_module.DVRL._build_predictor

    def recorded(self, name, *args):
        built.append(name)
        if len(built) == 1:  # the first candidate is still training when the stop is asked
            assert asked.wait(10)
            time.sleep(0.05)
        return build(self, name, *args)

    def stop() -> bool:  # asked while the first candidate trains
        if built:
            asked.set()
        return bool(built)

    monkeypatch.setattr(dvrl_module.DVRL, "_build_predictor", recorded)
    run = small(predictor="auto")
    with pytest.raises(RunStopped) as stopped:
        run.fit(data, should_stop=stop)
    assert stopped.value.iteration == 0 and stopped.value.checkpoint == b""
    assert len(built) == 1  # five candidates: the other four never trained
    assert run.predictor_choice_ is None


def test_checkpoint_of_another_run_is_refused(noisy_data):
    data, _ = noisy_data
    with pytest.raises(RunStopped) as stopped:
        small().fit(data, should_stop=lambda: True)
    with pytest.raises(ConfigError, match="checkpoint"):
        small(iterations=31).fit(data, resume_from=stopped.value.checkpoint)


def test_checkpoint_of_data_prepared_into_other_features_is_refused_by_name(noisy_data):
    """The same rows and settings with one feature fewer (an earlier version prepared a column
    into other features): CheckpointMismatchError, which the service answers by starting
    again, not torch's size-mismatch RuntimeError."""
    data, _ = noisy_data
    stopped, _ = stopped_after(small(), data, 1, every=10)
    fewer = PreparedData(data.task, Split(data.train.x[:, 1:], data.train.y, data.train.ids),
                         Split(data.valid.x[:, 1:], data.valid.y, data.valid.ids), None,
                         data.classes, data.feature_names[1:], data.target)
    with pytest.raises(CheckpointMismatchError, match="other data or settings"):
        small().fit(fewer, resume_from=stopped.checkpoint)


def test_checkpoint_of_other_rows_settings_or_seed_is_refused(noisy_data):
    """Only the number of iterations and rows and the layers' shapes were compared: another
    table of as many rows, another learning rate or seed resumed into values of neither run."""
    data, _ = noisy_data
    stopped, _ = stopped_after(small(), data, 1, every=10)
    other_rows = data.with_train_labels(np.roll(data.train.y, 1))
    for run, on in ((small(), other_rows), (small(learning_rate=0.02), data),
                    (small(random_state=1), data)):
        with pytest.raises(CheckpointMismatchError, match="other data or settings"):
            run.fit(on, resume_from=stopped.checkpoint)
    assert small().fit(data, resume_from=stopped.checkpoint).values.shape == (len(data.train),)
    # bytes that are no checkpoint, or one cut short: said so, not torch's unpickling errors
    for blob in (b"garbage", stopped.checkpoint[: len(stopped.checkpoint) // 2]):
        with pytest.raises(CheckpointMismatchError, match="cannot be read"):
            small().fit(data, resume_from=blob)


def test_progress_is_reported_every_iteration(noisy_data):
    data, _ = noisy_data
    seen = []
    result = small().fit(data, on_progress=seen.append)
    assert [p.iteration for p in seen] == list(range(1, 31))
    assert all(p.total == 30 for p in seen)
    assert [p.reward for p in seen] == pytest.approx(result.reward_trace.tolist())
    assert seen[-1].elapsed_s > 0


def test_marginal_input_is_distance_of_label_from_validation_model(noisy_data):
    """The official marginal (``prior="validation"``): |onehot(y) - f_valid(x)|."""
    data, _ = noisy_data
    dvrl = small(prior="validation")
    reference = make_predictor("logistic_regression", "classification", 2,
                               alpha=dvrl.marginal_predictor_params.get("alpha", 1.0))
    reference.fit(data.valid.x, data.valid.y)
    probability = reference.predict(data.train.x)
    expected = np.abs(np.eye(2)[data.train.y] - probability)
    assert np.allclose(dvrl.marginal(data), expected, atol=1e-5)


def test_the_pooled_marginal_is_the_distance_of_the_label_from_the_pooled_prior(noisy_data):
    from dvrl_core.prior import pooled_prior
    from dvrl_core.seeding import child_seeds

    data, _ = noisy_data
    dvrl = small()
    prior = pooled_prior(data, child_seeds(0)[3])
    expected = np.abs(np.eye(2)[data.train.y] - prior.train_probabilities)
    assert np.allclose(dvrl.marginal(data), expected, atol=1e-6)


def test_the_prior_fitted_beside_the_loop_is_the_one_fitted_after_it(monkeypatch, noisy_data):
    """With a core to spare, the prior the guard returns is fitted while the loop runs; the user
    gets the same values and the same pool weights as when it is fitted after the loop."""
    import dvrl_core.dvrl as dvrl_module

    started = []

    class Counted(dvrl_module._Beside):
        def __init__(self, call, name):
            started.append(call)
            super().__init__(call, name)

    data, _ = noisy_data
    monkeypatch.setattr(dvrl_module, "_Beside", Counted)
    monkeypatch.setattr(dvrl_module, "thread_budget", lambda: 2)
    beside = small().fit(data)
    assert len(started) == 1
    monkeypatch.setattr(dvrl_module, "thread_budget", lambda: 1)  # no core to spare
    after = small().fit(data)
    assert len(started) == 1
    assert beside.diagnostics["trust"]["returned"] == after.diagnostics["trust"]["returned"]
    assert beside.diagnostics["trust"]["returned"] == "prior"
    assert np.array_equal(beside.values, after.values)
    assert beside.diagnostics["prior_weights"] == after.diagnostics["prior_weights"]


def test_a_stopped_run_stops_the_prior_it_was_fitting_beside_the_loop(monkeypatch, noisy_data):
    """A job cancelled or lost mid-run leaves no fits running on its spare core: the next job
    on that worker gets the whole machine."""
    import dvrl_core.dvrl as dvrl_module
    from dvrl_core.prior import PriorStopped, pooled_prior

    data, _ = noisy_data
    stop = threading.Event()
    stop.set()
    with pytest.raises(PriorStopped):  # told before it starts: no fit runs
        pooled_prior(data, 0, stop=stop)

    started = []

    class Kept(dvrl_module._Beside):
        def __init__(self, call, name):
            super().__init__(call, name)
            started.append(self)

    monkeypatch.setattr(dvrl_module, "_Beside", Kept)
    monkeypatch.setattr(dvrl_module, "thread_budget", lambda: 2)
    with pytest.raises(RunStopped):
        small().fit(data, should_stop=lambda: True)
    [beside] = started
    beside._thread.join(60)
    assert not beside._thread.is_alive()
    assert isinstance(beside._error, PriorStopped)  # it ended before all its fits had run
    assert dvrl_module.BESIDE_THREAD not in [t.name for t in threading.enumerate()]


def test_a_run_that_fails_after_its_loop_stops_the_prior_beside_it(monkeypatch, noisy_data):
    """A failure in the checks after the loop (a bug, memory) fails the job and tells the prior
    fitted beside the loop to stop, as a failure inside the loop does: nothing of the failed
    run goes on using the worker's cores."""
    import dvrl_core.dvrl as dvrl_module

    data, _ = noisy_data
    started = []

    class Kept(dvrl_module._Beside):
        def __init__(self, call, name):
            super().__init__(call, name)
            started.append(self)

    def failing_check(*args, **kwargs):
        raise MemoryError("the checks ran out of memory")

    monkeypatch.setattr(dvrl_module, "_Beside", Kept)
    monkeypatch.setattr(dvrl_module, "thread_budget", lambda: 2)
    monkeypatch.setattr(DVRL, "_check", failing_check)
    with pytest.raises(MemoryError):
        small(iterations=5).fit(data)
    [beside] = started
    assert beside._stopping.is_set()
    beside._thread.join(60)
    assert dvrl_module.BESIDE_THREAD not in [t.name for t in threading.enumerate()]


def test_result_table_and_record(noisy_data):
    data, _ = noisy_data
    result = small().fit(data)
    frame = result.to_dataframe()
    assert list(frame.columns) == ["row", "value", "rank", "label"]
    assert len(frame) == len(data.train)
    assert sorted(frame["rank"]) == list(range(1, len(frame) + 1))
    lowest = frame.loc[frame["rank"] == 1, "value"].item()
    assert lowest == frame["value"].min()
    assert set(result.labels) <= {"class_0", "class_1"}
    assert result.params["rollouts"] == 8 and result.params["metric"] == "log_loss"
    assert {"torch", "numpy"} <= set(result.versions)
    assert result.timings["iterations_per_s"] > 0


def test_quality_planted_label_noise_is_found_and_not_inverted(noisy_data):
    """Fails if DVRL stops finding flipped labels, collapses, or inverts its ranking."""
    data, corrupted = noisy_data
    dvrl = DVRL(iterations=300, random_state=0, device="cpu")
    result = dvrl.fit(data)
    control = dvrl.marginal_control(data, dvrl.marginal(data))
    auroc = detection_auroc(result.values, corrupted)
    assert found_fraction(result.values, corrupted, 0.2) > 0.6  # random finds 0.2
    assert auroc > 0.85
    assert auroc >= detection_auroc(control, corrupted) - 0.03
    assert np.std(result.values) > 0.05  # not collapsed onto one value


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_every_available_device(noisy_data, device):
    data, _ = noisy_data
    result = small(device=device, iterations=5).fit(data)
    assert result.device.startswith(device) and np.isfinite(result.values).all()


def test_regression_multiclass_mlp_and_sampled_batches():
    regression = make_table(300, n_features=5, task="regression", random_state=2)
    data = prepare(regression.iloc[:200], "label", regression.iloc[200:])
    result = small(iterations=10, batch_size=64).fit(data)
    assert result.params["predictor"] == "linear_regression" and len(result) == 200
    multiclass = make_table(300, n_features=5, n_classes=3, random_state=4)
    data = prepare(multiclass.iloc[:200], "label", multiclass.iloc[200:])
    result = small(iterations=3, predictor="mlp", inner_iterations=2, metric="auc").fit(data)
    assert result.params["predictor"] == "mlp" and np.isfinite(result.values).all()


def test_single_rollout_official_baselines(noisy_data):
    data, _ = noisy_data
    for baseline in ("fixed", "moving_average"):
        result = small(rollouts=1, baseline=baseline, iterations=5).fit(data)
        assert result.params["baseline"] == baseline


@pytest.mark.parametrize(
    "params",
    [{"iterations": 0}, {"rollouts": 0}, {"layer_number": 2}, {"threshold": 1.5},
     {"baseline": "median"}, {"baseline": "leave_one_out", "rollouts": 1},
     {"learning_rate": -1.0}, {"tolerance": 1.0}, {"tolerance": -0.1}, {"check_every": 0},
     {"min_iterations": -1}],
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(ConfigError):
        DVRL(**params)


def test_unknown_metric_and_predictor(noisy_data):
    data, _ = noisy_data
    with pytest.raises(ConfigError, match="metric"):
        small(metric="rmspe").fit(data)
    with pytest.raises(ConfigError, match="predictor"):
        small(predictor="svm").fit(data)


def test_auto_predictor_picks_naive_bayes_where_the_classes_differ_in_spread():
    """Two classes with the same mean and different variances: no linear model separates them,
    Gaussian Naive Bayes does; auto must see that on the validation rows and say so."""
    from dvrl_core import DVRL, prepare

    rng = np.random.default_rng(0)

    def table(n):
        y = rng.integers(0, 2, n)
        x = rng.standard_normal((n, 3)) * np.where(y == 1, 3.0, 0.5)[:, None]
        return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y)

    data = prepare(table(400), "y", valid=table(200))
    result = DVRL("auto", iterations=3, check_fraction=0.0, random_state=0).fit(data)
    choice = result.diagnostics["predictor_choice"]
    assert result.params["predictor"] == "naive_bayes" == choice["chosen"]
    assert set(choice["scores"]) == {"logistic_regression", "naive_bayes", "mlp", "lightgbm",
                                     "bernoulli_naive_bayes"}
    assert choice["scores"]["naive_bayes"] > choice["scores"]["logistic_regression"] + 0.2


def test_a_results_params_run_the_same_valuation_again(noisy_data):
    """result.params left out prior_skip, average_fraction and the marginal's predictor: the
    official loop's settings, rebuilt from them, gave other values (0.5 apart)."""
    data, _ = noisy_data
    first = small(prior_skip=False, average_fraction=0.0, prior="validation").fit(data)
    again = DVRL(**first.params).fit(data)
    np.testing.assert_array_equal(first.values, again.values)
    assert first.params["prior_skip"] is False and first.params["average_fraction"] == 0.0


def test_what_is_not_prepared_data_or_a_seed_is_refused_by_name(noisy_data):
    data, corrupted = noisy_data
    with pytest.raises(TypeError, match="DVRL.fit values a PreparedData: prepare\\(train"):
        small().fit(pd.DataFrame({"a": [1.0]}))
    as_float64 = data.with_train_labels(data.train.y)
    as_float64.train.x = data.train.x.astype(np.float64)  # hand-built: failed inside torch
    with pytest.raises(TypeError, match="data.train.x holds float32 features"):
        small().fit(as_float64)
    with pytest.raises(ConfigError, match="data.train.y holds class indices 0 to 1"):
        small().fit(data.with_train_labels(data.train.y + 1))  # labels 1/2: an IndexError
    for seed in (-1, "a", 1.5, True):
        with pytest.raises(ConfigError, match="random_state must be a whole number >= 0"):
            DVRL(random_state=seed)
    result = small().fit(data)
    with pytest.raises(ConfigError, match="a number of rows is a whole number >= 0, not -1"):
        result.lowest(-1)  # pandas' head(-1): all rows but one
    # a boolean mask of the corrupted rows, as well as their positions (True and False were
    # read as positions 1 and 0)
    mask = np.isin(np.arange(len(result.values)), corrupted)
    assert found_fraction(result.values, mask, 0.2) == found_fraction(result.values, corrupted,
                                                                        0.2) > 0.3
    assert detection_auroc(result.values, mask) == detection_auroc(result.values, corrupted)
    with pytest.raises(ConfigError, match="one entry per row: 500, not 3"):
        found_fraction(result.values, mask[:3], 0.2)
