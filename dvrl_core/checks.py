"""What a run's summary warns about, read from the prepared tables before any value is learned.

- Validation rows that repeat training rows (:mod:`dvrl_core.overlap`): past a quarter of them,
  the values learn wrong rows as right.
- A class that the validation rows barely show: the reward's view of that class rests on a
  handful of rows, so the values of its training rows rest on them too. Below
  :data:`THIN_CLASS_ROWS` validation rows a class is named, with how many training rows it has.
- Class labels that differ only in case or surrounding spaces ('yes', 'Yes ').

:func:`summary_checks` is the part of a summary that the command line and the service share:
``validation_copies`` (always) and ``warnings`` (a list of sentences; empty when all is well).
:class:`dvrl_core.DVRL` puts them in its result's ``diagnostics``; :func:`checks_of` reads them
from there (a baseline's result has none: they are computed then).
"""

from __future__ import annotations

import numpy as np

from .data import PreparedData
from .overlap import copied_validation_rows, overlap_warning
from .result import ValuationResult

THIN_CLASS_ROWS = 5  # validation rows under which a class's part of the reward is noise
SHOWN_CLASSES = 5  # classes named in the warning; the rest are counted


def thin_class_warning(data: PreparedData) -> str | None:
    """A sentence naming the classes with fewer than :data:`THIN_CLASS_ROWS` validation rows,
    for a classification task; None where every class has enough."""
    if data.task != "classification":
        return None
    shown = np.bincount(data.valid.y.astype(np.int64), minlength=data.n_classes)
    trained = np.bincount(data.train.y.astype(np.int64), minlength=data.n_classes)
    thin = [c for c in np.argsort(shown, kind="stable") if shown[c] < THIN_CLASS_ROWS]
    if not thin:
        return None
    named = [f"{data.classes[c]!r} ({shown[c]} validation row{'s' if shown[c] != 1 else ''}, "
             f"{trained[c]} training)" for c in thin[:SHOWN_CLASSES]]
    more = f" and {len(thin) - SHOWN_CLASSES} more" if len(thin) > SHOWN_CLASSES else ""
    return (f"few validation rows show class{'es' if len(thin) > 1 else ''} "
            f"{', '.join(named)}{more}: the values of those classes' training rows rest on "
            f"them alone. Give at least {THIN_CLASS_ROWS} validation rows of each class, or "
            "read those rows' values with care")


def look_alike_class_warning(data: PreparedData) -> str | None:
    """A sentence naming classes whose labels differ only in case or surrounding spaces
    ('>50K' and '>50K '): an export's slip more often than two classes; None where none do."""
    if data.task != "classification":
        return None
    alike: dict[str, list] = {}
    for label in data.classes:
        if isinstance(label, str):
            alike.setdefault(label.strip().casefold(), []).append(label)
    groups = [labels for labels in alike.values() if len(labels) > 1]
    if not groups:
        return None
    named = "; ".join(", ".join(repr(label) for label in labels)
                      for labels in groups[:SHOWN_CLASSES])
    more = f" and {len(groups) - SHOWN_CLASSES} more" if len(groups) > SHOWN_CLASSES else ""
    return (f"classes whose labels differ only in case or surrounding spaces are valued as "
            f"different classes: {named}{more}. If they are one class, write its label one way")


def summary_checks(data: PreparedData) -> dict[str, object]:
    """``validation_copies`` and ``warnings``, for a run's summary (module docstring)."""
    copies = copied_validation_rows(data)
    warnings = [overlap_warning(copies, len(data.valid)), thin_class_warning(data),
                look_alike_class_warning(data), *data.notes]
    return {"validation_copies": copies, "warnings": [w for w in warnings if w]}


def checks_of(result: ValuationResult, data: PreparedData) -> dict[str, object]:
    """:func:`summary_checks` as ``result`` carries them, else computed from ``data`` (hashing
    every training row once is enough)."""
    if "validation_copies" in result.diagnostics and "warnings" in result.diagnostics:
        return {k: result.diagnostics[k] for k in ("validation_copies", "warnings")}
    return summary_checks(data)
