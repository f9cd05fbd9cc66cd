"""How many flipped labels a model of p(y | x) can find, given how many clean rows it learns from.

    python bench/ceiling.py [--tables adult] [--seeds 5] [--clean 1200 5000 20000]

On the suite's protocol (1,000 training rows, 400 clean validation rows, 20% of the training
labels moved to another class), an oracle that knows which training labels were moved scores
every training row by a model's probability of its given label, and the script prints found@20
(flipped rows among the lowest-scored 20%) for:

* ``protocol``: the model learns from every clean row the protocol holds: the 400 validation rows
  and the training rows whose label was not moved (those are cross-fitted, 5 folds, so no row is
  scored by a model that saw it). A valuation method sees the same rows without knowing which
  labels are clean: this is what one model would reach if it did (a pool of models, as DVRL's
  prior, can pass it where the models' strengths differ).
* ``N clean``: the model learns from N other clean rows of the table (not in the split's training
  or validation rows): how the bound grows with clean data.

Models: LightGBM (the controls' settings), a logistic regression and the 25 nearest neighbours,
both on standardised features; the ``best`` column is the best of the three on each seed. Set
beside a method's found@20 on the same splits (``bench/quality.py --suite``), it says how far the
method is from what its data allows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dvrl_core.threads import available_cpus, set_thread_env

set_thread_env(available_cpus())
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import DEFAULT_DATA, protocol  # noqa: E402

from dvrl_core import found_fraction, prepare  # noqa: E402
from dvrl_core.data import standardiser  # noqa: E402
from dvrl_core.threads import lightgbm_threads  # noqa: E402

FOLDS = 5
MODELS = ("lightgbm", "logistic", "neighbours")


def _fit(kind: str, x: np.ndarray, y: np.ndarray, seed: int, n_classes: int):
    """A model of p(y | x) fitted on (x, y): a function from rows to [rows, n_classes]."""
    if kind == "neighbours":
        from sklearn.neighbors import KNeighborsClassifier

        scale = standardiser(x)
        knn = KNeighborsClassifier(n_neighbors=25).fit(scale(x), y)
        return lambda rows: _probabilities(knn, scale(rows), n_classes)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        scale = standardiser(x)
        model = LogisticRegression(C=1.0, max_iter=3000).fit(scale(x), y)
        return lambda rows: _probabilities(model, scale(rows), n_classes)
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.1, num_leaves=15,
                               random_state=seed, deterministic=True,
                               n_jobs=lightgbm_threads(), verbose=-1).fit(x, y)
    return lambda rows: _probabilities(model, rows, n_classes)


def _probabilities(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(x), n_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def _given(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    return probabilities[np.arange(len(y)), y]


def protocol_bound(kind: str, x: np.ndarray, y: np.ndarray, flipped: np.ndarray,
                   valid_x: np.ndarray, valid_y: np.ndarray, seed: int,
                   n_classes: int) -> np.ndarray:
    """Each training row's probability of its given label under a model of every clean row of
    the split that is not that row (the clean training rows cross-fitted)."""
    clean = np.flatnonzero(~flipped)
    folds = np.random.default_rng(seed).permutation(len(clean)) % FOLDS
    scores = np.zeros(len(y))
    for fold in range(FOLDS):
        held = clean[folds == fold]
        rest = clean[folds != fold]
        predict = _fit(kind, np.vstack([x[rest], valid_x]), np.concatenate([y[rest], valid_y]),
                       seed, n_classes)
        scores[held] = _given(predict(x[held]), y[held])
        if fold == 0:  # the flipped rows: any model of clean rows only
            predict_all = _fit(kind, np.vstack([x[clean], valid_x]),
                               np.concatenate([y[clean], valid_y]), seed, n_classes)
            scores[flipped] = _given(predict_all(x[flipped]), y[flipped])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["adult"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1000, help="training rows of the protocol")
    parser.add_argument("--clean", nargs="+", type=int, default=[1200, 5000, 20000],
                        help="sizes of the other clean rows' training sets")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    for table in args.tables:
        rows: dict[str, dict[str, list[float]]] = {}
        for seed in range(args.seeds):
            split = protocol(table, seed, n_train=args.size, data_dir=args.data, n_test=None)
            data = prepare(split.train, split.target, split.valid, test=split.test,
                           task=split.task)
            if data.task != "classification":
                raise SystemExit(f"{table}: the oracle bound is for classification tables")
            x, y = data.train.x, data.train.y
            flipped = np.zeros(len(y), dtype=bool)
            flipped[split.corrupted] = True
            assert data.test is not None
            extra_order = np.random.default_rng(seed + 1).permutation(len(data.test.y))
            for kind in MODELS:
                scores = {f"protocol ({args.size + 400:,} rows)": protocol_bound(
                    kind, x, y, flipped, data.valid.x, data.valid.y, seed, data.n_classes)}
                for n in args.clean:
                    if n > len(extra_order):
                        continue
                    take = extra_order[:n]
                    predict = _fit(kind, data.test.x[take], data.test.y[take], seed,
                                   data.n_classes)
                    scores[f"{n:,} clean rows"] = _given(predict(x), y)
                for name, values in scores.items():
                    rows.setdefault(name, {}).setdefault(kind, []).append(
                        found_fraction(values, split.corrupted, 0.2))
        print(f"\n{table}, {args.size:,} training rows: found@20 of an oracle's model, mean "
              f"over seeds 0-{args.seeds - 1}")
        print(f"{'trained on':<24}" + "".join(f"{k:>12}" for k in (*MODELS, "best")))
        for name, by_kind in rows.items():
            best = np.max([by_kind[k] for k in MODELS], axis=0)
            print(f"{name:<24}" + "".join(f"{np.mean(by_kind[k]):>12.3f}" for k in MODELS)
                  + f"{np.mean(best):>12.3f}")


if __name__ == "__main__":
    main()
