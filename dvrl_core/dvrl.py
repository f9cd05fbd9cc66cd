"""DVRL: Data Valuation using Reinforcement Learning (Yoon, Arik, Pfister, ICML 2020).

A value estimator h_phi(x, y) gives every training row a selection probability. Each iteration
samples selections s ~ Bernoulli(h) for a batch of rows, trains the predictor on the selected rows
(from the same initial weights every time), scores it on the validation set (the target task), and
updates h with REINFORCE on reward = score - baseline, plus the exploration penalty that keeps the
mean probability within [0.1, 0.9]. The values are h on every training row.

What this implementation adds to the paper, and why (measured on the Adult protocol; see
docs/benchmarks.md for the figures):

* ``rollouts`` selections per iteration, one predictor each, trained as one batched computation.
  Each rollout's advantage is its reward minus the mean reward of the other rollouts (leave-one-out
  baseline), divided by the rewards' spread so the step does not depend on the metric's units.
  With one rollout, a reward is one noisy number for a thousand row decisions.
* The reward metric defaults to log-loss: across random selections its correlation with the
  number of corrupted rows selected was -0.41, against -0.14 for AUC, which is blind to the
  calibration damage that flipped labels do.
* Inside DVRL, logistic regression is strongly regularised by default (C = 10 / rows): each row's
  effect on the reward then tracks its label's correctness (per-row effect AUROC 0.90 vs 0.80).
* The marginal also enters as a prior: the last layer starts at zero and the log-odds of the
  validation model's probability of the given label is added to the estimator's logit
  (``prior_skip``), so training starts from that prior and the reward must earn every change.
  Without it the estimator leaves the prior early and wanders.
* The "validation model" behind the marginal is, by default (``prior="pooled"``), a pool of
  models weighted by their likelihood on the validation rows (:mod:`dvrl_core.prior`): logistic
  regression, LightGBM and the nearest neighbours fitted on the validation rows, and the same
  fitted on the training and the validation rows together, cross-fitted, then again with each
  training row weighted by the first pool's belief in its label. On the quality suite this
  prior alone finds more flipped labels than the best simple control on most tables. For a
  regression target the pool is stacked (ridge, LightGBM and the neighbours' predictions,
  weighted by least squares on the validation rows) and the marginal is a row's error in units
  of the pool's spread; the official |y - f_valid(x)| / |y| found moved targets worse than
  every simple control on the regression tables of the suite, and the pool better than all of
  them. ``prior="validation"`` is the official code's single validation model.
* Trust checks (:mod:`dvrl_core.trust`): ``check_fraction`` of the validation rows are held out
  of the prior and the reward. Half of them join the training rows with half of their labels
  flipped (planted; a regression target: moved far, :func:`dvrl_core.noise.inject_target_noise`);
  the other half score the paper's removal test. After training, the
  learned values, the prior's and the official marginal control's are compared on both. With
  ``guard`` (the default) learned values are returned only when they told the planted flips
  apart better than the prior they started from, by more than two standard errors of its AUROC;
  otherwise the prior is, fitted again on every validation row (the decision is made), and the
  result says so (``diagnostics["trust"]``). Planted rows are never in the result. Where the
  loop leaves cores idle, that second prior is fitted beside it (on 2 cores a 5,000-row wine
  run took 31.8 s instead of 38.2 s; Adult's 1,000 rows 4.4 s instead of 4.8 s, the loop and
  the prior taking Python's lock in turn).
* Where the prior is returned and the validation rows' features come from another distribution
  than the training rows' (``shift="auto"``, the default; :mod:`dvrl_core.shift`), its values
  are multiplied by importance weights (the square root of the density ratio that a
  cross-fitted domain classifier estimates), so that rows the target seldom shows rank lower:
  the prior knows how likely a row's label is, not how much the row resembles the target.
  Only where the shift is clear (the classifier's AUROC four standard errors above 0.5) and the
  supports overlap (AUROC under 0.99, the weights' effective size a tenth of the rows or more),
  and where LightGBM trained with the weights predicts the validation rows better than without;
  never on the noisy-label protocol's splits, where the validation rows are a random draw of
  the table. The trust check decides, on its own rows (``diagnostics["trust"]["shift"]``),
  and its removal check scores the values so weighted; the returned prior is weighted (the
  weights estimated again on every row) where the check decided to, and
  ``diagnostics["shift"]`` reports the classifier and whether the weights were applied.
  Learned values are not weighted: the reward already measures them on the target.
* The values are the selection probabilities averaged over the iterations
  (``average_fraction`` of the run, from its end), not the last iterate's: the REINFORCE
  gradient is noisy, and the average is a far steadier estimate.
* The run stops when its values have converged (``tolerance``): every ``check_every``
  iterations the averaged values' ranking is compared with the one ``check_every`` iterations
  before; when ``1 - Spearman`` stays under ``tolerance`` twice in a row, the remaining
  iterations would not change which rows rank lowest, and the loop ends. Checks start after
  ``min_iterations``: the estimator starts at the prior and moves slowly at first, so early
  rankings barely change without having converged. ``iterations`` is the most it runs;
  ``diagnostics["convergence"]`` says how many it used.
* The run also stops once the guard's verdict is settled (``diagnostics["convergence"]
  ["decided"]`` says why): before the first iteration when the prior already tells the planted
  flips apart so well that no learned values could clear the guard's bar (a perfect ranking,
  AUROC 1, would not beat it by two standard errors), and at a check when the averaged values
  tell them apart so much worse than the bar asks that more iterations are not worth their
  time: one standard error of the prior's AUROC or more short of it
  (:data:`dvrl_core.trust.GIVE_UP_STANDARD_ERRORS`; half the way from the prior to the bar).
  This check runs every ``check_every`` iterations from the second (or from
  ``min_iterations`` if sooner): the averaged values leave the prior within a few dozen
  iterations. Either way the prior is what the run returns; the loop's remaining iterations
  could not change that (the first case) or, measured, did not (the second: in 20 suite runs
  with the planted AUROC traced every 50 iterations, the averaged values were under the
  give-up line at every check from iteration 50 and never came near the bar; docs/benchmarks.md).
  ``tolerance=0`` runs every iteration regardless.

* Big tables. Past 200,000 training rows each batch is drawn without permuting every row
  (``PERMUTATION_ROWS``), the prior's training-row sources are cross-fitted on a seeded sample
  of that many rows (:data:`dvrl_core.prior.CROSS_FIT_ROWS`) and the removal test trains on one
  (:data:`dvrl_core.trust.CHECK_TRAIN_ROWS`). A training matrix mapped from a file
  (:func:`dvrl_core.stream.prepare_file`) is never copied into memory: the planted rows join it
  in a new mapped file, and the passes over every row release its pages as they go, so memory
  stays near the matrix plus a few vectors of one number per row.

With ``rollouts=1, prior="validation", prior_skip=False, average_fraction=0, metric="auc",
check_fraction=0, guard=False, shift="off", tolerance=0`` and a logistic regression of C = 1
(``predictor_params={"alpha": 1.0}``) the loop is the official one (fixed baseline: the predictor
trained on all rows) or the paper's (moving-average baseline over ``window`` iterations).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from .checks import summary_checks
from .data import PreparedData, Split, require_prepared
from .errors import CheckpointMismatchError, ConfigError, RunStopped, require_positive_int
from .estimator import ValueEstimator, dvrl_loss
from .metrics import get_metric
from .optim import Adam
from .predictors import DEFAULT_PREDICTOR, PREDICTORS, Predictor, make_predictor, resolve_device
from .predictors.base import as_tensor
from .predictors.choice import ChoiceStopped, PredictorChoice, choose_predictor
from .prior import (
    PooledPrior,
    PriorStopped,
    pooled_prior,
    side_by_side,
    standardised_errors,
)
from .result import ValuationResult
from .seeding import child_seeds, library_versions
from .shift import CovariateShift, covariate_shift, weighted_values
from .stream import predict_in_chunks, release_rows
from .threads import thread_budget
from .trust import (
    GIVE_UP_STANDARD_ERRORS,
    Planted,
    guard_within_reach,
    learned_values_earn_their_place,
    learned_values_out_of_reach,
    plant,
    planted_check,
    removal_check,
    split_check_rows,
    split_halves,
    why_unchecked,
    with_planted,
)

STRONG_L2_PER_ROW = 0.1
CONVERGENCE_TOLERANCE = 1e-3
DVRL_DEFAULT_METRIC = {"classification": "log_loss", "regression": "mse"}
# while the prior is fitted, should_stop is asked from a thread this long after it starts, then
# this often (a stop ends the prior at its next fit)
STOP_POLL_GRACE_S = 5.0
STOP_POLL_EVERY_S = 0.25
BESIDE_THREAD = "dvrl-prior-beside-loop"  # the thread fitting the returned prior during the loop

Baseline = Literal["auto", "fixed", "moving_average", "leave_one_out"]

# rows of a matrix hashed at a time for a checkpoint's fingerprint (DVRL._fingerprint)
FINGERPRINT_ROWS = 1 << 16


@dataclass
class Progress:
    """Reported to ``on_progress`` after every iteration."""

    iteration: int  # iterations done so far
    total: int  # the most the run will do; equal to ``iteration`` on the last report
    reward: float  # mean validation score of this iteration's rollouts minus the baseline
    elapsed_s: float


class DVRL:
    """Values training rows for a target task; ``fit(data) -> ValuationResult``.

    Parameters take the paper's defaults. ``predictor`` is a registered name
    (:data:`dvrl_core.predictors.PREDICTORS`), ``"auto"`` (the one that, trained on the training
    rows, scores best on the validation rows: :mod:`dvrl_core.predictors.choice`) or a
    :class:`Predictor` instance; ``None`` picks logistic regression (classification) or linear
    regression. ``inner_iterations`` and
    ``predictor_batch_size`` are the epochs and mini-batch size of the torch MLP predictor.
    ``metric`` (the reward's) defaults to log-loss (classification) or MSE (regression).
    ``tolerance`` (``None`` or 0: run every iteration), ``check_every`` and ``min_iterations``
    set when the run stops early because its values have converged (module docstring).
    """

    def __init__(
        self,
        predictor: str | Predictor | None = None,
        *,
        metric: str | None = None,
        iterations: int = 2000,
        batch_size: int = 2000,
        inner_iterations: int = 100,
        predictor_batch_size: int = 256,
        hidden_dim: int = 100,
        layer_number: int = 5,
        comb_dim: int = 10,
        learning_rate: float = 0.01,
        threshold: float = 0.9,
        rollouts: int = 32,
        baseline: Baseline = "auto",
        window: int = 20,
        normalize_advantage: bool = True,
        average_fraction: float = 1.0,
        marginal_predictor: str | None = None,
        prior: Literal["pooled", "validation"] = "pooled",
        prior_skip: bool = True,
        check_fraction: float = 0.25,
        guard: bool = True,
        shift: Literal["auto", "off"] = "auto",
        tolerance: float | None = CONVERGENCE_TOLERANCE,
        check_every: int = 50,
        min_iterations: int = 200,
        marginal_predictor_params: dict[str, Any] | None = None,
        device: str = "auto",
        random_state: int = 0,
        predictor_params: dict[str, Any] | None = None,
    ) -> None:
        self.predictor = predictor
        self.metric = metric
        self.iterations = iterations
        self.batch_size = batch_size
        self.inner_iterations = inner_iterations
        self.predictor_batch_size = predictor_batch_size
        self.hidden_dim = hidden_dim
        self.layer_number = layer_number
        self.comb_dim = comb_dim
        self.learning_rate = learning_rate
        self.threshold = threshold
        self.rollouts = rollouts
        self.baseline = baseline
        self.window = window
        self.normalize_advantage = normalize_advantage
        self.average_fraction = average_fraction
        self.marginal_predictor = marginal_predictor
        self.prior = prior
        self.prior_skip = prior_skip
        self.check_fraction = check_fraction
        self.guard = guard
        self.shift = shift
        self.tolerance = tolerance
        self.check_every = check_every
        self.min_iterations = min_iterations
        self.marginal_predictor_params = dict(marginal_predictor_params or {})
        self.device = device
        self.random_state = random_state
        self.predictor_params = dict(predictor_params or {})
        self.predictor_choice_: PredictorChoice | None = None  # what predictor="auto" chose
        self.shift_: CovariateShift | None = None  # the trust check's covariate shift
        self._validate()

    def _validate(self) -> None:
        positive = {
            "iterations": self.iterations, "batch_size": self.batch_size,
            "inner_iterations": self.inner_iterations, "rollouts": self.rollouts,
            "predictor_batch_size": self.predictor_batch_size, "hidden_dim": self.hidden_dim,
            "comb_dim": self.comb_dim, "window": self.window, "check_every": self.check_every,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.layer_number < 3:
            raise ConfigError("layer_number must be at least 3")
        if not 0.5 < self.threshold < 1.0:
            raise ConfigError("threshold must be between 0.5 and 1")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate must be positive")
        if self.baseline not in ("auto", "fixed", "moving_average", "leave_one_out"):
            raise ConfigError(f"unknown baseline {self.baseline!r}")
        if self.shift not in ("auto", "off"):
            raise ConfigError(f"shift must be 'auto' or 'off', not {self.shift!r}")
        if not 0.0 <= self.check_fraction < 1.0:
            raise ConfigError("check_fraction must be in [0, 1)")
        if not 0.0 <= self.average_fraction <= 1.0:
            raise ConfigError(f"average_fraction is the share of the run whose values are "
                              f"averaged, in [0, 1], not {self.average_fraction!r}")
        if self.prior not in ("pooled", "validation"):
            raise ConfigError(f"unknown prior {self.prior!r}; choose 'pooled' or 'validation'")
        if not isinstance(self.min_iterations, int) or self.min_iterations < 0:
            raise ConfigError(f"min_iterations must be a whole number >= 0, not "
                              f"{self.min_iterations!r}")
        if self.tolerance is not None and not 0.0 <= self.tolerance < 1.0:
            raise ConfigError("tolerance must be in [0, 1) or None (run every iteration)")
        if self.baseline == "leave_one_out" and self.rollouts < 2:
            raise ConfigError("the leave-one-out baseline needs rollouts >= 2")
        if isinstance(self.random_state, bool) or \
                not isinstance(self.random_state, int | np.integer) or self.random_state < 0:
            raise ConfigError(f"random_state must be a whole number >= 0, not "
                              f"{self.random_state!r}")

    def get_params(self) -> dict[str, Any]:
        """Every constructor argument, as given (a Predictor object by its name):
        ``DVRL(**result.params)`` runs the same valuation again."""
        params = {name: getattr(self, name)
                  for name in inspect.signature(DVRL.__init__).parameters if name != "self"}
        if not (isinstance(self.predictor, str) or self.predictor is None):
            params["predictor"] = self.predictor.name
        return params

    def _fingerprint(self, data: PreparedData) -> str:
        """What a checkpoint must have been saved by to be resumed here: these settings (the
        device aside: a run may resume on another) on this data, its planted check rows
        included. The prepared data, not the fitted prior, whose last bits vary between CPUs."""
        digest = hashlib.sha256(repr(sorted(
            (name, value) for name, value in self.get_params().items() if name != "device"
        )).encode())
        for array in (data.train.x, data.train.y, data.valid.x, data.valid.y):
            digest.update(f"{array.dtype}{array.shape}".encode())
            # a slice at a time: a big table's training matrix is mapped from disk, not copied
            for start in range(0, len(array), FINGERPRINT_ROWS):
                digest.update(np.ascontiguousarray(array[start:start + FINGERPRINT_ROWS]).data)
        return digest.hexdigest()

    # set-up ----------------------------------------------------------------------------------
    def _make_predictor(self, data: PreparedData, device: torch.device, seed: int,
                        stop: threading.Event | None = None) -> Predictor:
        if isinstance(self.predictor, Predictor):
            return self.predictor
        name = self.predictor or DEFAULT_PREDICTOR[data.task]
        if name not in PREDICTORS and name != "auto":  # said with every name DVRL takes
            raise ConfigError(f"unknown predictor {name!r}; choose one of "
                              f"{['auto', *sorted(PREDICTORS)]}")
        if name == "auto":
            candidates = [n for n, cls in PREDICTORS.items() if data.task in cls.tasks]
            self.predictor_choice_ = choose_predictor(
                candidates, lambda n: self._build_predictor(n, data, device, seed), data.task,
                data.train.x, data.train.y, data.valid.x, data.valid.y, stop=stop)
            name = self.predictor_choice_.name
        return self._build_predictor(name, data, device, seed)

    def _build_predictor(self, name: str, data: PreparedData, device: torch.device,
                         seed: int) -> Predictor:
        # predictor_params are for the named predictor; under "auto" only the chosen one's apply
        params = dict(self.predictor_params) if self.predictor != "auto" else {}
        if name == "logistic_regression":
            # strong L2 (C = 10 / rows): on the Adult protocol each row's measured effect on the
            # reward then tracks label correctness far better (AUROC 0.90 vs 0.80 at C = 1)
            params.setdefault("alpha", STRONG_L2_PER_ROW * min(len(data.train), self.batch_size))
        if name == "mlp":
            params.setdefault("epochs", self.inner_iterations)
            params.setdefault("batch_size", self.predictor_batch_size)
        return make_predictor(name, data.task, data.n_classes, device=device, random_state=seed,
                              **params)

    def marginal(self, data: PreparedData, predictor: Predictor | None = None,
                 stop: threading.Event | None = None) -> np.ndarray:
        """The estimator's marginal input for every training row: |onehot(y) - f(x)| with f the
        pooled prior (``prior="pooled"``, no ``marginal_predictor`` given; regression:
        |y - f(x)| in units of the pool's spread) or a model trained on the validation rows
        only (regression: the official |y - f_valid(x)| / |y|). Once ``stop`` is set, the
        pooled prior starts no other fit and :class:`dvrl_core.prior.PriorStopped` is raised."""
        if predictor is None and self._pooled(data):
            marginal, self.prior_ = self._pooled_marginal(data, stop=stop)
            return marginal
        if predictor is None:
            device = resolve_device(self.device)
            seed = child_seeds(self.random_state)[3]
            chosen = self.predictor_choice_
            named = self.predictor if isinstance(self.predictor, str) else None
            if named == "auto":  # the predictor auto chose, or the default before any choice
                named = chosen.name if chosen is not None else None
            name = self.marginal_predictor or named or DEFAULT_PREDICTOR[data.task]
            predictor = make_predictor(name, data.task, data.n_classes, device=device,
                                       random_state=seed, **self.marginal_predictor_params)
        predictor.fit(data.valid.x, data.valid.y)
        predicted = predict_in_chunks(predictor.predict, data.train.x)
        if data.task == "classification":
            return _distance_from_label(predicted, data.train.y)
        scale = np.maximum(np.abs(data.train.y), 1e-3 * (np.std(data.train.y) + 1e-12))
        return _error_marginal(np.abs(data.train.y - predicted) / scale)

    def _pooled(self, data: PreparedData) -> bool:
        """Whether the marginal comes from the pooled prior."""
        return self.prior == "pooled" and self.marginal_predictor is None

    def _pooled_marginal(self, data: PreparedData, threads: int | None = None,
                         stop: threading.Event | None = None) -> tuple[np.ndarray, PooledPrior]:
        """The pooled prior's marginal, and the prior without its probabilities (its weights
        are kept for the diagnostics; the probabilities live on in the marginal)."""
        prior = pooled_prior(data, child_seeds(self.random_state)[3], threads=threads,
                             stop=stop)
        if data.task == "classification":
            marginal = _distance_from_label(prior.train_probabilities, data.train.y)
        else:
            marginal = _error_marginal(np.abs(standardised_errors(data, prior)))
        return marginal, replace(prior, train_probabilities=np.zeros((0, max(data.n_classes, 1))))

    # the run -----------------------------------------------------------------------------------
    def fit(
        self,
        data: PreparedData,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_checkpoint: Callable[[bytes, int], None] | None = None,
        checkpoint_every: int = 100,
        resume_from: bytes | None = None,
    ) -> ValuationResult:
        """Value every training row of ``data``.

        ``on_progress`` is called after every iteration; ``should_stop`` is asked before every
        iteration (and, from a thread, every quarter second from the prior's fifth second on,
        :class:`_StopPoller`) and, when it answers True, the run raises :class:`RunStopped`
        carrying a checkpoint (empty when it stopped during the prior: nothing to resume).
        ``on_checkpoint(state, iteration)`` receives the full state every ``checkpoint_every``
        iterations; ``resume_from`` continues from such a state and gives the same values as an
        uninterrupted run.
        """
        require_prepared(data, "DVRL.fit")
        require_positive_int("checkpoint_every", checkpoint_every, " of iterations")
        started = time.perf_counter()
        self.predictor_choice_ = None
        self.shift_ = None
        device = resolve_device(self.device)
        metric_name = self.metric or DVRL_DEFAULT_METRIC[data.task]
        metric = get_metric(metric_name, data.task)
        estimator_seed, sampling_seed, predictor_seed, _, check_seed = child_seeds(
            self.random_state, 5)
        # the check rows shape neither the prior nor the reward; half of them are planted among
        # the training rows with flipped labels, half kept for the removal test
        original, all_rows = len(data.train), data
        data, check = split_check_rows(data, self.check_fraction, check_seed)
        planted = held_out = None
        if check is not None:
            to_plant, held_out = split_halves(check, check_seed)
            planted = plant(to_plant, data.n_classes, check_seed)
            data = with_planted(data, planted)
            # the original rows are the joined matrix's first rows: on a big table, one copy
            all_rows = replace(all_rows, train=Split(data.train.x[:original], all_rows.train.y,
                                                     all_rows.train.ids))

        # predictor="auto"'s candidates and the prior can take minutes on a big table: a stop
        # asked meanwhile ends them at their next fit (there is nothing to resume yet: the
        # checkpoint is empty)
        with _StopPoller(should_stop) as poller:
            try:
                predictor = self._make_predictor(data, device, predictor_seed, poller.event)
                marginal = as_tensor(self.marginal(data, stop=poller.event), device)
            except (ChoiceStopped, PriorStopped):
                poller.reraise()
                raise RunStopped(0, self.iterations, b"") from None
        poller.reraise()  # the stop check failed while the last fits ran: the run's to raise
        control = self.marginal_control(data, marginal.cpu().numpy())
        watch = _Watch(planted, original, control) if self.guard and self.tolerance and \
            planted is not None and held_out is not None else None
        decided = watch.before() if watch is not None and resume_from is None else None
        x = as_tensor(data.train.x, device)
        label_input = self._label_input(data, device)
        y = as_tensor(data.train.y, device)
        y_train = y if data.task == "classification" else y.float()
        x_valid = as_tensor(data.valid.x, device)
        y_valid = as_tensor(data.valid.y, device)
        n = len(y)
        batch = min(self.batch_size, n)
        small = device.type == "cpu" and _small_loop(predictor, batch, x.shape[1],
                                                     data.n_classes, self.rollouts)
        # the trainer's set-up (a full-data fit every rollout's fit starts from) and the fixed
        # baseline on the loop's own thread count: on two threads their last bits can differ,
        # and the whole run with them
        with _torch_threads(1 if small else None):
            trainer = predictor.trainer(x, y_train)
            # the official fixed baseline: the predictor trained on all rows (on big tables, on
            # one seeded batch: every iteration's predictor trains on a batch too)
            baseline_rows = None
            if n > self.batch_size:
                baseline_generator = torch.Generator(device=device).manual_seed(sampling_seed)
                baseline_rows = torch.randperm(n, generator=baseline_generator,
                                               device=device)[: self.batch_size]
            fitted = trainer.fit(torch.ones(1, batch, device=device), baseline_rows)
            fixed_baseline = float(metric(trainer.predict(fitted, x_valid), y_valid)[0])

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(estimator_seed)
            estimator = ValueEstimator(
                x.shape[1], label_input.shape[1], marginal.shape[1], hidden_dim=self.hidden_dim,
                layer_number=self.layer_number, comb_dim=self.comb_dim,
                prior_skip=self.prior_skip,
            ).to(device)
        optimiser = Adam(estimator.parameters(), lr=self.learning_rate)
        generator = torch.Generator(device=device).manual_seed(sampling_seed)
        baseline_mode = self._baseline_mode()
        moving_baseline = fixed_baseline
        convergence = _Convergence(self.tolerance, self.check_every)
        rewards = np.zeros(self.iterations)
        # running sums of each row's selection probability, for the averaged values
        value_sum = torch.zeros(n, dtype=torch.float64, device=device)
        value_count = torch.zeros(n, dtype=torch.float64, device=device)
        start_iteration = 0
        run = self._fingerprint(data)
        if resume_from is not None:
            state = _load_state(resume_from)
            if state.get("run") != run or state["iterations"] != self.iterations or \
                    state["n_rows"] != n or \
                    not _same_shapes(state["estimator"], estimator.state_dict()):
                raise CheckpointMismatchError("the checkpoint belongs to a run with other data "
                                              "or settings (or an earlier version's run)")
            estimator.load_state_dict(state["estimator"])
            optimiser.load_state_dict(state["optimiser"])
            generator.set_state(state["generator"])
            moving_baseline = float(state["moving_baseline"])
            rewards[: len(state["rewards"])] = state["rewards"].numpy()
            value_sum = state["value_sum"].to(device)
            value_count = state["value_count"].to(device)
            start_iteration = int(state["iteration"])
            convergence.load(state)

        def checkpoint(iteration: int) -> bytes:
            return _dump_state({
                "run": run, "iteration": iteration, "iterations": self.iterations, "n_rows": n,
                "estimator": estimator.state_dict(), "optimiser": optimiser.state_dict(),
                "generator": generator.get_state(), "moving_baseline": moving_baseline,
                "rewards": torch.as_tensor(rewards[:iteration]),
                "value_sum": value_sum.cpu(), "value_count": value_count.cpu(),
            } | convergence.state())

        setup_s = time.perf_counter() - started
        loop_started = time.perf_counter()
        done = start_iteration
        threads = torch.get_num_threads()
        loop_threads = 0 if device.type != "cpu" else threads
        if small:
            torch.set_num_threads(loop_threads := 1)
        # the prior the guard returns, fitted on every row beside the loop on the threads it
        # leaves idle (where the prior's models run one thread each, so it keeps to them); it
        # does not depend on the loop, only whether it is used does
        returned_prior = None
        spare = thread_budget() - loop_threads
        if held_out is not None and planted is not None and self.guard and decided is None and \
                self._pooled(all_rows) and spare >= 1 and \
                side_by_side(len(all_rows.train) + len(all_rows.valid)):
            returned_prior = _Beside(
                lambda stop: self._pooled_marginal(all_rows, threads=spare, stop=stop),
                name=BESIDE_THREAD)
        try:
            last = start_iteration if decided is not None else self.iterations
            for iteration in range(start_iteration, last):
                if should_stop is not None and should_stop():
                    raise RunStopped(iteration, self.iterations, checkpoint(iteration))
                rows = _batch_rows(n, batch, generator, device) if batch < n else None
                part = slice(None) if rows is None else rows
                probability = estimator(x[part], label_input[part], marginal[part])
                selection = torch.bernoulli(
                    probability.detach().expand(self.rollouts, -1), generator=generator
                )
                with torch.no_grad():
                    models = trainer.fit(selection, rows)
                    score = metric(trainer.predict(models, x_valid), y_valid).float()
                advantage = self._advantage(score, fixed_baseline, moving_baseline, baseline_mode)
                loss = dvrl_loss(probability, selection, advantage.to(probability.dtype),
                                 self.threshold)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if iteration >= self.iterations * (1 - self.average_fraction):
                    if rows is None:
                        value_sum += probability.detach().double()
                        value_count += 1
                    else:
                        value_sum.index_add_(0, rows, probability.detach().double())
                        value_count.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float64))
                mean_score = float(score.mean())
                rewards[iteration] = mean_score - fixed_baseline
                if baseline_mode == "moving_average":
                    moving_baseline += (mean_score - moving_baseline) / self.window
                done = iteration + 1
                at_check = done < self.iterations and done % self.check_every == 0
                checking = at_check and done >= self.min_iterations
                converged = checking and convergence.update(value_sum, value_count, n)
                if at_check and done >= self._give_up_from() and not converged and \
                        watch is not None:
                    decided = watch.during(value_sum, value_count, done)
                ending = converged or decided is not None
                if on_progress is not None:
                    on_progress(Progress(done, done if ending else self.iterations,
                                         rewards[iteration], time.perf_counter() - loop_started))
                if ending:
                    break
                due = done % checkpoint_every == 0 and done < self.iterations
                if on_checkpoint is not None and due:
                    on_checkpoint(checkpoint(done), done)
            torch.set_num_threads(threads)
            train_s = time.perf_counter() - loop_started
            rewards = rewards[:done]
            release_rows(data.train.x)  # a mapped table: the loop's pages leave resident memory

            final = self._values(
                estimator, x, label_input, marginal,
                release=lambda start, stop: release_rows(data.train.x, start, stop))
            counts = value_count.cpu().numpy()
            values = np.where(counts > 0, value_sum.cpu().numpy() / np.maximum(counts, 1), final)
            trust: dict[str, Any] | None = None
            shift: CovariateShift | None = None
            if self.check_fraction > 0 and held_out is None:
                trust = {"returned": "dvrl",
                         "verdict": why_unchecked(all_rows, self.check_fraction)}
            if held_out is not None:
                values, trust = self._check(data, original, planted, held_out,
                                            values if done > 0 else None, control, check_seed)
                if trust["returned"] == "prior":  # decided: now the prior may see every row
                    if returned_prior is not None:
                        marginal_all, self.prior_ = returned_prior.result()
                    else:
                        marginal_all = self.marginal(all_rows)
                    values = self.marginal_control(all_rows, marginal_all)
                    values, shift = self._weighed_as_checked(all_rows, values, self.shift_,
                                                             check_seed)
                elif returned_prior is not None:  # the learned values are returned
                    returned_prior.stop()
                data = _without_planted(data, original)
                control = control[:original]
        except BaseException:  # stopped, interrupted or failed: the prior is not wanted
            torch.set_num_threads(threads)
            if returned_prior is not None:
                returned_prior.stop()
            raise
        params = self.get_params() | {
            "predictor": predictor.name, "predictor_params": predictor.params(),
            "metric": metric_name, "baseline": baseline_mode,
        }
        return ValuationResult(
            values=values,
            ids=data.train.ids,
            labels=data.train_labels(),
            reward_trace=rewards,
            params=params,
            versions=library_versions(),
            device=str(device),
            timings={
                "setup_s": setup_s, "train_s": train_s,
                "total_s": time.perf_counter() - started,
                "iterations_per_s": (done - start_iteration) / max(train_s, 1e-9),
            },
            diagnostics={
                "full_data_score": fixed_baseline,
                "marginal_spearman": _spearman(values, control),
                "convergence": convergence.report(done, self.iterations) | {"decided": decided},
            } | ({"prior_weights": self.prior_.weights} if getattr(self, "prior_", None)
                 else {}) | ({"trust": trust} if trust is not None else {})
            | ({"shift": shift.to_dict()} if shift is not None else {})
            | ({"predictor_choice": self.predictor_choice_.as_dict()}
               if self.predictor_choice_ is not None else {})
            | summary_checks(all_rows),  # the given rows: validation copies, thin classes
        )

    def _check(self, data: PreparedData, original: int, planted: Planted | None,
               held_out: Split, values: np.ndarray | None, prior: np.ndarray,
               seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The trust checks (module docstring); with ``guard``, the prior's values in place of
        learned values that told the planted flips apart worse (``values`` None: the loop did
        not run, the prior is returned). Returns the values of the original training rows and
        the report."""
        from .controls import marginal_control

        candidates = {"prior": prior} if values is None else {"dvrl": values, "prior": prior}
        if self._pooled(data):
            candidates["control"] = marginal_control(data, random_state=seed)
        control = "control" if "control" in candidates else None
        detection = {} if planted is None else planted_check(
            {name: v[original:] for name, v in candidates.items()}, planted)
        own = _without_planted(data, original)
        returned = "dvrl" if values is not None else "prior"
        removal = {k: v[:original] for k, v in candidates.items()}
        # the prior as it would be returned: weighted toward the validation rows' features
        # where they lie elsewhere (dvrl_core.shift)
        removal["prior"], shift = self._shifted(own, removal["prior"], seed)
        report = removal_check(own, held_out, removal, ours=returned, control=control,
                               random_state=seed)
        if returned == "dvrl" and self.guard and detection and planted is not None and \
                not learned_values_earn_their_place(detection, planted):
            returned = "prior"  # the reward did not make the planted flips clearly easier
            report.judge("prior", control)
        summary = report.to_dict() | {"returned": returned}
        if shift is not None:  # decided here, on rows the check holds out of nothing else
            summary["shift"] = shift.to_dict()
        if detection:
            summary["planted"] = {"rows": len(planted.rows) if planted else 0,
                                  "flipped": len(planted.flipped) if planted else 0,
                                  "auroc": detection}
        self.shift_ = shift  # the decision the returned prior follows (_weighed_as_checked)
        return removal[returned], summary

    def _shifted(self, data: PreparedData, values: np.ndarray,
                 seed: int) -> tuple[np.ndarray, CovariateShift | None]:
        """The prior's ``values`` weighted for a covariate shift between ``data``'s training
        and validation rows (``shift="auto"``; :mod:`dvrl_core.shift`), with the shift's
        report (None: ``shift="off"``)."""
        if self.shift == "off":
            return values, None
        shift = covariate_shift(data, seed)
        return weighted_values(values, shift), shift

    @staticmethod
    def _weighed_as_checked(data: PreparedData, values: np.ndarray,
                            checked: CovariateShift | None, seed: int
                            ) -> tuple[np.ndarray, CovariateShift | None]:
        """The returned prior's ``values``, weighted for a covariate shift where the trust
        check decided to (``checked``; its removal check scored the values so weighted): the
        weights estimated again on every row, the decision the check's."""
        if checked is None or not checked.applied:
            return values, checked
        shift = replace(covariate_shift(data, seed, gain=False),
                        validation_gain=checked.validation_gain)
        return weighted_values(values, shift), shift

    # pieces of the loop ------------------------------------------------------------------------
    def _give_up_from(self) -> int:
        """The first iteration at which the run may give up on its learned values (module
        docstring): the second check, or ``min_iterations`` if sooner. The averaged values
        leave the prior within a few dozen iterations; the rankings the convergence compares
        need longer to settle."""
        return min(self.min_iterations, 2 * self.check_every)

    def _baseline_mode(self) -> str:
        if self.baseline != "auto":
            return self.baseline
        return "leave_one_out" if self.rollouts > 1 else "fixed"

    def _advantage(
        self, score: torch.Tensor, fixed: float, moving: float, mode: str
    ) -> torch.Tensor:
        if mode == "leave_one_out":
            r = score.shape[0]
            others = (score.sum() - score) / (r - 1)
            advantage = score - others
        elif mode == "moving_average":
            advantage = score - moving
        else:
            advantage = score - fixed
        if self.normalize_advantage and score.shape[0] > 1:
            advantage = advantage / (score.std() + 1e-12)
        return advantage

    @staticmethod
    def _label_input(data: PreparedData, device: torch.device) -> torch.Tensor:
        y = as_tensor(data.train.y, device)
        if data.task == "classification":
            return torch.nn.functional.one_hot(y, data.n_classes).float()
        centred = (y.double() - y.double().mean()) / (y.double().std() + 1e-12)
        return centred.float().unsqueeze(1)

    @staticmethod
    def _values(estimator: ValueEstimator, x: torch.Tensor, label: torch.Tensor,
                marginal: torch.Tensor, chunk: int = 65536,
                release: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Selection probabilities in float64, from the logits (near-1 values still rank);
        ``release(start, stop)`` after each chunk of rows."""
        out = np.empty(len(x), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(x), chunk):
                part = slice(start, start + chunk)
                logits = estimator.logits(x[part], label[part], marginal[part]).double().cpu()
                out[part] = torch.sigmoid(logits).numpy()
                if release is not None:
                    release(start, min(start + chunk, len(x)))
        return out

    @staticmethod
    def marginal_control(data: PreparedData, marginal: np.ndarray) -> np.ndarray:
        """The marginal input alone as a value: f's probability of the given label (regression:
        1 / (1 + the marginal)); see :func:`dvrl_core.controls.marginal_control`."""
        from .controls import marginal_control

        return marginal_control(data, marginal)


def _error_marginal(errors: np.ndarray) -> np.ndarray:
    """A regression target's marginal [n, 1] from each row's error (relative, or in units of
    the pool's spread), capped at 100: one absurd target does not stretch the estimator's
    input."""
    return np.minimum(errors, 100.0).astype(np.float32)[:, None]


class _StopPoller:
    """Asks ``should_stop`` from a thread while the main thread is busy with work that cannot
    ask it itself (the prior's fits): first after :data:`STOP_POLL_GRACE_S`, then every
    :data:`STOP_POLL_EVERY_S`; sets :attr:`event` when it says stop, or when it raises (the error
    is kept for :meth:`reraise`). Without ``should_stop``, nothing runs and :attr:`event` is
    None. The grace: a small table's prior takes a second or two, and its loop's first
    iteration asks ``should_stop`` soon enough (with a checkpoint to resume from). So
    ``should_stop`` may be called from this thread: it must be safe to call from any thread."""

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        self.should_stop = should_stop
        self.event = threading.Event() if should_stop is not None else None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _StopPoller:
        if self.should_stop is not None:
            self._thread = threading.Thread(target=self._poll, name="dvrl-stop-poller",
                                            daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        assert self.should_stop is not None and self.event is not None
        wait = STOP_POLL_GRACE_S
        while not self._done.wait(wait):
            wait = STOP_POLL_EVERY_S
            try:
                if self.should_stop():
                    self.event.set()
                    return
            except BaseException as exc:  # e.g. the service's lost lease: the run's to raise
                self.error = exc
                self.event.set()
                return

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


class _Beside:
    """A call run on a thread of its own while the caller goes on; :meth:`result` waits for
    it. The call is given an event that :meth:`stop` sets, when its answer is no longer wanted
    (a run stopped, interrupted or failed; values that need no prior): it ends at its next
    look. A daemon thread: nobody waits for it."""

    def __init__(self, call: Callable[[threading.Event], Any], name: str) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True, name=name)
        self._thread.start()

    def _run(self, call: Callable[[threading.Event], Any]) -> None:
        try:
            self._result = call(self._stopping)
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            self._error = error

    def stop(self) -> None:
        self._stopping.set()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


class _Watch:
    """Whether the guard's verdict is settled before the run's end (module docstring): the
    planted rows are the training rows from ``first`` on, ``prior`` every row's prior value."""

    def __init__(self, planted: Planted, first: int, prior: np.ndarray) -> None:
        self.planted, self.first = planted, first
        self.prior = planted_check({"prior": prior[first:]}, planted)["prior"]

    def before(self) -> str | None:
        """Why no learned values could be returned, if none could."""
        if guard_within_reach(self.prior, self.planted):
            return None
        return (f"the prior tells the planted {self.planted.what} apart with AUROC "
                f"{self.prior:.3f}: no "
                "learned values could clear the guard's bar, so the loop did not run")

    def during(self, value_sum: torch.Tensor, value_count: torch.Tensor,
               done: int) -> str | None:
        """Why the run stops now, if the averaged values are too far below the guard's bar on
        the planted rows for more iterations to be worth their time."""
        counts = value_count[self.first:]
        if bool((counts == 0).any()):  # a planted row not valued yet
            return None
        learned = (value_sum[self.first:] / counts).cpu().numpy()
        auroc = planted_check({"dvrl": learned}, self.planted)["dvrl"]
        if not learned_values_out_of_reach({"dvrl": auroc, "prior": self.prior}, self.planted):
            return None
        return (f"after {done} iterations the learned values told the planted "
                f"{self.planted.what} apart with AUROC {auroc:.3f} against the prior's "
                f"{self.prior:.3f}: "
                f"{GIVE_UP_STANDARD_ERRORS:g} standard error or more short of the guard's bar, "
                "so the run gave up on them")


class _Convergence:
    """Whether the averaged values still move: the rank correlation of the values now with
    the values at the previous check, over the rows seen at both (all rows once every row has
    been seen; on tables bigger than a batch the run never stops before every row has)."""

    STREAK = 2  # checks in a row under the tolerance

    def __init__(self, tolerance: float | None, every: int) -> None:
        self.tolerance, self.every = tolerance, every
        self.previous: torch.Tensor | None = None
        self.streak = 0
        self.change: float | None = None
        self.converged = False

    def update(self, value_sum: torch.Tensor, value_count: torch.Tensor, n: int) -> bool:
        if not self.tolerance:  # None or 0: every iteration runs
            return False
        if bool((value_count == 0).any()):
            self.previous = None  # some rows were never valued yet
            return False
        current = (value_sum / value_count).cpu()
        if self.previous is not None:
            self.change = 1.0 - min(1.0, _spearman(current.numpy(), self.previous.numpy()))
            self.streak = self.streak + 1 if self.change < self.tolerance else 0
        self.previous = current
        self.converged = self.streak >= self.STREAK
        return self.converged

    def state(self) -> dict[str, Any]:
        previous = self.previous if self.previous is not None else torch.zeros(0)
        return {"convergence_previous": previous, "convergence_streak": self.streak}

    def load(self, state: dict[str, Any]) -> None:
        previous = state.get("convergence_previous")
        self.previous = previous if previous is not None and len(previous) else None
        self.streak = int(state.get("convergence_streak", 0))

    def report(self, done: int, most: int) -> dict[str, Any]:
        return {"iterations_used": done, "iterations_max": most, "converged": self.converged,
                "tolerance": self.tolerance, "check_every": self.every,
                "rank_change": None if self.change is None else round(self.change, 6)}


def _distance_from_label(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|onehot(y) - p| in float32, built in place (no [n, C] float64 temporaries on big
    tables): p itself for the other classes, 1 - p for the given one."""
    rows = np.arange(len(y))
    given = 1.0 - probabilities[rows, y]
    out = probabilities.astype(np.float32)
    out[rows, y] = np.abs(given)
    return out


# Below this many multiply-adds per rollout batch (rows x parameters x rollouts), the loop of a
# linear or Naive Bayes predictor runs on one torch thread whatever the budget: its operations
# are too small to share, and each parallel region costs a wake-up of the pool's threads, which
# wait passively (dvrl_core.threads). Measured with `dvrl value`, 2 cores: 1,000 rows x 14
# columns 156 it/s on one thread, 55 on two; 2,400 x 40 columns 84 and 39; 2,400 x 256 columns
# x 10 classes (164M) 4 and 6, where two threads pay.
SMALL_LOOP_WORK = 20_000_000
LIGHT_PREDICTORS = ("logistic_regression", "linear_regression", "naive_bayes",
                    "bernoulli_naive_bayes")


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's operations on ``count`` threads inside (None: as they are), restored after."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _small_loop(predictor: Predictor, batch: int, features: int, n_classes: int,
                rollouts: int) -> bool:
    """Whether DVRL's loop runs on one thread (``SMALL_LOOP_WORK``)."""
    outputs = n_classes if n_classes > 2 else 1
    work = batch * (features + 1) * outputs * rollouts
    return predictor.name in LIGHT_PREDICTORS and work < SMALL_LOOP_WORK


PERMUTATION_ROWS = 200_000


def _batch_rows(n: int, batch: int, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """``batch`` distinct rows of ``n``, uniformly at random. Past ``PERMUTATION_ROWS`` rows, a
    permutation of all of them (0.3 s at ten million rows, every iteration) gives way to
    random draws with the repeats dropped, in the order drawn."""
    if n <= PERMUTATION_ROWS:
        return torch.randperm(n, generator=generator, device=device)[:batch]
    rows = torch.zeros(0, dtype=torch.long, device=device)
    while len(rows) < batch:
        draws = torch.cat([rows, torch.randint(n, (batch + batch // 4,), generator=generator,
                                               device=device)])
        unique, inverse = torch.unique(draws, return_inverse=True)
        first = torch.full((len(unique),), len(draws), dtype=torch.long, device=device)
        first.scatter_reduce_(0, inverse, torch.arange(len(draws), device=device), "amin")
        rows = unique[first.argsort()]
    return rows[:batch]


def _without_planted(data: PreparedData, original: int) -> PreparedData:
    """``data`` with only its first ``original`` training rows (the planted ones dropped)."""
    train = data.train
    kept = Split(train.x[:original], train.y[:original], train.ids[:original])
    return replace(data, train=kept)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from .result import rank_lowest_first

    ra, rb = rank_lowest_first(a).astype(float), rank_lowest_first(b).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _dump_state(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _same_shapes(saved: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a checkpoint's estimator has this run's layers and shapes (the data prepared by
    an earlier version can have another number of features)."""
    return saved.keys() == expected.keys() and all(
        tuple(saved[name].shape) == tuple(expected[name].shape) for name in expected)


def _load_state(blob: bytes) -> dict[str, Any]:
    if not blob:
        raise ConfigError("the checkpoint is empty: the run stopped before its first iteration "
                          "(while its prior was fitted), so there is nothing to resume; start "
                          "the run again")
    # weights_only: a checkpoint holds tensors and numbers; never unpickle arbitrary objects
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's unpickling errors are of many kinds
        raise CheckpointMismatchError(
            f"the checkpoint cannot be read ({type(exc).__name__}): it is not a DVRL.fit "
            "checkpoint, or it was cut short") from None
    if not isinstance(state, dict) or "iterations" not in state:
        raise CheckpointMismatchError("the checkpoint cannot be read: it is not a DVRL.fit "
                                      "checkpoint")
    return state
