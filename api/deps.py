"""Dependencies that routes declare in their signatures."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service import keys
from service.db import new_session
from service.errors import ServiceError, Unauthorized
from service.idempotency import MAX_KEY_LENGTH
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
_bearer = HTTPBearer(auto_error=False, description="an API key from `dvrl keys create`")


def get_owner(request: Request, session: SessionDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None,
                                     Depends(_bearer)]) -> str:
    """Who is asking: the owner of the API key (``Authorization: Bearer <key>``), or the local
    owner when this server does not require keys (the embedded default on 127.0.0.1)."""
    if not request.app.state.auth_required:
        return keys.LOCAL_OWNER
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' "
                           "(create one with 'dvrl keys create --owner NAME')")
    owner = keys.authenticate(session, credentials.credentials)
    if owner is None:
        raise Unauthorized("the API key is unknown or revoked")
    return owner


OwnerDep = Annotated[str, Depends(get_owner)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH,
    description="retry-safe POST: the same key and body return the same resource; the same "
    "key with a different body is refused (422)")]


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
