"""Response schemas (requests use service.specs.JobSpec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from service.specs import JobSpec


class ColumnPublic(BaseModel):
    name: str
    type: str = Field(description="integer, number, boolean, datetime, string or empty")


class DatasetPublic(BaseModel):
    id: str
    filename: str
    rows: int
    n_columns: int
    columns: list[ColumnPublic]
    sha256: str
    size_bytes: int
    created_at: datetime


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]
    next_page_token: str | None = None


class ProgressPublic(BaseModel):
    phase: str = Field(description="queued, loading, preparing, training, evaluating, writing, "
                       "done, failed or cancelled")
    iteration: int | None = None
    total: int | None = None
    reward: float | None = Field(None, description="mean reward of recent iterations")
    elapsed_s: float | None = None
    eta_s: float | None = None
    heartbeat: datetime | None = None


class ProblemPublic(BaseModel):
    type: str
    title: str
    status: int
    detail: str


class JobPublic(BaseModel):
    id: str
    state: str = Field(description="QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED")
    spec: JobSpec
    progress: ProgressPublic
    error: ProblemPublic | None = None
    summary: dict[str, Any] | None = Field(
        None, description="when SUCCEEDED: rows, flagged, timings, discovery figures, ...")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_page_token: str | None = None


class ValuePublic(BaseModel):
    row: str = Field(description="the id column's value, or the 0-based row number")
    value: float
    rank: int = Field(description="1 = lowest value")
    label: str = Field(description="the given label")
    flagged: bool = Field(description="among the lowest-valued rows (flag_fraction)")
    noise_injected: bool | None = Field(None, description="with label_noise: this label was "
                                        "flipped by the service")


class ValuesPublic(BaseModel):
    items: list[ValuePublic]
    next_page_token: str | None = None


class CurvesPublic(BaseModel):
    reward_trace: dict[str, list[float]]
    removal: dict[str, Any] | None = Field(
        None, description="removed, remove_lowest, remove_highest, random, random_std; metric")
    discovery: dict[str, list[float]] | None = Field(
        None, description="inspected, found, optimal, random (with label_noise)")
