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
