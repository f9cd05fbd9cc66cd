"""Engines and sessions. One engine per database URL, created on first use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .settings import Settings, get_settings

T = TypeVar("T")

_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """The process's engine for ``url`` (created once)."""
    if url not in _engines:
        _engines[url] = _create(url)
    return _engines[url]


def dispose_engines() -> None:
    """Close every pooled connection (tests switching databases, forked processes)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factory.cache_clear()


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        timeout = get_settings().sqlite_busy_timeout_s
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": timeout})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # concurrent readers, one writer
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # pre-ping: a restarted PostgreSQL leaves dead pooled connections behind
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine() -> Engine:
    return engine_for(get_settings().sqlalchemy_url)


@lru_cache
def _factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def new_session() -> Session:
    return _factory(get_settings().sqlalchemy_url)()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def first_line(exc: BaseException) -> str:
    """An error in one line for the log (a dependency that is down is logged at every probe)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_lost(exc: Exception) -> bool:
    """Whether a database error means the server is unreachable (restarting, down), not that
    the statement was wrong."""
    invalidated = bool(getattr(exc, "connection_invalidated", False))
    return invalidated or "connect" in str(exc).lower()


def database_busy(exc: Exception) -> bool:
    """Whether a database error is the embedded SQLite's write lock held by another writer for
    longer than its busy timeout: worth trying again, never the caller's fault."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text


def transient(exc: Exception) -> bool:
    """A database error that goes away by itself: retry it."""
    return connection_lost(exc) or database_busy(exc)


def retrying(session: Session, action: Callable[[], T], settings: Settings | None = None) -> T:
    """Run a one-transaction ``action`` on ``session``, running it again (after a rollback)
    while SQLite's write lock is held by another writer, for up to ``db_busy_retry_s``."""
    settings = settings or get_settings()
    deadline = time.monotonic() + settings.db_busy_retry_s
    pause = 0.05
    while True:
        try:
            return action()
        except OperationalError as exc:
            if not database_busy(exc) or time.monotonic() + pause > deadline:
                raise
            session.rollback()
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
