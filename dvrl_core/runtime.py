"""Process-level settings for long runs (called by the CLI and the benchmarks, never on import).

glibc returns every freed block above 128 KiB to the kernel, so a training loop that allocates
the same activation tensors each iteration pays page faults each time; raising the thresholds keeps
them in the heap (measured: the estimator step went from 7.7 to 5.8 ms on the 2-core machine).
Blocks of one number per row of a big table (80 MB at ten million rows) stay above the
threshold, so they go back to the kernel when freed: with a threshold of 1 GiB, a 10M-row run
kept about 1 GB of freed blocks resident.

:func:`quiet_known_warnings` drops warnings the runs here raise on purpose, which would
otherwise bury a command's output (scikit-learn warns at every fit of a model of many classes
with few rows each, dozens of times a run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # blocks above this are mapped on their own and returned when freed
TRIM_THRESHOLD = 128 << 20  # free memory kept at the heap's top


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap; returns False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):
        return False


# (message start, category): warned about by a library on a case this project handles
KNOWN_WARNINGS = (("The number of unique classes is greater than 50%", UserWarning),)


def quiet_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS` in this process (its other warnings still show)."""
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
