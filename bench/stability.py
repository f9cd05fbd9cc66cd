"""How steady the values are: rank correlation between runs that differ only in the seed or in the
number of torch threads, on the paper's noisy-label protocol.

    python bench/stability.py [--tables adult magic_gamma] [--seeds 3] [--size 1000]

For each table (one split, drawn with split seed 0), DVRL with its defaults values the training
rows with seeds 0..S-1 on one thread, and with seed 0 on two threads, each in its own process.
Printed: the Spearman rank correlation between the seed runs (mean and lowest pair), between
one and two threads, what each run returned (learned values or the prior, by the trust check),
and found@20 of each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _run(table: str, size: int, seed: int, threads: int) -> dict:
    """One DVRL run in a fresh process with ``threads`` torch threads."""
    code = f"""
import json, os, sys
sys.path.insert(0, {str(HERE)!r})
import torch
torch.set_num_threads({threads})
from tables import protocol
from dvrl_core import DVRL, prepare, found_fraction
split = protocol({table!r}, 0, n_train={size})
data = prepare(split.train, split.target, split.valid, task=split.task)
result = DVRL(random_state={seed}, device="cpu").fit(data)
print(json.dumps({{"values": result.values.tolist(),
                  "returned": result.diagnostics.get("trust", {{}}).get("returned", "dvrl"),
                  "found": found_fraction(result.values, split.corrupted, 0.2)}}))
"""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="+", default=["adult", "magic_gamma", "phoneme"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    print(f"{'table':<14} {'seeds: mean rho':>15} {'lowest':>7} {'1 vs 2 threads':>15}  "
          "returned  found@20 per seed")
    for table in args.tables:
        runs = [_run(table, args.size, seed, 1) for seed in range(args.seeds)]
        two = _run(table, args.size, 0, 2)
        pairs = [_spearman(a["values"], b["values"])
                 for a, b in itertools.combinations(runs, 2)]
        threads = _spearman(runs[0]["values"], two["values"])
        print(f"{table:<14} {np.mean(pairs):>15.3f} {min(pairs):>7.3f} {threads:>15.3f}  "
              + ",".join(r["returned"] for r in runs) + f"/{two['returned']}  "
              + " ".join(f"{r['found']:.3f}" for r in runs) + f" / {two['found']:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
