"""Dependencies that routes declare in their signatures."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service import keys
from service.db import new_session
from service.errors import InvalidPageToken, RepeatedParameter, Unauthorized
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


def one_value_each(request: Request) -> None:
    """Every query parameter at most once (a dependency of every API route; the dashboard's
    pages read their own): a second ``state=`` was dropped without a word, so
    ``?state=QUEUED&state=RUNNING`` listed one."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise RepeatedParameter(repeated)


def get_owner(request: Request, session: SessionDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None,
                                     Depends(_bearer)]) -> str:
    """Who is asking: the owner of the API key (``Authorization: Bearer <key>``), or the local
    owner when this server does not require keys (the embedded default on 127.0.0.1)."""
    if not request.app.state.auth_required:
        return keys.LOCAL_OWNER
    if len(request.headers.getlist("authorization")) > 1:  # the first was used, unsaid
        raise Unauthorized("send one Authorization header: this request has "
                           f"{len(request.headers.getlist('authorization'))}")
    given = request.headers.get("authorization", "").strip()
    if credentials is None and given:  # Basic, Token, a key alone
        raise Unauthorized(f"send the API key as 'Authorization: Bearer <key>' (this request "
                           f"says {_scheme_said(given)})")
    if credentials is None:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' "
                           "(create one with 'dvrl keys create --owner NAME')")
    owner = keys.authenticate(session, credentials.credentials)
    if owner is None:
        raise Unauthorized("the API key is unknown or revoked")
    return owner


def _scheme_said(header: str) -> str:
    """An Authorization header's scheme as said back: a word, never what may be a key."""
    if " " not in header:
        return "no scheme, only a value"
    scheme = header.split()[0]
    return repr(scheme) if scheme.isascii() and scheme.isalpha() and len(scheme) <= 20 else \
        "a scheme other than Bearer"


OwnerDep = Annotated[str, Depends(get_owner)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH,
    description="retry-safe POST: the same key and body return the same resource; the same "
    "key with a different body is refused (422)")]


def encode_token(kind: str, *parts: str | int) -> str:
    """An opaque page token: what it pages (``kind``, e.g. the job whose values) and where the
    next page starts."""
    text = "\x1f".join([kind, *map(str, parts)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str | None, kind: str, size: int = 1) -> list[str] | None:
    """The ``size`` parts after ``kind`` of a token from ``encode_token``; an InvalidPageToken
    for anything this service did not issue for ``kind``."""
    if token is None:
        return None
    if not token:  # "?page_token=": the last page's null, sent as an empty string
        raise InvalidPageToken("the page token is empty: leave page_token out for the first "
                               "page; a null next_page_token means there are no more pages")
    try:
        padded = token + "=" * (-len(token) % 4)
        parts = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        parts_list = parts.split("\x1f")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPageToken("the page token is malformed: pass next_page_token exactly as "
                               "it was returned") from exc
    if parts_list[0] != kind or len(parts_list) != size + 1:
        raise InvalidPageToken(f"the page token was not issued for this list ({kind})")
    return parts_list[1:]


def decode_id_token(token: str | None, kind: str) -> str | None:
    parts = decode_token(token, kind)
    return None if parts is None else parts[0]
