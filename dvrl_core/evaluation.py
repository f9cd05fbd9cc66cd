"""Evidence that values mean something (after the DVRL paper's ``dvrl_metrics.py``).

* :func:`discovery_curve`: inspecting rows lowest value first, the fraction of the known corrupted
  rows found, next to the optimal and the random inspection order.
* :func:`removal_curves`: remove the lowest- or the highest-valued 0..50% of training rows, retrain
  an evaluation model (LightGBM by default) and score it on held-out data; random removal averaged
  over seeds is the reference. Removing low values should help (or hurt least), removing high
  values should hurt most.
* :func:`evaluation_sample`: on big tables, the seeded sample of training rows those curves use.
* :func:`weighted_training`: the evaluation model trained with the values as sample weights.
* :func:`training_choices`: the paper's domain-adaptation table, next to what a user would do
  without values (train on the validation rows alone, or on the training plus validation rows).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .data import PreparedData, Split
from .errors import ConfigError, DataError, require_positive_int
from .metrics import DEFAULT_METRIC, higher_is_better, roc_auc, score
from .predictors import make_predictor


def _corrupted_mask(n: int, corrupted: np.ndarray) -> np.ndarray:
    given = np.asarray(corrupted)
    if given.dtype == bool:  # a mask already (read as positions, True and False were 1 and 0)
        if len(given) != n:
            raise ConfigError(f"a mask of the corrupted rows has one entry per row: {n}, not "
                              f"{len(given)}")
        return given
    mask = np.zeros(n, dtype=bool)
    mask[given.astype(np.int64)] = True
    return mask


def _positions(n: int, corrupted: np.ndarray) -> np.ndarray:
    given = np.asarray(corrupted)
    return np.flatnonzero(_corrupted_mask(n, given)) if given.dtype == bool else given


def found_fraction(values: np.ndarray, corrupted: np.ndarray, inspected: float) -> float:
    """Fraction of the corrupted rows among the lowest-valued ``inspected`` fraction of rows;
    ``corrupted``: their positions, or a boolean mask with one entry per row."""
    if not 0.0 <= inspected <= 1.0:
        raise ConfigError(f"inspected is the share of rows looked at, in [0, 1], not "
                          f"{inspected!r}")
    corrupted = _positions(len(values), corrupted)
    if len(corrupted) == 0:
        return float("nan")
    count = int(round(inspected * len(values)))
    lowest = np.argsort(values, kind="stable")[:count]
    return float(_corrupted_mask(len(values), corrupted)[lowest].sum() / len(corrupted))


def detection_auroc(values: np.ndarray, corrupted: np.ndarray) -> float:
    """AUROC of "low value" as a detector of the corrupted rows (0.5 random, 1 perfect);
    ``corrupted``: their positions, or a boolean mask with one entry per row."""
    return roc_auc(-np.asarray(values, dtype=np.float64), _corrupted_mask(len(values), corrupted))


def discovery_curve(values: np.ndarray, corrupted: np.ndarray, steps: int = 21) -> pd.DataFrame:
    """Columns ``inspected`` (fraction of rows, lowest value first), ``found`` (fraction of the
    corrupted rows found), ``optimal`` and ``random``."""
    corrupted = _positions(len(values), corrupted)
    n, k = len(values), len(corrupted)
    inspected = np.linspace(0.0, 1.0, steps)
    found = [found_fraction(values, corrupted, f) for f in inspected]
    optimal = np.minimum(inspected * n / max(k, 1), 1.0)
    return pd.DataFrame({"inspected": inspected, "found": found, "optimal": optimal,
                         "random": inspected})


def _evaluation_predictions(
    data: PreparedData, train: Split, weight: np.ndarray | None, model: str, held_out: Split,
    random_state: int, model_params: dict | None = None,
) -> np.ndarray:
    """``model`` fitted on ``train`` (rows weighted by ``weight``), its predictions for the
    ``held_out`` rows (class probabilities, or targets)."""
    return _fitted(data, train, weight, model, random_state, model_params).predict(held_out.x)


def _fitted(data: PreparedData, train: Split, weight: np.ndarray | None, model: str,
            random_state: int, model_params: dict | None):
    """``model`` fitted on ``train``, its rows weighted by ``weight`` as relative weights:
    rescaled to mean 1, so that only their ratios count. A model's regularisation (logistic
    regression's L2 penalty, Naive Bayes' smoothing) does not grow with the rows' total weight:
    unscaled, weights of mean 0.5 would fit a model twice as strongly regularised as uniform
    training does, and the comparison between ways of training would measure the scale."""
    predictor = make_predictor(model, data.task, data.n_classes, random_state=random_state,
                               **(model_params or {}))
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float64)
        total = weight.sum()
        if np.isfinite(total) and total > 0:
            weight = weight * (len(weight) / total)
    return predictor.fit(train.x, train.y, sample_weight=weight)


def _evaluation_score(
    data: PreparedData, train: Split, weight: np.ndarray | None, model: str, metric: str,
    held_out: Split, random_state: int, model_params: dict | None = None,
) -> float:
    return _evaluation_scores(data, train, weight, model, metric, [held_out], random_state,
                              model_params)[0]


def _evaluation_scores(
    data: PreparedData, train: Split, weight: np.ndarray | None, model: str, metric: str,
    held_out: list[Split], random_state: int, model_params: dict | None = None,
) -> list[float]:
    """One model fitted as :func:`_evaluation_predictions` fits it, scored on each split."""
    fitted = _fitted(data, train, weight, model, random_state, model_params)
    return [score(metric, data.task, fitted.predict(split.x), split.y) for split in held_out]


def _subset(split: Split, keep: np.ndarray) -> Split:
    return Split(split.x[keep], split.y[keep], split.ids[keep])


def scoring_rows(data: PreparedData, metric: str | None = None,
                 remedy: str = "give rows of both classes, or the metric accuracy or "
                 "log_loss") -> Split:
    """The rows that score the evaluations: the test split, else the validation split. With
    ``metric``: a DataError where it cannot score them (the AUC of rows of one class), ending
    with ``remedy``."""
    held_out = data.test if data.test is not None else data.valid
    if metric == "auc" and len(np.unique(held_out.y)) < 2:
        which = "test" if data.test is not None else "validation"
        raise DataError(f"the {which} rows hold one class only, and the AUC that scores this "
                        f"evaluation needs two: {remedy}")
    return held_out


# removal curves retrain their model about 80 times: past this many training rows they run on a
# seeded sample of the rows (the service and ``dvrl value --test`` alike)
EVALUATION_SAMPLE_ROWS = 20_000


def evaluation_sample(data: PreparedData, values: np.ndarray, random_state: int = 0,
                      rows: int = EVALUATION_SAMPLE_ROWS) -> tuple[PreparedData, np.ndarray]:
    """``data`` and ``values`` as they are up to ``rows`` training rows; past that, a seeded
    sample of that many rows (in their order), gathered a block at a time from a mapped matrix."""
    if len(values) <= rows:
        return data, values
    from .stream import take_rows

    keep = np.sort(np.random.default_rng(random_state).choice(len(values), rows, replace=False))
    train = Split(take_rows(data.train.x, keep), data.train.y[keep], data.train.ids[keep])
    return replace(data, train=train), values[keep]


def _per_row(values: np.ndarray, data: PreparedData, what: str,
             weights: bool = False) -> np.ndarray:
    """``values`` as one finite float per training row (ConfigError naming what is wrong);
    ``weights``: also non-negative and not all zero, as sample weights must be."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"one {what} per training row is needed, as numbers ({exc})") from None
    if array.ndim != 1 or len(array) != len(data.train):
        raise ConfigError(f"one {what} per training row is needed: {len(data.train)} in a flat "
                          f"array, not an array of shape {array.shape}")
    if not np.isfinite(array).all():
        raise ConfigError(f"{int((~np.isfinite(array)).sum())} {what}s are NaN or infinite")
    if weights and ((array < 0).any() or array.sum() <= 0):
        raise ConfigError(f"as sample weights the {what}s must be non-negative and not all zero "
                          "(a baseline's values can be negative: scale them onto [0, 1] first)")
    return array


