"""dvrl_core: data valuation with DVRL (Yoon, Arik, Pfister, ICML 2020) as a plain library.

>>> from dvrl_core import DVRL, prepare, read_table
>>> data = prepare(read_table("train.csv"), target="income", valid=read_table("valid.csv"))
>>> result = DVRL(random_state=0).fit(data)
>>> result.lowest(20)          # the rows most likely to hurt the model

No web, queue or database code lives here: the CLI, the worker and notebooks all call it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562), so that ``import dvrl_core.errors`` from a web
# process does not pull in torch.
_EXPORTS = {
    "PreparedData": "data", "Split": "data", "TableEncoder": "data", "infer_task": "data",
    "prepare": "data", "DVRL": "dvrl", "Progress": "dvrl", "CheckpointMismatchError": "errors",
    "ConfigError": "errors",
    "ConstantTargetError": "errors", "DataError": "errors", "DVRLError": "errors",
    "EmptyColumnError": "errors",
    "MissingColumnError": "errors", "MissingTargetError": "errors", "RunStopped": "errors",
    "SingleClassError": "errors", "TargetTypeError": "errors", "TooFewRowsError": "errors",
    "UnreadableTableError": "errors", "UnseenClassError": "errors",
    "detection_auroc": "evaluation", "discovery_curve": "evaluation",
    "found_fraction": "evaluation", "removal_curves": "evaluation",
    "weighted_training": "evaluation", "training_choices": "evaluation", "read_table": "io",
    "write_table": "io",
    "inject_label_noise": "noise", "inject_target_noise": "noise", "PREDICTORS": "predictors",
    "Predictor": "predictors",
    "make_predictor": "predictors", "ValuationResult": "result", "prepare_file": "stream",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dvrl_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from .data import PreparedData, Split, TableEncoder, infer_task, prepare
    from .dvrl import DVRL, Progress
    from .errors import (
        CheckpointMismatchError,
        ConfigError,
        ConstantTargetError,
        DataError,
        DVRLError,
        EmptyColumnError,
        MissingColumnError,
        MissingTargetError,
        RunStopped,
        SingleClassError,
        TargetTypeError,
        TooFewRowsError,
        UnreadableTableError,
        UnseenClassError,
    )
    from .evaluation import (
        detection_auroc,
        discovery_curve,
        found_fraction,
        removal_curves,
        training_choices,
        weighted_training,
    )
    from .io import read_table, write_table
    from .noise import inject_label_noise, inject_target_noise
    from .predictors import PREDICTORS, Predictor, make_predictor
    from .result import ValuationResult
    from .stream import prepare_file

__all__ = [
    "DVRL", "PREDICTORS", "CheckpointMismatchError", "ConfigError", "ConstantTargetError",
    "DVRLError", "DataError",
    "EmptyColumnError",
    "MissingColumnError", "MissingTargetError", "PreparedData", "Predictor", "Progress",
    "RunStopped", "SingleClassError", "Split", "TableEncoder", "TargetTypeError",
    "TooFewRowsError", "UnreadableTableError", "UnseenClassError", "ValuationResult",
    "detection_auroc", "discovery_curve", "found_fraction", "infer_task", "inject_label_noise",
    "inject_target_noise", "make_predictor", "prepare", "prepare_file", "read_table",
    "removal_curves",
    "training_choices",
    "weighted_training",
    "write_table",
]
