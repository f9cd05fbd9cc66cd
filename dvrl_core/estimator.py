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
        layer_number: int = 5, comb_dim: int = 10, prior_skip: bool = False,
    ) -> None:
        super().__init__()
        self.prior_skip = prior_skip
        layers: list[nn.Module] = [nn.Linear(n_features + label_dim, hidden_dim), nn.ReLU()]
        for _ in range(max(layer_number - 3, 0)):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        layers += [nn.Linear(hidden_dim, comb_dim), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(comb_dim + marginal_dim, comb_dim), nn.ReLU(), nn.Linear(comb_dim, 1)
        )
        if prior_skip:
            # start exactly at the prior: the network learns corrections from the reward
            last = self.head[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def logits(self, x: torch.Tensor, label: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        hidden = self.body(torch.cat([x, label], dim=1))
        logit = self.head(torch.cat([hidden, marginal], dim=1)).squeeze(-1)
        if self.prior_skip:
            logit = logit + prior_logit(label, marginal)
        return logit

    def forward(self, x: torch.Tensor, label: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        """Selection probabilities in (0, 1), one per row."""
        return torch.sigmoid(self.logits(x, label, marginal))


def prior_logit(label: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """log-odds of the validation model's probability of the given label, from the marginal
    (classification: 1 - |1 - f_valid(x)_y|; regression: a decreasing function of the relative
    error)."""
    if label.shape[1] == marginal.shape[1] and label.shape[1] > 1:
        agreement = 1.0 - (marginal * label).sum(1)
    else:
        agreement = 1.0 / (1.0 + marginal[:, 0])
    agreement = agreement.clamp(1e-4, 1 - 1e-4)
    return torch.log(agreement) - torch.log1p(-agreement)


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
