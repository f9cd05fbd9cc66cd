"""k-nearest-neighbour class probabilities: one of the pooled prior's model kinds.

A row's neighbours are the ``k`` fitted rows nearest to it in standardised features (each column
centred and scaled by the fitted rows' mean and spread); its probability of class c is the
weighted share of its neighbours labelled c (every neighbour weighs its row weight, default 1),
smoothed by a pseudo-count. Written with NumPy's matrix products in float32, a block of target
rows at a time: one matrix product per block, and no more memory than a block's distances.

A model of another shape than the linear and the tree models: pooled with them
(:mod:`dvrl_core.prior`, weighted by its likelihood on the validation rows) it added a little on
the quality suite, most on the tables where the pool without it was weakest (figures in
README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import standardiser

NEIGHBOURS = 25
# every class gets this many votes more than its neighbours cast: a class none of 25 neighbours
# has is unlikely, not impossible (without it, the bank marketing table at 1,000 rows found
# fewer flipped labels than without the neighbours at all)
PSEUDO_COUNT = 1.0
BLOCK_CELLS = 1 << 24  # distances held at once (64 MB): target rows per block x fitted rows


def neighbour_probabilities(x: np.ndarray, y: np.ndarray, targets: Sequence[np.ndarray],
                            n_classes: int, k: int = NEIGHBOURS,
                            weights: np.ndarray | None = None,
                            pseudo_count: float = PSEUDO_COUNT) -> list[np.ndarray]:
    """Class probabilities [m, C] (float32) for each of ``targets`` from the ``k`` nearest rows
    of (x, y) (fewer when x has fewer rows), each neighbour's vote weighted by ``weights``,
    smoothed by ``pseudo_count`` votes for every class."""
    standardise = standardiser(x)
    fitted = standardise(x)
    fitted_norms = np.einsum("ij,ij->i", fitted, fitted)
    votes = np.ones(len(y), dtype=np.float64) if weights is None else \
        np.asarray(weights, dtype=np.float64)
    k = min(k, len(y))
    block_rows = max(1, min(2048, BLOCK_CELLS // max(len(y), 1)))
    out = []
    for target in targets:
        probabilities = np.zeros((len(target), n_classes), dtype=np.float32)
        for start in range(0, len(target), block_rows):
            block = standardise(target[start:start + block_rows])
            # |t - f|^2 up to |t|^2, which is the same for every neighbour of a target row
            distances = fitted_norms[None, :] - 2.0 * (block @ fitted.T)
            nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
            cells = (np.arange(len(block))[:, None] * n_classes + y[nearest]).ravel()
            tally = np.bincount(cells, votes[nearest].ravel(),
                                minlength=len(block) * n_classes).reshape(-1, n_classes)
            if pseudo_count:  # as if k votes were cast, and pseudo_count more for every class
                tally = tally / np.maximum(tally.sum(1, keepdims=True), 1e-300) * k + pseudo_count
            total = tally.sum(1, keepdims=True)
            tally = np.divide(tally, total, out=np.full_like(tally, 1.0 / n_classes),
                              where=total > 0)
            probabilities[start:start + len(block)] = tally
        out.append(probabilities)
    return out
