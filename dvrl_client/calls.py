"""The steps an operation asks its driver for: an HTTP call, or a pause.

Every operation of the client (upload, submit, wait, ...) is written once, in
:mod:`dvrl_client.operations`, as a generator that yields these steps and is sent their outcome
(the sans-I/O style): :class:`~dvrl_client.Client` performs them with blocking httpx calls and
``time.sleep``, :class:`~dvrl_client.AsyncClient` with ``await``. So the request building, the
retry policy and the error mapping exist once, and the two clients cannot drift apart.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

T = TypeVar("T")

# an upload's answer comes once the service has parsed and stored the whole table
UPLOAD_READ_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Upload:
    """A table to send as the multipart field ``file``: a file on disk (streamed from it,
    never read into memory) or bytes already in memory (a DataFrame written as Parquet)."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def sha256(self) -> str:
        """The hex SHA-256 of what would be sent (a file read in blocks, not held whole)."""
        digest = hashlib.sha256()
        with self.open() as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """A fresh reader for each attempt, so that a retry sends the whole file again."""
        if self.path is not None:
            with open(self.path, "rb") as source:
                yield source
        else:
            yield io.BytesIO(self.data or b"")


@dataclass(frozen=True)
class Call:
    """One HTTP request of the API (``path`` relative to the client's base URL). A call is
    built once and sent as often as the retry policy says, always with the same headers."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    upload: Upload | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # a 404 after an attempt whose answer was lost means that attempt did it (DELETE)
    gone_means_done: bool = False

    @classmethod
    def post(cls, path: str, **fields: Any) -> Call:
        """A POST with a fresh ``Idempotency-Key``: every retry of this call sends the same key,
        so the service makes the resource once however many attempts reach it."""
        return cls("POST", path, headers={"Idempotency-Key": uuid.uuid4().hex}, **fields)


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Call | Sleep
# an operation yields steps, is sent each call's httpx.Response (or thrown its
# httpx.TransportError), and returns its result
Operation = Generator[Step, Any, T]


@contextmanager
def open_request(http: httpx.Client | httpx.AsyncClient, call: Call,
                 total_s: float) -> Iterator[httpx.Request]:
    """The request for one attempt of ``call``; an upload's file stays open (and is streamed)
    while the request is sent inside the ``with`` block. An upload's answer is waited for up to
    ``UPLOAD_READ_TIMEOUT_S``, never past the retries' ``total_s`` (a server that never answered
    held ``timeout=2, Retry(total_s=6)`` for 10 minutes)."""
    if call.upload is None:
        yield http.build_request(call.method, call.path, params=call.params, json=call.json,
                                 headers=call.headers)
        return
    timeout = http.timeout
    read = timeout.read or 0.0
    longer = httpx.Timeout(connect=timeout.connect, pool=timeout.pool, write=timeout.write,
                           read=max(read, min(UPLOAD_READ_TIMEOUT_S, total_s)))
    with call.upload.open() as source:
        yield http.build_request(call.method, call.path, params=call.params,
                                 headers=call.headers, timeout=longer,
                                 files={"file": (call.upload.name, source,
                                                 "application/octet-stream")})
