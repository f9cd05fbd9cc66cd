"""Showing a job's progress while waiting for it: a tqdm bar, or a function of the caller's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .resources import Progress

ProgressOption = bool | Callable[[Progress], Any]


class ProgressBar:
    """A tqdm bar on standard error: the phase, iterations done of the total, the recent mean
    reward and the service's own ETA (it knows the job's rate; the client sees only polls)."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, job_id: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=None, unit="it", desc=f"job {job_id[:8]} queued",
                        bar_format=self.FORMAT, leave=False)
        self.job_id = job_id

    def __call__(self, progress: Progress) -> None:
        self.bar.set_description_str(f"job {self.job_id[:8]} {progress.phase}", refresh=False)
        if progress.total:
            self.bar.total = progress.total
        if progress.iteration is not None:
            self.bar.n = progress.iteration
        shown = []
        if progress.reward is not None:
            shown.append(f"reward {progress.reward:+.4f}")
        if progress.eta_s is not None and progress.phase == "training":
            shown.append(f"ETA {self.bar.format_interval(progress.eta_s)}")
        self.bar.set_postfix_str(", ".join(shown), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class ProgressReporter:
    """What ``wait(progress=...)`` shows: nothing (False), a :class:`ProgressBar` (True), or
    each new :class:`Progress` passed to the caller's function."""

    def __init__(self, option: ProgressOption, job_id: str) -> None:
        self.option = option
        self.job_id = job_id
        self.bar: ProgressBar | None = None
        self.last: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        if progress == self.last or self.option is False:
            return
        self.last = progress
        if callable(self.option):
            self.option(progress)
            return
        if self.bar is None:
            self.bar = ProgressBar(self.job_id)
        self.bar(progress)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
