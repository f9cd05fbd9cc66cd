"""The prior DVRL starts from: a model of p(y | x) that pools every source of evidence the simple
controls use, weighted by how well each predicts the clean validation labels.

DVRL's estimator takes the "marginal" |onehot(y) - f(x)| as an input, and (``prior_skip``) starts
from the log-odds of f(x)'s probability of the given label. The official code fits f on the
validation rows only. The controls show that other evidence is as strong on some tables: a model
of the training rows' own labels, cross-fitted so that no row is scored by a model that saw it
(self-confidence; Northcutt et al., *Confident Learning*, JAIR 2021), or a tree model where the
classes are not linearly separable. No single source wins everywhere. So the prior pools them:

    log q(c | x) = sum_k w_k log p_k(c | x) + b_c - log Z(x),    w_k >= 0

(a weighted geometric pool; Genest and Zidek, *Combining probability distributions*, 1986) with
the weights and biases fitted by maximum likelihood on the validation rows, which are clean. Every
source is scored on the validation rows by models that never saw them (K-fold cross-fitting), so
the weights see each source's out-of-sample quality. A source that does not help gets a weight
near zero: on a table where the validation model is best, q is that model.

Sources (:func:`source_names`), each a logistic regression, a LightGBM model (15 leaves a
tree), the k nearest neighbours (:mod:`dvrl_core.neighbours`; tables of up to ``NEIGHBOUR_ROWS``
training rows) and, on tables of ``DEEP_ROWS`` training rows or more (:func:`kinds_for`), a
deeper LightGBM model (31 leaves) beside the first: more rows carry more structure, and the pool
weighs the two by how well each predicts the validation labels:

* ``validation_*``: fitted on the validation rows (the official marginal's evidence);
* ``joint_*``: fitted on the training rows' own, noisy labels and the validation rows together,
  cross-fitted over both (fold k's model sees neither fold k's training rows nor fold k's
  validation rows): the few clean rows and the many noisy ones in one model, which on the
  quality suite found more flipped labels than models of the training rows alone (the
  self-confidence of the controls) pooled with the validation models. Their folds are drawn
  ``REPEATS`` times and the out-of-fold probabilities averaged (tables of up to ``REPEAT_ROWS``
  training rows and ``REPEAT_WORK`` cells): which rows happen to share a fold moves a single
  split's probabilities.

A LightGBM model past ``REPEAT_WORK`` rows x columns x outputs (the ten-class pixels of MNIST
-> USPS's 5,000 source rows, tables of a million rows) bins its features in ``BIG_MODEL_BINS``
bins rather than 255: its trees cost less than half as much; smaller models keep LightGBM's
default, bit for bit.

Then the joint sources are fitted again (``REWEIGHTED_ROUNDS``) with each training row weighted
by the first pool's probability of its given label, and pooled again: rows the pool doubts weigh
less in the models that score the other rows (a soft form of confident learning's pruning).
Figures in docs/benchmarks.md.

A regression target gets the same sources (a ridge regression for the linear kind, LightGBM's
regression, the mean of the neighbours' targets), cross-fitted the same way, each predicting
the target; the pool is their stacked combination (:func:`_fit_stack`: non-negative weights
and an intercept, least squares on the validation rows' cross-fitted predictions), its spread
the median absolute deviation of its errors there, and a row's own value is 1 / (1 + |z|),
z its error in units of that spread (:func:`standardised_errors`). In the reweighted round a
training row weighs 1 / (1 + (z / 2)^2).

The fits that do not need each other's answers (every fold of every source, then every fold of
the reweighted round) run side by side on the process's thread budget (:func:`fit_threads`),
each model on one thread: on 2 cores the prior of a 5,000-row wine table took 10.1 s instead
of 17.0 s, MNIST -> USPS's (5,000 x 256 pixels, ten classes) 93 s instead of 132 s, the same
probabilities to the bit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .data import PreparedData, standardiser
from .stream import predict_in_chunks, take_rows
from .threads import lightgbm_calls, lightgbm_threads, thread_budget

KINDS = ("logistic", "lightgbm", "neighbours", "lightgbm_deep")
LEAVES = {"lightgbm": 15, "lightgbm_deep": 31}  # leaves a tree of each LightGBM kind
FOLDS = 5
# the joint sources' folds are drawn this many times and their probabilities averaged, on tables
# of up to REPEAT_ROWS training rows and REPEAT_WORK rows x columns x outputs (LightGBM fits one
# tree per class and round: the ten-class USPS pixels at 1,000 rows took 87 s instead of 47 s
# with two draws); bigger ones draw once
REPEATS = 2
REPEAT_ROWS = 50_000
REPEAT_WORK = 10_000_000
NEIGHBOUR_ROWS = 50_000  # the neighbours' source on tables of up to this many training rows
# the deeper LightGBM source from this many training rows, on tables small enough to draw their
# folds twice (repeats_for). Quality suite, prior alone, found@20 minus the best control, seeds
# 0-4 at 5,000 rows (adult, bank, MAGIC, phoneme, wine): +0.026 without it, +0.030 with it
# (phoneme +0.033 -> +0.044); seeds 0-2 at 3,000 rows +0.037 -> +0.039, at 2,000 +0.043 ->
# +0.042, at 1,000 it lost (bank -0.003 -> -0.013, wine -0.002 -> -0.010)
DEEP_ROWS = 3_000
REWEIGHTED_ROUNDS = 1
# on bigger tables the joint sources are cross-fitted on a seeded sample of this many training
# rows; every other row is scored by a model fitted on the whole sample (which never saw it)
CROSS_FIT_ROWS = 200_000
# the prior's fits run side by side on tables of up to this many rows: one LightGBM model on
# one thread does more work per thread than on two (MNIST -> USPS's ten classes, 3,500 rows x
# 256 pixels: 9.6 s on one thread, 6.0 s on two), and a fold's copy of so few rows is cheap
PARALLEL_ROWS = 50_000
# a LightGBM model fitted on more than REPEAT_WORK rows x columns x outputs bins each feature
# in this many bins instead of LightGBM's 255: its trees cost about a bin's histogram each
# (MNIST -> USPS's fold models, 3,820 rows x 256 pixels x 10 classes, one thread: 9.9 s -> 4.1 s)
BIG_MODEL_BINS = 63
FLOOR = 1e-4  # no source may say "impossible": one confident mistake would dominate the pool


@dataclass
class PooledPrior:
    """Class probabilities for the training rows, with the pool's weights per source; for a
    regression target, the predicted targets and the spread of the pool's errors."""

    train_probabilities: np.ndarray  # [n_train, C]; regression: [n_train, 1], predicted targets
    weights: dict[str, float]
    # of the pool, on the validation rows (cross-fitted sources): the log-loss (regression: the
    # mean squared error)
    validation_loss: float
    # regression: the spread of the pool's errors on the validation rows (cross-fitted; the
    # median absolute deviation, as a normal distribution's standard deviation)
    residual_scale: float | None = None


