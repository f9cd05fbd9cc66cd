"""Predictors by name: the models DVRL trains on the selected rows, and the evaluation models.

``make_predictor("logistic_regression", task, n_classes, **params)`` builds one. Registered:

========================  ==========================  ==========================================
name                      tasks                       what
========================  ==========================  ==========================================
``logistic_regression``   classification              L2 logistic / softmax regression
``linear_regression``     regression                  least squares with a small ridge
``mlp``                   classification, regression  the paper's 100-100 ReLU network
``lightgbm``              classification, regression  gradient-boosted trees, sample weights
``naive_bayes``           classification              Gaussian Naive Bayes
``bernoulli_naive_bayes`` classification              Naive Bayes on present / absent features
                                                      (bag-of-words: the paper's text model)
========================  ==========================  ==========================================
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import BatchTrainer, Predictor, resolve_device
from .lightgbm import LightGBM
from .linear import LinearRegression, LogisticRegression
from .mlp import MLP
from .naive_bayes import BernoulliNaiveBayes, NaiveBayes

PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls for cls in (LogisticRegression, LinearRegression, MLP, LightGBM, NaiveBayes,
                BernoulliNaiveBayes)
}
DEFAULT_PREDICTOR = {"classification": "logistic_regression", "regression": "linear_regression"}


def make_predictor(name: str, task: str, n_classes: int = 0, **params: Any) -> Predictor:
    """Build the registered predictor ``name`` for ``task``."""
    if name not in PREDICTORS:
        raise ConfigError(f"unknown predictor {name!r}; choose one of {sorted(PREDICTORS)}")
    cls = PREDICTORS[name]
    if task not in cls.tasks:
        usable = sorted(n for n, c in PREDICTORS.items() if task in c.tasks)
        raise ConfigError(f"predictor {name!r} does not do {task}; for {task} use one of {usable}")
    try:
        return cls(task, n_classes, **params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for predictor {name!r}: {exc}") from exc


__all__ = [
    "BernoulliNaiveBayes", "DEFAULT_PREDICTOR", "PREDICTORS", "BatchTrainer", "LightGBM",
    "LinearRegression", "LogisticRegression", "MLP", "NaiveBayes", "Predictor", "make_predictor",
    "resolve_device",
]
