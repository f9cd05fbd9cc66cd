"""The yardstick: a plain reimplementation of the official DVRL loop.

One rollout per iteration; scikit-learn's LogisticRegression refitted on the selected rows every
iteration; the same estimator network (without our prior skip) and loss; AUC reward minus a fixed
baseline (the predictor trained on all rows); Adam lr 0.01; values = the final estimator's
selection probabilities. Kept in bench/ only, as the reference for speed and quality.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dvrl_core import DVRL, PreparedData
from dvrl_core.estimator import ValueEstimator, dvrl_loss


def reference_dvrl(data: PreparedData, iterations: int = 2000, seed: int = 0,
                   learning_rate: float = 0.01) -> tuple[np.ndarray, float]:
    """Values and iterations per second of the official loop (binary classification)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = data.train.x, data.train.y
    x_valid, y_valid = data.valid.x, data.valid.y
    marginal = DVRL(prior="validation", random_state=seed).marginal(data)  # the official one
    baseline_model = LogisticRegression(max_iter=1000).fit(x, y)
    baseline = roc_auc_score(y_valid, baseline_model.predict_proba(x_valid)[:, 1])
    estimator = ValueEstimator(x.shape[1], 2, 2)
    optimiser = torch.optim.Adam(estimator.parameters(), lr=learning_rate)
    xt, label = torch.tensor(x), torch.eye(2)[torch.tensor(y)]
    mt = torch.tensor(marginal)
    started = time.perf_counter()
    for _ in range(iterations):
        probability = estimator(xt, label, mt)
        selection = rng.binomial(1, probability.detach().numpy())
        if selection.sum() == 0 or len(np.unique(y[selection == 1])) < 2:
            selection = np.ones_like(selection)
        model = LogisticRegression(max_iter=1000).fit(x[selection == 1], y[selection == 1])
        reward = roc_auc_score(y_valid, model.predict_proba(x_valid)[:, 1]) - baseline
        loss = dvrl_loss(probability, torch.tensor(selection, dtype=torch.float32)[None],
                         torch.tensor([reward], dtype=torch.float32))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    rate = iterations / (time.perf_counter() - started)
    with torch.no_grad():
        values = estimator(xt, label, mt).double().numpy()
    return values, rate
