"""Alembic environment: the URL comes from the caller's config or the service settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from service.models import Base
from service.settings import get_settings

# a PostgreSQL advisory lock's key, held while migrating ("dvrl" in ASCII)
MIGRATION_LOCK = 0x6476726C

url = context.config.get_main_option("sqlalchemy.url") or get_settings().sqlalchemy_url

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=Base.metadata,
                              render_as_batch=url.startswith("sqlite"))
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # one migrating process at a time (`dvrl serve` and `dvrl worker` migrate
                    # as they start): the next waits here, then finds the schema at head
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": MIGRATION_LOCK})
                context.run_migrations()
    finally:
        engine.dispose()
