"""Speed: iterations per second, ours next to the reference, in one run (Adult protocol, seed 0).

    python bench/speed.py [--iterations 300] [--mlp-iterations 3]

* logistic predictor: our batched loop (defaults: 32 rollouts) vs the reference official loop
  (scikit-learn refit each iteration), both on one thread, then ours on all threads;
* MLP predictor at the paper's settings (100 epochs, mini-batch 256 per fit): our batched loop vs
  a straightforward loop that trains one torch model per iteration.
Figures: outer iterations per second and predictor fits (rollouts) per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dvrl_core.threads import apply_thread_budget, available_cpus, set_thread_env

set_thread_env(available_cpus())  # before torch loads: OpenMP reads its settings then

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--mlp-iterations", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    tune_allocator()
    data, _, _ = adult_protocol(0, args.data)
    cores = apply_thread_budget()  # the CPUs this process may use

    print(f"logistic regression predictor, {args.iterations} iterations, Adult protocol")
    torch.set_num_threads(1)
    with threadpool_limits(1):
        _, reference_rate = reference_dvrl(data, args.iterations, 0)
        ours = DVRL(iterations=args.iterations, device="cpu").fit(data)
    rate = ours.timings["iterations_per_s"]
    rollouts = ours.params["rollouts"]
    print(f"  reference (1 thread): {reference_rate:7.1f} it/s, {reference_rate:7.1f} fits/s")
    print(f"  ours      (1 thread): {rate:7.1f} it/s, {rate * rollouts:7.0f} fits/s "
          f"({rollouts} rollouts) -> {rate / reference_rate:.1f}x iterations/s, "
          f"{rate * rollouts / reference_rate:.0f}x fits/s")
    torch.set_num_threads(cores)
    ours = DVRL(iterations=args.iterations, device="cpu").fit(data)
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
