"""Validation rows that repeat training rows.

DVRL (and every simple control) trusts the validation rows: they are the clean data the values
are learned against. A validation table that is the training table, or a sample of it, breaks
that: its copies of flipped rows carry the flipped labels, so the prior learns them as right,
and the trust check's held-out rows are no longer held out. On the Adult protocol (1,000
training rows, 20% flipped, seed 0) found@20 fell from 0.735 with 400 clean validation rows to
0.650 when half of them were copies of training rows and to 0.565 with the training table as
its own validation table, and the trust check said only "not confirmed" (docs/benchmarks.md,
session 22).

Some repeats are natural: the same text message sent twice, or two wines with the same
measurements. Among 400 validation rows drawn apart from 1,000 training rows, up to 11% repeat
one on the suite's tables (SMS spam 45 rows, wine 22, Enron 18, Letter 8, none on Adult, Bank
marketing or MAGIC). So a job warns only past :data:`WARN_SHARE`, and always reports the count.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .data import PreparedData
from .stream import release_rows

WARN_SHARE = 0.25  # of the validation rows, above the suite's natural repeats (at most 11%)
HASH_ROWS = 65_536  # rows hashed at a time (a memory-mapped table is read a block at a time)


def _row_hashes(x: np.ndarray, y: np.ndarray, keys: np.ndarray) -> Iterator[np.ndarray]:
    """A 64-bit hash of every row's encoded features and target, a block of rows at a time:
    the bits of each number times a random odd key per column, summed modulo 2^64. Integer
    arithmetic, so equal rows hash equally whatever block they are in. A mapped matrix's
    pages leave resident memory once hashed."""
    for start in range(0, len(x), HASH_ROWS):
        stop = min(start + HASH_ROWS, len(x))
        features = np.asarray(x[start:stop], dtype=np.float64) + 0.0  # -0.0 is 0.0
        target = np.asarray(y[start:stop], dtype=np.float64) + 0.0
        release_rows(x, start, stop)
        hashed = (features.view(np.uint64) * keys[:-1]).sum(axis=1, dtype=np.uint64)
        yield hashed + target.view(np.uint64) * keys[-1]


def copied_validation_rows(data: PreparedData) -> int:
    """How many validation rows repeat a training row as the model sees it: every encoded
    feature and the target (a row whose label differs is not a copy; categories past the
    encoder's most frequent ones read alike, so rows that differ only in those count too)."""
    if len(data.valid) == 0 or len(data.train) == 0:
        return 0
    keys = np.random.default_rng(0).integers(1, 2**63, size=data.train.x.shape[1] + 1,
                                             dtype=np.uint64) | np.uint64(1)
    valid = np.concatenate(list(_row_hashes(data.valid.x, data.valid.y, keys)))
    train = np.concatenate(list(_row_hashes(data.train.x, data.train.y, keys)))
    return int(np.isin(valid, train).sum())


def overlap_warning(copies: int, validation_rows: int) -> str | None:
    """What a job says when ``copies`` of its ``validation_rows`` repeat training rows, past
    :data:`WARN_SHARE` of them; None below."""
    if validation_rows == 0 or copies <= WARN_SHARE * validation_rows:
        return None
    return (f"{copies} of the {validation_rows} validation rows ({copies / validation_rows:.0%}) "
            "repeat a training row as the model sees it (every feature as encoded, and the "
            "target; categories past the most frequent ones read alike). The values trust the "
            "validation rows as clean and kept apart: copies of wrong training rows teach them "
            "that those rows are right, and the trust check's held-out rows are not held out. "
            "Give validation rows that are not in the training table (natural duplicates, such "
            "as a message sent twice, and rows that differ only in rare categories are the "
            "exception)")
