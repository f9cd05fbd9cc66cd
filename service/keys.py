"""API keys: created and revoked with ``dvrl keys``; only their SHA-256 is stored.

A key reads ``dvrl_<id>_<secret>``: the id names it in listings and logs, the secret (256 random
bits) is what authenticates. Keys are random, so a plain SHA-256 is a safe hash for them (a slow
password hash protects guessable secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .errors import NotFound
from .models import ApiKey, utcnow

LOCAL_OWNER = "local"  # the owner of everything when keys are not required
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_NAME = 128  # a key's note: one line, as `dvrl keys list` prints it


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, owner: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key for ``owner``; returns the row and the key itself (shown only now)."""
    if not OWNER_PATTERN.match(owner):
        raise ValueError("an owner is 1-64 letters, digits and . _ @ -, starting with a letter "
                         "or digit")
    if owner.lower() == LOCAL_OWNER:
        raise ValueError(f"the owner {LOCAL_OWNER!r} is reserved: it owns what was created "
                         "while keys were not required; choose another name")
    key_id = secrets.token_hex(6)
    token = f"dvrl_{key_id}_{secrets.token_urlsafe(32)}"
    if len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"a key's name is one line of at most {MAX_NAME} printable characters")
    key = ApiKey(id=key_id, owner=owner, name=name, hash=_digest(token))
    session.add(key)
    session.commit()
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> tuple[ApiKey, datetime | None]:
    """Revoke a key (NotFound for no such key); returns it and, where it was revoked already,
    when (revoking again changes nothing)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no key {key_id!r}")
    already = key.revoked_at
    if already is None:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
        session.commit()
        session.refresh(key)
    _cache.clear()
    return key, already


def active_keys(session: Session) -> int:
    return len(session.scalars(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).all())


class _Cache:
    """Recently authenticated keys, so that a client polling every second costs no key lookup;
    a revoked key stops working within ``ttl`` seconds in every API process."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._owners: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> str | None:
        with self._lock:
            hit = self._owners.get(digest)
            if hit is None or hit[1] < time.monotonic():
                return None
            return hit[0]

    def put(self, digest: str, owner: str) -> None:
        with self._lock:
            if len(self._owners) > 10_000:
                self._owners.clear()
            self._owners[digest] = (owner, time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self._owners.clear()


_cache = _Cache()


def authenticate(session: Session, token: str) -> str | None:
    """The owner of an active key, or None."""
    digest = _digest(token)
    owner = _cache.get(digest)
    if owner is not None:
        return owner
    owner = session.scalar(select(ApiKey.owner).where(ApiKey.hash == digest,
                                                      ApiKey.revoked_at.is_(None)))
    if owner is not None and owner.lower() == LOCAL_OWNER:
        return None  # reserved (a key made for it before it was): never the local owner's data
    if owner is not None:
        _cache.put(digest, owner)
    return owner
