"""Run the Alembic migrations programmatically (``dvrl migrate``, start-up of the API, the
worker and tests). The migrations are found by import, so this works from any directory after a
plain ``pip install`` as well as from a source checkout."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory


def script_location() -> Path:
    """The folder of the migration scripts, wherever the package is installed (an editable
    install made before the migrations became a package finds them beside ``service/``)."""
    try:
        import migrations
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "migrations"
    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    command.upgrade(alembic_config(url), "head")


def revision(url: str) -> str | None:
    """The schema revision of the database at ``url``; None where it holds no schema of ours
    (a new database, or another application's)."""
    from .db import engine_for

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def newest() -> str | None:
    """The revision ``upgrade`` brings a database to."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
