"""Database tables. The schema changes only through an Alembic migration (migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    """An uploaded table, stored as Arrow IPC bytes so any worker can read it without a shared
    disk."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # [{"name", "type"}]
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_datasets_owner_created", "owner", "created_at"),)


class DatasetPart(Base):
    """A dataset's stored bytes in parts (8 MiB each): written and read a part at a time."""

    __tablename__ = "dataset_parts"

    dataset_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Job(Base):
    """A valuation job and its state machine (see service.jobs)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    curves: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the worker running the job and until when its claim holds (renewed with each heartbeat)
    lease_holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                              nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    # how many runs make the job (spec ``ensemble``): more than one run as JobMember rows
    ensemble: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __table_args__ = (Index("ix_jobs_owner_created", "owner", "created_at"),)


class JobMember(Base):
    """One run of an ensemble job (service.members): its own seed, state, lease, checkpoint and
    values, so that members run on different workers at once and each resumes alone. The job's
    values are the members' mean, written when the last member has finished."""

    __tablename__ = "job_members"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)  # "<job id>.<number>"
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 0 to ensemble - 1
    seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # QUEUED RUNNING SUCCEEDED FAILED CANCELLED
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # float64 little-endian, one per training row / iteration (written when it SUCCEEDED)
    values: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    reward_trace: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True,
                                                       deferred=True)
    checkpoint: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    checkpoint_iteration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                              nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)

    __table_args__ = (Index("ix_job_members_job_number", "job_id", "number", unique=True),
                      Index("ix_job_members_state", "state"))


class JobValue(Base):
    """One training row's result. Keyed by (job, rank) so that paging in value order is an index
    range scan; ``position`` keeps the input order."""

    __tablename__ = "job_values"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    row: Mapped[str] = mapped_column(Text)
    value: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(Text)
    flagged: Mapped[bool] = mapped_column(Boolean)
    noise_injected: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    std_error: Mapped[float | None] = mapped_column(Float, nullable=True)  # ensembles only

    __table_args__ = (Index("ix_job_values_position", "job_id", "position"),)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class IdempotencyKey(Base):
    """A POST made with an ``Idempotency-Key``: the same key and body give the same resource."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 index=True)


class WebhookSecret(Base):
    """An owner's webhook signing secret, by derivation: the secret is HMAC(DVRL_WEBHOOK_KEY,
    owner, salt) and is never stored (see service.webhook_secrets)."""

    __tablename__ = "webhook_secrets"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    key_check: Mapped[str] = mapped_column(String(16))  # which service key it was made with
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One event to deliver to a job's webhook: its exact body, and when it is due next.
    ``event`` names it within the job (``job.finished``, ``job.progress.25``) so that a resumed
    job does not make it twice."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the event id
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # PENDING, DELIVERED, FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    give_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # a sender's claim on the delivery while it makes an attempt (another takes over after)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)

    __table_args__ = (Index("ix_webhook_deliveries_job_event", "job_id", "event", unique=True),
                      Index("ix_webhook_deliveries_state_due", "state", "due_at"))


class WebhookAttempt(Base):
    """One attempt to deliver an event: when, how long, and the status or what went wrong.
    Written when the attempt starts, completed when it ends (a sender that died leaves it
    without an outcome)."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
