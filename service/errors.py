"""Service-level errors, mapped to RFC 9457 problems in one place (api/problems.py).

    ServiceError                  type slug          status
    ├── NotFound                  not-found          404
    ├── Conflict                  conflict           409
    ├── ResultsNotReady           results-not-ready  409
    ├── UploadTooLarge            upload-too-large   413
    └── BadUpload                 bad-upload         422   (unreadable or unacceptable table)

dvrl_core's DataError and ConfigError are mapped there too (422, with their own codes).
"""

from __future__ import annotations


class ServiceError(Exception):
    slug = "service-error"
    status = 500
    title = "Service error"


class NotFound(ServiceError):
    slug, status, title = "not-found", 404, "Not found"


class Conflict(ServiceError):
    slug, status, title = "conflict", 409, "Conflict"


class ResultsNotReady(ServiceError):
    slug, status, title = "results-not-ready", 409, "Results not ready"


class UploadTooLarge(ServiceError):
    slug, status, title = "upload-too-large", 413, "Upload too large"


class BadUpload(ServiceError):
    slug, status, title = "bad-upload", 422, "Unreadable or unacceptable table"
