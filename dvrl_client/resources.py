"""What the service returns, as small objects: a dataset, a job's progress, a job's state.

They hold the service's answer as it was when last asked; :class:`~dvrl_client.Job` and
:class:`~dvrl_client.AsyncJob` add the calls (refresh, wait, results) on top of :class:`JobView`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # integer, number, boolean, datetime, string or empty


@dataclass(frozen=True)
class Dataset:
    """An uploaded table: its id (what a job spec names), shape and columns."""

    id: str
    rows: int
    columns: tuple[Column, ...]
    filename: str
    sha256: str
    size_bytes: int
    created_at: str

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Dataset:
        return cls(id=body["id"], rows=body["rows"],
                   columns=tuple(Column(c["name"], c["type"]) for c in body["columns"]),
                   filename=body["filename"], sha256=body["sha256"],
                   size_bytes=body["size_bytes"], created_at=body["created_at"])

    def column_types(self) -> dict[str, str]:
        return {column.name: column.type for column in self.columns}


@dataclass(frozen=True)
class Progress:
    """A job's progress as the service last wrote it (about once a second while it trains).
    ``iteration``, ``total``, ``reward`` and ``elapsed_s`` are named as in dvrl_core's own
    progress, so the same progress printers take either."""

    phase: str
    iteration: int | None = None
    total: int | None = None
    reward: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None

    @classmethod
    def from_api(cls, body: dict[str, Any] | None) -> Progress:
        body = body or {}
        return cls(phase=body.get("phase", "queued"), iteration=body.get("iteration"),
                   total=body.get("total"), reward=body.get("reward"),
                   elapsed_s=body.get("elapsed_s"), eta_s=body.get("eta_s"))


class JobView:
    """A job as the service described it when last asked."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    @property
    def id(self) -> str:
        return str(self._body["id"])

    @property
    def state(self) -> str:
        """QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED or CANCELLED."""
        return str(self._body["state"])

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def progress(self) -> Progress:
        return Progress.from_api(self._body.get("progress"))

    @property
    def spec(self) -> dict[str, Any]:
        """The job's spec with the service's defaults filled in."""
        return dict(self._body["spec"])

    @property
    def summary(self) -> dict[str, Any] | None:
        """Once SUCCEEDED: rows, timings, the trust check, label-noise figures, ..."""
        return self._body.get("summary")

    @property
    def error(self) -> dict[str, Any] | None:
        """Once FAILED: the problem (type, title, status, detail) that ended it."""
        return self._body.get("error")

    @property
    def data(self) -> dict[str, Any]:
        """The service's whole answer (timestamps, links, ...)."""
        return dict(self._body)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state}>"
