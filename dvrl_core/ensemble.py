"""Ensembles: K independent DVRL runs on the same data, combined into one valuation.

One DVRL run's values depend on its seed: the estimator's first weights, the selections it
samples, the validation rows its trust check holds out. K runs with independent seeds, averaged,
give steadier values, and the spread between them says how far each value and the ranking can be
trusted:

* ``values``: the members' mean, per row;
* ``std_errors``: the standard error of that mean, per row (the members' sample standard
  deviation over sqrt(K));
* ``rank_stability``: the Spearman rank correlation of every pair of members' values, and its
  mean (1: every run ranks the rows alike; near 0: the ranking is mostly the seed's).

The members' seeds are :func:`member_seeds` of the one seed (numpy's ``SeedSequence``), so a
service job and ``dvrl value --ensemble K`` with the same seed run the same members. Only the
valuation's seed differs between members; the data (its validation split, injected noise) is the
same for all.

Trust: each member runs DVRL's own checks and guard (``diagnostics["trust"]``) on validation rows
that it held out, and a member whose learned values did not earn their place contributes the
prior. :func:`combine_results` reports every member's verdict and what it returned, with the
members' mean planted-flip AUROC; the ensemble runs no held-out check of its own, since each
member held out different rows and so, between them, the members learned from every validation
row.

>>> from dvrl_core import DVRL
>>> from dvrl_core.ensemble import fit_ensemble, member_seeds
>>> result = fit_ensemble(data, member_seeds(0, 4), lambda seed: DVRL(random_state=seed))
>>> result.std_errors, result.diagnostics["ensemble"]["rank_stability"]
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import PreparedData
from .errors import ConfigError
from .result import ValuationResult
from .seeding import child_seeds

MAX_MEMBERS = 32


def member_seeds(seed: int, count: int) -> list[int]:
    """The seeds of an ensemble's ``count`` members: independent children of ``seed``."""
    return child_seeds(seed, count)


