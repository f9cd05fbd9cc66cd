"""``predictor="auto"``: the registered predictor that fits the task best.

Each candidate (every registered predictor for the task) is trained once on all training rows, as
DVRL would train it, and scored on the validation rows by a proper score: log-loss for
classification, squared error for regression. The winner is the family whose models DVRL's reward
can tell good rows from bad with: the one that, trained on this data, predicts the target task
best. The scores are kept so a user sees why (``PredictorChoice.scores``).

Trees (``lightgbm``) and the network (``mlp``) cannot be batched like the linear models and Naive
Bayes: when one of them wins, every DVRL iteration trains ``rollouts`` of them one after another,
tens of times slower per iteration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import get_metric
from .base import Predictor, as_tensor

CHOICE_METRIC = {"classification": "log_loss", "regression": "mse"}


class ChoiceStopped(Exception):
    """The choice was told to stop (:func:`choose_predictor`'s ``stop``) before every candidate
    was tried."""


@dataclass(frozen=True)
class PredictorChoice:
    name: str
    metric: str
    scores: dict[str, float]  # the validation score of each candidate, higher is better

    def as_dict(self) -> dict[str, object]:
        return {"chosen": self.name, "metric": self.metric, "scores": dict(self.scores)}


def choose_predictor(
    candidates: list[str], build: Callable[[str], Predictor], task: str,
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    stop: threading.Event | None = None,
) -> PredictorChoice:
    """Train ``build(name)`` for every candidate on the training rows; the best validation score
    wins (ties: the earlier candidate). Once ``stop`` is set, no other candidate is trained and
    :class:`ChoiceStopped` is raised (on a big table each takes up to minutes)."""
    metric_name = CHOICE_METRIC[task]
    metric = get_metric(metric_name, task)
    target = as_tensor(np.asarray(y_valid))
    scores: dict[str, float] = {}
    for name in candidates:
        if stop is not None and stop.is_set():
            raise ChoiceStopped(f"stopped before {name} was tried")
        predictor = build(name).fit(x_train, y_train)
        predicted = torch.as_tensor(predictor.predict(x_valid), dtype=torch.float32)
        score = float(metric(predicted.unsqueeze(0), target)[0])
        scores[name] = score if np.isfinite(score) else float("-inf")
    best = max(candidates, key=lambda name: (scores[name], -candidates.index(name)))
    return PredictorChoice(best, metric_name, scores)
