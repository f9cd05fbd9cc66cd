from __future__ import annotations

import math

import pytest
import torch

from dvrl_core.estimator import (
    ValueEstimator,
    dvrl_loss,
    exploration_penalty,
    prior_logit,
    selection_log_likelihood,
)


def test_loss_matches_hand_computed_value():
    p = torch.tensor([0.8, 0.3, 0.5])
    s = torch.tensor([[1.0, 0.0, 1.0]])
    # log(0.8) + log(0.7) + log(0.5), each with the 1e-8 epsilon
    log_likelihood = math.log(0.8 + 1e-8) + math.log(0.7 + 1e-8) + math.log(0.5 + 1e-8)
    reward = 0.25
    # mean(p) = 0.5333 lies inside [0.1, 0.9]: no penalty
    expected = -reward * log_likelihood
    assert float(dvrl_loss(p, s, torch.tensor([reward]))) == pytest.approx(expected, rel=1e-6)


def test_penalty_pushes_mean_probability_into_its_band():
    assert float(exploration_penalty(torch.tensor([0.5, 0.6]))) == 0.0
    # mean 0.95 is 0.05 above 0.9: 1e3 * 0.05
    assert float(exploration_penalty(torch.tensor([0.95, 0.95]))) == pytest.approx(50.0, rel=1e-5)
    # mean 0.04 is 0.06 below 0.1: 1e3 * 0.06
    assert float(exploration_penalty(torch.tensor([0.02, 0.06]))) == pytest.approx(60.0, rel=1e-5)


def test_loss_includes_penalty_and_averages_rollouts():
    p = torch.tensor([0.99, 0.99])
    s = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    advantage = torch.tensor([1.0, -1.0])
    ll = selection_log_likelihood(p, s)
    expected = -(1.0 * ll[0] - 1.0 * ll[1]) / 2 + 1e3 * (0.99 - 0.9)
    assert float(dvrl_loss(p, s, advantage)) == pytest.approx(float(expected), rel=1e-5)


def test_architecture_follows_the_official_code():
    net = ValueEstimator(7, 2, 2, hidden_dim=100, layer_number=5, comb_dim=10)
    linear = [m for m in net.body if isinstance(m, torch.nn.Linear)]
    # hidden 100 on (x, y), then layer_number - 3 = 2 more hidden layers, then comb_dim
    assert [(m.in_features, m.out_features) for m in linear] == [
        (9, 100), (100, 100), (100, 100), (100, 10)
    ]
    head = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [(12, 10), (10, 1)]
    out = net(torch.randn(5, 7), torch.eye(2)[[0, 1, 0, 1, 0]], torch.rand(5, 2))
    assert out.shape == (5,) and bool(((out > 0) & (out < 1)).all())


def test_prior_skip_starts_at_the_validation_models_agreement():
    net = ValueEstimator(3, 2, 2, prior_skip=True)
    label = torch.eye(2)[[0, 1]]
    # f_valid gives the given label probability 0.9 for row 0 and 0.2 for row 1
    marginal = torch.tensor([[0.1, 0.1], [0.8, 0.8]])
    probability = net(torch.randn(2, 3), label, marginal)
    assert probability.tolist() == pytest.approx([0.9, 0.2], abs=1e-5)
    assert prior_logit(label, marginal).tolist() == pytest.approx(
        [math.log(9), math.log(0.25)], rel=1e-4
    )
