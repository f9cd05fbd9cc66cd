"""One settings class feeds the API, the worker and Alembic (environment prefix ``DVRL_``).

With no configuration the service runs embedded: SQLite in ``DVRL_DATA_DIR`` and an in-process
worker. Setting ``DVRL_DATABASE_URL`` (PostgreSQL) and ``DVRL_BROKER_URL`` (Redis) switches to
PostgreSQL + Redis + Celery.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_WEBHOOK_KEY = 32  # characters of DVRL_WEBHOOK_KEY, or of the embedded key file


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DVRL_", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL URL; empty: embedded SQLite")
    broker_url: str | None = Field(None, description="Redis URL; empty: in-process worker")
    data_dir: Path = Field(Path("dvrl-data"), description="embedded mode: where SQLite lives")
    auth: Literal["auto", "required", "off"] = Field(
        "auto", description="API keys: auto = required unless the embedded default serves on "
        "127.0.0.1; off is refused on any other interface")
    max_upload_bytes: int = Field(1 << 30, description="413 beyond this, while streaming")
    max_rows: int = 5_000_000
    max_columns: int = 10_000
    max_cells: int = Field(200_000_000, description="rows x columns of one table")
    max_decoded_bytes: int = Field(
        4 << 30, description="one table's size once decompressed and decoded (Arrow); the API "
        "holds a batch of it at a time, a worker all of it")
    max_iterations: int = 100_000
    max_batch_size: int = 1_000_000
    max_time_budget_s: int = 7 * 24 * 3600
    max_jobs_in_flight: int = Field(20, description="queued or running jobs per owner; 429 "
                                    "beyond")
    retry_after_s: int = Field(30, description="Retry-After of a 429")
    default_time_limit_s: int = 24 * 3600
    progress_interval_s: float = 1.0
    cancel_check_interval_s: float = 0.5
    checkpoint_interval_s: float = 30.0
    lease_s: float = Field(60.0, description="a worker's claim on a job, renewed by its "
                           "heartbeat; a job whose worker died is taken over after this")
    max_attempts: int = Field(3, ge=1, description="a job whose worker dies this many times "
                              "(out of memory, a crash) ends FAILED instead of being sent again")
    requeue_after_s: float = Field(300.0, description="a QUEUED job not picked up for this "
                                   "long is sent again (its message may have been lost)")
    sweep_interval_s: float = Field(15.0, description="how often workers look for lost jobs "
                                    "and expired results")
    db_retry_s: float = Field(300.0, description="how long a worker retries the database "
                              "before giving a job up to another worker")
    sqlite_busy_timeout_s: float = Field(30.0, description="embedded mode: how long a write "
                                         "waits for SQLite's lock before trying again")
    db_busy_retry_s: float = Field(60.0, description="embedded mode: how long a request "
                                   "retries while SQLite's write lock is taken; then 503")
    results_ttl_days: float | None = Field(None, description="delete finished jobs and their "
                                           "results after this many days; empty: keep")
    worker_threads: int | None = Field(
        None, ge=1, description="threads of one job slot (torch, OpenMP, BLAS, LightGBM); "
        "default: the CPUs the worker may use (affinity, cgroup quota) divided by its slots")
    worker_concurrency: int = Field(1, ge=1, description="job slots of `dvrl worker`: worker "
                                    "processes on one machine, one job each")
    cpu_queue: str = "dvrl"
    gpu_queue: str = "dvrl-gpu"
    public_url: str | None = Field(None, description="the API's address as clients reach it "
                                   "(e.g. https://dvrl.example.com); makes the links in "
                                   "webhook events absolute")
    webhook_key: str | None = Field(
        None, min_length=MIN_WEBHOOK_KEY, description="the service's key from which each "
        "owner's webhook secret is derived (the database keeps a random salt per owner, never "
        "the secret); the same on the API and every worker. Embedded mode makes one in "
        "DATA_DIR when unset; with PostgreSQL + Celery, webhooks are off until it is set")
    webhook_allowed_hosts: str = Field(
        "", description="comma-separated host names or networks (CIDR) that webhooks may "
        "reach although they are private, loopback, link-local or otherwise not global")
    webhook_timeout_s: float = Field(10.0, gt=0, description="connect, send and answer "
                                     "timeout of one delivery attempt")
    webhook_backoff_s: float = Field(30.0, gt=0, description="wait before the first retry; "
                                     "doubled after each failed attempt")
    webhook_backoff_max_s: float = Field(3600.0, gt=0, description="the longest wait between "
                                         "two attempts")
    webhook_retry_for_s: float = Field(24 * 3600.0, gt=0, description="stop retrying an event "
                                       "this long after it was created (it ends FAILED)")
    webhook_poll_s: float = Field(5.0, gt=0, description="how often each worker looks for "
                                  "due deliveries (events of its own jobs go out at once)")
    webhook_senders: int = Field(4, ge=1, le=64, description="deliveries each worker process "
                                 "attempts at once; one address takes one of them at a time, "
                                 "so a slow receiver does not hold up the others")

    @field_validator("database_url", "broker_url", "public_url", "webhook_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix):]
        return value

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.database_file.resolve()}"

    @property
    def database_file(self) -> Path:
        """The embedded database's file (whether or not it exists yet)."""
        return self.data_dir / "dvrl.sqlite3"

    def queue_for(self, device: str) -> str:
        """The queue of a job on ``device``: the GPU queue for ``cuda``, else the CPU queue."""
        return self.gpu_queue if device == "cuda" else self.cpu_queue


@lru_cache
def get_settings() -> Settings:
    return Settings()
