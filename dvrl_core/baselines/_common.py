"""What the baseline valuation methods share: progress, the stop check and the result record.

None of the baselines keeps a training state worth a checkpoint (each finishes in seconds to
minutes), so ``on_checkpoint`` is never called and a ``resume_from`` state is ignored: a resumed
run starts again from the beginning and, being seeded, gives the same values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import PreparedData
from ..dvrl import Progress
from ..errors import ConfigError, RunStopped
from ..result import ValuationResult
from ..seeding import library_versions

ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


class Steps:
    """Progress reports and stop checks for a loop of ``total`` steps."""

    def __init__(self, total: int, on_progress: ProgressCallback | None,
                 should_stop: StopCheck | None) -> None:
        self.total = total
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.started = time.perf_counter()

    def check(self, done: int) -> None:
        """Raise :class:`RunStopped` (with no checkpoint) when the stop check says stop."""
        if self.should_stop is not None and self.should_stop():
            raise RunStopped(done, self.total, b"")

    def report(self, done: int) -> None:
        if self.on_progress is not None:
            # no reward: a baseline's steps are trees or rows, not DVRL's iterations
            self.on_progress(Progress(done, self.total, math.nan,
                                      time.perf_counter() - self.started))


def require_positive(**params: int) -> None:
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, not {value!r}")


def make_result(data: PreparedData, values: np.ndarray, params: dict[str, Any],
                started: float, steps: int, diagnostics: dict[str, Any] | None = None
                ) -> ValuationResult:
    """The result record of a baseline run (no reward trace: the baselines learn nothing)."""
    total_s = time.perf_counter() - started
    return ValuationResult(
        values=np.asarray(values, dtype=np.float64),
        ids=data.train.ids,
        labels=data.train_labels(),
        reward_trace=np.zeros(0),
        params=params,
        versions=library_versions(),
        device="cpu",
        timings={"total_s": total_s, "steps": float(steps),
                 "iterations_per_s": steps / max(total_s, 1e-9)},
        diagnostics=dict(diagnostics or {}),
    )