@dataclass
class Combined:
    """K members' values combined (see the module docstring)."""

    values: np.ndarray  # the mean per row
    std_errors: np.ndarray  # the standard error of the mean per row (NaN with one member)
    spearman: np.ndarray  # [K, K] rank correlation of each pair of members (NaN: undefined)

    @property
    def rank_stability(self) -> float | None:
        """The mean Spearman correlation over the pairs of members (None for fewer than 2)."""
        pairs = self.spearman[np.triu_indices(len(self.spearman), k=1)]
        pairs = pairs[np.isfinite(pairs)]
        return float(pairs.mean()) if len(pairs) else None

    def report(self) -> dict[str, Any]:
        """The figures a summary shows: rank stability and the spread of the standard errors."""
        pairs = self.spearman[np.triu_indices(len(self.spearman), k=1)]
        pairs = pairs[np.isfinite(pairs)]
        errors = self.std_errors[np.isfinite(self.std_errors)]
        return {
            "members": len(self.spearman),
            "rank_stability": {
                "mean_spearman": _rounded(self.rank_stability),
                "min_spearman": _rounded(float(pairs.min())) if len(pairs) else None,
                "pairs": int(len(pairs)),
            },
            "std_error": {
                "mean": _rounded(float(errors.mean())) if len(errors) else None,
                "median": _rounded(float(np.median(errors))) if len(errors) else None,
                "max": _rounded(float(errors.max())) if len(errors) else None,
            },
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def combine(values: Sequence[np.ndarray]) -> Combined:
    """The mean, per-row standard error and pairwise rank correlations of members' values (one
    array per member, one value per row, the rows in the same order)."""
    if len(values) == 0:
        raise ConfigError("an ensemble needs at least one member's values")
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    if any(a.ndim != 1 or len(a) != len(arrays[0]) for a in arrays):
        raise ConfigError("each member's values must be one array of one value per row, the "
                          "same rows for every member")
    stacked = np.vstack(arrays)
    members = len(values)
    mean = stacked.mean(axis=0)
    if members > 1:
        std_errors = stacked.std(axis=0, ddof=1) / np.sqrt(members)
    else:
        std_errors = np.full(stacked.shape[1], np.nan)
    return Combined(mean, std_errors, spearman_matrix(stacked))


def spearman_matrix(stacked: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation between every pair of rows of ``stacked`` ([K, n]), with
    tied values given their average rank; NaN where a member's values are all equal."""
    ranks = np.vstack([average_ranks(row) for row in stacked])
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    scale = np.sqrt((centred ** 2).sum(axis=1))
    constant = scale == 0
    unit = centred / np.where(constant, 1.0, scale)[:, None]
    matrix = unit @ unit.T
    matrix[constant, :] = np.nan
    matrix[:, constant] = np.nan
    return np.clip(matrix, -1.0, 1.0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1 (lowest) with ties sharing their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def combine_results(results: Sequence[ValuationResult],
                    seeds: Sequence[int] | None = None) -> ValuationResult:
    """One result from members' results on the same rows: the mean values with their standard
    errors, the mean reward trace, and in ``diagnostics`` the ensemble's figures
    (``"ensemble"``) and the members' trust verdicts (``"trust"``)."""
    if not results:
        raise ConfigError("an ensemble needs at least one member's result")
    first = results[0]
    for result in results[1:]:
        if len(result) != len(first) or not np.array_equal(result.ids, first.ids):
            raise ConfigError("the members valued different rows; an ensemble's members value "
                              "the same data")
    combined = combine([r.values for r in results])
    named: list[Any] = list(seeds) if seeds is not None else \
        [r.params.get("random_state") for r in results]
    shortest = min(len(r.reward_trace) for r in results)
    trace = np.mean([r.reward_trace[:shortest] for r in results], axis=0)
    params = {k: v for k, v in first.params.items() if k != "random_state"}
    timings = {name: float(sum(r.timings.get(name, 0.0) for r in results))
               for name in ("setup_s", "train_s", "total_s")}
    timings["iterations_per_s"] = float(np.mean([r.timings.get("iterations_per_s", 0.0)
                                                 for r in results]))
    report = combined.report() | {"seeds": named, "per_member": [
        _member_report(r, seed) for r, seed in zip(results, named, strict=True)]}
    diagnostics: dict[str, Any] = {"ensemble": report}
    for key in ("validation_copies", "warnings"):  # of the data, the same for every member
        if key in first.diagnostics:
            diagnostics[key] = first.diagnostics[key]
    trust = ensemble_trust([r.diagnostics.get("trust") for r in results], named)
    if trust is not None:
        diagnostics["trust"] = trust
    shift = ensemble_shift([r.diagnostics.get("shift") for r in results])
    if shift is not None:
        diagnostics["shift"] = shift
    return ValuationResult(values=combined.values, ids=first.ids, labels=first.labels,
                           reward_trace=trace, params=params, versions=first.versions,
                           device=first.device, timings=timings, diagnostics=diagnostics,
                           std_errors=combined.std_errors)


def _member_report(result: ValuationResult, seed: Any) -> dict[str, Any]:
    trust = result.diagnostics.get("trust") or {}
    return {"seed": seed, "total_s": round(float(result.timings.get("total_s", 0.0)), 3),
            "returned": trust.get("returned"),
            "iterations_used": (result.diagnostics.get("convergence") or {}).get(
                "iterations_used"),
            "marginal_spearman": result.diagnostics.get("marginal_spearman"),
            # whether the member's prior was weighted for a covariate shift (dvrl_core.shift)
            "shift_applied": bool((result.diagnostics.get("shift") or {}).get("applied"))}


def ensemble_shift(shifts: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The members' covariate-shift reports (:mod:`dvrl_core.shift`) in one: ``applied`` when
    any member weighted its prior, how many did, the mean AUROC of their domain classifiers,
    and the mean effective share of those that weighted (each member decides on its own check
    rows, so near the bar members can differ: the mean then blends weighted and unweighted
    values)."""
    reports = [s for s in shifts if s]
    if not reports:
        return None
    applied = [s for s in reports if s.get("applied")]
    return {"applied": bool(applied), "members_applied": len(applied), "members": len(shifts),
            "auroc": float(np.mean([s["auroc"] for s in reports])),
            "effective_share": float(np.mean([s["effective_share"] for s in applied]))
            if applied else None}


def ensemble_trust(trusts: Sequence[dict[str, Any] | None],
                   seeds: Sequence[Any]) -> dict[str, Any] | None:
    """The members' trust checks side by side: ``returned`` is "dvrl" or "prior" when every
    member returned the same, else "mixed" (the mean then blends learned values and the prior);
    ``verdict`` is the members' common verdict, or how many gave each; ``planted_auroc`` the
    members' mean AUROC on their planted flips, per valuation compared."""
    if all(t is None for t in trusts):
        return None
    members = [{"seed": seed, "verdict": (t or {}).get("verdict", "not checked"),
                "returned": (t or {}).get("returned", "dvrl")}
               | ({"planted_auroc": t["planted"]["auroc"]} if t and "planted" in t else {})
               for t, seed in zip(trusts, seeds, strict=True)]
    returned = {m["returned"] for m in members}
    verdicts = Counter(m["verdict"] for m in members)
    if len(verdicts) == 1:
        verdict = next(iter(verdicts))
    else:
        verdict = "members differ: " + "; ".join(
            f"{count} of {len(members)}: {text}" for text, count in verdicts.most_common())
    report: dict[str, Any] = {
        "returned": returned.pop() if len(returned) == 1 else "mixed",
        "returned_counts": dict(Counter(m["returned"] for m in members)),
        "verdict": verdict, "members": members,
    }
    aurocs = [m["planted_auroc"] for m in members if "planted_auroc" in m]
    if aurocs:
        names = sorted(set.intersection(*(set(a) for a in aurocs)))
        report["planted_auroc"] = {name: round(float(np.mean([a[name] for a in aurocs])), 6)
                                   for name in names}
    return report


def fit_ensemble(data: PreparedData, seeds: Sequence[int], make_valuer: Callable[[int], Any],
                 *, on_progress: Callable[[Any], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> ValuationResult:
    """Fit one valuer per seed (``make_valuer(seed)``, e.g. a :class:`~dvrl_core.DVRL`), one
    after another, and combine them (:func:`combine_results`). ``on_progress`` sees the
    iterations of all members together (iteration / total over the whole ensemble)."""
    if not 1 <= len(seeds) <= MAX_MEMBERS:
        raise ConfigError(f"an ensemble has 1 to {MAX_MEMBERS} members, not {len(seeds)}")
    from .dvrl import Progress

    valuers = [make_valuer(seed) for seed in seeds]
    steps = [int(getattr(v, "iterations", 0) or v.steps(data)) for v in valuers]
    total, done, started = sum(steps), 0, time.perf_counter()

    current = 0  # the member running now: its most iterations

    def report(progress: Any) -> None:
        # a member that stops early (its values converged) says so with total == iteration:
        # the ensemble's total drops by the iterations it did not need
        if on_progress is not None:
            whole = total - (current - progress.total)
            on_progress(Progress(done + progress.iteration, whole, progress.reward,
                                 time.perf_counter() - started))

    results = []
    for valuer, count in zip(valuers, steps, strict=True):
        current = count
        result = valuer.fit(data, on_progress=report, should_stop=should_stop)
        results.append(result)
        used = int((result.diagnostics.get("convergence") or {}).get("iterations_used", count))
        total -= count - used
        done += used
    return combine_results(results, seeds)


__all__ = ["MAX_MEMBERS", "Combined", "average_ranks", "combine", "combine_results",
           "ensemble_shift", "ensemble_trust", "fit_ensemble", "member_seeds",
           "spearman_matrix"]
