"""RFC 9457 problem details: every error of the API, mapped in one place.

Each problem has a stable ``type`` (``/problems/<slug>``); validation problems list the offending
fields in ``errors``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dvrl_core.errors import ConfigError, DataError
from service.db import connection_lost, database_busy, first_line
from service.errors import ServiceError
from service.jobs import UnknownDataset

from .methods import allowed_methods

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"


# Starlette's whole word on a multipart body its parser refused (python-multipart's error is
# not passed on): a malformed body, or a part's headers over the parser's 4,224 bytes
MULTIPART_UNPARSED = "Invalid multipart data."
MULTIPART_ADVICE = ("the multipart/form-data body could not be parsed: a part is malformed, or "
                    "its headers are over 4 KB (a very long file name does it); send the table "
                    "as one part named 'file' with a short file name")


NO_FILE_PART = ("the multipart body holds no complete part named 'file': name the table's "
                "part 'file' (curl -F file=@train.csv), and send the body whole, to its closing "
                "boundary")
# FastAPI's word on a body json.loads raised on with something other than a syntax error:
# nesting past the recursion limit, an integer of more than 4,300 digits
BODY_UNPARSED = "There was an error parsing the body"
BODY_ADVICE = ("the body is not JSON this service can read: it nests too deeply or holds a "
               "number with thousands of digits")
# field errors listed in one problem: 50,000 wrong evaluations would answer with megabytes
MAX_ERRORS = 50


# characters of a message kept: a message that repeats what was sent (a 900 KB column name)
# would otherwise be as long as the request, twice over
MAX_MESSAGE = 2000


def _short(text: Any) -> Any:
    if not isinstance(text, str) or len(text) <= MAX_MESSAGE:
        return text
    return f"{text[:MAX_MESSAGE]}… ({len(text) - MAX_MESSAGE:,} more characters)"


def too_large(path: str) -> tuple[str, str]:
    """The 413's slug and title: an upload's, or any other request body's (a job spec)."""
    if path.rstrip("/") == "/v1/datasets":
        return "upload-too-large", "Upload too large"
    return "request-too-large", "Request too large"


def problem(status: int, slug: str, title: str, detail: str, request: Request | None = None,
            errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status,
                            "detail": _short(detail)}
    if request is not None:
        body["instance"] = _short(request.url.path)
    if errors:
        body["errors"] = [{k: _short(v) for k, v in e.items()} for e in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            body["detail"] = _short(f"{detail} (the first {MAX_ERRORS} of {len(errors)} errors "
                                    "are listed)")
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field(location: tuple | list) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


# a check across fields (a model validator) names the field it is about first: "ensemble: ..."
NAMED = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def _error(error: dict) -> dict[str, str]:
    """One field error of a validation problem: where, and pydantic's message without its
    "Value error, " prefix."""
    field, message = _field(error.get("loc", ())), str(error.get("msg", "invalid"))
    if error.get("type") == "int_parsing_size":  # pydantic says "input string" of a JSON number
        message = "a whole number is needed, and this one is far too large"
    if error.get("type") == "value_error" and "error" in (error.get("ctx") or {}):
        message = str(error["ctx"]["error"])
        named = NAMED.match(message)
        if field == "body" and named:
            field = named.group(1)
    return {"field": field, "message": message}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
        if where is not None:
            message = f"the body is not valid JSON ({where.get('ctx', {}).get('error', 'invalid')})"
            return problem(422, "validation-error", "Invalid request", message, request,
                           [{"field": "body", "message": message}])
        errors = [_error(e) for e in exc.errors()]
        kind = request.headers.get("content-type", "")
        no_file = any(tuple(e.get("loc", ())) == ("body", "file") and e.get("type") == "missing"
                      for e in exc.errors())
        if no_file:  # an upload without its part: say how to send one
            message = NO_FILE_PART if kind.lower().startswith("multipart/form-data") else (
                "send the table as multipart/form-data, in one part named 'file' (curl -F "
                f"file=@train.csv); this request says {kind or 'no content type'!r}")
            return problem(422, "validation-error", "Invalid request", message, request,
                           [{"field": "file", "message": message}])
        not_json = request.method in ("POST", "PUT", "PATCH") and "json" not in kind.lower() \
            and any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
        if not_json:  # curl -d sends a form: the JSON in it was never read as JSON
            message = ("send the body as JSON with Content-Type: application/json (this "
                       f"request says {kind or 'no content type'!r})")
            return problem(422, "validation-error", "Invalid request", message, request,
                           [{"field": "body", "message": message}])
        return problem(422, "validation-error", "Invalid request",
                       f"{len(errors)} field(s) are invalid", request, errors)

    @app.exception_handler(UnknownDataset)
    async def _unknown_dataset(request: Request, exc: UnknownDataset) -> JSONResponse:
        return problem(422, "unknown-dataset", "Unknown dataset", str(exc), request,
                       [{"field": ".".join(exc.field), "message": str(exc)}])

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        return problem(exc.status, exc.slug, exc.title, str(exc), request,
                       getattr(exc, "errors", None), headers=exc.headers)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        return problem(422, exc.code, "The data cannot be valued as given", str(exc), request)

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        return problem(422, exc.code, "Invalid parameters", str(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == MULTIPART_UNPARSED:
            return problem(400, "invalid-multipart", "Unreadable multipart body",
                           MULTIPART_ADVICE, request)
        if exc.status_code == 400 and exc.detail == BODY_UNPARSED:  # as invalid JSON is
            return problem(422, "validation-error", "Invalid request", BODY_ADVICE, request,
                           [{"field": "body", "message": BODY_ADVICE}])
        slug, title = {404: ("not-found", "Not found"),
                       405: ("method-not-allowed", "Method not allowed"),
                       413: too_large(request.url.path)}.get(
            exc.status_code, ("http-error", str(exc.detail)))
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method of the path, not the first route's
            headers = (headers or {}) | {"Allow": allowed_methods(request)}
        return problem(exc.status_code, slug, title, str(exc.detail), request,
                       headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if database_busy(exc):  # retried already (service.db.retrying): the client tries later
            log.warning("database busy on %s", request.url.path)
            return problem(503, "database-busy", "Database busy",
                           "the embedded database stayed locked by other writers; retry "
                           "shortly", request, headers={"Retry-After": "2"})
        if not connection_lost(exc):
            return await _unexpected(request, exc)
        log.warning("database unavailable on %s: %s", request.url.path,
                    first_line(exc))
        return problem(503, "database-unavailable", "Database unavailable",
                       "the database does not answer right now; retry shortly", request,
                       headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "internal-error", "Internal error",
                       "the request failed unexpectedly; the service log has the details",
                       request)
