"""Performance metrics, each in a batched torch form (for the DVRL reward: one value per rollout)
and usable on plain numpy arrays (for evaluations).

Every metric is oriented so that **higher is better**: errors and losses are negated. The reward of
DVRL is a difference of these scores, so orientation must be uniform.

Classification metrics take probabilities ``[..., m, C]`` and integer labels ``[m]``; regression
metrics take predictions ``[..., m]`` and targets ``[m]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import ConfigError

EPS = 1e-8


def _auc(prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Binary: uses the probability of class 1. Multi-class: the mean one-vs-rest AUC over classes
    present in ``y``.
    """
    n_classes = prob.shape[-1]
    if n_classes == 2:
        return _binary_auc(prob[..., 1], y == 1)
    scores = [_binary_auc(prob[..., c], y == c) for c in range(n_classes) if (y == c).any()
              and not (y == c).all()]
    return torch.stack(scores).mean(0)


def _binary_auc(score: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    n_pos = positive.sum()
    n_neg = positive.numel() - n_pos
    ranks = _average_ranks(score)
    rank_sum = (ranks * positive.to(ranks.dtype)).sum(-1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _average_ranks(score: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last axis, ties given their average rank."""
    order = torch.argsort(score, dim=-1, stable=True)
    sorted_score = torch.gather(score, -1, order)
    m = score.shape[-1]
    position = torch.arange(1, m + 1, dtype=torch.float64, device=score.device).expand_as(
        sorted_score
    )
    # group runs of equal scores: a new group starts where the sorted value changes
    new_group = torch.ones_like(sorted_score, dtype=torch.bool)
    new_group[..., 1:] = sorted_score[..., 1:] != sorted_score[..., :-1]
    group = torch.cumsum(new_group.to(torch.int64), dim=-1) - 1
    group_sum = torch.zeros_like(position).scatter_add_(-1, group, position)
    group_size = torch.zeros_like(position).scatter_add_(-1, group, torch.ones_like(position))
    average = torch.gather(group_sum / group_size.clamp_min(1), -1, group)
    ranks = torch.empty_like(average)
    ranks.scatter_(-1, order, average)
    return ranks


def _accuracy(prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (prob.argmax(-1) == y).to(torch.float64).mean(-1)


def _neg_log_loss(prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    index = y.expand(prob.shape[:-1]).unsqueeze(-1)
    picked = torch.gather(prob, -1, index).squeeze(-1).to(torch.float64)
    return torch.log(picked.clamp_min(EPS)).mean(-1)


def _neg_mae(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(pred.to(torch.float64) - y).abs().mean(-1)


def _neg_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -((pred.to(torch.float64) - y) ** 2).mean(-1)


def _neg_rmspe(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    relative = (pred.to(torch.float64) - y) / y.abs().clamp_min(EPS)
    return -torch.sqrt((relative**2).mean(-1))


MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

CLASSIFICATION_METRICS: dict[str, MetricFn] = {
    "auc": _auc,
    "accuracy": _accuracy,
    "log_loss": _neg_log_loss,
}
REGRESSION_METRICS: dict[str, MetricFn] = {
    "mae": _neg_mae,
    "mse": _neg_mse,
    "rmspe": _neg_rmspe,
}
DEFAULT_METRIC = {"classification": "auc", "regression": "mse"}


def get_metric(name: str, task: str) -> MetricFn:
    """The batched metric ``name`` for ``task``; higher is better."""
    table = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if name not in table:
        raise ConfigError(
            f"metric {name!r} is not available for {task}; choose one of {sorted(table)}"
        )
    return table[name]


HIGHER_IS_BETTER = frozenset({"auc", "accuracy"})  # the others are losses


def higher_is_better(name: str) -> bool:
    """Whether a larger :func:`score` of metric ``name`` is better."""
    return name in HIGHER_IS_BETTER


def score(name: str, task: str, predictions: np.ndarray, y: np.ndarray) -> float:
    """A metric on numpy arrays, in its natural orientation (log-loss, MAE, ... positive)."""
    fn = get_metric(name, task)
    pred = torch.tensor(np.asarray(predictions, dtype=np.float64))
    target = torch.tensor(np.asarray(y))
    if task == "regression":
        target = target.to(torch.float64)
    value = float(fn(pred, target))
    return value if higher_is_better(name) else -value


def roc_auc(score_values: np.ndarray, positive: np.ndarray) -> float:
    """Plain binary AUROC of ``score_values`` for the boolean ``positive`` (ties averaged)."""
    s = torch.tensor(np.asarray(score_values, dtype=np.float64))
    p = torch.tensor(np.asarray(positive, dtype=bool))
    return float(_binary_auc(s, p))