def _fit_predict(kind: str, x: np.ndarray, y: np.ndarray, targets: Sequence[np.ndarray],
                 n_classes: int, seed: int, weights: np.ndarray | None = None,
                 threads: int | None = None) -> list[np.ndarray]:
    """Fit ``kind`` on (x, y), each row weighted by ``weights`` (default: all 1), and return its
    class probabilities [m, C] (float32) on each of ``targets``; classes missing from ``y`` get
    probability 0 before the floor. ``n_classes`` 0: a regression target, and the answers are
    predicted targets [m, 1] (:func:`_fit_predict_targets`). A LightGBM model runs on
    ``threads`` threads (default: :func:`dvrl_core.threads.lightgbm_threads`)."""
    if n_classes == 0:
        return _fit_predict_targets(kind, x, y, targets, seed, weights, threads)
    present = np.unique(y)
    if len(present) < 2:  # one class only in this fold: it is all the model can say
        out = []
        for t in targets:
            p = np.zeros((len(t), n_classes), dtype=np.float32)
            p[:, present[0]] = 1.0
            out.append(p)
        return out
    if kind == "neighbours":
        from .neighbours import neighbour_probabilities

        return neighbour_probabilities(x, y, targets, n_classes, weights=weights)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        scale = standardiser(x)
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit(scale(x), y, sample_weight=weights)
        classes = model.classes_
        predict = lambda part: model.predict_proba(scale(part))  # noqa: E731
    else:
        classes, predict = present, _lightgbm(kind, x, y, present, seed, weights,
                                              threads or lightgbm_threads(x.size))
    out = []
    for t in targets:
        full = np.zeros((len(t), n_classes), dtype=np.float32)
        if len(t):  # a fold of no rows (no joined rows) asks nothing
            full[:, classes] = predict_in_chunks(predict, t)
        out.append(full)
    return out


