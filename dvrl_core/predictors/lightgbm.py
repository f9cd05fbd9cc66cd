"""LightGBM predictor (classifier and regressor, with sample weights).

Gradient-boosted trees cannot be batched like the torch models: a batch of R fits is R LightGBM
trainings on the selected rows. Training is deterministic (``deterministic=True``, fixed seed;
the same trees whatever the thread count) and uses the process's thread budget
(:func:`dvrl_core.threads.lightgbm_threads`) unless ``n_jobs`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import torch

from ..threads import lightgbm_calls, lightgbm_threads
from .base import BatchTrainer, Predictor


@dataclass
class _Fitted:
    boosters: list[Any]  # a booster, or a constant prediction when the rows hold one class only


class _LightGBMTrainer(BatchTrainer):
    def __init__(self, predictor: LightGBM, x: torch.Tensor, y: torch.Tensor) -> None:
        self.predictor = predictor
        self.x = x.detach().to("cpu", torch.float32).numpy()
        self.y = y.detach().cpu().numpy()
        self.device = x.device

    def _train_one(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Any:
        keep = weight > 0
        x, y, weight = x[keep], y[keep], weight[keep]
        p = self.predictor
        if p.task == "classification":
            present = np.unique(y)
            if len(present) < 2 or len(y) < 2:
                constant = np.full(p.n_classes, 1.0 / p.n_classes)
                if len(present) == 1:
                    constant = np.zeros(p.n_classes)
                    constant[present[0]] = 1.0
                return constant
        elif len(y) < 2:
            return np.array([float(y.mean()) if len(y) else 0.0])
        params: dict[str, Any] = {
            "n_estimators": p.n_estimators, "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves, "min_child_samples": p.min_child_samples,
            "random_state": p.random_state, "deterministic": True,
            "n_jobs": p.n_jobs or lightgbm_threads(x.size),
            "verbose": -1,
        }
        if p.task == "classification":
            # as many outputs as classes in these rows: a rare class can be missing from them
            # (removal curves, a selection), and predict maps the outputs back to every class
            if len(present) > 2:
                params.update(objective="multiclass", num_class=len(present))
            model = lgb.LGBMClassifier(**params)
        else:
            model = lgb.LGBMRegressor(**params)
        with lightgbm_calls.holding(params["n_jobs"]):
            model.fit(x, y, sample_weight=weight)
        return model

    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _Fitted:
        x, y = self.x, self.y
        if rows is not None:
            index = rows.cpu().numpy()
            x, y = x[index], y[index]
        w = weights.detach().to("cpu", torch.float64).numpy()
        return _Fitted([self._train_one(x, y, w[r]) for r in range(len(w))])

    def _predict_one(self, model: Any, x: np.ndarray) -> np.ndarray:
        p = self.predictor
        if isinstance(model, np.ndarray):
            shape = (len(x), p.n_classes) if p.task == "classification" else (len(x),)
            return np.broadcast_to(model if p.task == "classification" else model[0], shape)
        with lightgbm_calls.holding(model.n_jobs):  # the fit's count: predict passes it on
            if p.task == "regression":
                return model.predict(x)
            prob = np.zeros((len(x), p.n_classes))
            prob[:, model.classes_.astype(int)] = model.predict_proba(x)
        return prob

    def predict(self, models: _Fitted, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).numpy()
        out = np.stack([self._predict_one(m, array) for m in models.boosters])
        return torch.as_tensor(out, dtype=torch.float32, device=self.device)


class LightGBM(Predictor):
    """LightGBM gradient-boosted trees; ``n_jobs`` defaults to the process's thread budget."""

    name = "lightgbm"

    def __init__(
        self, task: str = "classification", n_classes: int = 2, *, n_estimators: int = 100,
        learning_rate: float = 0.1, num_leaves: int = 31, min_child_samples: int = 20,
        n_jobs: int | None = None, device="cpu", random_state: int = 0,
    ) -> None:
        super().__init__(task, n_classes, device=device, random_state=random_state)
        self.n_estimators, self.learning_rate = n_estimators, learning_rate
        self.num_leaves, self.min_child_samples, self.n_jobs = (
            num_leaves, min_child_samples, n_jobs)

    def params(self) -> dict:
        return {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples}

    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _LightGBMTrainer(self, x, y)
