"""Label-noise injection, for self-checks: corrupt a known set of rows and see if they are found."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .data import PreparedData


def inject_label_noise(
    y: np.ndarray, fraction: float, n_classes: int, random_state: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Move ``fraction`` of the labels to another class, chosen uniformly among the others.

    ``y`` holds encoded classes ``0..n_classes-1``. Returns the noisy labels and the sorted indices
    of the changed rows. As in the DVRL paper's Adult protocol, ``fraction=0.2`` flips 20% of rows.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the noise fraction must be between 0 and 1, not {fraction}")
    if n_classes < 2:
        raise ConfigError("label noise needs at least two classes")
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    count = int(round(fraction * len(y)))
    corrupted = np.sort(rng.choice(len(y), size=count, replace=False))
    noisy = y.copy()
    shift = rng.integers(1, n_classes, size=count)  # 1..C-1: never the same class
    noisy[corrupted] = (y[corrupted] + shift) % n_classes
    return noisy, corrupted


def with_label_noise(
    data: PreparedData, fraction: float, random_state: int = 0
) -> tuple[PreparedData, np.ndarray]:
    """``data`` with ``fraction`` of its training labels flipped, and the flipped rows."""
    if data.task != "classification":
        raise ConfigError("label noise flips labels, so it needs a classification target")
    noisy, corrupted = inject_label_noise(data.train.y, fraction, data.n_classes, random_state)
    return data.with_train_labels(noisy), corrupted