def _fit_predict_targets(kind: str, x: np.ndarray, y: np.ndarray, targets: Sequence[np.ndarray],
                         seed: int, weights: np.ndarray | None,
                         threads: int | None) -> list[np.ndarray]:
    """:func:`_fit_predict` for a regression target: ``kind`` fitted on (x, y), its predicted
    targets [m, 1] (float32) on each of ``targets``. The linear kind ("logistic" for a
    classification target) is a ridge regression (alpha 1) on standardised features."""
    if kind == "neighbours":
        from .neighbours import neighbour_means

        return neighbour_means(x, y, targets, weights=weights)
    if kind == "logistic":
        from sklearn.linear_model import Ridge

        scale = standardiser(x)
        model = Ridge(alpha=1.0).fit(scale(x), y, sample_weight=weights)
        predict = lambda part: model.predict(scale(part))  # noqa: E731
    else:
        predict = _lightgbm(kind, x, y, None, seed, weights, threads or lightgbm_threads(x.size))
    return [predict_in_chunks(predict, t).reshape(-1, 1).astype(np.float32) if len(t)
            else np.zeros((0, 1), dtype=np.float32) for t in targets]


def _lightgbm(kind: str, x: np.ndarray, y: np.ndarray, classes: np.ndarray | None, seed: int,
              weights: np.ndarray | None, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A LightGBM model of ``kind`` fitted on (x, y), whose labels are ``classes``: its class
    probabilities (``classes`` None: a regression model, its predicted targets). The model
    LightGBM's scikit-learn estimator would fit with these settings (its defaults spelled out;
    the same trees), trained by ``lightgbm.train`` and kept in memory: the estimator writes
    each booster to text and reads it back to free the training data, about a third of a small
    fit's time."""
    import lightgbm as lgb

    outputs = 1 if classes is None or len(classes) == 2 else len(classes)
    objective = "regression" if classes is None else \
        "binary" if len(classes) == 2 else "multiclass"
    params: dict[str, Any] = {
        "objective": objective,
        "boosting_type": "gbdt", "num_leaves": LEAVES[kind], "max_depth": -1,
        "learning_rate": 0.1, "subsample_for_bin": 200_000, "min_split_gain": 0.0,
        "min_child_weight": 1e-3, "min_child_samples": 10, "subsample": 1.0,
        "subsample_freq": 0, "colsample_bytree": 1.0, "reg_alpha": 0.0, "reg_lambda": 0.0,
        "random_state": seed, "deterministic": True, "n_jobs": threads, "verbose": -1,
    }
    if outputs > 1:
        params["num_class"] = outputs
    if x.size * outputs > REPEAT_WORK:
        params["max_bin"] = BIG_MODEL_BINS
    labels = y if classes is None else np.searchsorted(classes, y)
    with lightgbm_calls.holding(threads):
        booster = lgb.train(params, lgb.Dataset(x, labels, weight=weights),
                            num_boost_round=100, keep_training_booster=True)

    def predict(part: np.ndarray) -> np.ndarray:
        with lightgbm_calls.holding(threads):  # with no count, LightGBM takes every core
            p = np.asarray(booster.predict(part, num_threads=threads))
        return np.stack([1.0 - p, p], axis=1) if classes is not None and len(classes) == 2 \
            else p

    return predict


@dataclass
class _CrossFitted:
    own: np.ndarray  # [n, C]: every row of (x, y) scored by a model that never saw it
    joined: np.ndarray  # the same for the joined rows (no rows when none were joined)


@dataclass
class _Fits:
    """Model fits that do not depend on each other, each a call returning its probabilities
    (:func:`_fit_predict`'s list), and how their answers make the result: :func:`_run` runs
    the calls of many of these in any order, on several threads."""

    calls: list[Callable[[], list[np.ndarray]]]
    assemble: Callable[[list[list[np.ndarray]]], Any]


class PriorStopped(Exception):
    """The prior's fits were told to stop (:func:`pooled_prior`'s ``stop``) before all ran."""


