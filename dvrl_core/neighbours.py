"""k-nearest-neighbour class probabilities: one of the pooled prior's model kinds.

A row's neighbours are the ``k`` fitted rows nearest to it in standardised features (each column
centred and scaled by the fitted rows' mean and spread); its probability of class c is the
weighted share of its neighbours labelled c (every neighbour weighs its row weight, default 1),
smoothed by a pseudo-count; for a regression target (:func:`neighbour_means`), the weighted
mean of its neighbours' targets. Written with NumPy's matrix products in float32, a block of target
rows at a time: one matrix product per block, and no more memory than a block's distances.

A model of another shape than the linear and the tree models: pooled with them
(:mod:`dvrl_core.prior`, weighted by its likelihood on the validation rows) it added a little on
the quality suite, most on the tables where the pool without it was weakest (figures in
docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .data import standardiser

NEIGHBOURS = 25
# every class gets this many votes more than its neighbours cast: a class none of 25 neighbours
# has is unlikely, not impossible (without it, the bank marketing table at 1,000 rows found
# fewer flipped labels than without the neighbours at all)
PSEUDO_COUNT = 1.0
BLOCK_CELLS = 1 << 24  # distances held at once (64 MB): target rows per block x fitted rows


def _nearest(x: np.ndarray, target: np.ndarray, k: int) -> Iterator[tuple[int, np.ndarray]]:
    """For each block of ``target`` rows: its first row's position and the indices [rows, k]
    of each row's ``k`` nearest rows of ``x`` (standardised on x)."""
    standardise = standardiser(x)
    fitted = standardise(x)
    fitted_norms = np.einsum("ij,ij->i", fitted, fitted)
    block_rows = max(1, min(2048, BLOCK_CELLS // max(len(x), 1)))
    for start in range(0, len(target), block_rows):
        block = standardise(target[start:start + block_rows])
        # |t - f|^2 up to |t|^2, which is the same for every neighbour of a target row
        distances = fitted_norms[None, :] - 2.0 * (block @ fitted.T)
        yield start, np.argpartition(distances, k - 1, axis=1)[:, :k]


def _row_weights(n: int, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(n, dtype=np.float64) if weights is None else \
        np.asarray(weights, dtype=np.float64)


def neighbour_probabilities(x: np.ndarray, y: np.ndarray, targets: Sequence[np.ndarray],
                            n_classes: int, k: int = NEIGHBOURS,
                            weights: np.ndarray | None = None,
                            pseudo_count: float = PSEUDO_COUNT) -> list[np.ndarray]:
    """Class probabilities [m, C] (float32) for each of ``targets`` from the ``k`` nearest rows
    of (x, y) (fewer when x has fewer rows), each neighbour's vote weighted by ``weights``,
    smoothed by ``pseudo_count`` votes for every class."""
    votes = _row_weights(len(y), weights)
    k = min(k, len(y))
    out = []
    for target in targets:
        probabilities = np.zeros((len(target), n_classes), dtype=np.float32)
        for start, nearest in _nearest(x, target, k):
            rows = len(nearest)
            cells = (np.arange(rows)[:, None] * n_classes + y[nearest]).ravel()
            tally = np.bincount(cells, votes[nearest].ravel(),
                                minlength=rows * n_classes).reshape(-1, n_classes)
            if pseudo_count:  # as if k votes were cast, and pseudo_count more for every class
                tally = tally / np.maximum(tally.sum(1, keepdims=True), 1e-300) * k + pseudo_count
            total = tally.sum(1, keepdims=True)
            tally = np.divide(tally, total, out=np.full_like(tally, 1.0 / n_classes),
                              where=total > 0)
            probabilities[start:start + rows] = tally
        out.append(probabilities)
    return out


def neighbour_means(x: np.ndarray, y: np.ndarray, targets: Sequence[np.ndarray],
                    k: int = NEIGHBOURS, weights: np.ndarray | None = None) -> list[np.ndarray]:
    """Predicted targets [m, 1] (float32) for each of ``targets``: the mean target of the ``k``
    nearest rows of (x, y), each weighted by ``weights`` (all weights 0: the plain mean)."""
    w = _row_weights(len(y), weights)
    values = np.asarray(y, dtype=np.float64)
    k = min(k, len(y))
    out = []
    for target in targets:
        means = np.zeros((len(target), 1), dtype=np.float32)
        for start, nearest in _nearest(x, target, k):
            near_w = w[nearest]
            total = near_w.sum(1)
            plain = values[nearest].mean(1)
            weighted = (values[nearest] * near_w).sum(1) / np.maximum(total, 1e-300)
            means[start:start + len(nearest), 0] = np.where(total > 0, weighted, plain)
        out.append(means)
    return out
