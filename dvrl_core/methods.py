"""Valuation methods by name: a job's ``method`` (and ``dvrl value --method``) resolves here.

Every method is an estimator in scikit-learn's style: the constructor stores parameters and
``fit(data) -> ValuationResult`` values every training row of a :class:`PreparedData`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> (module, class): imported on first use
METHODS: dict[str, tuple[str, str]] = {
    "dvrl": ("dvrl_core.dvrl", "DVRL"),
}


def make_method(name: str, **params: Any) -> Any:
    """An unfitted valuation method; raises ConfigError for an unknown name."""
    from .errors import ConfigError

    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    module, attribute = METHODS[name]
    return getattr(import_module(module), attribute)(**params)
