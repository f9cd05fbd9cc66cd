"""The OpenAPI document's error answers: every operation lists the problems it can answer with,
as ``application/problem+json`` (api.problems), in place of FastAPI's default 422, whose
``HTTPValidationError`` body the API never sends."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from .problems import MEDIA_TYPE


class FieldError(BaseModel):
    field: str = Field(description="where: a body field's dotted path, a query parameter, "
                       "'body' or 'file'")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document: every error of the API."""

    type: str = Field(description="/problems/<slug>: stable, for programs to tell errors apart")
    title: str
    status: int
    detail: str = Field(description="what went wrong and what to do, in a sentence or two")
    instance: str | None = Field(None, description="the request's path")
    errors: list[FieldError] | None = Field(
        None, description="the offending fields, for validation problems (the first 50)")


# what each status means here, and the problem types it comes with
MEANINGS = {
    400: "A malformed query: `invalid-page-token`, `repeated-parameter` (a query parameter "
         "given twice), `unused-parameter` (one the chosen format ignores), `invalid-multipart`",
    401: "`unauthorized`: no API key, an unknown or revoked one, or one not sent as "
         "`Authorization: Bearer <key>` (with `WWW-Authenticate: Bearer`)",
    404: "`not-found`: no such resource for this key's owner (another owner's is not found "
         "either)",
    409: "`conflict` (the resource's state forbids it: a job still running, a dataset an "
         "unfinished job uses) or `results-not-ready` (the job has not SUCCEEDED)",
    413: "`upload-too-large` (an upload over `DVRL_MAX_UPLOAD_BYTES`) or `request-too-large` "
         "(a JSON body over 1 MiB)",
    422: "`validation-error` with the offending `errors`, or a refusal of the data named by "
         "type: `bad-upload`, `unknown-dataset`, `unknown-column`, `limit-exceeded`, "
         "`idempotency-key-reused`",
    429: "`too-many-jobs`: this owner's jobs in flight are at `DVRL_MAX_JOBS_IN_FLIGHT`; retry "
         "after `Retry-After` seconds",
    503: "`database-unavailable` or `database-busy` (retry after `Retry-After` seconds)",
}
WEBHOOKS_OFF = ("; `webhooks-not-configured` where the operator has not set "
                "`DVRL_WEBHOOK_KEY`")
WEBHOOK_REFUSED = ("; for a job's `notify`: `webhook-url-refused` (an address this service may "
                   "not call) or `webhook-secret-missing` (no usable secret to sign with)")

# the statuses of each operation beyond those every /v1 operation may answer (400 for a
# repeated query parameter, 401, 503; 413 for a body too large where a body is taken)
ERRORS: dict[str, tuple[int, ...]] = {
    "create_dataset": (422,),
    "list_datasets": (422,),
    "get_dataset": (404,),
    "delete_dataset": (404, 409),
    "create_job": (422, 429),
    "list_jobs": (422,),
    "get_job": (404,),
    "cancel_job": (404, 409),
    "delete_job": (404, 409),
    "get_values": (404, 409, 422),
    "get_corrupted": (404, 409, 422),
    "get_curves": (404, 409),
    "list_deliveries": (404,),
    "get_webhook_secret": (404,),
    "create_webhook_secret": (),
}
BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
VALIDATION_EXAMPLE = {
    "type": "/problems/validation-error", "title": "Invalid request", "status": 422,
    "detail": "1 field(s) are invalid", "instance": "/v1/jobs",
    "errors": [{"field": "validation.fraction", "message": "Input should be less than 1"}]}


def _answer(status: int, operation: str) -> dict[str, Any]:
    meaning = MEANINGS[status]
    if status == 503 and operation in ("create_job", "get_webhook_secret",
                                       "create_webhook_secret"):
        meaning += WEBHOOKS_OFF
    if status == 422 and operation == "create_job":
        meaning += WEBHOOK_REFUSED
    content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
    if status == 422:
        content["example"] = VALIDATION_EXAMPLE
    return {"description": meaning, "content": {MEDIA_TYPE: content}}


def add_problems(schema: dict[str, Any]) -> None:
    """Each operation's problems, in place of FastAPI's default 422, into ``schema``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs"))  # FieldError
    components["Problem"] = problem
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            answers.pop("422", None)  # FastAPI's default, never sent as it says
            name = operation.get("operationId", "")
            if name == "readyz":
                answers["503"] = {"description": "`not-ready`: the database or the broker does "
                                  "not answer (named in `detail`)",
                                  "content": {MEDIA_TYPE: {
                                      "schema": {"$ref": "#/components/schemas/Problem"}}}}
            if not path.startswith("/v1/"):
                continue
            common = (400, 401, 503, *((413,) if method in BODY_METHODS else ()))
            for status in (*ERRORS[name], *common):
                answers[str(status)] = _answer(status, name)
            operation["responses"] = dict(sorted(answers.items()))


def install(app: FastAPI) -> None:
    """``app.openapi()`` (``/openapi.json``, ``/docs``) with the problems, made once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if not getattr(app.state, "problems_documented", False):
            add_problems(generate())  # FastAPI's document, cached on the app: changed in place
            app.state.problems_documented = True
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]
