"""The value estimator network h_phi(x, y) and the DVRL loss.

Architecture of the official DVRL code (Yoon, Arik, Pfister, ICML 2020): the features and the
one-hot label enter a ReLU layer of ``hidden_dim``, then ``layer_number - 3`` more hidden layers,
then a ReLU layer of ``comb_dim``; the "marginal" input |onehot(y) - f_valid(x)| is concatenated
there, followed by another ``comb_dim`` ReLU layer and one sigmoid output: the selection
probability of the row.
"""

from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-8
PENALTY_WEIGHT = 1e3


class ValueEstimator(nn.Module):
    """h_phi: (features, label input, marginal) -> selection logit; see the module docstring."""

    def __init__(
        self, n_features: int, label_dim: int, marginal_dim: int, *, hidden_dim: int = 100,
        layer_number: int = 5, comb_dim: int = 10,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(n_features + label_dim, hidden_dim), nn.ReLU()]
        for _ in range(max(layer_number - 3, 0)):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        layers += [nn.Linear(hidden_dim, comb_dim), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(comb_dim + marginal_dim, comb_dim), nn.ReLU(), nn.Linear(comb_dim, 1)
        )

    def logits(self, x: torch.Tensor, label: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        hidden = self.body(torch.cat([x, label], dim=1))
        return self.head(torch.cat([hidden, marginal], dim=1)).squeeze(-1)

    def forward(self, x: torch.Tensor, label: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        """Selection probabilities in (0, 1), one per row."""
        return torch.sigmoid(self.logits(x, label, marginal))


def exploration_penalty(probability: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """1e3 * (max(mean(p) - threshold, 0) + max((1 - threshold) - mean(p), 0)): keeps the mean
    selection probability inside [1 - threshold, threshold] (official DVRL code)."""
    mean = probability.mean()
    return PENALTY_WEIGHT * (torch.relu(mean - threshold) + torch.relu((1 - threshold) - mean))


def selection_log_likelihood(probability: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """sum_i [s_i log(p_i + eps) + (1 - s_i) log(1 - p_i + eps)], one value per rollout."""
    return (
        selection * torch.log(probability + EPSILON)
        + (1 - selection) * torch.log(1 - probability + EPSILON)
    ).sum(-1)


def dvrl_loss(
    probability: torch.Tensor, selection: torch.Tensor, advantage: torch.Tensor,
    threshold: float = 0.9,
) -> torch.Tensor:
    """The DVRL loss: -reward * log pi(s) + exploration penalty, averaged over rollouts.

    ``probability`` [n], ``selection`` [R, n] (0/1), ``advantage`` [R] (reward minus baseline).
    With one rollout this is exactly the official code's loss.
    """
    policy = -(advantage * selection_log_likelihood(probability, selection)).mean()
    return policy + exploration_penalty(probability, threshold)
