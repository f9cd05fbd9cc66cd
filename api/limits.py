"""Request body limits, enforced while the body streams in (never after reading it all).

Uploads (``POST /v1/datasets``) may be up to ``DVRL_MAX_UPLOAD_BYTES``; every other body (job
specs) up to ``MAX_JSON_BYTES``. A declared ``Content-Length`` over the limit is refused before
a byte is read; a body that turns out longer (chunked uploads) is cut off as soon as it passes
the limit. Either way the answer is a 413 problem.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import get_settings

from .problems import MEDIA_TYPE, too_large

MAX_JSON_BYTES = 1 << 20
MULTIPART_SLACK = 64 << 10  # boundaries and part headers around the file


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _limit(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/datasets":
            return get_settings().max_upload_bytes + MULTIPART_SLACK
        return MAX_JSON_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, scope["path"], f"the request body is {int(declared)} bytes; "
                          f"at most {limit} are accepted here")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body exceeds {limit} bytes")
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, path: str, detail: str) -> None:
    slug, title = too_large(path)
    body = json.dumps({"type": f"/problems/{slug}", "title": title, "status": 413,
                       "detail": detail, "instance": path}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
