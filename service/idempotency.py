"""Idempotency keys for POSTs: a retry with the same key and the same request gets the resource
the first one made; the same key with a different request is refused.

The key is stored in the same transaction as the resource it made, so a crash between the two
cannot leave one without the other; of two concurrent requests with one key, the second's insert
fails on the primary key and it answers with the first's resource.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from .errors import Conflict, IdempotencyMismatch, NotFound
from .models import IdempotencyKey

MAX_KEY_LENGTH = 255
T = TypeVar("T")


def request_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def find(session: Session, owner: str, operation: str, key: str, digest: str) -> str | None:
    """The resource made earlier with this key, None if there is none; raises
    IdempotencyMismatch if the key was used for a different request."""
    row = session.get(IdempotencyKey, (owner, operation, key))
    if row is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyMismatch(
            f"the Idempotency-Key {key!r} was used for a different request; use a new key "
            "for a new request")
    return row.resource_id


def made_earlier(fetch: Callable[[], T], kind: str, resource_id: str, again: str) -> T:
    """The resource a key made earlier (``fetch()``); a 409 that says so where it has been
    deleted since (a 404 would name a resource the request did not ask for). ``again``: what
    to do with a new key."""
    try:
        return fetch()
    except NotFound:
        raise Conflict(f"this Idempotency-Key made {kind} {resource_id!r}, which has been "
                       f"deleted since; send a new key to {again}") from None


def remember(session: Session, owner: str, operation: str, key: str, digest: str,
             resource_id: str) -> None:
    """Record the key in the session's transaction (committed with the resource)."""
    session.add(IdempotencyKey(owner=owner, operation=operation, key=key, request_hash=digest,
                               resource_id=resource_id))
