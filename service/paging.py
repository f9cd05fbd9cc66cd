"""Keyset paging, newest first: a page token names the last item seen, so pages stay stable while
rows are added (no offsets)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import InvalidPageToken

T = TypeVar("T")


def newest_first(session: Session, model: type[T], limit: int, after: str | None,
                 owner: str, *conditions: Any) -> list[T]:
    """Up to ``limit`` of ``owner``'s rows of ``model`` (which has ``created_at``, ``id`` and
    ``owner``) older than the row ``after``, newest first. An ``after`` that names no row of
    this owner's is an InvalidPageToken: a client paging with a stale or foreign token is told,
    rather than shown the first page again."""
    created, key = model.created_at, model.id  # type: ignore[attr-defined]
    mine = model.owner == owner  # type: ignore[attr-defined]
    query = select(model).where(mine, *conditions).order_by(created.desc(), key.desc())
    if after is not None:
        anchor = session.get(model, after)
        if anchor is None or anchor.owner != owner:  # type: ignore[attr-defined]
            raise InvalidPageToken("the page token names nothing of yours: it is stale (the "
                                   "item was deleted) or from elsewhere; start from the first "
                                   "page")
        query = query.where((created < anchor.created_at)  # type: ignore[attr-defined]
                            | ((created == anchor.created_at) & (key < anchor.id)))  # type: ignore[attr-defined]
    return list(session.scalars(query.limit(limit)))
