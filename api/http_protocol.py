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


# a request line and headers together; h11 stops at 16 KiB of its own accord, httptools gathers
# a header of any length (200 MB held the event loop 44 s: no other request was answered)
MAX_HEAD_BYTES = 1 << 20

HEAD_TOO_LARGE = {
    "type": "/problems/headers-too-large",
    "title": "Request header fields too large",
    "status": 431,
    "detail": f"the request line and headers exceed {MAX_HEAD_BYTES // 1024} KiB; nothing was "
              "read or changed. Send shorter headers (an API key and a few standard headers "
              "take well under a kilobyte)",
}

# httptools reads a URL's parts as 16-bit offsets: a longer one fails to parse
MAX_URL_BYTES = (1 << 16) - 1

URL_TOO_LONG = {
    "type": "/problems/uri-too-long",
    "title": "URI too long",
    "status": 414,
    "detail": f"the request's URL is over {MAX_URL_BYTES // 1024} KiB; nothing was read or "
              "changed. Send long data in a request body, not in the URL",
}


class _ProblemAnswer:
    """Replaces uvicorn's ``send_400_response`` (both of its HTTP/1.1 implementations have it,
    and close the connection after it): the same status and connection handling, a JSON body."""

    transport: asyncio.Transport
    server_state: ServerState

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # not when a 414 or 431 has been sent
            self._send_problem(b"400 Bad Request", MALFORMED)

    def _send_problem(self, status: bytes, problem: dict) -> None:
        body = json.dumps(problem).encode()
        head = [b"HTTP/1.1 " + status + b"\r\n"]
        for name, value in self.server_state.default_headers:  # date, server
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/problem+json\r\n",
                 b"content-length: " + str(len(body)).encode() + b"\r\n",
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class _HeadLimit(_ProblemAnswer):
    """For httptools: the bytes received while a request's head is incomplete are counted, and
    past :data:`MAX_HEAD_BYTES` the answer is a 431 problem and the connection closes. The count
    starts at the request's first byte, give or take the read that ended the request before it
    (a read is at most 256 KiB: a well-formed head is never refused)."""

    _in_head = True
    _head_bytes = 0

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_begin()  # type: ignore[misc]

    def on_url(self, url: bytes) -> None:
        super().on_url(url)  # type: ignore[misc]
        if len(self.url) > MAX_URL_BYTES and not self.transport.is_closing():  # type: ignore[attr-defined]
            self._send_problem(b"414 URI Too Long", URL_TOO_LONG)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        super().data_received(data)  # type: ignore[misc]
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._send_problem(b"431 Request Header Fields Too Large", HEAD_TOO_LARGE)


def _protocol() -> type[asyncio.Protocol]:
    """uvicorn's choice ("auto"): httptools where it is installed, else h11 (which limits a
    head to 16 KiB and answers 400 past it)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
        answer: type = _ProblemAnswer
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base  # type: ignore[assignment]
        answer = _HeadLimit
    return type("ProblemHTTPProtocol", (answer, Base), {"__module__": __name__})


ProblemHTTPProtocol = _protocol()