def removal_curves(
    data: PreparedData, values: np.ndarray, *, model: str = "lightgbm", metric: str | None = None,
    fractions: np.ndarray | None = None, random_repeats: int = 5, random_state: int = 0,
    model_params: dict | None = None,
) -> pd.DataFrame:
    """Test score after removing the lowest-valued, highest-valued, or random rows.

    Scored on ``data.test`` (or the validation split when there is no test split). Columns:
    ``removed`` (fraction), ``remove_lowest``, ``remove_highest``, ``random`` (mean over
    ``random_repeats`` seeds) and ``random_std``; the metric is in ``.attrs["metric"]``.
    """
    values = _per_row(values, data, "value")
    metric = metric or DEFAULT_METRIC[data.task]
    if fractions is None:
        fractions = np.round(np.arange(0.0, 0.501, 0.05), 2)
    fractions = np.asarray(fractions, dtype=np.float64)
    if not np.all((fractions >= 0.0) & (fractions < 1.0)):
        raise ConfigError(f"fractions are shares of the rows to remove, in [0, 1), not "
                          f"{fractions[(fractions < 0.0) | (fractions >= 1.0)].tolist()}")
    require_positive_int("random_repeats", random_repeats)
    held_out = scoring_rows(data, metric)
    order = np.argsort(values, kind="stable")
    rng = np.random.default_rng(random_state)
    permutations = [rng.permutation(len(values)) for _ in range(random_repeats)]
    rows = []
    for fraction in fractions:
        drop = int(round(fraction * len(values)))

        def evaluate(removed: np.ndarray) -> float:
            keep = np.ones(len(values), dtype=bool)
            keep[removed] = False
            return _evaluation_score(data, _subset(data.train, keep), None, model, metric,
                                     held_out, random_state, model_params)

        lowest = evaluate(order[:drop])
        highest = evaluate(order[len(order) - drop:])
        randoms = [evaluate(p[:drop]) for p in permutations]
        rows.append({"removed": float(fraction), "remove_lowest": lowest,
                     "remove_highest": highest, "random": float(np.mean(randoms)),
                     "random_std": float(np.std(randoms))})
    frame = pd.DataFrame(rows)
    frame.attrs["metric"] = metric
    return frame


