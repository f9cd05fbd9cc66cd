"""Simple controls: values anyone can compute in seconds without DVRL.

A data value is worth its cost only if it finds bad rows better than these. Each returns one
number per training row, higher = more trustworthy, on the same scale convention as DVRL's values
(so ``found_fraction`` and ``detection_auroc`` apply unchanged):

* :func:`validation_confidence`: a model fitted on the validation rows only (clean, the target
  task), its probability of each training row's given label (regression: minus the absolute
  error). With a logistic regression on standardised features this is the strongest single
  control we measured on most tables.
* :func:`out_of_fold_confidence`: self-confidence (Northcutt et al., *Confident Learning*, 2021):
  K-fold cross-fitting on the training rows, each row scored by a model that never saw it.
* :func:`marginal_control`: the probability of the given label from the official code's
  marginal model (one model fitted on the validation rows; regression: 1 / (1 + its relative
  error)).

All are deterministic given ``random_state``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .data import PreparedData, standardiser
from .threads import lightgbm_threads

ControlModel = Literal["logistic", "lightgbm"]
CONTROLS = ("marginal", "validation_logistic", "out_of_fold_logistic", "out_of_fold_lightgbm")


def _model(kind: ControlModel, task: str, n_classes: int, random_state: int):
    if kind == "logistic":
        from sklearn.linear_model import LinearRegression, LogisticRegression

        if task == "classification":
            return LogisticRegression(C=1.0, max_iter=2000)
        return LinearRegression()
    import lightgbm as lgb

    params: dict[str, Any] = {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 15,
              "random_state": random_state, "deterministic": True,
              "n_jobs": lightgbm_threads(), "verbose": -1}
    if task == "classification":
        return lgb.LGBMClassifier(**params)
    return lgb.LGBMRegressor(**params)


def _given_label_score(model, x: np.ndarray, y: np.ndarray, task: str,
                       n_classes: int) -> np.ndarray:
    """The model's probability of each row's given label (regression: minus |error|)."""
    if task != "classification":
        return -np.abs(model.predict(x) - y).astype(np.float64)
    probability = np.zeros((len(x), n_classes))
    probability[:, model.classes_] = model.predict_proba(x)
    return probability[np.arange(len(y)), y].astype(np.float64)


def validation_confidence(data: PreparedData, model: ControlModel = "logistic",
                          random_state: int = 0) -> np.ndarray:
    """A model fitted on the validation rows, scored on every training row: its probability of
    the row's given label. Features are standardised on the validation rows first."""
    scale = standardiser(data.valid.x)
    valid, train = scale(data.valid.x), scale(data.train.x)
    fitted = _model(model, data.task, data.n_classes, random_state)
    fitted.fit(valid, data.valid.y)
    return _given_label_score(fitted, train, data.train.y, data.task, data.n_classes)


def out_of_fold_confidence(data: PreparedData, model: ControlModel = "lightgbm",
                           folds: int = 5, random_state: int = 0) -> np.ndarray:
    """Self-confidence from ``folds``-fold cross-fitting on the training rows: each row is
    scored by a model fitted on the other folds (which hold the same noise)."""
    n = len(data.train)
    order = np.random.default_rng(random_state).permutation(n)
    scores = np.zeros(n)
    x_all = standardiser(data.train.x)(data.train.x) if model == "logistic" else data.train.x
    for fold in np.array_split(order, folds):
        rest = np.setdiff1d(order, fold, assume_unique=True)
        fitted = _model(model, data.task, data.n_classes, random_state)
        fitted.fit(x_all[rest], data.train.y[rest])
        scores[fold] = _given_label_score(fitted, x_all[fold], data.train.y[fold], data.task,
                                          data.n_classes)
    return scores


def marginal_control(data: PreparedData, marginal: np.ndarray | None = None,
                     random_state: int = 0) -> np.ndarray:
    """DVRL's marginal input alone as a value: f's probability of the given label (regression:
    1 / (1 + the marginal), the selection probability DVRL's estimator starts from, in (0, 1]
    like every DVRL value, highest for no error). Without ``marginal``: the official code's
    marginal, from one model fitted on the validation rows (DVRL's ``prior="validation"``; for
    regression the relative error)."""
    if marginal is None:
        from .dvrl import DVRL

        marginal = DVRL(prior="validation", random_state=random_state).marginal(data)
    if data.task == "classification":
        return 1.0 - marginal[np.arange(len(marginal)), data.train.y].astype(np.float64)
    return 1.0 / (1.0 + marginal[:, 0].astype(np.float64))


def all_controls(data: PreparedData, random_state: int = 0) -> dict[str, np.ndarray]:
    """Every simple control by name (see :data:`CONTROLS`)."""
    return {
        "marginal": marginal_control(data, random_state=random_state),
        "validation_logistic": validation_confidence(data, "logistic", random_state),
        "out_of_fold_logistic": out_of_fold_confidence(data, "logistic", random_state=random_state),
        "out_of_fold_lightgbm": out_of_fold_confidence(data, "lightgbm",
                                                       random_state=random_state),
    }
