"""The DVRL paper's Adult protocol, shared by the benchmarks.

1,000 training rows drawn from adult.data, 400 validation rows from adult.test, the rest of
adult.test as test; 20% of the training labels flipped; validation and test stay clean.
The data is read from ../shared/data/adult (``--data`` to change); it is never copied here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dvrl_core import PreparedData, inject_label_noise, prepare

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_adult(data_dir: Path = DEFAULT_DATA) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = Path(data_dir) / "adult"
    options = dict(header=None, names=COLUMNS, skipinitialspace=True, na_values="?")
    train = pd.read_csv(folder / "adult.data", **options)
    test = pd.read_csv(folder / "adult.test", skiprows=1, **options)
    test["income"] = test["income"].str.rstrip(".")
    return train, test


def adult_protocol(
    seed: int, data_dir: Path = DEFAULT_DATA, n_train: int = 1000, n_valid: int = 400,
    noise: float = 0.2,
) -> tuple[PreparedData, np.ndarray, dict[str, pd.DataFrame]]:
    """Prepared data with flipped training labels, the flipped rows, and the raw tables."""
    full_train, full_test = read_adult(data_dir)
    rng = np.random.default_rng(seed)
    train = full_train.iloc[rng.choice(len(full_train), n_train, replace=False)]
    train = train.reset_index(drop=True)
    order = rng.permutation(len(full_test))
    valid = full_test.iloc[order[:n_valid]].reset_index(drop=True)
    test = full_test.iloc[order[n_valid:]].reset_index(drop=True)
    data = prepare(train, "income", valid, test=test)
    noisy, corrupted = inject_label_noise(data.train.y, noise, data.n_classes, seed)
    raw = {"train": train.assign(income=np.asarray(data.classes)[noisy]), "valid": valid,
           "test": test}
    return data.with_train_labels(noisy), corrupted, raw
