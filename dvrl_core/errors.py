"""Exceptions raised by :mod:`dvrl_core`.

Every exception carries a stable ``code`` (used by the CLI and, later, the HTTP layer to name the
problem) and a message a user can act on. The hierarchy::

    DVRLError
    ├── DataError                     the table cannot be valued as given
    │   ├── UnreadableTableError      the file is not a CSV / Parquet table we can read
    │   ├── MissingColumnError        a named column (target, id, feature) is absent
    │   ├── EmptyColumnError          a feature column has no values at all
    │   ├── TooFewRowsError           not enough training or validation rows
    │   ├── MissingTargetError        target cells are empty
    │   ├── SingleClassError          classification target with one class only
    │   ├── ConstantTargetError       regression target with one value in every training row
    │   ├── UnseenClassError          validation/test labels the training table lacks
    │   └── TargetTypeError           a regression target that is not numeric
    ├── ConfigError                   a parameter is out of range or unknown
    │   └── CheckpointMismatchError   a checkpoint from another run (data, settings, version)
    └── RunStopped                    the stop check asked the run to stop (carries a checkpoint)
"""

from __future__ import annotations


class DVRLError(Exception):
    """Base class of every error this library raises on purpose."""

    code = "dvrl-error"


class DataError(DVRLError, ValueError):
    """The data cannot be valued as given; the message says what to change."""

    code = "bad-data"


class UnreadableTableError(DataError):
    code = "unreadable-table"


class MissingColumnError(DataError):
    code = "missing-column"


class EmptyColumnError(DataError):
    code = "empty-column"


class TooFewRowsError(DataError):
    code = "too-few-rows"


class MissingTargetError(DataError):
    code = "missing-target-values"


class SingleClassError(DataError):
    code = "single-class"


class ConstantTargetError(DataError):
    """A regression target with one value in every training row: no row helps predict it
    better than another."""

    code = "constant-target"


class UnseenClassError(DataError):
    code = "unseen-class"


class TargetTypeError(DataError):
    code = "target-type"


class ConfigError(DVRLError, ValueError):
    """A parameter is out of range, or a name (predictor, metric) is unknown."""

    code = "bad-config"


def require_positive_int(name: str, value: object, what: str = "") -> None:
    """ConfigError unless ``value`` is a whole number >= 1 (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number{what}, not {value!r}")


class CheckpointMismatchError(ConfigError):
    """``resume_from`` holds the state of another run: other data or settings, or the same job
    prepared by an earlier version into another number of features. Start the run again."""

    code = "checkpoint-mismatch"


class RunStopped(DVRLError):
    """The run was stopped by its stop check before finishing.

    ``checkpoint`` holds the full training state as bytes: pass it to
    :meth:`dvrl_core.DVRL.fit` as ``resume_from`` to continue where the run stopped. It is
    empty when the run stopped before its first iteration (while its prior was fitted).
    """

    code = "stopped"

    def __init__(self, iteration: int, total: int, checkpoint: bytes) -> None:
        super().__init__(f"run stopped at iteration {iteration} of {total}")
        self.iteration = iteration
        self.total = total
        self.checkpoint = checkpoint
