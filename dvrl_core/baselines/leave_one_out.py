"""Leave-one-out (LOO) values: how much the validation score drops when a row is left out.

value_i = score(model fitted on all training rows) - score(model fitted without row i), both
scored on the validation rows (Cook's deletion idea, used as the LOO baseline in data-valuation
papers, e.g. Ghorbani & Zou, "Data Shapley", ICML 2019). A row whose removal improves the
validation score gets a negative value.

* Classification: L2-regularised logistic regression (scikit-learn, lbfgs, ``C``), scored by the
  negative validation log-loss (log-loss is smooth, so single-row effects are not lost in ties as
  they would be with accuracy). Every refit is exact and warm-started from the full fit's
  coefficients (a refit then takes a few solver steps, on one BLAS thread); ``tol`` is tight so
  that the optimiser's own error stays far below one row's effect.
* Regression: ridge regression (``alpha = 1 / C``, solved exactly), scored by the negative
  validation mean squared error.

Exact refitting costs one fit per row, so tables with more than ``max_rows`` training rows
(default 2,000) are refused with :class:`ConfigError` rather than silently subsampled.
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from ..data import PreparedData, require_prepared
from ..errors import ConfigError
from ..result import ValuationResult
from ._common import ProgressCallback, Steps, StopCheck, make_result, require_positive

PROBABILITY_FLOOR = 1e-15

Model: TypeAlias = LogisticRegression | Ridge


def log_loss(probabilities: np.ndarray, y: np.ndarray) -> float:
    picked = probabilities[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, PROBABILITY_FLOOR, 1.0))))


def class_probabilities(model: LogisticRegression, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities of every class, also when the model never saw some class (a class whose
    only row was left out gets probability 0)."""
    full = np.zeros((len(x), n_classes))
    full[:, model.classes_] = model.predict_proba(x)
    return full


class LeaveOneOut:
    """Leave-one-out values of the training rows; ``fit(data) -> ValuationResult``.

    ``C`` is the inverse L2 strength (logistic regression's ``C``; ridge uses ``alpha = 1/C``).
    ``random_state`` and ``device`` are accepted for a uniform interface; the solvers are
    deterministic and run on the CPU.
    """

    def __init__(self, C: float = 1.0, *, tol: float = 1e-8, max_iter: int = 1000,
                 max_rows: int = 2000, random_state: int = 0, device: str = "auto") -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.max_rows = max_rows
        self.random_state = random_state
        self.device = device
        require_positive(max_iter=max_iter, max_rows=max_rows)
        if not C > 0 or not tol > 0:
            raise ConfigError("C and tol must be positive")

    def get_params(self) -> dict[str, Any]:
        return {"C": self.C, "tol": self.tol, "max_iter": self.max_iter,
                "max_rows": self.max_rows, "random_state": self.random_state,
                "device": self.device}

    def steps(self, data: PreparedData) -> int:
        """Progress steps of a run: one refit per training row."""
        return len(data.train)

    def _model(self, task: str) -> Model:
        if task == "classification":
            return LogisticRegression(C=self.C, tol=self.tol, max_iter=self.max_iter,
                                      warm_start=True)
        return Ridge(alpha=1.0 / self.C)

    def _score(self, model: Model, data: PreparedData, x_valid: np.ndarray) -> float:
        """The validation score: higher is better."""
        if isinstance(model, LogisticRegression):
            probabilities = class_probabilities(model, x_valid, data.n_classes)
            return -log_loss(probabilities, data.valid.y)
        error = model.predict(x_valid) - data.valid.y
        return -float(np.mean(np.square(error)))

    def _refit(self, task: str, x: np.ndarray, y: np.ndarray, full: Model) -> Model:
        """The model on ``x, y`` (the rows but one), warm-started from ``full``."""
        model = self._model(task)
        warm = isinstance(model, LogisticRegression) and isinstance(full, LogisticRegression)
        if warm and len(np.unique(y)) == len(full.classes_):  # else a class vanished: cold fit
            model.coef_ = full.coef_.copy()
            model.intercept_ = full.intercept_.copy()
        return model.fit(x, y)

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
        """Value every training row; progress counts refits. No checkpoints: a ``resume_from``
        state is ignored and the run starts again (deterministic, so with the same values)."""
        require_prepared(data, "LeaveOneOut.fit")
        n = len(data.train)
        if n > self.max_rows:
            raise ConfigError(f"leave_one_out refits the model once per training row, and "
                              f"{n} rows exceed max_rows={self.max_rows}; use data_oob or "
                              "knn_shapley for a table this size")
        started = time.perf_counter()
        # float64: float32 solves and probabilities would blur effects of ~1e-3
        x, y = data.train.x.astype(np.float64), data.train.y
        x_valid = data.valid.x.astype(np.float64)
        full = self._model(data.task).fit(x, y)
        full_score = self._score(full, data, x_valid)
        values = np.zeros(n, dtype=np.float64)
        steps = Steps(n, on_progress, should_stop)
        keep = np.ones(n, dtype=bool)
        # one BLAS thread: on small refits, thread start-up costs ~50x the solve
        with threadpool_limits(limits=1):
            for row in range(n):
                steps.check(row)
                keep[row] = False
                model = self._refit(data.task, x[keep], y[keep], full)
                values[row] = full_score - self._score(model, data, x_valid)
                keep[row] = True
                steps.report(row + 1)
        model = "logistic_regression" if data.task == "classification" else "ridge"
        metric = "log_loss" if data.task == "classification" else "mse"
        params = self.get_params() | {"method": "leave_one_out", "predictor": model,
                                      "metric": metric}
        return make_result(data, values, params, started, n, {"full_data_score": full_score})