def weighted_training(
    data: PreparedData, values: np.ndarray, *, model: str = "lightgbm", metric: str | None = None,
    random_state: int = 0, model_params: dict | None = None,
) -> dict[str, float | str]:
    """Test score of the evaluation model trained without and with the values as sample weights
    (relative weights: their scale does not matter, only their ratios)."""
    weights = _per_row(values, data, "value", weights=True)
    metric = metric or DEFAULT_METRIC[data.task]
    held_out = scoring_rows(data, metric)
    plain = _evaluation_score(data, data.train, None, model, metric, held_out, random_state,
                              model_params)
    weighted = _evaluation_score(data, data.train, weights, model, metric, held_out,
                                 random_state, model_params)
    return {"metric": metric, "unweighted": plain, "weighted": weighted}


def _combined(first: Split, second: Split) -> Split:
    return Split(np.concatenate([first.x, second.x]), np.concatenate([first.y, second.y]),
                 np.concatenate([first.ids, second.ids]))


def training_choices(
    data: PreparedData, weights: np.ndarray, *, model: str = "lightgbm", metric: str | None = None,
    remove_fraction: float = 0.2, random_state: int = 0, model_params: dict | None = None,
) -> dict[str, float | str]:
    """Test score of the evaluation model trained each way a user could train it (the paper's
    domain-adaptation rows, and what a user would do without values):

    ``uniform``: on the training rows, every row weight 1 (the paper's baseline);
    ``weighted``: on the training rows weighted by ``weights`` (non-negative; DVRL's values);
    ``without_lowest``: on the training rows without the ``remove_fraction`` lowest-weighted;
    ``validation_only``: on the validation rows alone;
    ``uniform_plus_validation``: on the training and the validation rows, every row weight 1;
    ``weighted_plus_validation``: on the training rows weighted by ``weights`` and the
    validation rows, which share a total weight that is a multiple of the training rows' total
    (0.1 to 1,000, chosen by 5-fold cross-validation on the validation rows: the target rows both
    train the model and tell how much to trust them); the multiple is reported as
    ``validation_weight_ratio``;
    ``tuned_uniform_plus_validation``: the same with every training row weight 1, so the values'
    contribution is told apart from the tuning's;
    ``top_valued_plus_validation``: the highest-valued fraction of the training rows (10%, 25%,
    50% or all) and the validation rows, every training row weight 1, with the fraction and the
    validation rows' share chosen together by the same cross-validation (reported as
    ``top_valued_fraction`` and ``top_valued_validation_weight_ratio``): the values used to
    choose which source rows to add to the target's own rows.

    ``recommended`` names the one of the four ways of training with the values (``weighted``,
    ``without_lowest``, ``weighted_plus_validation``, ``top_valued_plus_validation``) that
    scores best on the validation rows, and ``recommended_score`` is its test score: the choice
    a user can make without test labels. The two that never train on the validation rows are
    scored on all of them, the two that do by their cross-validated score
    (``validation_score_<name>``). Both kinds are optimistic (values learned with the validation
    rows; the best setting of a tuning grid), so the choice is a heuristic, but it does not
    look at the test rows; the best of the four test scores would flatter the values.

    Weights are relative: every way rescales its rows' weights to mean 1 before fitting, so
    multiplying the values by a constant changes nothing, and the model is as regularised
    whichever way it is trained.

    Scored on the test split, which must be there: the validation rows cannot score a model
    trained on them.
    """
    if data.test is None:
        raise ConfigError("training_choices needs a test split (the validation rows train some "
                          "of the models)")
    weights = _per_row(weights, data, "weight", weights=True)
    if not 0 < remove_fraction < 1:
        raise ConfigError("remove_fraction must be between 0 and 1")
    metric = metric or DEFAULT_METRIC[data.task]
    test = scoring_rows(data, metric)  # the test split (checked above)

    def evaluate(train: Split, weight: np.ndarray | None) -> float:
        return _evaluation_score(data, train, weight, model, metric, test, random_state,
                                 model_params)

    def on_both(train: Split, weight: np.ndarray | None) -> list[float]:
        """Test score and validation score of one model, which never saw the validation rows."""
        return _evaluation_scores(data, train, weight, model, metric, [test, data.valid],
                                  random_state, model_params)

    keep = np.ones(len(weights), dtype=bool)
    keep[np.argsort(weights, kind="stable")[: int(round(remove_fraction * len(weights)))]] = False
    both = _combined(data.train, data.valid)
    ratio, with_valid, with_valid_cv = _validation_weighting(data, weights, model, metric,
                                                             random_state, model_params)
    uniform = _validation_weighting(data, np.ones(len(weights)), model, metric, random_state,
                                    model_params)
    uniform_ratio, uniform_with_valid, _ = uniform
    fraction, top_ratio, top_train, top_with_valid, top_cv = _top_valued_with_validation(
        data, weights, model, metric, random_state, model_params, uniform)
    weighted, weighted_on_valid = on_both(data.train, weights)
    without_lowest, without_lowest_on_valid = on_both(_subset(data.train, keep), None)
    table: dict[str, float | str] = {
        "metric": metric, "model": model, "remove_fraction": remove_fraction,
        "uniform": evaluate(data.train, None),
        "weighted": weighted,
        "without_lowest": without_lowest,
        "validation_only": evaluate(data.valid, None),
        "uniform_plus_validation": evaluate(both, None),
        "weighted_plus_validation": evaluate(both, with_valid),
        "validation_weight_ratio": ratio,
        "tuned_uniform_plus_validation": evaluate(both, uniform_with_valid),
        "uniform_validation_weight_ratio": uniform_ratio,
        "top_valued_plus_validation": evaluate(_combined(top_train, data.valid), top_with_valid),
        "top_valued_fraction": fraction,
        "top_valued_validation_weight_ratio": top_ratio,
    }
    # which of the four ways of training with the values to use, decided on the validation rows
    # alone (a user has no test labels to choose by): the two that never see the validation rows
    # are scored on all of them, the two that train on them by their cross-validated score.
    # Neither score is unbiased: values learned with the validation rows flatter the first two
    # there, and the best of a tuning grid flatters the last two
    on_valid = {"top_valued_plus_validation": top_cv, "weighted_plus_validation": with_valid_cv,
                "weighted": weighted_on_valid, "without_lowest": without_lowest_on_valid}
    finite = {name: value for name, value in on_valid.items() if np.isfinite(value)}
    if finite:  # the first in this order wins a tie
        pick = (max if higher_is_better(metric) else min)(finite, key=finite.__getitem__)
        table |= {"recommended": pick, "recommended_score": table[pick]}
    return table | {f"validation_score_{name}": value for name, value in on_valid.items()}


