"""The predictor interface.

A :class:`Predictor` is a model family with fixed hyper-parameters. It is used two ways:

* as a single model, scikit-learn style: ``fit(x, y, sample_weight) -> self``, ``predict(x)``
  (class probabilities ``[m, C]`` for classification, values ``[m]`` for regression);
* by DVRL, which trains it many times per iteration on re-weighted rows. ``trainer(x, y)`` binds
  the training rows once (moving them to the device, fixing the initial weights) and returns a
  :class:`BatchTrainer` whose ``fit(weights)`` trains one model per row of ``weights`` (``[R, n]``,
  the rollouts' 0/1 selections) from the same initial weights, as one batched computation where the
  family allows it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError

PREDICT_CHUNK = 65_536


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is visible, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device must be auto, cpu or cuda, not {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but no CUDA GPU is visible")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, not {device!r}")
    return resolved


def as_tensor(array: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """A tensor on ``device`` from a numpy array (copied when the array is read-only)."""
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array, device=device)


class BatchTrainer(ABC):
    """Trains a batch of models of one family on fixed rows with per-model row weights."""

    @abstractmethod
    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> Any:
        """Train ``R = weights.shape[0]`` models; ``rows`` restricts training to those rows
        (then ``weights`` is ``[R, len(rows)]``). Returns the fitted models, opaque."""

    @abstractmethod
    def predict(self, models: Any, x: torch.Tensor) -> torch.Tensor:
        """Predictions of every model: ``[R, m, C]`` probabilities or ``[R, m]`` values."""


class Predictor(ABC):
    """A model family; see the module docstring."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")

    def __init__(
        self,
        task: str,
        n_classes: int = 0,
        *,
        device: str | torch.device = "cpu",
        random_state: int = 0,
    ) -> None:
        if task not in self.tasks:
            raise ConfigError(f"predictor {self.name!r} does not support {task}")
        if task == "classification" and n_classes < 2:
            raise ConfigError("classification needs n_classes >= 2")
        self.task = task
        self.n_classes = n_classes
        self.device = resolve_device(device)
        self.random_state = int(random_state)
        self._models: Any = None
        self._trainer: BatchTrainer | None = None

    @abstractmethod
    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        """Bind training rows (already on ``self.device``) for repeated batched training."""

    def single_trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        """The trainer behind :meth:`fit` (one model): :meth:`trainer` unless a predictor has
        a cheaper set-up for a single fit."""
        return self.trainer(x, y)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, for reports."""
        return {}

    # single-model, scikit-learn style --------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
        xt = self._to_tensor(x)
        yt = self._labels(y)
        self._trainer = self.single_trainer(xt, yt)
        w = torch.ones(len(yt), device=self.device) if sample_weight is None else as_tensor(
            np.asarray(sample_weight, dtype=np.float32), self.device
        )
        self._models = self._trainer.fit(w.unsqueeze(0))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._trainer is None:
            raise ConfigError("call fit before predict")
        parts = []
        with torch.no_grad():  # in chunks: a big table is never copied whole
            for start in range(0, len(x), PREDICT_CHUNK):
                chunk = self._to_tensor(x[start:start + PREDICT_CHUNK])
                parts.append(self._trainer.predict(self._models, chunk)[0].to("cpu",
                                                                             torch.float64))
        return torch.cat(parts).numpy() if parts else np.zeros((0,))

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        return as_tensor(np.asarray(x, dtype=np.float32), self.device)

    def _labels(self, y: np.ndarray) -> torch.Tensor:
        dtype = torch.int64 if self.task == "classification" else torch.float32
        return as_tensor(np.asarray(y), self.device).to(dtype)


def standardise_target(y: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Regression targets centred and scaled (models train better; predictions are mapped back)."""
    mean = float(y.double().mean())
    std = float(y.double().std()) if y.numel() > 1 else 1.0
    if not np.isfinite(std) or std == 0.0:
        std = 1.0
    return ((y - mean) / std).float(), mean, std
