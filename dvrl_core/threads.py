"""A thread budget per process: how many CPUs it may use, applied to every thread pool in it.

Two torch processes with default threads on two cores ran five times slower each (measured);
with one thread each, no slower than alone. Every library here sizes its pool by itself: torch
(intra-op and inter-op pools), the OpenMP runtimes (torch's own copy, the system's one that
LightGBM loads, scikit-learn's), MKL and OpenBLAS. Each counts the machine's cores, not the CPUs
this process may use, and none of them knows about the others or about other processes. So every
entry point (``dvrl value``, ``dvrl worker``, the embedded worker, the benchmarks) calls
:func:`apply_thread_budget` once, early, and LightGBM models take :func:`lightgbm_threads`.

The CPUs a process may use (:func:`cpu_limit`) are the smaller of its affinity mask
(``taskset``, ``docker --cpuset-cpus``) and its cgroup CPU quota (``docker --cpus``,
Kubernetes CPU limits): cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
the smallest on the way from the process's cgroup up to the root.

Environment variables are read by OpenMP and OpenBLAS when they load, so
:func:`set_thread_env` runs before torch, numpy or LightGBM are imported where the entry point
allows; whatever loaded earlier is limited through torch's own calls and threadpoolctl. OpenMP
threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, unless set already): spinning threads take
the CPU from any other process on the machine (measured on 2 busy cores, 2 threads: 4-8
iterations/s spinning, 30-33 passive; 1 thread 50-61).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUPS = Path("/proc/self/cgroup")
# read by OpenMP, MKL, OpenBLAS (numpy, scipy), Apple Accelerate and numexpr when they load
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_budget: int | None = None  # what apply_thread_budget last applied in this process
_interop: int | None = None  # torch's inter-op pool: settable once per process


@dataclass(frozen=True)
class CpuLimit:
    """The CPUs this process may run on (affinity) and the cgroup quota in CPUs, if any."""

    affinity: int
    quota: float | None

    @property
    def cpus(self) -> int:
        """Threads worth running: the affinity, capped by the quota rounded up (a quota of 1.5
        CPUs keeps two threads busy three quarters of the time)."""
        if self.quota is None:
            return self.affinity
        return max(1, min(self.affinity, math.ceil(self.quota)))

    def describe(self) -> str:
        quota = "no cgroup CPU quota" if self.quota is None else \
            f"cgroup quota {self.quota:g} CPUs"
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}: affinity {self.affinity}, {quota}"


def _v2_quota(folder: Path) -> float | None:
    """``cpu.max`` holds ``"$MAX $PERIOD"``; ``max`` means no quota."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period) if int(period) > 0 else None
    except ValueError:
        return None


def _v1_quota(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 without a quota."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _upwards(mount: Path, cgroup: str) -> list[Path]:
    """The cgroup's folder under ``mount`` and each parent up to ``mount``, those that exist
    (inside a container without its own cgroup namespace, the path names the host's tree and
    only the mount itself, the container's cgroup, exists)."""
    folder = mount / cgroup.strip("/")
    folders = [folder, *folder.parents]
    return [f for f in folders[: folders.index(mount) + 1] if f.is_dir()] \
        if mount in folders else []


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, membership: Path = OWN_CGROUPS) -> float | None:
    """The CPU time the process's cgroups allow, in CPUs (``1.5``: 150 ms per 100 ms), or None
    when no quota applies. ``membership`` is ``/proc/self/cgroup`` (lines
    ``ID:CONTROLLERS:PATH``; v2 is ``0::PATH``); ``root`` is where the hierarchies are mounted."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:  # not Linux, or no /proc: a container's own files at the root, if any
        lines = ["0::/", "1:cpu:/"]
    quotas: list[float | None] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, cgroup = parts
        if hierarchy == "0" and controllers == "":
            quotas += [_v2_quota(folder) for folder in _upwards(root, cgroup)]
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += [_v1_quota(folder) for folder in _upwards(mount, cgroup)]
                    break
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def cpu_limit() -> CpuLimit:
    """The CPUs this process may use now: its affinity mask and its cgroup quota."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 1
    return CpuLimit(affinity, cgroup_cpu_quota())


def available_cpus() -> int:
    """Threads this process can keep busy: the smaller of its affinity and its cgroup quota."""
    return cpu_limit().cpus