# the validation rows' share: up to 1,000 times the training rows' total, where they all but train
# alone (the grid stopped at 10 once, and on MNIST -> USPS the cross-validated score still rose
# at 1,000: a mix tuned on the shorter grid was no fair bar for the values)
VALIDATION_WEIGHT_RATIOS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def _validation_weighting(
    data: PreparedData, weights: np.ndarray, model: str, metric: str, random_state: int,
    model_params: dict | None, folds: int = 5, train: Split | None = None,
) -> tuple[float, np.ndarray, float]:
    """The validation rows' share of the weight (their total over the training rows' total) that
    scores best in ``folds``-fold cross-validation on the validation rows (each fold scored by a
    model trained on the weighted training rows and the other folds), the weights of the
    training then validation rows with it, and its cross-validated score. ``train``: other
    training rows than ``data.train`` (``weights`` are theirs)."""
    train = data.train if train is None else train
    n_valid = len(data.valid)
    order = np.random.default_rng(random_state).permutation(n_valid)
    parts = np.array_split(order, folds)
    scores = []
    for ratio in VALIDATION_WEIGHT_RATIOS:
        per_row = ratio * weights.sum() / max(n_valid * (folds - 1) / folds, 1.0)
        fold_scores = []
        for part in parts:
            rest = np.setdiff1d(order, part)
            fold_train = _combined(train, _subset(data.valid, rest))
            weight = np.concatenate([weights, np.full(len(rest), per_row)])
            fold_scores.append(_evaluation_score(data, fold_train, weight, model, metric,
                                                 _subset(data.valid, part), random_state,
                                                 model_params))
        # a fold can leave a score undefined (AUC on one class): the other folds decide
        finite = [f for f in fold_scores if np.isfinite(f)]
        scores.append(float(np.mean(finite)) if finite else float("nan"))
    if not np.isfinite(scores).any():  # nothing to choose by: the middle share
        pick = VALIDATION_WEIGHT_RATIOS.index(1.0)
    else:
        pick = int(np.nanargmax(scores) if higher_is_better(metric) else np.nanargmin(scores))
    ratio = VALIDATION_WEIGHT_RATIOS[pick]
    per_row = ratio * weights.sum() / max(n_valid, 1)
    return ratio, np.concatenate([weights, np.full(n_valid, per_row)]), scores[pick]


