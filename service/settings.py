"""One settings class feeds the API, the worker and Alembic (environment prefix ``DVRL_``).

With no configuration the service runs embedded: SQLite in ``DVRL_DATA_DIR`` and an in-process
worker. Setting ``DVRL_DATABASE_URL`` (PostgreSQL) and ``DVRL_BROKER_URL`` (Redis) switches to
PostgreSQL + Redis + Celery.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DVRL_", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL URL; empty: embedded SQLite")
    broker_url: str | None = Field(None, description="Redis URL; empty: in-process worker")
    data_dir: Path = Field(Path("dvrl-data"), description="embedded mode: where SQLite lives")
    max_upload_bytes: int = 1 << 30
    max_rows: int = 5_000_000
    max_columns: int = 10_000
    max_iterations: int = 100_000
    max_time_budget_s: int = 7 * 24 * 3600
    default_time_limit_s: int = 24 * 3600
    progress_interval_s: float = 1.0
    cancel_check_interval_s: float = 0.5
    checkpoint_interval_s: float = 30.0
    worker_threads: int | None = Field(
        None, description="torch threads in a worker; default: all cores but one (the API and "
        "the database keep a core)")
    cpu_queue: str = "dvrl"
    gpu_queue: str = "dvrl-gpu"

    @field_validator("database_url", "broker_url", mode="before")
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
        return f"sqlite:///{(self.data_dir / 'dvrl.sqlite3').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
