"""Exact KNN-Shapley (Jia et al., "Efficient Task-Specific Data Valuation for Nearest Neighbor
Algorithms", VLDB 2019).

For one validation point (x, y) the utility of a training subset S is the K-nearest-neighbour
classifier's soft accuracy, U(S) = (1/K) sum_{k <= min(K, |S|)} 1[y_{a_k(S)} = y], where a_k(S) is
the k-th nearest point of S to x (U of the empty set is 0). Its Shapley values have a closed form
(the paper's Theorem 1): with the N training points sorted by distance to x, a_1 nearest,

    s(a_N) = 1[y_{a_N} = y] / N
    s(a_i) = s(a_{i+1}) + (1[y_{a_i} = y] - 1[y_{a_{i+1}} = y]) / K * min(K, i) / i

For a regression target the utility is minus the squared error of the neighbours' mean, as in
the paper's regression case: U(S) = -(A(S) - y)^2 with A(S) = (1/K) sum_{k <= min(K, |S|)}
y_{a_k(S)}. Its Shapley values are exact too, in O(N) per validation point once sorted
(:func:`knn_shapley_regression_sorted`, derived here from the same two steps as Theorem 1: the
difference of two neighbours in distance order, then the farthest point). With v_i = y_{a_i} / K,
t = y and, for a point and a set of L others, f(L) = m (m + 1) / (2 (L + 1) (L + 2)),
m = min(K - 1, L + 1) (the Shapley weight of the subsets that hold the point and at most K - 2
of those others):

    s(a_N) = v_N [(2t - v_N) min(K, N) / N - 2 f(N - 2) sum_{j < N} v_j]
    s(a_i) = s(a_{i+1}) + (v_i - v_{i+1}) [(2t - v_i - v_{i+1}) min(K, i) / i - 2 E_i]
    E_i    = f(i - 2) sum_{j < i} v_j + sum_{j > i + 1} f(j - 3) v_j

A row's value is its Shapley value averaged over the validation points. The values add up to
the mean utility of the full training set less that of the empty set (0 for classification,
minus the mean squared target for regression); the full set's is reported as
``diagnostics["full_data_score"]`` (a regression target: minus the K-nearest-neighbour mean's
squared error).

Distances are Euclidean on the prepared features (numeric columns standardised, categoricals
one-hot). Validation points are processed in chunks, so memory stays O(n_train * chunk) within
``max_memory_mb``; the method is exact and needs no seed.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..data import PreparedData, require_prepared
from ..errors import ConfigError
from ..result import ValuationResult
from ._common import ProgressCallback, Steps, StopCheck, make_result, require_positive

# float64 arrays of n_train entries held per validation point while its chunk is processed
# (a regression target's recursion holds more)
ARRAYS_PER_POINT = 8
REGRESSION_ARRAYS_PER_POINT = 16
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


def _shapley_weight(others: np.ndarray, k: int) -> np.ndarray:
    """f(L): the Shapley weight of the subsets S (of the players other than two neighbours) that
    hold a given point and at most K - 2 of ``others`` = L given other points."""
    m = np.minimum(k - 1, others + 1)
    return m * (m + 1) / (2.0 * (others + 1) * (others + 2))


def knn_shapley_regression_sorted(targets: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """The regression recursion (module docstring) for a batch of validation points.

    ``targets[p, i]`` is the target of the (i+1)-th nearest training point of validation point
    ``p``, ``target[p]`` that point's own; returns the Shapley values in the same (sorted)
    order."""
    n = targets.shape[1]
    v = targets.astype(np.float64) / k
    t = np.asarray(target, dtype=np.float64)[:, None]
    values = np.empty_like(v)
    if n == 1:  # the only point: U({it}) - U({})
        values[:, 0] = v[:, 0] * (2 * t[:, 0] - v[:, 0])
        return values
    last = v[:, -1]
    values[:, -1] = last * ((2 * t[:, 0] - last) * min(k, n) / n
                            - 2 * _shapley_weight(np.array(n - 2), k) * v[:, :-1].sum(axis=1))
    rank = np.arange(1, n)  # the i of each step, i = 1 .. N-1
    # sum_{j < i} v_j, weighted by f(i - 2) (no j when i = 1)
    before = np.cumsum(v, axis=1)[:, :-1] - v[:, :-1]
    near = before * _shapley_weight(np.maximum(rank - 2, 0), k)
    # sum_{j > i + 1} f(j - 3) v_j: a cumulative sum from the far end, over j = 3 .. N
    position = np.arange(1, n + 1)
    far_terms = np.where(position >= 3, _shapley_weight(np.maximum(position - 3, 0), k), 0.0) * v
    after = np.cumsum(far_terms[:, ::-1], axis=1)[:, ::-1]  # after[:, j-1] = sum_{l >= j}
    far = np.concatenate([after[:, 2:], np.zeros((len(v), 1))], axis=1)  # sum_{j >= i + 2}
    steps = (v[:, :-1] - v[:, 1:]) * ((2 * t - v[:, :-1] - v[:, 1:]) * np.minimum(k, rank) / rank
                                      - 2 * (near + far))
    values[:, :-1] = values[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    return values


def full_set_utility(match: np.ndarray, k: int) -> np.ndarray:
    """U(all training rows) per validation point: the fraction of the K nearest that match."""
    return match[:, :k].sum(axis=1) / k


def chunk_rows(n_train: int, max_memory_mb: float, arrays: int = ARRAYS_PER_POINT) -> int:
    per_point = arrays * 8 * max(n_train, 1)
    return int(max(1, min(MAX_CHUNK_ROWS, max_memory_mb * 2**20 // per_point)))


def _nearest_first(x_train: np.ndarray, x_valid: np.ndarray,
                   train_norms: np.ndarray) -> np.ndarray:
    """For each validation point of a chunk: the training rows, nearest first."""
    distance = (x_valid * x_valid).sum(axis=1)[:, None] - 2.0 * (x_valid @ x_train.T)
    distance += train_norms[None, :]
    return np.argsort(distance, axis=1, kind="stable")


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
        require_prepared(data, "KNNShapley.fit")
        regression = data.task == "regression"
        started = time.perf_counter()
        x_train = data.train.x.astype(np.float64)
        x_valid = data.valid.x.astype(np.float64)
        train_norms = (x_train * x_train).sum(axis=1)
        n_valid = len(data.valid)
        steps = Steps(n_valid, on_progress, should_stop)
        values = np.zeros(len(data.train), dtype=np.float64)
        utility = 0.0
        chunk = chunk_rows(len(data.train), self.max_memory_mb,
                           REGRESSION_ARRAYS_PER_POINT if regression else ARRAYS_PER_POINT)
        for start in range(0, n_valid, chunk):
            steps.check(start)
            part = slice(start, min(start + chunk, n_valid))
            order = _nearest_first(x_train, x_valid[part], train_norms)
            y_valid = data.valid.y[part]
            if regression:
                nearest = data.train.y[order].astype(np.float64)
                shapley = knn_shapley_regression_sorted(nearest, y_valid, self.k)
                mean = nearest[:, :self.k].sum(axis=1) / self.k
                utility -= float(((mean - y_valid) ** 2).sum())
            else:
                match = (data.train.y[order] == y_valid[:, None]).astype(np.float64)
                shapley = knn_shapley_sorted(match, self.k)
                utility += float(full_set_utility(match, self.k).sum())
            # scatter back to input order and add up over the chunk's validation points
            scattered = np.empty_like(shapley)
            np.put_along_axis(scattered, order, shapley, axis=1)
            values += scattered.sum(axis=0)
            steps.report(part.stop)
        params = self.get_params() | {"method": "knn_shapley", "predictor": "knn",
                                      "metric": "negative_squared_error" if regression
                                      else "accuracy"}
        return make_result(data, values / n_valid, params, started, n_valid,
                           {"full_data_score": utility / n_valid})
