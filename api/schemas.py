"""Response schemas (requests use service.specs.JobSpec)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from service.specs import JobSpec


def _in_utc(moment: datetime) -> datetime:
    # SQLite gives back the stored UTC times without their zone: every time in an answer is
    # written with its zone (...Z), as PostgreSQL's are
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Moment = Annotated[datetime, AfterValidator(_in_utc)]


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
    created_at: Moment


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]
    next_page_token: str | None = None


class ProgressPublic(BaseModel):
    phase: str = Field(description="queued, loading, preparing, training, combining (an "
                       "ensemble's members' values), evaluating, writing, done, failed or "
                       "cancelled")
    iteration: int | None = Field(None, description="iterations trained so far (a cancelled "
                                  "job keeps where it stopped)")
    total: int | None = None
    reward: float | None = Field(None, description="mean reward of recent iterations")
    elapsed_s: float | None = None
    eta_s: float | None = None
    heartbeat: Moment | None = Field(
        None, description="the worker's last sign of life while the job is active: each "
        "progress write, and the lease's renewal every third of DVRL_LEASE_S (also while it "
        "evaluates or combines, which write no progress)")
    members: dict[str, int] | None = Field(
        None, description="an ensemble's members by state (queued, running, succeeded, failed, "
        "cancelled); iteration and total then count the iterations of all members")


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
    created_at: Moment
    started_at: Moment | None = None
    finished_at: Moment | None = None
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
    std_error: float | None = Field(None, description="an ensemble's: the standard error of "
                                    "the members' mean value")


class ValuesPublic(BaseModel):
    items: list[ValuePublic]
    next_page_token: str | None = None


class RewardTrace(BaseModel):
    iteration: list[int] = Field(description="the iterations sampled, from 1")
    reward: list[float] = Field(description="the reward at each of them")


class CurvesPublic(BaseModel):
    reward_trace: RewardTrace
    removal: dict[str, Any] | None = Field(
        None, description="removed, remove_lowest, remove_highest, random, random_std; metric")
    discovery: dict[str, list[float]] | None = Field(
        None, description="inspected, found, optimal, random (with label_noise)")


class WebhookSecretCreated(BaseModel):
    secret: str = Field(description="sign-verification secret for every webhook of this owner; "
                        "shown only in this answer (the service keeps no copy of it)")
    created_at: Moment


class WebhookSecretPublic(BaseModel):
    created_at: Moment = Field(description="when the current secret was made (it is never "
                                 "shown again; POST makes a new one)")
    usable: bool = Field(description="whether events can be signed with it now: false once the "
                         "service key it was made with has changed (POST makes a new one)")
    reason: str | None = Field(None, description="why it is not usable")


class WebhookAttemptPublic(BaseModel):
    number: int = Field(description="1 for the first attempt")
    started_at: Moment
    duration_ms: int | None = Field(None, description="none while the attempt is in flight")
    status_code: int | None = Field(None, description="the receiver's HTTP status; none when "
                                    "no answer came")
    error: str | None = Field(None, description="why the attempt did not deliver the event")


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="the event id (DVRL-Event-Id and the body's id), the same on "
                    "every attempt")
    type: str = Field(description="job.finished or job.progress")
    url: str
    state: Literal["PENDING", "DELIVERED", "FAILED"] = Field(
        description="PENDING: to be attempted (again) at next_attempt_at; DELIVERED: a 2xx "
        "answer; FAILED: retries ran out")
    created_at: Moment
    next_attempt_at: Moment | None = None
    give_up_at: Moment = Field(description="no attempt is started after this")
    attempts: list[WebhookAttemptPublic]


class WebhookDeliveriesPublic(BaseModel):
    items: list[WebhookDeliveryPublic]
