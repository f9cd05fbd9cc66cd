from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from dvrl_core.estimator import ValueEstimator
from dvrl_core.optim import Adam


def _estimator_and_batch(seed: int) -> tuple[ValueEstimator, tuple[torch.Tensor, ...]]:
    torch.manual_seed(seed)
    estimator = ValueEstimator(6, 2, 2, hidden_dim=16, layer_number=3, comb_dim=4)
    x, label, marginal = torch.randn(64, 6), torch.eye(2)[torch.randint(0, 2, (64,))], \
        torch.rand(64, 2)
    return estimator, (x, label, marginal)


def _train(estimator: ValueEstimator, optimiser, batch, steps: int) -> None:
    target = torch.linspace(0.1, 0.9, len(batch[0]))
    for _ in range(steps):
        loss = ((estimator(*batch) - target) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def test_adam_takes_the_steps_torchs_adam_takes():
    ours, batch = _estimator_and_batch(0)
    theirs, _ = _estimator_and_batch(0)
    _train(ours, Adam(ours.parameters(), lr=0.01), batch, 60)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=0.01, foreach=True), batch, 60)
    for mine, reference in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine, reference)  # the same operations in the same order
    moved = next(iter(ours.parameters()))
    assert not torch.equal(moved, next(iter(_estimator_and_batch(0)[0].parameters())))


def test_a_state_saved_by_either_adam_continues_in_the_other():
    ours, batch = _estimator_and_batch(1)
    theirs, _ = _estimator_and_batch(1)
    reference = torch.optim.Adam(theirs.parameters(), lr=0.01, foreach=True)
    _train(theirs, reference, batch, 20)
    ours.load_state_dict(theirs.state_dict())
    optimiser = Adam(ours.parameters(), lr=0.5)  # the state's learning rate wins
    optimiser.load_state_dict(reference.state_dict())
    _train(ours, optimiser, batch, 20)
    _train(theirs, reference, batch, 20)
    for mine, expected in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine, expected)
    # and back: torch's Adam picks up where ours stopped, and takes the steps ours takes
    again = torch.optim.Adam(theirs.parameters(), lr=0.01, foreach=True)
    again.load_state_dict(optimiser.state_dict())
    assert again.state_dict()["state"][0]["step"] == 40
    _train(ours, optimiser, batch, 10)
    _train(theirs, again, batch, 10)
    for mine, expected in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine, expected)


def test_a_parameter_without_a_gradient_keeps_its_own_step_count():
    torch.manual_seed(2)
    pair = [torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)]
    twin = [p.detach().clone().requires_grad_(True) for p in pair]
    ours, theirs = Adam(pair, lr=0.1), torch.optim.Adam(twin, lr=0.1, foreach=True)
    for step in range(6):
        for params, optimiser in ((pair, ours), (twin, theirs)):
            optimiser.zero_grad()
            loss = (params[0] ** 2).sum()
            if step % 2:  # the second parameter takes part every other step only
                loss = loss + (params[1] ** 2).sum()
            loss.backward()
            optimiser.step()
    assert all(torch.equal(a, b) for a, b in zip(pair, twin, strict=True))
    assert [int(s["step"]) for s in ours.state_dict()["state"].values()] == [6, 3]


def test_a_run_never_imports_the_compiler():
    # torch.optim's first step imports torch._dynamo (about 1.7 s of a fresh process)
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import pandas as pd
        from dvrl_core import DVRL, prepare
        rng = np.random.default_rng(0)
        def table(n):
            x = rng.normal(size=(n, 3))
            return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                                 "y": (x[:, 0] + x[:, 1] > 0).astype(int)})
        data = prepare(table(200), "y", table(120))
        DVRL(iterations=20, min_iterations=0, random_state=0).fit(data)
        DVRL(predictor="mlp", iterations=2, inner_iterations=2, random_state=0).fit(data)
        print("torch._dynamo" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
