"""Service-level errors, mapped to RFC 9457 problems in one place (api/problems.py).

    ServiceError                  type slug          status
    ├── Unauthorized              unauthorized       401   (missing, unknown or revoked key)
    ├── NotFound                  not-found          404   (also: another owner's resource)
    ├── Conflict                  conflict           409
    ├── ResultsNotReady           results-not-ready  409
    ├── IdempotencyMismatch       idempotency-key-reused 422 (same key, different request)
    ├── InvalidPageToken          invalid-page-token 400   (malformed, unknown or not yours)
    ├── RepeatedParameter         repeated-parameter 400   (a query parameter given twice)
    ├── UnusedParameter           unused-parameter   400   (one the chosen format ignores)
    ├── UploadTooLarge            upload-too-large   413   (request-too-large: any other body)
    ├── TooManyJobs               too-many-jobs      429   (with Retry-After)
    └── BadUpload                 bad-upload         422   (unreadable or unacceptable table)

dvrl_core's DataError and ConfigError are mapped there too (422, with their own codes).
"""

from __future__ import annotations


class ServiceError(Exception):
    slug = "service-error"
    status = 500
    title = "Service error"
    headers: dict[str, str] | None = None


class Unauthorized(ServiceError):
    slug, status, title = "unauthorized", 401, "Unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="dvrl"'}


class NotFound(ServiceError):
    slug, status, title = "not-found", 404, "Not found"


class Conflict(ServiceError):
    slug, status, title = "conflict", 409, "Conflict"


class ResultsNotReady(ServiceError):
    slug, status, title = "results-not-ready", 409, "Results not ready"


class InvalidPageToken(ServiceError):
    slug, status, title = "invalid-page-token", 400, "Invalid page token"


class RepeatedParameter(ServiceError):
    slug, status, title = "repeated-parameter", 400, "Repeated query parameter"

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"each query parameter takes one value: {', '.join(names)} given "
                         "more than once")
        self.errors = [{"field": name, "message": "given more than once"} for name in names]


class UnusedParameter(ServiceError):
    slug, status, title = "unused-parameter", 400, "Query parameter not used here"

    def __init__(self, names: list[str], why: str) -> None:
        super().__init__(f"{', '.join(names)}: {why}")
        self.errors = [{"field": name, "message": why} for name in names]


class UploadTooLarge(ServiceError):
    slug, status, title = "upload-too-large", 413, "Upload too large"


class BadUpload(ServiceError):
    slug, status, title = "bad-upload", 422, "Unreadable or unacceptable table"


class IdempotencyMismatch(ServiceError):
    slug, status, title = "idempotency-key-reused", 422, "Idempotency key reused"


class TooManyJobs(ServiceError):
    slug, status, title = "too-many-jobs", 429, "Too many jobs in flight"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}
