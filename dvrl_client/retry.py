"""The retry policy: which failures are tried again, how long to wait, when to give up.

A call is tried again when no answer came (connection refused or reset, a timeout) and when the
answer is 429 (too many jobs in flight), 502, 503 (the database is away or busy) or 504, but for
a 503 that says how the service is set up (webhooks off: no retry changes that). The wait
is the answer's ``Retry-After`` when it has one, else an exponential backoff with jitter. The last
failure is raised as a typed error after ``Retry.total_s`` seconds from the first attempt, or
sooner, after ``Retry.unreachable_s`` seconds without any answer (a wrong URL fails in a minute,
a 429 is waited out for longer).

Retrying is safe for every call the client makes: GETs read, DELETE and cancel end in the same
state however often they arrive, and every POST carries an ``Idempotency-Key`` that stays the same
across the retries of one call (:meth:`dvrl_client.calls.Call.post`), so the service makes a
dataset or a job once even when an answer was lost after it made it.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from dataclasses import dataclass

import httpx

from .calls import Call, Operation, Sleep
from .errors import ServiceUnreachable, problem_error, retry_after

log = logging.getLogger("dvrl_client")

# failures where the request may not have reached the service, or reached it and its answer
# was lost: both are safe to repeat (see the module docstring)
RETRIED_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# problems of a retried status that a retry does not change: the service's configuration
SETTLED_PROBLEMS = frozenset({"/problems/webhooks-not-configured"})


@dataclass(frozen=True)
class Retry:
    """How a client retries. ``total_s``: give up this many seconds after the first attempt
    (a ``Retry-After`` that would end past it is not waited for); ``unreachable_s``: give up
    after this long without an answer (long enough for an API restart); ``backoff_s`` doubles
    after each failure up to ``max_backoff_s``, each wait drawn between half of it and all of
    it. ``Retry(total_s=0)`` never retries."""

    total_s: float = 300.0
    unreachable_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        return random.uniform(ceiling / 2, ceiling)


def send(call: Call, retry: Retry) -> Operation[httpx.Response]:
    """The answer to ``call``, retried under ``retry``: any answer whose status is not retried
    is returned as it is (the caller maps errors); giving up raises the last failure typed."""
    started = answered = time.monotonic()
    attempt = 0
    answer_lost = False
    while True:
        attempt += 1
        try:
            response = yield call
        except RETRIED_TRANSPORT_ERRORS as exc:
            if isinstance(exc, httpx.ConnectError) and _tls_failed(exc):
                # a handshake that failed: no retry changes what the server speaks (a TLS
                # error later, on a connection that worked, is retried as any lost answer)
                raise ServiceUnreachable(
                    f"{call.method} {_url(exc, call)}: the TLS handshake failed ({exc}); is the "
                    "service served over https? (one on plain HTTP needs http://)") from exc
            answer_lost = True
            delay = retry.backoff(attempt - 1)
            failure: Exception = ServiceUnreachable(
                f"no answer to {call.method} {_url(exc, call)} after {attempt} attempt(s) in "
                f"{time.monotonic() - started:.0f}s: {type(exc).__name__}: {exc}")
            failure.__cause__ = exc
            why = f"{type(exc).__name__}"
            budget = min(retry.total_s, answered - started + retry.unreachable_s)
        else:
            answered = time.monotonic()
            if response.status_code == 404 and call.gone_means_done and answer_lost:
                return httpx.Response(204, request=response.request)
            if response.status_code not in retry.statuses:
                return response
            failure = problem_error(response)
            if failure.type in SETTLED_PROBLEMS:
                return response
            asked = retry_after(response)
            delay = asked if asked is not None else retry.backoff(attempt - 1)
            why = f"{response.status_code} {response.reason_phrase}"
            budget = retry.total_s
        if time.monotonic() - started + delay > budget:
            raise failure
        log.warning("%s %s: %s; retrying in %.1fs", call.method, call.path, why, delay)
        yield Sleep(delay)


def _tls_failed(exc: BaseException) -> bool:
    """Whether ``exc`` came from a TLS handshake that failed (an https URL for a plain HTTP
    server, an untrusted certificate): ssl's errors among its causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _url(exc: httpx.TransportError, call: Call) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # raised before a request existed
        return call.path
