"""Covariate shift between the training rows and the validation rows, and the importance weights
that carry it into the prior's values.

DVRL values a row by how much it helps a predictor on the validation rows, the target task. The
pooled prior (:mod:`dvrl_core.prior`) answers a narrower question: how likely is the row's label
given its features. Where the validation rows come from the training rows' distribution (the
noisy-label protocol) the two agree. Where they do not (the paper's domain adaptation: Rossmann's
stores of every type as the source, one type as the target), a row with a right label but
features the target seldom shows helps the target less, and the prior cannot see it.

A domain classifier tells them apart: a logistic regression on the standardised features, the
validation rows against the training rows (classes balanced), cross-fitted in ``FOLDS`` folds
so that no row is scored by a model that saw it. Its odds estimate the density ratio
p_valid(x) / p_train(x) up to a constant (Bickel, Brueckner and Scheffer, *Discriminative
learning for differing training and test distributions*, ICML 2007), the importance weight of
covariate-shift correction (Shimodaira, *J. Stat. Plan. Inference* 90, 2000).

:func:`covariate_shift` says whether to use it:

* ``detected``: the classifier's out-of-fold AUROC above 0.5 by more than
  ``SHIFT_STANDARD_ERRORS`` standard errors (Hanley and McNeil). Where the validation rows are a
  random draw of the same table, the cross-fitted AUROC wanders further than that standard error
  says: on the quality suite's 54 protocol splits (9 tables, 1,000 and 5,000 training rows,
  seeds 0-2) it reached 2.8 standard errors (letter, 1,000 rows, seed 2; 0.549), so the bar is 4;
* overlapping supports, the condition of importance weighting, in two forms: the AUROC below
  ``OVERLAP_AUROC`` (a classifier that separates the two all but perfectly has found a column
  the target never shares: Rossmann's other store types alone, 1.0; Email against SMS, 0.9996),
  and the weights' effective sample size (Kish: (sum w)^2 / sum w^2) at least
  ``MIN_EFFECTIVE_SHARE`` of the training rows (MNIST against USPS, AUROC 0.96, where every
  source row is another domain's: the weights rest on 3% of the rows' worth). Weighting there
  moved the paper's rows both ways or lost (USPS accuracy of the best model with the values
  0.862 -> 0.846; Email -> SMS 0.967 -> 0.964). Rossmann's "all types" sources, a mixture
  that holds the target's type, have AUROC 0.75-0.94 and keep 17-52% of the rows' worth.
  Both bars are round numbers set from these four settings (docs/benchmarks.md).

* the weights help a model of the target: LightGBM trained on the training rows with them
  predicts the validation rows better (lower log-loss or squared error, summed over the rows)
  than trained without them (:func:`validation_gain`, the paired per-row difference in
  standard errors, must be above 0). Importance weighting corrects a model that cannot fit
  every region at once; where one model of all the rows already serves the target, the
  weights only throw rows away. Four subgroup targets that did not shape the design (Adult's
  women, Adult's under-30s, Bank marketing's blue-collar clients, Bike sharing's hours of bad
  weather; 3,000 source rows of the whole table, 400 validation and 2,000 test rows of the
  subgroup; seeds 0-2) all passed the first two conditions, and weighting lost in 10 of 12
  runs and tied in 2 (the best model with the values, means over the seeds: LightGBM test AUC
  0.003 and 0.006 lower on Adult, 0.015 on Bank, MSE +288 on Bike sharing); this test, taken
  on every validation row, stood at -1.1 to -4.0 there and at +0.2 to +3.2 on 8 of the 9
  Rossmann "all types" runs where weighting won. :class:`dvrl_core.dvrl.DVRL` takes it on its
  trust check's rows (the removal check then scores the values as returned): there it let
  through 1 of the 12 subgroup runs (+0.11) and 8 of the 9 Rossmann runs (docs/benchmarks.md).

When all hold, :func:`weighted_values` multiplies the prior's values by the ratio to the power
``POWER`` (Shimodaira's flattening: the square root, steadier than the full ratio where the
classifier is unsure), normalised to mean 1 over the training rows (and the products divided
by the largest where it passes 1, so that values stay in (0, 1]). On Rossmann's "all types"
sources (``bench/paper.py --experiments rossmann --seeds 3``, RMSPE of LightGBM on the target
type, the best model with the values, mean over seeds 0-2) type a went from 0.219 to 0.211 and
d from 0.160 to 0.150 (weighted in every seed), c from 0.190 to 0.182 (weighted in two seeds
of three), each now below the source plus the validation rows with their share tuned (0.219,
0.160, 0.188). Figures in docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .data import PreparedData, standardiser
from .metrics import roc_auc
from .stream import predict_in_chunks, sample_rows, take_rows, take_split
from .trust import auroc_standard_error

FOLDS = 5
SHIFT_STANDARD_ERRORS = 4.0
OVERLAP_AUROC = 0.99
MIN_EFFECTIVE_SHARE = 0.1
POWER = 0.5
# the classifier is cross-fitted on a seeded sample of at most this many training rows (and as
# many validation rows); the other training rows are scored by the mean of the fold models
SAMPLE_ROWS = 50_000
C = 0.1  # the classifier's inverse L2 strength (scikit-learn's C)


@dataclass
class CovariateShift:
    """The domain classifier's out-of-fold AUROC (0.5: the validation rows look like the
    training rows) with its standard error, whether a shift was detected, the weights' effective
    share of the training rows (None: no shift detected, or no overlap by the AUROC), the
    validation gain of a model trained with them (None: not measured) and, where the module
    docstring's conditions hold, each training row's weight (mean 1)."""

    auroc: float
    standard_error: float
    detected: bool
    effective_share: float | None
    validation_gain: float | None = None
    power: float = POWER
    weights: np.ndarray | None = field(default=None, repr=False)

    @property
    def applied(self) -> bool:
        return self.weights is not None

    def to_dict(self) -> dict[str, object]:
        report = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "weights"}
        return report | {"applied": self.applied}


def covariate_shift(data: PreparedData, random_state: int = 0, power: float = POWER,
                    folds: int = FOLDS, gain: bool = True) -> CovariateShift:
    """Whether the validation rows' features come from another distribution than the training
    rows' (module docstring), and the training rows' importance weights where they do.
    ``gain=False`` skips the validation-gain bar (a decision already taken on other rows:
    :class:`dvrl_core.dvrl.DVRL` decides on its trust check's rows, then weighs every row)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng([random_state, 29])
    n_train, n_valid = len(data.train), len(data.valid)
    if min(n_train, n_valid) < 2 * folds:  # too few rows to cross-fit a classifier on
        return CovariateShift(0.5, 0.0, False, None, power=power)
    train_rows = sample_rows(n_train, SAMPLE_ROWS, rng)
    valid_rows = sample_rows(n_valid, SAMPLE_ROWS, rng)
    x = np.vstack([np.asarray(take_rows(data.train.x, train_rows), dtype=np.float32),
                   np.asarray(take_rows(data.valid.x, valid_rows), dtype=np.float32)])
    scale = standardiser(x)
    x = scale(x)
    domain = np.r_[np.zeros(len(train_rows)), np.ones(len(valid_rows))]
    fold = np.empty(len(domain), dtype=np.int64)
    for side in (0, 1):  # stratified: each fold holds its share of both
        rows = rng.permutation(np.flatnonzero(domain == side))
        fold[rows] = np.arange(len(rows)) % folds
    out_of_fold = np.zeros(len(domain))
    models = []
    for k in range(folds):
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=1000)
        model.fit(x[fold != k], domain[fold != k])
        out_of_fold[fold == k] = model.predict_proba(x[fold == k])[:, 1]
        models.append(model)
    area = roc_auc(out_of_fold, domain.astype(bool))
    error = float(auroc_standard_error(area, len(valid_rows), len(train_rows)))
    detected = bool(area > 0.5 + SHIFT_STANDARD_ERRORS * error)
    if not detected or area >= OVERLAP_AUROC:
        return CovariateShift(area, error, detected, None, power=power)
    probability = np.empty(n_train)
    if len(train_rows) == n_train:
        probability[:] = out_of_fold[:n_train]
    else:  # rows outside the sample: no fold model saw them
        def mean_probability(chunk: np.ndarray) -> np.ndarray:
            scaled = scale(np.asarray(chunk, dtype=np.float32))
            return np.mean([m.predict_proba(scaled)[:, 1] for m in models], axis=0)

        probability[:] = predict_in_chunks(mean_probability, data.train.x)
        probability[train_rows] = out_of_fold[: len(train_rows)]
    probability = np.clip(probability, 1e-6, 1 - 1e-6)
    weights = (probability / (1 - probability)) ** power
    weights /= weights.mean()
    share = float(weights.sum() ** 2 / (weights ** 2).sum() / n_train)
    if share < MIN_EFFECTIVE_SHARE:
        return CovariateShift(area, error, detected, share, power=power)
    if not gain:
        return CovariateShift(area, error, detected, share, None, power, weights)
    helped = validation_gain(data, weights, random_state)
    if not helped > 0:
        return CovariateShift(area, error, detected, share, helped, power)
    return CovariateShift(area, error, detected, share, helped, power, weights)