def set_thread_env(threads: int) -> None:
    """Tell OpenMP, MKL and OpenBLAS (and child processes) to use ``threads`` threads; takes
    effect for the libraries that load after it. OpenMP threads wait passively unless
    ``OMP_WAIT_POLICY`` says otherwise."""
    for name in THREAD_ENV:
        if os.environ.get(name) != str(threads):
            os.environ[name] = str(threads)
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def apply_thread_budget(threads: int | None = None) -> int:
    """Limit every thread pool of this process to ``threads`` (default: :func:`available_cpus`)
    and return the number applied. Safe to call again (the inter-op pool keeps its first size:
    torch fixes it once parallel work has started)."""
    global _budget, _interop
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, not {threads}")
    budget = available_cpus() if threads is None else threads
    set_thread_env(budget)
    import torch

    torch.set_num_threads(budget)
    if _interop is None:
        try:
            torch.set_num_interop_threads(budget)
            _interop = budget
        except RuntimeError:  # set before, or inter-op work already ran: fixed from then on
            _interop = torch.get_num_interop_threads()
            log.debug("torch's inter-op pool keeps %d threads", _interop)
    _limit_loaded_pools(budget)
    _budget = budget
    return budget


def _limit_loaded_pools(threads: int) -> None:
    """OpenBLAS, MKL and the OpenMP runtimes already loaded (numpy's OpenBLAS loads with numpy,
    before any entry point can set the environment)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of scikit-learn, always there
        return
    with warnings.catch_warnings():  # e.g. "two OpenMP runtimes loaded": known, and harmless
        warnings.simplefilter("ignore")
        threadpool_limits(limits=threads)


def thread_budget() -> int:
    """The budget applied in this process, or :func:`available_cpus` when none was."""
    return _budget if _budget is not None else available_cpus()


# LightGBM on fewer cells than this (rows x columns) runs on one thread: on 2 cores, the pooled
# prior's 22 fits on Adult-sized data (at most 1,050 rows x 100 columns) took 3.4 s on two
# threads, whose pool waits passively between parallel regions, and 0.3 s on one
SMALL_LIGHTGBM_CELLS = 1_000_000


def lightgbm_threads(cells: int | None = None) -> int:
    """``num_threads`` for a LightGBM model fitted on ``cells`` values (rows x columns): the
    process's budget (LightGBM's default is every core of the machine), or one thread for
    small data."""
    if cells is not None and cells < SMALL_LIGHTGBM_CELLS:
        return 1
    return thread_budget()


class _SameThreadCount:
    """LightGBM keeps the thread count of its latest call in one variable for the whole process
    (each call sets it from its ``num_threads``; none given means every core) and sizes buffers
    by it, one per thread: a call that starts while another runs on a different count can make
    the running one index past its buffers. Calls through :meth:`holding` on the same count run
    together; a call on another count waits until they have ended. Used where LightGBM runs on
    several threads of a process at once: the prior's fits, and the LightGBM predictor (whose
    fits run in the loop while the prior is fitted beside it). (A CI run crashed so: the
    prior predicted without a count while another of its models trained on one thread.)"""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._running = 0

    @contextmanager
    def holding(self, threads: int) -> Iterator[None]:
        """Run the LightGBM calls inside, which pass ``threads`` as their
        ``num_threads``/``n_jobs``. Never nest a different count inside."""
        with self._changed:
            self._changed.wait_for(lambda: self._running == 0 or self._count == threads)
            self._count = threads
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                if self._running == 0:
                    self._changed.notify_all()


lightgbm_calls = _SameThreadCount()


def threads_in_use() -> int:
    """Threads torch's operations run on in this process (what a job reports)."""
    if "torch" not in sys.modules:
        return thread_budget()
    import torch

    return int(torch.get_num_threads())


def split_budget(slots: int, per_slot: int | None = None) -> int:
    """Threads for each of ``slots`` processes on this machine: ``per_slot`` when given, else the
    budget divided between them, at least one each."""
    if slots < 1:
        raise ConfigError(f"concurrency must be at least 1, not {slots}")
    if per_slot is not None:
        if per_slot < 1:
            raise ConfigError(f"threads per slot must be at least 1, not {per_slot}")
        return per_slot
    return max(1, available_cpus() // slots)


__all__ = [
    "CpuLimit", "apply_thread_budget", "available_cpus", "cgroup_cpu_quota", "cpu_limit",
    "lightgbm_calls", "lightgbm_threads", "set_thread_env", "split_budget", "thread_budget",
    "threads_in_use",
]
