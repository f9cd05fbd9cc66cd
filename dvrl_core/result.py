"""The outcome of a valuation: a value per training row with everything needed to trust it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError


def rank_lowest_first(values: np.ndarray) -> np.ndarray:
    """Rank 1 for the lowest value; ties keep input order (stable)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


@dataclass
class ValuationResult:
    """Per-row values from :class:`dvrl_core.DVRL` and the run's record.

    ``values[i]`` is the estimator's selection probability for training row ``i`` (the row's
    value: low means the row likely hurts the target task; where the prior is returned, the
    prior's, in (0, 1] too, weighted for a covariate shift where one applies:
    :mod:`dvrl_core.shift`); ``ids[i]`` its id (the id column's
    value; else the training frame's index label, which for a table read from a file is the
    0-based row number, or the row's position where the index repeats a label);
    ``labels[i]`` its given label. An ensemble's result
    (:mod:`dvrl_core.ensemble`) holds its members' mean with ``std_errors[i]``, the standard error
    of that mean; a single run's has none. ``diagnostics["warnings"]`` holds what the data
    gave cause to warn of (:func:`dvrl_core.checks.summary_checks`).
    """

    values: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    reward_trace: np.ndarray  # mean reward of the rollouts, per iteration
    params: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    std_errors: np.ndarray | None = None

    @property
    def ranks(self) -> np.ndarray:
        return rank_lowest_first(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        """One line a notebook can show: rows, the values' range, what was returned and the
        trust verdict, warnings, device and time (the arrays stay in their attributes)."""
        parts = [f"{len(self):,} rows"]
        if len(self):
            parts.append(f"values {np.min(self.values):.3g} to {np.max(self.values):.3g}, "
                         f"median {np.median(self.values):.3g}")
        members = (self.diagnostics.get("ensemble") or {}).get("members")
        if members:
            parts.append(f"mean of {members} runs")
        trust = self.diagnostics.get("trust") or {}
        if trust.get("returned"):
            parts.append(f"returned: {_RETURNED.get(trust['returned'], trust['returned'])}")
        if trust.get("verdict"):
            parts.append(f"trust: {trust['verdict']}")
        warnings = self.diagnostics.get("warnings") or []
        if warnings:
            parts.append(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
        total = self.timings.get("total_s")
        parts.append(self.device + (f", {total:.1f} s" if total is not None else ""))
        return f"<ValuationResult: {'; '.join(parts)}>"

    def to_dataframe(self) -> pd.DataFrame:
        """One row per training row, in input order: ``row``, ``value``, ``rank``, ``label``
        (and ``std_error`` for an ensemble)."""
        frame = pd.DataFrame(
            {"row": self.ids, "value": self.values, "rank": self.ranks, "label": self.labels}
        )
        if self.std_errors is not None:
            frame["std_error"] = self.std_errors
        return frame

    def lowest(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` lowest-valued rows, lowest first: the first ones to review."""
        return self.to_dataframe().sort_values("rank").head(_count(k)).reset_index(drop=True)

    def highest(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` highest-valued rows, highest first."""
        return self.to_dataframe().sort_values("rank", ascending=False).head(
            _count(k)).reset_index(drop=True)


_RETURNED = {"dvrl": "learned values", "prior": "the prior",
             "mixed": "learned values in some runs, the prior in others"}


def _count(k: int) -> int:
    """A number of rows to show (pandas' head(-1) would be all rows but one)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ConfigError(f"a number of rows is a whole number >= 0, not {k!r}")
    return int(k)