# the validation gain's model, and the most training rows it trains on (a seeded sample past)
GAIN_MODEL = "lightgbm"
GAIN_TRAIN_ROWS = 200_000


def validation_gain(data: PreparedData, weights: np.ndarray, random_state: int = 0) -> float:
    """How much better ``GAIN_MODEL`` trained on the training rows weighted by ``weights``
    predicts the validation rows than trained on them unweighted: the mean of the paired
    per-row loss differences (log-loss or squared error) in units of its standard error;
    positive when the weights help."""
    from .evaluation import _evaluation_predictions
    from .trust import CHECK_METRIC, _row_losses

    train = data.train
    if len(train) > GAIN_TRAIN_ROWS:
        rows = sample_rows(len(train), GAIN_TRAIN_ROWS, np.random.default_rng([random_state, 31]))
        train, weights = take_split(train, rows), weights[rows]
    metric = CHECK_METRIC[data.task]
    losses = [_row_losses(metric, _evaluation_predictions(data, train, weight, GAIN_MODEL,
                                                          data.valid, random_state),
                          data.valid.y)
              for weight in (None, weights)]
    difference = losses[0] - losses[1]
    spread = float(np.std(difference, ddof=1)) if len(difference) > 1 else 0.0
    if spread == 0.0:
        return 0.0
    return float(np.mean(difference) / (spread / np.sqrt(len(difference))))


def weighted_values(values: np.ndarray, shift: CovariateShift) -> np.ndarray:
    """``values`` times the shift's weights, divided by the largest product where it passes 1
    (DVRL's values stay in (0, 1]; the order and the ratios are the products'); unchanged when
    no shift was applied."""
    if shift.weights is None:
        return values
    weighted = np.asarray(values, dtype=np.float64) * shift.weights
    return weighted / max(1.0, float(weighted.max()))
