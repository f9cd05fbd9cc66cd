"""Naive Bayes, batched over rollouts: the paper's predictor for its text tasks.

Two kinds. ``naive_bayes``: Gaussian, for numeric features. ``bernoulli_naive_bayes``: each
feature as present or absent (above its smallest value among the training rows, which for a
standardised count column means a count above zero), for bag-of-words tables, where a Gaussian's
tiny within-class variances of rare words make its probabilities extreme.

Each class c has a prior and, per feature, a mean and a variance; a row's class probabilities come
from Bayes' rule with the features independent given the class. Weighted maximum likelihood is
closed form, so a batch of R fits is three weighted sums: per rollout r, class totals
``N[r, c] = sum_i w[r, i] y[i, c]`` and the first and second moments ``sum_i w[r, i] y[i, c] x[i]``
and ``... x[i]**2``, each one batched matrix product. The same estimates as scikit-learn's
``GaussianNB`` with ``sample_weight``, including its variance smoothing (a fraction of the largest
feature variance added to every variance).

Features arrive standardised (``dvrl_core.data``), so counts from bag-of-words columns are modelled
by their Gaussian moments rather than a multinomial; a class that a rollout selected no rows of
keeps a tiny prior and the all-rows moments, so its probability stays defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import BatchTrainer, Predictor

PRIOR_FLOOR = 1e-6


@dataclass
class _GaussianModels:
    log_prior: torch.Tensor  # [R, C]
    mean: torch.Tensor  # [R, C, d]
    precision: torch.Tensor  # [R, C, d] (1 / variance)
    log_norm: torch.Tensor  # [R, C]: -0.5 * sum_d log(2 pi variance)


class _GaussianTrainer(BatchTrainer):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int,
                 var_smoothing: float) -> None:
        self.x = x.to(torch.float64)
        self.onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)  # [n, C]
        self.n_classes = n_classes
        variance = self.x.var(0, unbiased=False) if len(x) > 1 else torch.ones(x.shape[1])
        self.epsilon = var_smoothing * float(variance.max()) if variance.numel() else 1e-9
        self.epsilon = max(self.epsilon, 1e-12)
        # the all-rows class moments: what a class no selected row belongs to falls back on
        self.fallback = self._moments(torch.ones(1, len(x), dtype=torch.float64,
                                                 device=x.device), None)

    def _moments(self, weights: torch.Tensor, rows: torch.Tensor | None):
        x = self.x if rows is None else self.x[rows]
        onehot = self.onehot if rows is None else self.onehot[rows]
        weighted = weights.to(torch.float64)[:, :, None] * onehot[None]  # [R, n, C]
        totals = weighted.sum(1)  # [R, C]
        first = weighted.transpose(1, 2) @ x  # [R, C, d]
        second = weighted.transpose(1, 2) @ (x * x)
        safe = totals.clamp_min(1e-12)[:, :, None]
        mean = first / safe
        variance = (second / safe - mean * mean).clamp_min(0.0)
        return totals, mean, variance

    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _GaussianModels:
        totals, mean, variance = self._moments(weights, rows)
        _, fallback_mean, fallback_variance = self.fallback
        empty = (totals <= 0)[:, :, None]
        mean = torch.where(empty, fallback_mean, mean)
        variance = torch.where(empty, fallback_variance, variance) + self.epsilon
        prior = totals.clamp_min(0.0) + PRIOR_FLOOR
        log_prior = torch.log(prior / prior.sum(-1, keepdim=True))
        log_norm = -0.5 * (torch.log(2 * math.pi * variance)).sum(-1)
        return _GaussianModels(log_prior, mean, 1.0 / variance, log_norm)

    def predict(self, models: _GaussianModels, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        # sum_d (x_d - m_d)^2 p_d = x^2 . p - 2 x . (m p) + m^2 . p, as matrix products
        quadratic = (
            (x * x) @ models.precision.transpose(1, 2)
            - 2 * x @ (models.mean * models.precision).transpose(1, 2)
            + (models.mean * models.mean * models.precision).sum(-1)[:, None, :]
        )  # [R, m, C]
        joint = models.log_prior[:, None, :] + models.log_norm[:, None, :] - 0.5 * quadratic
        return torch.softmax(joint, dim=-1).to(torch.float32)


@dataclass
class _BernoulliModels:
    log_prior: torch.Tensor  # [R, C]
    log_present: torch.Tensor  # [R, C, d]
    log_absent: torch.Tensor  # [R, C, d]


class _BernoulliTrainer(BatchTrainer):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float) -> None:
        self.floor = x.min(0).values if len(x) else torch.zeros(x.shape[1], device=x.device)
        self.present = self._binary(x)
        self.onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float32)
        self.alpha = alpha

    def _binary(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.floor + 1e-6).to(torch.float32)

    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _BernoulliModels:
        present = self.present if rows is None else self.present[rows]
        onehot = self.onehot if rows is None else self.onehot[rows]
        weighted = weights.to(torch.float32)[:, :, None] * onehot[None]  # [R, n, C]
        totals = weighted.sum(1)  # [R, C]
        counts = weighted.transpose(1, 2) @ present  # [R, C, d]
        probability = (counts + self.alpha) / (totals[:, :, None] + 2 * self.alpha)
        prior = totals + PRIOR_FLOOR
        return _BernoulliModels(torch.log(prior / prior.sum(-1, keepdim=True)),
                                torch.log(probability), torch.log1p(-probability))

    def predict(self, models: _BernoulliModels, x: torch.Tensor) -> torch.Tensor:
        present = self._binary(x)
        # sum_d b_d log p_d + (1 - b_d) log(1 - p_d) = b . (log p - log(1-p)) + sum log(1-p)
        joint = (present @ (models.log_present - models.log_absent).transpose(1, 2)
                 + models.log_absent.sum(-1)[:, None, :] + models.log_prior[:, None, :])
        return torch.softmax(joint, dim=-1)


class NaiveBayes(Predictor):
    """Gaussian Naive Bayes (classification); ``var_smoothing`` as in scikit-learn."""

    name = "naive_bayes"
    tasks = ("classification",)

    def __init__(self, task: str, n_classes: int = 0, *, var_smoothing: float = 1e-9,
                 **kwargs) -> None:
        super().__init__(task, n_classes, **kwargs)
        self.var_smoothing = float(var_smoothing)

    def params(self) -> dict[str, float]:
        return {"var_smoothing": self.var_smoothing}

    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _GaussianTrainer(x, y, self.n_classes, self.var_smoothing)


class BernoulliNaiveBayes(Predictor):
    """Bernoulli Naive Bayes on "above the column's smallest training value" (classification);
    ``alpha``: Laplace smoothing, as scikit-learn's ``BernoulliNB``."""

    name = "bernoulli_naive_bayes"
    tasks = ("classification",)

    def __init__(self, task: str, n_classes: int = 0, *, alpha: float = 1.0, **kwargs) -> None:
        super().__init__(task, n_classes, **kwargs)
        self.alpha = float(alpha)

    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _BernoulliTrainer(x, y, self.n_classes, self.alpha)
