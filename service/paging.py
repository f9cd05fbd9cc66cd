"""Keyset paging, newest first: a page token names the last item seen, so pages stay stable while
rows are added (no offsets)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

T = TypeVar("T")


def newest_first(session: Session, model: type[T], limit: int, after: str | None,
                 *conditions: Any) -> list[T]:
    """Up to ``limit`` rows of ``model`` (which has ``created_at`` and ``id``) older than the row
    ``after``, newest first."""
    created, key = model.created_at, model.id  # type: ignore[attr-defined]
    query = select(model).where(*conditions).order_by(created.desc(), key.desc())
    anchor = session.get(model, after) if after is not None else None
    if anchor is not None:
        query = query.where((created < anchor.created_at)  # type: ignore[attr-defined]
                            | ((created == anchor.created_at) & (key < anchor.id)))  # type: ignore[attr-defined]
    return list(session.scalars(query.limit(limit)))
