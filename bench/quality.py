"""Quality on the DVRL paper's Adult protocol: ours, the reference loop and the marginal control;
with ``--suite``, the same protocol on many real tables against every simple control
(bench/suite.py).

    python bench/quality.py --suite --seeds 3        # the suite (see bench/suite.py)
    python bench/quality.py --seeds 5                 # quality, reference beside ours
    python bench/quality.py --seeds 10 --no-reference # stability across seeds
    python bench/quality.py --seeds 1 --removal       # plus removal curves (LightGBM)

Ours runs with the defaults of ``dvrl value`` (only the validation data and the seed given).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dvrl_core.threads import apply_thread_budget, available_cpus, set_thread_env

set_thread_env(available_cpus())  # before torch loads: OpenMP reads its settings then
sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite  # noqa: E402
from adult_protocol import DEFAULT_DATA, adult_protocol  # noqa: E402
from reference import reference_dvrl  # noqa: E402

from dvrl_core import DVRL, detection_auroc, found_fraction, removal_curves  # noqa: E402
from dvrl_core.controls import marginal_control  # noqa: E402
from dvrl_core.runtime import tune_allocator  # noqa: E402


def figures(values: np.ndarray, corrupted: np.ndarray) -> dict[str, float]:
    out = {f"found@{p}": found_fraction(values, corrupted, p / 100) for p in (10, 20, 30)}
    out["auroc"] = detection_auroc(values, corrupted)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=None,
                        help="default: the method's own (DVRL: 2000)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--removal", action="store_true")
    parser.add_argument("--threads", type=int, help="default: the CPUs this process may use")
    parser.add_argument("--suite", action="store_true", help="many tables (bench/suite.py)")
    suite.add_arguments(parser)
    args = parser.parse_args()
    if args.suite:
        suite.run(args)
        return
    args.threads = apply_thread_budget(args.threads)
    tune_allocator()
    rows: dict[str, list[dict[str, float]]] = {"dvrl": [], "marginal": [], "reference": []}
    print(f"Adult protocol, {args.iterations or 2000} iterations, seeds 0..{args.seeds - 1}, "
          f"{args.threads} threads")
    for seed in range(args.seeds):
        data, corrupted, _ = adult_protocol(seed, args.data)
        dvrl = DVRL(iterations=args.iterations or 2000, random_state=seed, device="cpu")
        started = time.perf_counter()
        result = dvrl.fit(data)
        ours_s = time.perf_counter() - started
        control = marginal_control(data, random_state=dvrl.random_state)
        rows["dvrl"].append(figures(result.values, corrupted) | {"s": ours_s})
        rows["marginal"].append(figures(control, corrupted))
        line = (f"seed {seed}: dvrl found@20 {rows['dvrl'][-1]['found@20']:.3f} auroc "
                f"{rows['dvrl'][-1]['auroc']:.3f} ({ours_s:.0f}s, "
                f"{result.timings['iterations_per_s']:.0f} it/s, spearman with marginal "
                f"{result.diagnostics['marginal_spearman']:.2f}) | marginal found@20 "
                f"{rows['marginal'][-1]['found@20']:.3f} auroc {rows['marginal'][-1]['auroc']:.3f}")
        if not args.no_reference:
            started = time.perf_counter()
            values, rate = reference_dvrl(data, args.iterations or 2000, seed)
            rows["reference"].append(figures(values, corrupted) | {"s": time.perf_counter() -
                                                                   started})
            line += (f" | reference found@20 {rows['reference'][-1]['found@20']:.3f} auroc "
                     f"{rows['reference'][-1]['auroc']:.3f} ({rate:.0f} it/s)")
        print(line, flush=True)
        if args.removal and seed == 0:
            curves = removal_curves(data, result.values, random_repeats=5, random_state=seed)
            print(f"removal curves, seed 0, LightGBM, test {curves.attrs['metric']}:")
            print(curves.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\nmean over seeds        found@10 found@20 found@30  auroc  min auroc  runs<0.85")
    for name, results in rows.items():
        if not results:
            continue
        aurocs = [r["auroc"] for r in results]
        means = [np.mean([r[k] for r in results]) for k in ("found@10", "found@20", "found@30")]
        print(f"{name:<22} {means[0]:8.3f} {means[1]:8.3f} {means[2]:8.3f} {np.mean(aurocs):6.3f}"
              f" {min(aurocs):10.3f} {sum(a < 0.85 for a in aurocs):10d}")


if __name__ == "__main__":
    main()
