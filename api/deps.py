"""Dependencies that routes declare in their signatures."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.orm import Session

from service.db import new_session
from service.errors import ServiceError
from service.settings import Settings, get_settings


def get_session() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PageSize = Annotated[int, Query(ge=1, le=10_000, description="items per page")]


class BadPageToken(ServiceError):
    slug, status, title = "bad-page-token", 400, "Invalid page token"


def encode_token(value: str | int | None) -> str | None:
    if value is None:
        return None
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_token(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPageToken("the page token is not one this service issued") from exc


def decode_int_token(token: str | None) -> int | None:
    value = decode_token(token)
    if value is None:
        return None
    if not value.lstrip("-").isdigit():
        raise BadPageToken("the page token is not one this service issued")
    return int(value)
