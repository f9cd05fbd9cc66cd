"""What the service benchmarks share: a fresh benchmark database and Redis db, an API key, a
free port."""

from __future__ import annotations

import socket

DATABASE = "dvrl_bench"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/14"


def fresh_database(database: str = DATABASE, redis_url: str = REDIS_URL) -> str:
    """Drop and recreate ``dvrl_bench`` (or ``database``), migrate it to head, empty Redis db 14
    (or ``redis_url``'s); returns the database's URL."""
    import psycopg
    import redis

    from service.migrate import upgrade

    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {database}")
    redis.Redis.from_url(redis_url).flushdb()
    url = PG_URL.rsplit("/", 1)[0] + f"/{database}"
    upgrade(url)
    return url


def api_key(owner: str, note: str) -> str:
    """A new API key for ``owner`` in the configured database."""
    from service.db import session_scope
    from service.keys import create_key

    with session_scope() as session:
        return create_key(session, owner, note)[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
