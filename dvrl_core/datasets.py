"""Generated tables with a known truth, for demos, tests and benchmarks.

:func:`make_table` draws a classification (or regression) table whose label depends on the
features through a fixed random linear-plus-interaction rule, with numeric and categorical columns.
Values can then be checked against planted label noise (:func:`dvrl_core.inject_label_noise`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_table(
    n_rows: int = 1000, n_features: int = 10, *, n_classes: int = 2, task: str = "classification",
    n_categorical: int = 2, signal: float = 2.0, random_state: int = 0,
) -> pd.DataFrame:
    """A table with ``n_features`` feature columns (``n_categorical`` of them categorical) and a
    target column ``label`` (classification: strings ``class_0``...; regression: floats)."""
    rng = np.random.default_rng(random_state)
    n_numeric = n_features - n_categorical
    numeric = rng.standard_normal((n_rows, n_numeric)).astype(np.float32)
    columns: dict[str, np.ndarray] = {f"x{j}": numeric[:, j] for j in range(n_numeric)}
    effects = rng.standard_normal(n_numeric) / np.sqrt(max(n_numeric, 1))
    score = numeric @ effects if n_numeric else np.zeros(n_rows)
    for j in range(n_categorical):
        levels = np.array([f"c{j}_{k}" for k in range(4)])
        codes = rng.integers(0, 4, n_rows)
        columns[f"cat{j}"] = levels[codes]
        score = score + rng.standard_normal(4)[codes] * 0.5
    if task == "regression":
        target = 10.0 + 3.0 * score + rng.standard_normal(n_rows) * 0.5
        columns["label"] = target
        return pd.DataFrame(columns)
    if n_classes == 2:
        probability = 1.0 / (1.0 + np.exp(-signal * score))
        classes = (rng.random(n_rows) < probability).astype(int)
    else:
        weights = rng.standard_normal((n_numeric, n_classes))
        logits = signal * (numeric @ weights) / np.sqrt(max(n_numeric, 1))
        classes = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    columns["label"] = np.array([f"class_{c}" for c in classes])
    return pd.DataFrame(columns)


def make_shifted_domains(
    n_source: int = 1000, n_valid: int = 200, n_test: int = 1000, *, foreign: float = 0.4,
    n_features: int = 5, random_state: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A domain-adaptation setting with a known truth: ``(source, valid, test, foreign_rows)``.

    The target task labels a row ``yes`` when ``x0`` is positive (with a little noise). The
    validation and test rows come from the target; of the source rows, the fraction ``foreign``
    (their positions: ``foreign_rows``) come from another domain, where ``x2`` is shifted by 2 and
    the label follows ``x1`` instead. A model trained on all source rows uniformly learns a mix of
    the two rules; dropping or down-weighting the foreign rows recovers the target's."""
    rng = np.random.default_rng(random_state)

    def draw(n: int, other: bool) -> pd.DataFrame:
        x = rng.standard_normal((n, n_features))
        if other:
            x[:, 2] += 2.0
        rule = x[:, 1] if other else x[:, 0]
        label = np.where(rule + 0.2 * rng.standard_normal(n) > 0, "yes", "no")
        return pd.DataFrame(x, columns=[f"x{j}" for j in range(n_features)]).assign(label=label)

    n_foreign = int(round(foreign * n_source))
    source = pd.concat([draw(n_source - n_foreign, False), draw(n_foreign, True)],
                       ignore_index=True)
    order = rng.permutation(n_source)
    source = source.iloc[order].reset_index(drop=True)
    foreign_rows = np.sort(np.flatnonzero(order >= n_source - n_foreign))
    return source, draw(n_valid, False), draw(n_test, False), foreign_rows


def make_sites(
    n_train: int = 1000, n_valid: int = 300, *, share: float = 0.4, random_state: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A covariate shift with a known truth: ``(train, valid, at_site_a)``.

    The training rows come from two sites, a (the fraction ``share``; ``at_site_a`` marks them)
    and b, which differ in their features (``x0`` is shifted by 1.5 at site b, and the column
    ``site`` names the site) and in how the target ``sales`` depends on them (``5 + 2 x1 +
    1.5 x2`` at site a, ``5 + 2 x1 - 1.5 x2`` at site b, with a little noise). The validation
    rows come from site a alone: a model fitted to both sites serves site a worse than one
    that weighs site a's rows more (:mod:`dvrl_core.shift`)."""
    rng = np.random.default_rng(random_state)

    def draw(n: int, fraction: float) -> tuple[pd.DataFrame, np.ndarray]:
        at_a = rng.random(n) < fraction
        x = rng.standard_normal((n, 3))
        sales = 5 + 2 * x[:, 1] + np.where(at_a, 1.5, -1.5) * x[:, 2]
        return pd.DataFrame({"x0": x[:, 0] + np.where(at_a, 0.0, 1.5), "x1": x[:, 1],
                             "x2": x[:, 2], "site": np.where(at_a, "a", "b"),
                             "sales": sales + 0.3 * rng.standard_normal(n)}), at_a

    train, at_site_a = draw(n_train, share)
    valid, _ = draw(n_valid, 1.0)
    return train, valid, at_site_a
