"""The thread budget: the CPUs a process may use, and every pool limited to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dvrl_core.datasets import make_table
from dvrl_core.threads import CpuLimit, cgroup_cpu_quota

needs_taskset = pytest.mark.skipif(shutil.which("taskset") is None, reason="no taskset")


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)


def test_cgroup_v2_quota_is_the_smallest_on_the_way_up(tmp_path):
    root = tmp_path / "cgroup"
    _write(root, cpu__max="max 100000\n")
    _write(root / "kubepods", cpu__max="300000 100000\n")
    _write(root / "kubepods" / "pod1", cpu__max="150000 100000\n")
    membership = tmp_path / "self"
    membership.write_text("0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(root, membership) == 1.5
    _write(root / "kubepods", cpu__max="50000 100000\n")  # the parent allows half a CPU
    assert cgroup_cpu_quota(root, membership) == 0.5


def test_cgroup_v2_without_a_quota(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "user.slice", cpu__max="max 100000\n")
    membership = tmp_path / "self"
    membership.write_text("0::/user.slice\n")
    assert cgroup_cpu_quota(root, membership) is None
    assert cgroup_cpu_quota(tmp_path / "nothing", membership) is None


def test_cgroup_v1_quota_in_a_container_without_its_own_namespace(tmp_path):
    # /proc/self/cgroup names the host's path; only the mount (the container's cgroup) exists
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct", cpu__cfs_quota_us="200000\n", cpu__cfs_period_us="100000\n")
    _write(root / "memory")
    membership = tmp_path / "self"
    membership.write_text("5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_cpu_quota(root, membership) == 2.0
    _write(root / "cpu,cpuacct", cpu__cfs_quota_us="-1\n")
    assert cgroup_cpu_quota(root, membership) is None


def test_the_smaller_of_affinity_and_quota_wins():
    assert CpuLimit(affinity=8, quota=None).cpus == 8
    assert CpuLimit(affinity=8, quota=1.5).cpus == 2  # a quota of 1.5 keeps 2 threads busy
    assert CpuLimit(affinity=2, quota=4.0).cpus == 2
    assert CpuLimit(affinity=4, quota=0.2).cpus == 1


PROBE = """
import json
from dvrl_core.threads import apply_thread_budget, available_cpus, lightgbm_threads
applied = [apply_thread_budget({first})]
import lightgbm, numpy, threadpoolctl, torch
pools = sorted({{pool["num_threads"] for pool in threadpoolctl.threadpool_info()}})
applied.append(apply_thread_budget({second}))  # again: the inter-op pool keeps its size
print(json.dumps({{"available": available_cpus(), "applied": applied, "pools": pools,
                  "torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                  "lightgbm": lightgbm_threads()}}))
"""


def _probe(first: str, second: str, prefix: tuple[str, ...] = ()) -> dict:
    done = subprocess.run([*prefix, sys.executable, "-c", PROBE.format(first=first,
                                                                        second=second)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@needs_taskset
def test_a_process_pinned_to_one_cpu_runs_everything_on_one_thread():
    seen = _probe("None", "None", ("taskset", "-c", "0"))
    assert seen["available"] == 1
    assert seen["applied"] == [1, 1]
    assert seen["torch"] == 1 and seen["interop"] == 1 and seen["lightgbm"] == 1
    assert seen["pools"] == [1]  # OpenBLAS, both OpenMP runtimes, MKL if loaded


def test_an_explicit_budget_and_a_second_one_later():
    seen = _probe("1", "2")
    assert seen["applied"] == [1, 2]
    assert seen["pools"] == [1]
    assert seen["torch"] == 2 and seen["lightgbm"] == 2
    assert seen["interop"] == 1  # fixed once set: the second call does not fail


def test_lightgbm_models_get_the_budget():
    code = """
import numpy as np, torch
from dvrl_core.threads import apply_thread_budget
apply_thread_budget(1)
from dvrl_core.controls import _model
from dvrl_core.predictors import make_predictor
x = torch.randn(200, 4); y = (x[:, 0] > 0).long()
trainer = make_predictor("lightgbm", "classification", 2).trainer(x, y)
fitted = trainer.fit(torch.ones(1, 200))
print(fitted.boosters[0].get_params()["n_jobs"], _model("lightgbm", "classification", 2, 0)
      .get_params()["n_jobs"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("threads") / "train.csv"
    make_table(300, n_features=4, random_state=1).to_csv(path, index=False)
    return path


def _value(table: Path, *options: str, prefix: tuple[str, ...] = ()):
    return subprocess.run([*prefix, sys.executable, "-m", "dvrl_core.cli", "value", str(table),
                           "--target", "label", "--valid-fraction", "0.3", "--iterations", "5",
                           "--out", str(table.with_suffix(".out.csv")), *options],
                          capture_output=True, text=True, timeout=300)


@needs_taskset
def test_dvrl_value_uses_the_cpus_it_may_use_by_default(table):
    done = _value(table, prefix=("taskset", "-c", "0"))
    assert done.returncode == 0, done.stderr
    assert "on cpu, 1 thread)" in done.stderr


def test_dvrl_value_threads_flag(table):
    done = _value(table, "--threads", "2")
    assert done.returncode == 0, done.stderr
    assert "on cpu, 2 threads)" in done.stderr
    refused = _value(table, "--threads", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: threads must be at least 1, not 0"


def test_a_small_run_gives_the_same_values_on_any_thread_budget():
    """A small linear problem's loop runs on one thread whatever the budget (dvrl.SMALL_LOOP_WORK),
    so the thread count neither slows it down nor changes its values; the budget is restored."""
    import numpy as np
    import torch

    from dvrl_core import DVRL, prepare
    from dvrl_core.datasets import make_table

    data = prepare(make_table(400, n_features=5, random_state=3), "label", valid_fraction=0.3)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(DVRL(iterations=40, tolerance=0, random_state=0).fit(data).values)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_lightgbm_on_small_data_gets_one_thread():
    code = """
from dvrl_core.threads import SMALL_LIGHTGBM_CELLS, apply_thread_budget, lightgbm_threads
apply_thread_budget(2)
print(lightgbm_threads(1000 * 100), lightgbm_threads(SMALL_LIGHTGBM_CELLS), lightgbm_threads())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2", "2"]


def test_lightgbm_calls_on_one_thread_count_run_together_and_another_count_waits():
    import threading

    from dvrl_core.threads import lightgbm_calls

    together = threading.Barrier(2, timeout=10)  # broken unless both are inside at once

    def same_count():
        with lightgbm_calls.holding(1):
            together.wait()

    pair = [threading.Thread(target=same_count) for _ in range(2)]
    for thread in pair:
        thread.start()
    for thread in pair:
        thread.join()
    assert not together.broken

    inside, release, order = threading.Event(), threading.Event(), []

    def first():
        with lightgbm_calls.holding(1):
            inside.set()
            release.wait(10)
            order.append("first ends")

    def other_count():
        inside.wait(10)
        with lightgbm_calls.holding(2):
            order.append("two threads start")

    threads = [threading.Thread(target=first), threading.Thread(target=other_count)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    threads[1].join(0.5)  # it would be inside by now if nothing held it back
    assert order == []
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first ends", "two threads start"]
