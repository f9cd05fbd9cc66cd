"""The HTTP/1.1 protocol that ``dvrl serve`` runs: uvicorn's own, except for its answer to bytes
that are not an HTTP request at all (a broken request line, a malformed header, a bad chunked
body). uvicorn answers those before the app sees anything, with a plain-text 400; here the answer
is a problem document like every other error of the API.

Served with plain uvicorn, pass ``--http api.http_protocol:ProblemHTTPProtocol`` for the same.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uvicorn.server import ServerState

MALFORMED = {
    "type": "/problems/malformed-request",
    "title": "Malformed HTTP request",
    "status": 400,
    "detail": "the bytes received are not a valid HTTP/1.1 request (its request line, a header "
              "or the chunked body could not be parsed); nothing was read or changed. Send a "
              "well-formed request, for instance with curl or httpx",
}


class _ProblemAnswer:
    """Replaces uvicorn's ``send_400_response`` (both of its HTTP/1.1 implementations have it,
    and close the connection after it): the same status and connection handling, a JSON body."""

    transport: asyncio.Transport
    server_state: ServerState

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(MALFORMED).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:  # date, server
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/problem+json\r\n",
                 b"content-length: " + str(len(body)).encode() + b"\r\n",
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _protocol() -> type[asyncio.Protocol]:
    """uvicorn's choice ("auto"): httptools where it is installed, else h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base  # type: ignore[assignment]
    return type("ProblemHTTPProtocol", (_ProblemAnswer, Base), {"__module__": __name__})


ProblemHTTPProtocol = _protocol()
