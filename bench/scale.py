"""Scale: ``dvrl value`` end to end on generated tables of 100k, 1M and 10M rows x 100 columns.

    python bench/scale.py [--rows 100000 1000000 10000000] [--iterations 2000] [--data DIR]

Each size is a generated CSV (in ``--data``, kept and reused; default: a temporary folder,
removed after) with a separate validation table of 10,000 rows from the same distribution, as a
user with a small clean sample of the target task would give it. ``dvrl value`` runs as a child
process with its defaults; training tables over 256 MB are read in two streaming passes into a
memory-mapped float32 matrix (:mod:`dvrl_core.stream`). Printed per size: CSV size, wall time,
peak resident memory of the child (the mapped matrix counts once it is touched), that peak
less the encoded matrix (rows x 100 x 4 bytes: what a constant-memory design keeps flat), and
time and memory per row.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COLUMNS = 100


def generate(path: Path, rows: int, seed: int) -> None:
    """A CSV of ``rows`` rows: 100 standard normal features (3 decimals) and a binary label from a
    fixed linear rule with logistic noise; written 200,000 rows at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(12345).standard_normal(COLUMNS) / np.sqrt(COLUMNS)
    names = [f"x{j}" for j in range(COLUMNS)] + ["label"]
    writer = None
    partial = path.with_suffix(".part")
    for start in range(0, rows, 200_000):
        n = min(200_000, rows - start)
        x = np.round(rng.standard_normal((n, COLUMNS)), 3).astype(np.float32)
        label = (x @ weights + rng.logistic(size=n) * 0.5 > 0).astype(np.int8)
        table = pa.table([pa.array(x[:, j]) for j in range(COLUMNS)] + [pa.array(label)],
                         names=names)
        if writer is None:
            writer = pacsv.CSVWriter(partial, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    partial.rename(path)  # a table is either whole or absent, even after an interrupted run


def run(folder: Path, rows: int, iterations: int) -> None:
    table, valid = folder / f"train-{rows}.csv", folder / "valid-10000.csv"
    if not valid.exists():
        generate(valid, 10_000, seed=99)
    if not table.exists():
        generate(table, rows, seed=0)
    size = table.stat().st_size / 1e6
    out = folder / f"values-{rows}.parquet"
    command = [sys.executable, "-m", "dvrl_core.cli", "value", str(table), "--target", "label",
               "--valid", str(valid), "--iterations", str(iterations), "--out", str(out),
               "--quiet"]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # a child per size, so that ru_maxrss is this run's peak alone
        os.execv(sys.executable, command)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    out.unlink(missing_ok=True)
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"{rows:>10}  failed with status {status}", flush=True)
        return
    peak_mb = usage.ru_maxrss / 1024
    matrix_mb = rows * COLUMNS * 4 / 2**20
    print(f"{rows:>10} {size:8.0f} {wall:8.1f} {peak_mb:10.0f} {peak_mb - matrix_mb:12.0f} "
          f"{wall / rows * 1e6:8.1f} {peak_mb * 2**20 / rows:9.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--data", type=Path, help="folder for the generated tables (kept)")
    args = parser.parse_args()
    print(f"dvrl value, at most {args.iterations} iterations, {COLUMNS} feature columns, "
          "10,000 validation rows")
    print("      rows   csv MB   wall s  peak MB  peak-matrix   us/row  bytes/row")
    if args.data:
        args.data.mkdir(parents=True, exist_ok=True)
        for rows in args.rows:
            run(args.data, rows, args.iterations)
    else:
        with tempfile.TemporaryDirectory() as folder:
            for rows in args.rows:
                run(Path(folder), rows, args.iterations)


if __name__ == "__main__":
    main()
