"""Speed: time to good values and iterations per second, ours next to the reference, in one run
(Adult protocol).

    python bench/speed.py [--seeds 5] [--iterations 300] [--mlp-iterations 3]

* time to values (a budget of one thread: torch, BLAS, OpenMP and the prior's fits; seeds
  0..S-1): the defaults run to their full 2,000 iterations (``tolerance=0``) against the defaults
  as shipped (stopping once the values converge): wall time, iterations used, found@20 and AUROC
  of the flipped labels; and the official loop's time for 2,000 iterations at the rate measured
  below (the reference, one thread). Then the defaults as shipped on the process's whole budget
  (what ``dvrl value`` uses unless given ``--threads``), against the same official loop;
* logistic predictor: our batched loop (defaults: 32 rollouts) vs the reference official loop
  (scikit-learn refit each iteration), both on one thread, then ours on all threads;
* a fresh ``dvrl value`` process on the seed-0 table (one thread): what a user waits for,
  imports included, against the official loop's 2,000 iterations;
* MLP predictor at the paper's settings (100 epochs, mini-batch 256 per fit): our batched loop vs
  a straightforward loop that trains one torch model per iteration.
Figures: outer iterations per second and predictor fits (rollouts) per second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dvrl_core.threads import apply_thread_budget, available_cpus, set_thread_env

set_thread_env(available_cpus())  # before torch loads: OpenMP reads its settings then

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adult_protocol import DEFAULT_DATA, adult_protocol  # noqa: E402
from reference import reference_dvrl  # noqa: E402

from dvrl_core import DVRL  # noqa: E402
from dvrl_core.estimator import ValueEstimator, dvrl_loss  # noqa: E402
from dvrl_core.runtime import tune_allocator  # noqa: E402


def straightforward_mlp_loop(data, iterations: int, epochs: int = 100, batch: int = 256) -> float:
    """One nn.Sequential MLP per iteration, re-initialised from saved weights: iterations/s."""
    torch.manual_seed(0)
    x, y = torch.tensor(data.train.x), torch.tensor(data.train.y)
    marginal = torch.tensor(DVRL(prior="validation").marginal(data))
    label = torch.eye(2)[y]
    estimator = ValueEstimator(x.shape[1], 2, 2)
    optimiser = torch.optim.Adam(estimator.parameters(), lr=0.01)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 100), torch.nn.ReLU(),
                                torch.nn.Linear(100, 100), torch.nn.ReLU(),
                                torch.nn.Linear(100, 2))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    x_valid, y_valid = torch.tensor(data.valid.x), torch.tensor(data.valid.y)
    started = time.perf_counter()
    for _ in range(iterations):
        probability = estimator(x, label, marginal)
        selection = torch.bernoulli(probability.detach())
        model.load_state_dict(initial)
        inner = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            order = torch.randperm(len(y))
            for start in range(0, len(y), batch):
                rows = order[start:start + batch]
                loss = (torch.nn.functional.cross_entropy(model(x[rows]), y[rows],
                                                          reduction="none")
                        * selection[rows]).sum() / len(rows)
                inner.zero_grad()
                loss.backward()
                inner.step()
        with torch.no_grad():
            accuracy = (model(x_valid).argmax(1) == y_valid).float().mean()
        loss = dvrl_loss(probability, selection[None], (accuracy - 0.5)[None])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return iterations / (time.perf_counter() - started)


def time_to_values(data_dir: Path, seeds: int, reference_rate: float, cores: int) -> None:
    """The defaults to full length against the defaults with convergence stopping, on one
    thread; then the defaults on ``cores`` threads. Leaves the budget at one thread."""
    from dvrl_core import detection_auroc, found_fraction

    print(f"\ntime to values, Adult protocol, seeds 0-{seeds - 1}; 1 thread, then {cores}")
    print("  seed   full: s  its  found@20  AUROC | converged: s  its  found@20  AUROC | "
          f"{cores} threads: s  its  found@20")
    rows = []
    for seed in range(seeds):
        data, corrupted, _ = adult_protocol(seed, data_dir)
        row = []
        for tolerance, threads in ((0.0, 1), (None, 1), (None, cores)):  # None: the default
            options = {} if tolerance is None else {"tolerance": tolerance}
            apply_thread_budget(threads)
            started = time.perf_counter()
            result = DVRL(random_state=seed, device="cpu", **options).fit(data)
            row.append((time.perf_counter() - started,
                        result.diagnostics["convergence"]["iterations_used"],
                        found_fraction(result.values, corrupted, 0.2),
                        detection_auroc(result.values, corrupted)))
        apply_thread_budget(1)
        rows.append(row)
        (fs, fi, ff, fa), (cs, ci, cf, ca), (bs, bi, bf, _) = row
        print(f"  {seed:4d} {fs:9.1f} {fi:4d} {ff:9.3f} {fa:6.3f} | {cs:12.1f} {ci:4d} "
              f"{cf:9.3f} {ca:6.3f} | {bs:10.1f} {bi:4d} {bf:9.3f}", flush=True)
    full, converged, budget = (np.mean([r[i] for r in rows], axis=0) for i in (0, 1, 2))
    official = 2000 / reference_rate
    print(f"  mean {full[0]:9.1f} {full[1]:4.0f} {full[2]:9.3f} {full[3]:6.3f} | "
          f"{converged[0]:12.1f} {converged[1]:4.0f} {converged[2]:9.3f} {converged[3]:6.3f} | "
          f"{budget[0]:10.1f} {budget[1]:4.0f} {budget[2]:9.3f}")
    print(f"  converged / full (1 thread): time {converged[0] / full[0]:.3f}x, found@20 "
          f"{converged[2] - full[2]:+.3f}, AUROC {converged[3] - full[3]:+.3f}")
    print(f"  official loop, 2,000 iterations at {reference_rate:.1f} it/s (1 thread): "
          f"{official:.1f} s; converged / official {converged[0] / official:.3f}x, full / "
          f"official {full[0] / official:.2f}x; converged on {cores} threads / official "
          f"{budget[0] / official:.3f}x")


def fresh_process(data_dir: Path, reference_rate: float) -> None:
    """``dvrl value`` in a new process, as a user runs it: wall time, imports included."""
    _, _, raw = adult_protocol(0, data_dir)
    with tempfile.TemporaryDirectory() as folder:
        train, valid, out = (Path(folder) / name for name in ("train.csv", "valid.csv",
                                                                "values.csv"))
        raw["train"].to_csv(train, index=False)
        raw["valid"].to_csv(valid, index=False)
        command = [sys.executable, "-m", "dvrl_core.cli", "value", str(train), "--target",
                   "income", "--valid", str(valid), "--threads", "1", "--seed", "0",
                   "--out", str(out)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"dvrl value failed:\n{done.stderr}")
        imports = [sys.executable, "-c", "import dvrl_core.cli, dvrl_core.dvrl, "
                   "dvrl_core.prior, sklearn.linear_model, lightgbm"]
        started = time.perf_counter()
        subprocess.run(imports, check=True)
        imported = time.perf_counter() - started
    official = 2000 / reference_rate
    print(f"\nfresh `dvrl value` process, Adult protocol seed 0, one thread: {wall:.1f} s "
          f"(of which starting Python and the imports {imported:.1f} s); "
          f"{wall / official:.2f}x the official loop's {official:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the time-to-values "
                        "section (0 skips it)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--mlp-iterations", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    tune_allocator()
    data, _, _ = adult_protocol(0, args.data)
    cores = apply_thread_budget()  # the CPUs this process may use

    print(f"logistic regression predictor, {args.iterations} iterations, Adult protocol")
    apply_thread_budget(1)  # torch, BLAS, OpenMP, the prior's fits: one thread
    with threadpool_limits(1):
        _, reference_rate = reference_dvrl(data, args.iterations, 0)
        ours = DVRL(iterations=args.iterations, tolerance=0, device="cpu").fit(data)
    rate = ours.timings["iterations_per_s"]
    rollouts = ours.params["rollouts"]
    print(f"  reference (1 thread): {reference_rate:7.1f} it/s, {reference_rate:7.1f} fits/s")
    print(f"  ours      (1 thread): {rate:7.1f} it/s, {rate * rollouts:7.0f} fits/s "
          f"({rollouts} rollouts) -> {rate / reference_rate:.1f}x iterations/s, "
          f"{rate * rollouts / reference_rate:.0f}x fits/s")
    if args.seeds > 0:
        time_to_values(args.data, args.seeds, reference_rate, cores)
    fresh_process(args.data, reference_rate)
    apply_thread_budget(cores)
    ours = DVRL(iterations=args.iterations, tolerance=0, device="cpu").fit(data)
    rate = ours.timings["iterations_per_s"]
    print(f"  ours      ({cores} threads): {rate:6.1f} it/s, {rate * rollouts:7.0f} fits/s "
          f"-> {rate / reference_rate:.1f}x iterations/s")

    print(f"\nMLP predictor (100 epochs, batch 256), {args.mlp_iterations} iterations, "
          f"{cores} threads")
    plain_rate = straightforward_mlp_loop(data, args.mlp_iterations)
    print(f"  straightforward loop: {plain_rate:.3f} it/s, {plain_rate:.3f} fits/s")
    for r in (1, 8):
        result = DVRL(predictor="mlp", iterations=args.mlp_iterations, rollouts=r,
                      device="cpu").fit(data)
        rate = result.timings["iterations_per_s"]
        print(f"  ours, {r} rollouts: {rate:.3f} it/s, {rate * r:.3f} fits/s -> "
              f"{rate / plain_rate:.1f}x iterations/s, {rate * r / plain_rate:.1f}x fits/s")


if __name__ == "__main__":
    main()
