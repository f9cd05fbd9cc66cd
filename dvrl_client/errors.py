"""Exceptions raised by :mod:`dvrl_client`.

Every answer of the service that is not a success becomes a :class:`ProblemError` built from its
RFC 9457 problem body (``type``, ``title``, ``status``, ``detail`` and any extra fields, such as
the offending ``errors`` of a 422). The hierarchy::

    ClientError
    ├── ProblemError                the service answered with a problem (any non-2xx status)
    │   ├── InvalidRequest          400, 422: a bad spec, upload, page token or reused key
    │   ├── Unauthorized            401: a missing, unknown or revoked API key
    │   ├── NotFound                404: no such dataset or job (or another owner's)
    │   ├── Conflict                409: results of an unfinished job, deleting a running one
    │   ├── PayloadTooLarge         413: an upload or body over the service's limit
    │   ├── TooManyRequests         429: too many jobs in flight (``retry_after``)
    │   └── ServerError             5xx
    │       └── ServiceUnavailable  503: the database is away or busy (``retry_after``)
    ├── ServiceUnreachable          no answer at all (refused, reset, timed out), after retries
    ├── UnexpectedAnswer            an answer no DVRL service gives (a wrong URL, another server)
    ├── JobError                    a job that ended without values (``job_id``, ``job``)
    │   ├── JobFailed               FAILED: ``type``, ``title``, ``status``, ``detail`` say why
    │   └── JobCancelled            CANCELLED
    └── WaitTimeout                 ``wait(timeout=...)`` ran out before the job ended

429, 502, 503 and 504 are retried (honouring ``Retry-After``) before they are raised: see
:class:`dvrl_client.Retry`. Their ``retry_after`` is the wait the service asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class ClientError(Exception):
    """Base class of every error this client raises on purpose."""


class ProblemError(ClientError):
    """A problem answer of the service; ``extra`` holds the body's other fields."""

    def __init__(self, status: int, type: str, title: str, detail: str,
                 extra: dict[str, Any] | None = None, retry_after: float | None = None) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.extra = dict(extra or {})
        self.retry_after = retry_after  # seconds the service asked to wait (Retry-After)
        super().__init__(self._message())

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The offending fields of a validation problem (``field``, ``message``)."""
        return list(self.extra.get("errors") or [])

    def _message(self) -> str:
        text = f"{self.status} {self.title}: {self.detail}"
        fields = [_field_message(e) for e in self.errors
                  if isinstance(e, dict) and str(e.get("message")) not in self.detail]
        return f"{text} ({'; '.join(fields)})" if fields else text


def _field_message(error: dict[str, Any]) -> str:
    """``field: message``, the field once where the message starts by naming it."""
    field, message = str(error.get("field")), str(error.get("message"))
    return message if message.startswith(f"{field}: ") else f"{field}: {message}"


class InvalidRequest(ProblemError):
    pass


class Unauthorized(ProblemError):
    pass


class NotFound(ProblemError):
    pass


class Conflict(ProblemError):
    pass


class PayloadTooLarge(ProblemError):
    pass


class ServerError(ProblemError):
    pass


class TooManyRequests(ProblemError):
    pass


class ServiceUnavailable(ServerError):
    pass


class ServiceUnreachable(ClientError):
    """The service did not answer (connection refused or reset, a timeout), after retries."""


class UnexpectedAnswer(ClientError):
    """A success the service never gives to that request (``200 ok`` from another server on
    that port, say): the URL is most likely not the service's."""


class JobError(ClientError):
    """A job that ended without values; ``job`` is its last state as the service gave it."""

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message)
        self.job = job
        self.job_id: str = job["id"]


class JobFailed(JobError):
    """A FAILED job; its problem (``type``, ``title``, ``status``, ``detail``) says why."""

    def __init__(self, job: dict[str, Any]) -> None:
        error = job.get("error") or {}
        self.type: str = error.get("type", "about:blank")
        self.title: str = error.get("title", "Job failed")
        self.status: int = int(error.get("status", 500))
        self.detail: str = error.get("detail", "")
        super().__init__(f"job {job['id']} failed: {self.title}: {self.detail}", job)


class JobCancelled(JobError):
    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} was cancelled", job)


class WaitTimeout(ClientError):
    """``wait(timeout=...)`` returned before the job ended; the job goes on. ``job``: its body
    as last seen (the waiting ``Job`` is updated to it)."""

    def __init__(self, message: str, job: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.job = job


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: InvalidRequest, 401: Unauthorized, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 422: InvalidRequest, 429: TooManyRequests, 503: ServiceUnavailable,
}
_STANDARD = ("type", "title", "status", "detail")


def retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (given as seconds or as an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def problem_error(response: httpx.Response) -> ProblemError:
    """The typed error for a non-2xx answer: from its problem+json body, or, for an answer
    that has none (a proxy's HTML page), from its status line and the start of its text."""
    body: Any = None
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    if not isinstance(body, dict):  # a proxy's page, another server: its text, on one line
        text = " ".join(response.text[:300].split())
        body = {"type": "about:blank", "title": response.reason_phrase or "Error",
                "detail": f"{text} (no problem document: is the URL the DVRL service's?)"}
    status = response.status_code
    extra = {key: value for key, value in body.items() if key not in _STANDARD}
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ProblemError)
    return kind(status, str(body.get("type", "about:blank")), str(body.get("title", "")),
                str(body.get("detail", "")), extra, retry_after(response))


__all__ = [
    "ClientError", "Conflict", "InvalidRequest", "JobCancelled", "JobError", "JobFailed",
    "NotFound", "PayloadTooLarge", "ProblemError", "ServerError", "ServiceUnavailable",
    "ServiceUnreachable", "TooManyRequests", "Unauthorized", "UnexpectedAnswer", "WaitTimeout",
    "problem_error",
    "retry_after",
]
