"""Label-noise injection, for self-checks: corrupt a known set of rows and see if they are found.

Classification labels move to another class (:func:`inject_label_noise`); regression targets move
to the other half of the chosen rows' targets (:func:`inject_target_noise`): the regression
analogue, a wrong value that is still a plausible one, taken from the table itself.
"""

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
        raise ConfigError("label noise needs at least two classes (a regression target's "
                          "noise is inject_target_noise)")
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    count = int(round(fraction * len(y)))
    corrupted = np.sort(rng.choice(len(y), size=count, replace=False))
    noisy = y.copy()
    shift = rng.integers(1, n_classes, size=count)  # 1..C-1: never the same class
    noisy[corrupted] = (y[corrupted] + shift) % n_classes
    return noisy, corrupted


def inject_target_noise(
    y: np.ndarray, fraction: float, random_state: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Give ``fraction`` of the rows another chosen row's target, far from their own.

    The chosen rows are sorted by target and each takes the target of the row half-way round
    that order: the lowest half take the upper half's values and the upper half the lower
    half's, so every moved target is another real value of the table, about half the chosen
    rows away in rank (where many rows share a target, as a few integer grades do, a moved
    row can get back its own value). Returns the noisy targets and the
    sorted indices of the chosen rows.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the noise fraction must be between 0 and 1, not {fraction}")
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    count = int(round(fraction * len(y)))
    corrupted = np.sort(rng.choice(len(y), size=count, replace=False))
    noisy = y.copy()
    if count >= 2:
        order = corrupted[np.argsort(y[corrupted], kind="stable")]
        noisy[order] = y[np.roll(order, count // 2)]
    return noisy, corrupted


def inject_noise(
    y: np.ndarray, fraction: float, n_classes: int, random_state: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`inject_label_noise` on encoded classes, or :func:`inject_target_noise` where
    ``n_classes`` is 0 (a regression target, as ``PreparedData.n_classes`` says)."""
    if n_classes == 0:
        return inject_target_noise(y, fraction, random_state)
    return inject_label_noise(y, fraction, n_classes, random_state)


def with_label_noise(
    data: PreparedData, fraction: float, random_state: int = 0
) -> tuple[PreparedData, np.ndarray]:
    """``data`` with ``fraction`` of its training labels flipped (regression: targets moved,
    :func:`inject_target_noise`), and the changed rows."""
    noisy, corrupted = inject_noise(data.train.y, fraction, data.n_classes, random_state)
    return data.with_train_labels(noisy), corrupted