def _run(fits: Sequence[_Fits], threads: int, one_thread_each: bool = False,
         stop: threading.Event | None = None) -> list[Any]:
    """Every call of every ``fits``, on up to ``threads`` threads (LightGBM, the matrix products
    and most of scikit-learn's solver release the GIL), then each one's result. Each fit is
    seeded, so the results do not depend on ``threads``. ``one_thread_each``: the BLAS under
    NumPy and scikit-learn on one thread meanwhile (its threads spin while they wait: beside a
    LightGBM model on the other core, the Adult protocol's prior took 1.1 s on two threads
    instead of 0.75 s). Once ``stop`` is set, no further call starts: :class:`PriorStopped`."""

    def checked(call: Callable[[], list[np.ndarray]]) -> Callable[[], list[np.ndarray]]:
        def run() -> list[np.ndarray]:
            if stop is not None and stop.is_set():
                raise PriorStopped("the prior's fits were stopped")
            return call()

        return run

    calls = [checked(call) for f in fits for call in f.calls]
    with threadpool_limits(1, user_api="blas") if one_thread_each else nullcontext():
        if threads > 1 and len(calls) > 1:
            with ThreadPoolExecutor(min(threads, len(calls))) as pool:
                answers = list(pool.map(lambda call: call(), calls))
        else:
            answers = [call() for call in calls]
    results, start = [], 0
    for f in fits:
        results.append(f.assemble(answers[start:start + len(f.calls)]))
        start += len(f.calls)
    return results


def _single_fit(kind: str, x: np.ndarray, y: np.ndarray, target: np.ndarray, n_classes: int,
                seed: int, threads: int | None = None) -> _Fits:
    """One model fitted on (x, y), scoring ``target``: its probabilities [m, C]."""
    return _Fits([partial(_fit_predict, kind, x, y, [target], n_classes, seed,
                          threads=threads)],
                 lambda answers: answers[0][0])


def _cross_fit(kind: str, x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, *,
               weights: np.ndarray | None = None,
               joined: tuple[np.ndarray, np.ndarray] | None = None) -> _CrossFitted:
    """Out-of-fold probabilities for the rows of (x, y) (:func:`_cross_fits`), fitted one
    after the other."""
    result: _CrossFitted = _run([_cross_fits(kind, x, y, n_classes, seed, weights=weights,
                                             joined=joined)], threads=1)[0]
    return result


def _cross_fits(kind: str, x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, *,
                weights: np.ndarray | None = None,
                joined: tuple[np.ndarray, np.ndarray] | None = None,
                threads: int | None = None) -> _Fits:
    """The fits behind out-of-fold probabilities for the rows of (x, y), weighted by
    ``weights``; they assemble into a :class:`_CrossFitted`. With ``joined`` (clean rows,
    weight 1) those rows are folded in too: fold k's model is fitted on the other folds of both
    and scores fold k of both. Past ``CROSS_FIT_ROWS`` rows of x, the folds are those of a
    seeded sample and the other rows are scored by a model fitted on the whole sample (and
    every joined row). Each call gathers its own rows when it runs: no fold's copy of the data
    exists before its fit. ``threads``: each LightGBM model's (:func:`_fit_predict`)."""
    n = len(y)
    sample = None
    if n > CROSS_FIT_ROWS:
        sample = np.sort(np.random.default_rng([seed, 11]).choice(n, CROSS_FIT_ROWS,
                                                                  replace=False))
        x_fit, y_fit = take_rows(x, sample), y[sample]
        w_fit = None if weights is None else weights[sample]
    else:
        x_fit, y_fit, w_fit = x, y, weights
    if joined is None:
        x_join = np.zeros((0, x.shape[1]), dtype=x_fit.dtype)
        y_join = np.zeros(0, dtype=y.dtype)
    else:
        x_join, y_join = joined
    order = np.random.default_rng(seed).permutation(len(y_fit))
    join_order = np.random.default_rng([seed, 7]).permutation(len(y_join))
    folds = list(zip(np.array_split(order, FOLDS), np.array_split(join_order, FOLDS),
                     strict=True))

    def fit_fold(fold: np.ndarray, join_fold: np.ndarray) -> list[np.ndarray]:
        rest = np.setdiff1d(order, fold, assume_unique=True)
        join_rest = np.setdiff1d(join_order, join_fold, assume_unique=True)
        fit_x, fit_y, fit_w = _with_joined(x_fit[rest], y_fit[rest],
                                           None if w_fit is None else w_fit[rest],
                                           x_join[join_rest], y_join[join_rest])
        return _fit_predict(kind, fit_x, fit_y, [x_fit[fold], x_join[join_fold]], n_classes,
                            seed, fit_w, threads)

    def fit_sample() -> list[np.ndarray]:
        fit_x, fit_y, fit_w = _with_joined(x_fit, y_fit, w_fit, x_join, y_join)
        return _fit_predict(kind, fit_x, fit_y, [x], n_classes, seed, fit_w, threads)

    def assemble(answers: list[list[np.ndarray]]) -> _CrossFitted:
        outputs = max(n_classes, 1)  # a regression target: one column, the predicted target
        own_fit = np.zeros((len(y_fit), outputs), dtype=np.float32)
        own_join = np.zeros((len(y_join), outputs), dtype=np.float32)
        for (fold, join_fold), (on_fold, on_join_fold) in zip(folds, answers, strict=False):
            own_fit[fold], own_join[join_fold] = on_fold, on_join_fold
        own = own_fit
        if sample is not None:
            own = answers[-1][0]
            own[sample] = own_fit
        return _CrossFitted(own, own_join)

    calls: list[Callable[[], list[np.ndarray]]] = [partial(fit_fold, *f) for f in folds]
    if sample is not None:
        calls.append(fit_sample)
    return _Fits(calls, assemble)


