"""The pooled prior's nearest-neighbour model, against scikit-learn's."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from dvrl_core.neighbours import neighbour_means, neighbour_probabilities


def _standardised(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (x - reference.mean(0)) / reference.std(0)


def test_the_same_probabilities_as_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 6)).astype(np.float32) * [1, 10, 0.1, 1, 1, 5]
    y = (x[:, 0] + 0.1 * x[:, 1] + rng.standard_normal(700) > 0).astype(int) + \
        (x[:, 3] > 1).astype(int)
    targets = [rng.standard_normal((300, 6)).astype(np.float32), x[:0]]
    ours = neighbour_probabilities(x, y, targets, n_classes=4, k=25, pseudo_count=0)
    reference = KNeighborsClassifier(n_neighbors=25).fit(_standardised(x, x), y)
    expected = np.zeros((300, 4))
    expected[:, reference.classes_] = reference.predict_proba(_standardised(targets[0], x))
    assert ours[0].shape == (300, 4) and ours[0].dtype == np.float32
    assert np.allclose(ours[0], expected, atol=1e-6)  # class 3 never seen: probability 0
    assert ours[1].shape == (0, 4)


def test_votes_are_weighted_and_k_is_capped_by_the_rows():
    x = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)
    y = np.array([0, 1, 1])
    target = np.array([[0.1]], dtype=np.float32)
    # three rows, k = 25: every row votes; row 0 weighs 3, the others 0.5 each
    weighted = neighbour_probabilities(x, y, [target], 2, weights=np.array([3.0, 0.5, 0.5]),
                                      pseudo_count=0)[0]
    assert np.allclose(weighted, [[0.75, 0.25]])
    nearest = neighbour_probabilities(x, y, [target], 2, k=1, pseudo_count=0)[0]
    assert np.allclose(nearest, [[1.0, 0.0]])


def test_the_pseudo_count_keeps_an_unseen_class_possible():
    x = np.zeros((4, 2), dtype=np.float32)
    y = np.array([0, 0, 0, 0])
    smoothed = neighbour_probabilities(x, y, [x[:1]], 3, k=4)[0]  # one vote more each: 5, 1, 1
    assert np.allclose(smoothed, [[5 / 7, 1 / 7, 1 / 7]])


def test_a_regression_targets_neighbours_give_the_same_means_as_scikit_learn():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 5)).astype(np.float32) * [1, 10, 0.1, 1, 3]
    y = x[:, 0] - 0.2 * x[:, 1] + rng.standard_normal(600)
    targets = [rng.standard_normal((250, 5)).astype(np.float32), x[:0]]
    ours = neighbour_means(x, y, targets, k=25)
    reference = KNeighborsRegressor(n_neighbors=25).fit(_standardised(x, x), y)
    assert ours[0].shape == (250, 1) and ours[0].dtype == np.float32 and ours[1].shape == (0, 1)
    assert np.allclose(ours[0][:, 0], reference.predict(_standardised(targets[0], x)), atol=1e-5)
    weights = np.where(y > 0, 1.0, 0.0)  # only the positive targets count
    weighted = neighbour_means(x, y, targets[:1], k=25, weights=weights)[0][:, 0]
    assert np.all(weighted >= 0)
