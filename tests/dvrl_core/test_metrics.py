from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from dvrl_core.metrics import get_metric, roc_auc, score


def test_auc_matches_scikit_learn_with_ties_and_is_batched():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.round(rng.random((3, 200)), 1)  # many ties
    prob = np.stack([1 - p1, p1], axis=-1)
    batched = get_metric("auc", "classification")(torch.tensor(prob), torch.tensor(y))
    assert batched.tolist() == pytest.approx([roc_auc_score(y, p) for p in p1], abs=1e-12)


def test_multiclass_auc_is_mean_one_vs_rest():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    prob = rng.dirichlet(np.ones(3), 300)
    expected = roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert score("auc", "classification", prob, y) == pytest.approx(expected, abs=1e-9)


def test_log_loss_and_regression_metrics_in_natural_orientation():
    y = np.array([0, 1, 1])
    prob = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert score("log_loss", "classification", prob, y) == pytest.approx(log_loss(y, prob))
    assert score("mae", "regression", np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 1.0
    assert score("mse", "regression", np.array([1.0, 4.0]), np.array([2.0, 2.0])) == 2.5
    # relative errors 0.5 and 0.0 -> sqrt(mean(0.25, 0)) = sqrt(0.125)
    rmspe = score("rmspe", "regression", np.array([1.0, 4.0]), np.array([2.0, 4.0]))
    assert rmspe == pytest.approx(np.sqrt(0.125))


def test_detection_auroc_orientation():
    assert roc_auc(np.array([0.9, 0.8, 0.1]), np.array([True, True, False])) == 1.0
