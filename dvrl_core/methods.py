"""Valuation methods by name: a job's ``method`` (and ``dvrl value --method``) resolves here.

Every method is an estimator in scikit-learn's style: the constructor stores parameters and
``fit(data) -> ValuationResult`` values every training row of a :class:`PreparedData`.
Besides DVRL, the baselines of :mod:`dvrl_core.baselines` (KNN-Shapley, Data-OOB, leave-one-out)
let a user compare methods on their own data; a higher value is a more valuable row for all.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

# name -> (module, class): imported on first use
METHODS: dict[str, tuple[str, str]] = {
    "dvrl": ("dvrl_core.dvrl", "DVRL"),
    "knn_shapley": ("dvrl_core.baselines.knn_shapley", "KNNShapley"),
    "data_oob": ("dvrl_core.baselines.data_oob", "DataOOB"),
    "leave_one_out": ("dvrl_core.baselines.leave_one_out", "LeaveOneOut"),
}


def make_method(name: str, **params: Any) -> Any:
    """An unfitted valuation method; raises ConfigError for an unknown name."""
    from .errors import ConfigError

    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    module, attribute = METHODS[name]
    method = getattr(import_module(module), attribute)
    known = set(inspect.signature(method).parameters) - {"self"}
    unknown = sorted(set(params) - known)
    if unknown:  # a typo was TypeError's "unexpected keyword argument"
        raise ConfigError(f"{name} takes no option {', '.join(map(repr, unknown))}; its "
                          f"options are {sorted(known)}")
    return method(**params)
