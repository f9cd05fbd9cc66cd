"""Scale: ``dvrl value`` end to end on generated tables of 10k, 100k and 1M rows x 100 columns.

    python bench/scale.py [--rows 10000 100000 1000000] [--iterations 2000]

Each size is a generated CSV (written to a temporary folder, removed after); ``dvrl value`` runs
as a child process with its defaults, ``--valid-fraction 0.1``; printed: CSV size, wall time, peak
resident memory of the child, and time per row relative to the smallest table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def generate(path: Path, rows: int, columns: int = 100, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    chunk = 200_000
    weights = rng.standard_normal(columns) / np.sqrt(columns)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        x = rng.standard_normal((n, columns)).astype(np.float32)
        label = (x @ weights + rng.logistic(size=n) * 0.5 > 0).astype(int)
        frame = pd.DataFrame(np.round(x, 4), columns=[f"x{j}" for j in range(columns)])
        frame["label"] = label
        frame.to_csv(path, mode="a" if start else "w", header=start == 0, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    print(f"dvrl value, {args.iterations} iterations, 100 feature columns")
    print("      rows   csv MB   wall s   peak RSS MB   us/row")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            table = Path(folder) / "train.csv"
            generate(table, rows)
            size = table.stat().st_size / 1e6
            command = [sys.executable, "-m", "dvrl_core.cli", "value", str(table), "--target",
                       "label", "--valid-fraction", "0.1", "--iterations",
                       str(args.iterations), "--out", str(Path(folder) / "values.parquet"),
                       "--quiet"]
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:  # a child per size, so that ru_maxrss is this run's peak alone
                os.execv(sys.executable, command)
            _, status, usage = os.wait4(pid, 0)
            wall = time.perf_counter() - started
            if os.waitstatus_to_exitcode(status) != 0:
                print(f"{rows:>10}  failed with status {status}")
                continue
            peak_mb = usage.ru_maxrss / 1024
            print(f"{rows:>10} {size:8.0f} {wall:8.1f} {peak_mb:13.0f} {wall / rows * 1e6:8.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
