"""Concurrency: K valuation jobs at once on a machine of C CPUs, with the thread budget and without.

    python bench/concurrency.py [--iterations 1000] [--data ../shared/data] [--no-defaults]
                                [--only batches|beside]

Each job is a separate process doing what ``dvrl value`` does (DVRL with its defaults on the
Adult protocol of bench/adult_protocol.py: 1,000 training rows, 400 validation rows; a generated
table of the same shape if the data is missing). C is this process's budget (its affinity and
cgroup CPU quota, dvrl_core.threads). The K processes load and prepare their data, then start
valuing at the same moment; each reports the seconds its valuation took. Two modes:

* budget: every job gets ``--threads max(1, C // K)`` (what ``dvrl worker --concurrency K``
  gives each slot), OpenMP threads waiting passively;
* torch defaults: nothing applied (the old behaviour): every job uses torch's and OpenMP's
  defaults, C threads that spin while they wait.

Printed for K in {1, C, 2C}: each job's seconds, each against the mode's job alone (K = 1; target
at K = C: <= 1.3), and throughput in jobs per minute (target at K = 2C: >= 0.8 of K = C's); with
the budget, also one job alone on a K = C slot's threads, against which the K = C jobs show what
they cost each other (a job alone on all C threads uses more than one slot's). Then
one job beside a busy one (a second job running throughout), three ways: both on torch defaults,
both on the default budget (C threads each: two ``dvrl value`` runs started without
``--threads``), and both on half the budget. The load average is printed with each figure: other
processes on the machine make them noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dvrl_core.threads import THREAD_ENV, apply_thread_budget, cpu_limit  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _job(args: argparse.Namespace) -> None:
    """One job, in its own process: prepare, say ``ready``, value on ``go``, print figures."""
    if not args.torch_defaults:
        apply_thread_budget(args.threads)  # before torch and LightGBM load
    if (args.data / "adult").is_dir():
        from adult_protocol import adult_protocol

        data = adult_protocol(0, args.data)[0]
    else:
        from dvrl_core import prepare
        from dvrl_core.datasets import make_table

        table = make_table(1400, n_features=14, random_state=0)
        data = prepare(table.iloc[:1000], "label", table.iloc[1000:])
    import torch

    from dvrl_core import DVRL

    dvrl = DVRL(iterations=args.iterations, random_state=0, device="cpu")
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    result = dvrl.fit(data)
    print(json.dumps({"seconds": time.perf_counter() - started,
                      "iterations_per_s": result.timings["iterations_per_s"],
                      "threads": torch.get_num_threads()}), flush=True)


def _start(threads: int | None, iterations: int, data: Path) -> subprocess.Popen:
    """A job process; ``threads`` None: torch's defaults, with no thread variables inherited."""
    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_ENV, "OMP_WAIT_POLICY")}
    command = [sys.executable, __file__, "--job", "--iterations", str(iterations),
               "--data", str(data)]
    command += ["--torch-defaults"] if threads is None else ["--threads", str(threads)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise SystemExit(f"a job failed to start (said {line!r})")
    return process


def _go(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def _results(processes: list[subprocess.Popen]) -> list[dict]:
    out = []
    for process in processes:
        assert process.stdout is not None
        out.append(json.loads(process.stdout.readline()))
        process.wait()
    return out


def batch(count: int, threads: int | None, iterations: int, data: Path) -> list[dict]:
    """``count`` jobs valuing at the same moment; their figures."""
    processes = [_start(threads, iterations, data) for _ in range(count)]
    _go(processes)
    return _results(processes)


def beside_busy(threads: int | None, iterations: int, data: Path) -> dict:
    """One job while another (of the same threads) runs from before it starts until after."""
    busy = _start(threads, iterations * 50, data)
    _go([busy])
    time.sleep(2.0)  # the busy job is valuing
    try:
        return batch(1, threads, iterations, data)[0]
    finally:
        busy.kill()
        busy.wait()


def _load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000,
                        help="DVRL iterations per job (1000: about 10-20 s alone)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-defaults", action="store_true",
                        help="skip the torch-defaults mode (slow: minutes on a busy machine)")
    parser.add_argument("--only", choices=("batches", "beside"), help="one part only")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--torch-defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        _job(args)
        return

    limit = cpu_limit()
    c = limit.cpus
    table = "Adult protocol" if (args.data / "adult").is_dir() else "generated table"
    print(f"concurrency: {table} (1,000 training rows, 400 validation), {args.iterations} "
          f"iterations per job; C = {limit.describe()}; {_load()}")
    if args.only != "beside":
        batches(c, args)
    if args.only != "batches":
        beside(c, args)


def batches(c: int, args: argparse.Namespace) -> None:
    modes: list[tuple[str, bool]] = [("budget", True)]
    if not args.no_defaults:
        modes.append(("torch defaults", False))
    summary = {}
    print(f"{'mode':<15}{'K':>3}{'threads':>9}  {'seconds per job':<28}{'vs alone':<22}"
          f"{'jobs/min':>9}")
    for mode, budgeted in modes:
        alone = 0.0
        rates = {}
        for k in sorted({1, c, 2 * c}):
            threads = max(1, c // k) if budgeted else None
            figures = batch(k, threads, args.iterations, args.data)
            seconds = [f["seconds"] for f in figures]
            if k == 1:
                alone = seconds[0]
            ratios = [s / alone for s in seconds]
            rates[k] = k / max(seconds) * 60
            if k == c:
                summary[mode] = {"ratio": max(ratios), "slowest": max(seconds)}
            shown = figures[0]["threads"]
            print(f"{mode:<15}{k:>3}{shown:>9}  {' '.join(f'{s:.1f}' for s in seconds):<28}"
                  f"{' '.join(f'{r:.2f}' for r in ratios):<22}{rates[k]:>9.1f}   {_load()}",
                  flush=True)
        summary[mode]["throughput"] = rates[2 * c] / rates[c]
        if budgeted and c > 1:  # the K = C jobs' own threads, alone: what they cost each other
            slot = batch(1, 1, args.iterations, args.data)[0]  # a K = C slot: C // C threads
            summary[mode]["same threads"] = summary[mode]["slowest"] / slot["seconds"]
            print(f"{mode:<15}{1:>3}{slot['threads']:>9}  {slot['seconds']:<28.1f}"
                  f"{'(alone on a K = C slot)':<22}{'':>9}   {_load()}", flush=True)
    for mode, s in summary.items():
        print(f"{mode}: slowest job at K = C against alone {s['ratio']:.2f} (target <= 1.3); "
              f"throughput at K = 2C against K = C {s['throughput']:.2f} (target >= 0.8)")
        if "same threads" in s:
            print(f"{mode}: slowest job at K = C against one job alone on the same threads "
                  f"{s['same threads']:.2f} (what the jobs cost each other; the rest of the "
                  "ratio above is the job alone using more than its slot's threads)")


def beside(c: int, args: argparse.Namespace) -> None:
    half = max(1, c // 2)
    alone = batch(1, c, args.iterations, args.data)[0]
    print(f"\none job beside a busy job (both with the same threads); alone with the budget: "
          f"{alone['seconds']:.1f} s ({alone['iterations_per_s']:.0f} iterations/s)   {_load()}")
    cases = [(f"default budget ({c} threads each)", c), (f"half the budget ({half} each)", half)]
    if not args.no_defaults:
        cases.insert(0, ("torch defaults", None))
    for label, threads in cases:
        figure = beside_busy(threads, args.iterations, args.data)
        print(f"  {label:<32} {figure['seconds']:6.1f} s ({figure['iterations_per_s']:.0f} "
              f"iterations/s), {figure['seconds'] / alone['seconds']:.2f}x alone   {_load()}",
              flush=True)


if __name__ == "__main__":
    main()