TOP_VALUED_FRACTIONS = (1.0, 0.5, 0.25, 0.1)  # all rows first: a tie keeps them all


def _top_valued_with_validation(
    data: PreparedData, values: np.ndarray, model: str, metric: str, random_state: int,
    model_params: dict | None, every_row: tuple[float, np.ndarray, float],
) -> tuple[float, float, Split, np.ndarray, float]:
    """The fraction of highest-valued training rows and the validation rows' share that score
    best together in cross-validation on the validation rows: (fraction, share, those training
    rows, the weights of them then of the validation rows, the cross-validated score).
    ``every_row`` is :func:`_validation_weighting`'s answer for all the rows at weight 1 (the
    fraction 1); a smaller fraction must score strictly better to be chosen. Equal values are
    ordered at random (seeded), not by their position in the table."""
    tie_break = np.random.default_rng([random_state, 3]).random(len(values))
    order = np.lexsort((tie_break, -values))  # highest value first
    ratio, weights, best_score = every_row
    best: tuple[float, float, Split, np.ndarray] = (1.0, ratio, data.train, weights)
    higher = higher_is_better(metric)
    for fraction in TOP_VALUED_FRACTIONS[1:]:
        keep = np.zeros(len(values), dtype=bool)
        keep[order[: max(1, int(round(fraction * len(values))))]] = True
        train = _subset(data.train, keep)
        ratio, weights, cv_score = _validation_weighting(
            data, np.ones(int(keep.sum())), model, metric, random_state, model_params,
            train=train)
        if not np.isfinite(cv_score):
            continue
        if not np.isfinite(best_score) or (cv_score > best_score if higher
                                           else cv_score < best_score):
            best, best_score = (fraction, ratio, train, weights), cv_score
    return (*best, best_score)