def _with_joined(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, x_join: np.ndarray,
                 y_join: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(x, y, w) with the joined rows appended at weight 1 (``w`` None: every row weighs 1)."""
    if not len(y_join):
        return x, y, w
    w_join = np.ones(len(y_join), dtype=np.float64)
    return (np.concatenate([x, x_join]), np.concatenate([y, y_join]),
            None if w is None else np.concatenate([w, w_join]))


def _log(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, FLOOR, None)
    return np.log(p / p.sum(1, keepdims=True))


def _fit_pool(log_probabilities: np.ndarray, y: np.ndarray,
              l2: float = 1e-2) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights w >= 0 (one per source) and class biases b maximising the likelihood of ``y``
    under softmax(sum_k w_k log p_k + b), less ``l2`` (|w|^2 + |b|^2); ``log_probabilities``
    is [K, m, C]. A smooth problem in K + C numbers: L-BFGS-B with the bounds w >= 0."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    logs = np.asarray(log_probabilities, dtype=np.float64)
    k, m, c = logs.shape
    onehot = np.zeros((m, c))
    onehot[np.arange(m), y] = 1.0

    def log_q(theta: np.ndarray) -> np.ndarray:  # [m, C]: the pool's log-probabilities
        return log_softmax(np.einsum("k,kmc->mc", theta[:k], logs) + theta[k:], axis=1)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_pool = log_q(theta)
        loss = -(log_pool * onehot).sum() / m + l2 * (theta ** 2).sum()
        residual = (np.exp(log_pool) - onehot) / m  # d loss / d scores
        gradient = np.concatenate([np.einsum("mc,kmc->k", residual, logs),
                                   residual.sum(0)]) + 2 * l2 * theta
        return float(loss), gradient

    start = np.concatenate([np.full(k, np.log(2.0)), np.zeros(c)])  # every source at weight ln 2
    bounds = [(0.0, None)] * k + [(None, None)] * c
    fitted = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9})
    theta = fitted.x
    nll = float(-log_q(theta)[np.arange(m), y].mean())
    return theta[:k], theta[k:], nll


def kinds_for(n_train: int, n_columns: int, n_classes: int) -> tuple[str, ...]:
    """The model kinds of the pool for a table of ``n_train`` training rows: the neighbours only
    up to ``NEIGHBOUR_ROWS`` (every row's distance to every fitted row), the deeper LightGBM
    from ``DEEP_ROWS`` on tables whose folds are drawn twice (:func:`repeats_for`: it doubles
    the trees' cost, which dominates on wide multi-class tables and big ones)."""
    left_out = set()
    if n_train > NEIGHBOUR_ROWS:
        left_out.add("neighbours")
    if n_train < DEEP_ROWS or not _small(n_train, n_columns, n_classes):
        left_out.add("lightgbm_deep")
    return tuple(k for k in KINDS if k not in left_out)


def repeats_for(n_train: int, n_columns: int, n_classes: int) -> int:
    """How many times the joint sources' folds are drawn: ``REPEATS`` up to ``REPEAT_ROWS``
    training rows and ``REPEAT_WORK`` rows x columns x outputs, else once."""
    return REPEATS if _small(n_train, n_columns, n_classes) else 1


def _small(n_train: int, n_columns: int, n_classes: int) -> bool:
    """Whether a table is small enough for the extra trees' work: the twice-drawn folds and the
    deeper LightGBM (``REPEAT_ROWS`` rows, ``REPEAT_WORK`` rows x columns x outputs)."""
    outputs = n_classes if n_classes > 2 else 1
    return n_train <= REPEAT_ROWS and n_train * n_columns * outputs <= REPEAT_WORK


def source_names(kinds: Sequence[str], regression: bool = False) -> tuple[str, ...]:
    """The pool's sources, in the order of its weights, for these model kinds (for a
    regression target the linear kind is named ``linear``)."""
    named = [("linear" if regression and kind == "logistic" else kind) for kind in kinds]
    return tuple(f"{rows}_{kind}" for rows in ("validation", "joint") for kind in named)


def pooled_prior(data: PreparedData, random_state: int = 0, threads: int | None = None,
                 stop: threading.Event | None = None) -> PooledPrior:
    """The pooled model of p(y | x) (module docstring; a regression target: of y's expected
    value, :func:`_fit_stack`). Its model fits run on up to ``threads`` threads (default:
    :func:`fit_threads`); the result does not depend on how many. Once ``stop`` is set (from
    another thread), the fits running end and no other starts: :class:`PriorStopped` is
    raised."""
    regression = data.task == "regression"
    c, seed = data.n_classes, random_state
    xv, yv, xt, yt = data.valid.x, data.valid.y, data.train.x, data.train.y
    kinds = kinds_for(len(yt), xt.shape[1], c)
    repeats = repeats_for(len(yt), xt.shape[1], c)
    if threads is None:
        threads = fit_threads(len(yt) + len(yv))
    each = 1 if side_by_side(len(yt) + len(yv)) else None  # each model's threads

    def joint(row_weights: np.ndarray | None) -> list[_Fits]:
        """The training and the validation rows in one model, per kind and draw of folds."""
        return [_cross_fits(kind, xt, yt, c, seed + 1000 * repeat, weights=row_weights,
                            joined=(xv, yv), threads=each)
                for kind in kinds for repeat in range(repeats)]

    # fitted on the validation rows (cross-fitted there, all of them for the training rows),
    # run together with the first round's joint fits: none needs another's answer
    validation = [f for kind in kinds
                  for f in (_cross_fits(kind, xv, yv, c, seed, threads=each),
                            _single_fit(kind, xv, yv, xt, c, seed, threads=each))]
    done = _run(validation + joint(None), threads, each == 1, stop)
    valid_on_valid = [fitted.own for fitted in done[0:len(validation):2]]
    valid_on_train = done[1:len(validation):2]

    def pool(joint_fits: list[_CrossFitted]) -> PooledPrior:
        """Every source's probabilities (predicted targets) pooled, with the weights."""
        on_valid, on_train = list(valid_on_valid), list(valid_on_train)
        for first in range(0, len(joint_fits), repeats):
            joined, own = _averaged(joint_fits[first:first + repeats])
            on_valid.append(joined)
            on_train.append(own)
        del joint_fits[:]
        if regression:
            weights, intercept, scale, mse = _fit_stack(np.stack([p[:, 0] for p in on_valid]),
                                                        yv)
            predicted = _stacked([p[:, 0] for p in on_train], weights, intercept)
            return PooledPrior(predicted[:, None], _named(kinds, weights, regression), mse,
                               scale)
        weights, bias, nll = _fit_pool(np.stack([_log(p) for p in on_valid]), yv)
        return PooledPrior(_pooled(on_train, weights, bias), _named(kinds, weights, regression),
                           nll)

    prior = pool(done[len(validation):])
    del done
    for _ in range(REWEIGHTED_ROUNDS):  # each training row weighed by the pool's belief in it
        prior = pool(_run(joint(_belief(data, prior)), threads, each == 1, stop))
    return prior


def _named(kinds: Sequence[str], weights: np.ndarray, regression: bool) -> dict[str, float]:
    return dict(zip(source_names(kinds, regression), weights.round(4).tolist(), strict=True))


# a regression row's weight in the reweighted round: 1 / (1 + (z / CAUCHY_WIDTH)^2), z its error
# in units of the pool's spread (a Cauchy likelihood, whose tails forgive more than a normal's).
# Scratch check, noisy-target protocol (1,000 rows, 20% of targets moved; bike sharing, wine,
# Rossmann; seeds 0-2): found@20 with this round against without it, higher on 7 of 9 splits
CAUCHY_WIDTH = 2.0


def _belief(data: PreparedData, prior: PooledPrior) -> np.ndarray:
    """How much each training row weighs in the reweighted round: the prior's probability of
    its given label (regression: a decreasing function of its standardised error)."""
    if data.task == "regression":
        z = standardised_errors(data, prior)
        return 1.0 / (1.0 + (z / CAUCHY_WIDTH) ** 2)
    return given_label_probability(data, prior).astype(np.float64)


def _fit_stack(predictions: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Weights w >= 0 (one per source) and an intercept b minimising the squared error of
    sum_k w_k f_k + b on ``y`` (stacked regression; Breiman, *Stacked regressions*, 1996);
    ``predictions`` is [K, m]. Returns w, b, the spread of the errors (their median absolute
    deviation as a normal distribution's standard deviation; their root mean square where
    that is 0) and the mean squared error."""
    from scipy.optimize import lsq_linear

    k, m = predictions.shape
    design = np.hstack([predictions.T.astype(np.float64), np.ones((m, 1))])
    fitted = lsq_linear(design, np.asarray(y, dtype=np.float64),
                        bounds=([0.0] * k + [-np.inf], [np.inf] * (k + 1)), method="bvls")
    errors = y - design @ fitted.x
    scale = 1.4826 * float(np.median(np.abs(errors - np.median(errors))))
    if not scale > 0:
        scale = float(np.sqrt(np.mean(errors ** 2)))
    scale = max(scale, 1e-12 * (float(np.std(y)) + 1.0))
    return fitted.x[:k], float(fitted.x[k]), scale, float(np.mean(errors ** 2))


def _stacked(sources: list[np.ndarray], weights: np.ndarray, intercept: float) -> np.ndarray:
    """sum_k w_k f_k + b, one source at a time (big tables)."""
    out = np.full(len(sources[0]), intercept, dtype=np.float64)
    for weight, f in zip(weights, sources, strict=True):
        out += weight * f
    return out


def side_by_side(rows: int) -> bool:
    """Whether the prior of a table of ``rows`` rows (training and validation) runs each model
    on one thread, as many at once as it is given threads: up to ``PARALLEL_ROWS``. Bigger
    tables fit one model at a time, each LightGBM model on the whole budget
    (:func:`lightgbm_threads`)."""
    return rows <= PARALLEL_ROWS


def fit_threads(rows: int) -> int:
    """How many of the prior's fits run at once by default: the thread budget where they run
    side by side (:func:`side_by_side`), else one."""
    return thread_budget() if side_by_side(rows) else 1


def _averaged(fits: Sequence[_CrossFitted]) -> tuple[np.ndarray, np.ndarray]:
    """The joined rows' and the own rows' probabilities averaged over the draws of folds (seeds
    ``seed``, ``seed + 1000``, ...): one split's out-of-fold probabilities depend on which rows
    happened to share a fold."""
    if len(fits) == 1:  # a big table's arrays, not copied
        return fits[0].joined, fits[0].own
    joined_mean = np.mean([f.joined for f in fits], axis=0, dtype=np.float32)
    own_mean = np.mean([f.own for f in fits], axis=0, dtype=np.float32)
    return np.asarray(joined_mean), np.asarray(own_mean)


def _pooled(sources: list[np.ndarray], weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(sum_k w_k log p_k + b) row by row, one source at a time (big tables)."""
    scores = np.broadcast_to(bias, (len(sources[0]), len(bias))).astype(np.float64)
    for weight, p in zip(weights, sources, strict=True):
        scores += weight * _log(p)
    scores -= scores.max(1, keepdims=True)
    probabilities = np.exp(scores, out=scores)
    probabilities /= probabilities.sum(1, keepdims=True)
    return probabilities


def given_label_probability(data: PreparedData, prior: PooledPrior) -> np.ndarray:
    """q(given label | x) for every training row: the prior's own value of each row."""
    return prior.train_probabilities[np.arange(len(data.train)), data.train.y]


def standardised_errors(data: PreparedData, prior: PooledPrior) -> np.ndarray:
    """A regression target: every training row's (y - predicted) / the pool's spread. The
    prior's own value of a row is 1 / (1 + its absolute value)."""
    if prior.residual_scale is None:
        raise ValueError("standardised errors are for a regression target's prior")
    predicted = prior.train_probabilities[:, 0].astype(np.float64)
    return (np.asarray(data.train.y, dtype=np.float64) - predicted) / prior.residual_scale
