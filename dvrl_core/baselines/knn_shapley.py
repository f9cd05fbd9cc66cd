"""Exact KNN-Shapley (Jia et al., "Efficient Task-Specific Data Valuation for Nearest Neighbor
Algorithms", VLDB 2019).

For one validation point (x, y) the utility of a training subset S is the K-nearest-neighbour
classifier's soft accuracy, U(S) = (1/K) sum_{k <= min(K, |S|)} 1[y_{a_k(S)} = y], where a_k(S) is
the k-th nearest point of S to x (U of the empty set is 0). Its Shapley values have a closed form
(the paper's Theorem 1): with the N training points sorted by distance to x, a_1 nearest,

    s(a_N) = 1[y_{a_N} = y] / N
    s(a_i) = s(a_{i+1}) + (1[y_{a_i} = y] - 1[y_{a_{i+1}} = y]) / K * min(K, i) / i

A row's value is its Shapley value averaged over the validation points. The values add up to
the mean utility of the full training set (efficiency), reported as
``diagnostics["full_data_score"]``.

Distances are Euclidean on the prepared features (numeric columns standardised, categoricals
one-hot). Validation points are processed in chunks, so memory stays O(n_train * chunk) within
``max_memory_mb``; the method is exact and needs no seed. Only classification is supported: the
paper's regression variant (utility minus the squared error of the neighbours' mean) is not
implemented and a regression target raises :class:`ConfigError`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..data import PreparedData
from ..errors import ConfigError
from ..result import ValuationResult
from ._common import ProgressCallback, Steps, StopCheck, make_result, require_positive

# float64 arrays of n_train entries held per validation point while its chunk is processed
ARRAYS_PER_POINT = 8
MAX_CHUNK_ROWS = 1024


def knn_shapley_sorted(match: np.ndarray, k: int) -> np.ndarray:
    """The recursion for a batch of validation points.

    ``match[p, i]`` is 1 when the label of the (i+1)-th nearest training point of validation
    point ``p`` equals its label; returns the Shapley values in the same (sorted) order.
    """
    n = match.shape[1]
    rank = np.arange(1, n, dtype=np.float64)  # the paper's i, for i = 1 .. N-1
    weight = np.minimum(k, rank) / (rank * k)
    steps = (match[:, :-1] - match[:, 1:]) * weight
    values = np.empty_like(match, dtype=np.float64)
    values[:, -1] = match[:, -1] / n
    # s(a_i) = s(a_N) + sum_{j >= i} step_j: a cumulative sum from the far end
    values[:, :-1] = values[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    return values


def full_set_utility(match: np.ndarray, k: int) -> np.ndarray:
    """U(all training rows) per validation point: the fraction of the K nearest that match."""
    return match[:, :k].sum(axis=1) / k


def chunk_rows(n_train: int, max_memory_mb: float) -> int:
    per_point = ARRAYS_PER_POINT * 8 * max(n_train, 1)
    return int(max(1, min(MAX_CHUNK_ROWS, max_memory_mb * 2**20 // per_point)))


def _sorted_matches(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
                    y_valid: np.ndarray, train_norms: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For each validation point of a chunk: training rows nearest first, and label matches."""
    distance = (x_valid * x_valid).sum(axis=1)[:, None] - 2.0 * (x_valid @ x_train.T)
    distance += train_norms[None, :]
    order = np.argsort(distance, axis=1, kind="stable")
    match = (y_train[order] == y_valid[:, None]).astype(np.float64)
    return order, match


class KNNShapley:
    """Exact KNN-Shapley values of the training rows; ``fit(data) -> ValuationResult``.

    ``k`` is the number of neighbours (the paper's K). ``random_state`` and ``device`` are
    accepted for a uniform interface and unused (the method is exact and runs on the CPU).
    """

    def __init__(self, k: int = 10, *, max_memory_mb: float = 256.0, random_state: int = 0,
                 device: str = "auto") -> None:
        self.k = k
        self.max_memory_mb = max_memory_mb
        self.random_state = random_state
        self.device = device
        require_positive(k=k)
        if not max_memory_mb > 0:
            raise ConfigError("max_memory_mb must be positive")

    def get_params(self) -> dict[str, Any]:
        return {"k": self.k, "max_memory_mb": self.max_memory_mb,
                "random_state": self.random_state, "device": self.device}

    def steps(self, data: PreparedData) -> int:
        """Progress steps of a run: one per validation point."""
        return len(data.valid)

    def fit(
        self,
        data: PreparedData,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        on_checkpoint: Any = None,
        checkpoint_every: int = 100,
        resume_from: bytes | None = None,
    ) -> ValuationResult:
        """Value every training row; progress counts validation points. No checkpoints: a
        ``resume_from`` state is ignored and the (exact) computation starts again."""
        if data.task != "classification":
            raise ConfigError("knn_shapley values classification rows only (label-match "
                              "utility); the paper's regression variant is not implemented: "
                              "use data_oob or leave_one_out for a regression target")
        started = time.perf_counter()
        x_train = data.train.x.astype(np.float64)
        x_valid = data.valid.x.astype(np.float64)
        train_norms = (x_train * x_train).sum(axis=1)
        n_valid = len(data.valid)
        steps = Steps(n_valid, on_progress, should_stop)
        values = np.zeros(len(data.train), dtype=np.float64)
        utility = 0.0
        chunk = chunk_rows(len(data.train), self.max_memory_mb)
        for start in range(0, n_valid, chunk):
            steps.check(start)
            part = slice(start, min(start + chunk, n_valid))
            order, match = _sorted_matches(x_train, data.train.y, x_valid[part],
                                           data.valid.y[part], train_norms)
            shapley = knn_shapley_sorted(match, self.k)
            # scatter back to input order and add up over the chunk's validation points
            scattered = np.empty_like(shapley)
            np.put_along_axis(scattered, order, shapley, axis=1)
            values += scattered.sum(axis=0)
            utility += float(full_set_utility(match, self.k).sum())
            steps.report(part.stop)
        params = self.get_params() | {"method": "knn_shapley", "predictor": "knn",
                                      "metric": "accuracy"}
        return make_result(data, values / n_valid, params, started, n_valid,
                           {"full_data_score": utility / n_valid})
