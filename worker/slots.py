"""Job slots: ``dvrl worker --concurrency N`` runs N worker processes on one machine.

Each slot is a whole ``dvrl worker`` process with Celery's solo pool, started fresh with
``python -m dvrl_cli`` (never forked from a process where torch, LightGBM's OpenMP or CUDA have
started: both hang in such children), with its own thread budget (``DVRL_WORKER_THREADS``: the
process's CPUs divided by N, at least one, unless set) and its own Celery node name
(``slotI@HOST``). This parent imports neither torch nor Celery; it

* passes SIGTERM and SIGINT on to every slot (Celery's warm shutdown: a slot finishes its job,
  then exits) and returns when all have exited;
* starts a slot that died on its own (killed for memory, say) again, after a pause that doubles
  while it keeps dying young; a slot that exits with a usage error (2) stops them all.

A slot whose parent dies gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``), so no slot outlives
a killed parent for longer than its current job.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

SUPERVISOR_ENV = "DVRL_WORKER_SUPERVISOR"  # the parent's pid, in each slot's environment
USAGE_ERROR = 2
YOUNG_S = 60.0  # a slot that dies sooner than this is started again after a longer pause
MAX_PAUSE_S = 60.0
PR_SET_PDEATHSIG = 1


@dataclass
class _Slot:
    name: str
    process: subprocess.Popen | None = None
    started: float = 0.0
    pause_s: float = 1.0
    due: float = 0.0  # when a dead slot is started again


def _say(message: str) -> None:
    print(f"dvrl worker: {message}", file=sys.stderr, flush=True)


def run_slots(count: int, threads: int, queues: str, loglevel: str) -> int:
    """Start ``count`` slots of ``threads`` threads each on ``queues`` and supervise them until a
    signal stops them; returns the exit status."""
    env = os.environ | {"DVRL_WORKER_THREADS": str(threads), "DVRL_WORKER_CONCURRENCY": "1",
                        SUPERVISOR_ENV: str(os.getpid())}
    slots = [_Slot(f"slot{i}@{socket.gethostname()}") for i in range(1, count + 1)]
    pending: list[int] = []

    def start(slot: _Slot) -> None:
        command = [sys.executable, "-m", "dvrl_cli", "worker", "--concurrency", "1",
                   "--hostname", slot.name, "--queues", queues, "--loglevel", loglevel]
        # its own process group: a Ctrl-C at the terminal reaches the slots once, through here
        slot.process = subprocess.Popen(command, env=env, process_group=0)
        slot.started = time.monotonic()

    def on_signal(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in slots:
            start(slot)
        _say(f"{count} slots x {threads} thread{'s' if threads != 1 else ''}, queues {queues}; "
             "pids " + ", ".join(str(s.process.pid) for s in slots if s.process))
        return _supervise(slots, pending, start)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _supervise(slots: list[_Slot], pending: list[int], start) -> int:
    stopping = False
    status = 0
    while True:
        while pending:
            signum = pending.pop(0)
            if not stopping:
                _say(f"{signal.Signals(signum).name}: stopping {len(slots)} slots (each "
                     "finishes its job first)")
            stopping = True
            _signal_all(slots, signum)
        if stopping:
            if all(s.process is None or s.process.poll() is not None for s in slots):
                return status
        else:
            for slot in slots:
                status = _look_after(slot, start)
                if status == USAGE_ERROR:
                    stopping = True
                    _signal_all(slots, signal.SIGTERM)
                    break
        time.sleep(0.2)


def _look_after(slot: _Slot, start) -> int:
    """Start a slot that died again when its pause is over; returns USAGE_ERROR if it exited
    with one (then nothing will go better on a retry)."""
    process = slot.process
    now = time.monotonic()
    if process is None:
        if now >= slot.due:
            start(slot)
        return 0
    code = process.poll()
    if code is None:
        return 0
    if code == USAGE_ERROR:
        _say(f"{slot.name} (pid {process.pid}) exited with a usage error; stopping")
        return USAGE_ERROR
    lived = now - slot.started
    slot.pause_s = min(slot.pause_s * 2, MAX_PAUSE_S) if lived < YOUNG_S else 1.0
    slot.due = now + slot.pause_s
    slot.process = None
    _say(f"{slot.name} (pid {process.pid}) exited with status {code} after {lived:.0f} s; "
         f"starting it again in {slot.pause_s:.0f} s")
    return 0


def _signal_all(slots: list[_Slot], signum: int) -> None:
    for slot in slots:
        if slot.process is not None and slot.process.poll() is None:
            slot.process.send_signal(signum)


def follow_supervisor() -> bool:
    """In a slot: have the kernel send SIGTERM when the parent dies; False if it already has."""
    parent = os.environ.get(SUPERVISOR_ENV)
    if not parent:
        return True
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: it outlives its parent
            ctypes.CDLL(name).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == int(parent)
