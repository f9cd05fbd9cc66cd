"""Seed hygiene and run records: one integer seed -> independent child seeds."""

from __future__ import annotations

from importlib import metadata

import numpy as np


def child_seeds(seed: int, count: int = 4) -> list[int]:
    """``count`` independent 31-bit seeds derived from ``seed`` with numpy's SeedSequence."""
    children = np.random.SeedSequence(int(seed)).spawn(count)
    return [int(child.generate_state(1)[0] & 0x7FFFFFFF) for child in children]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers, for the result's record."""
    versions = {}
    for package in ("dvrl-service", "torch", "numpy", "pandas", "lightgbm"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
