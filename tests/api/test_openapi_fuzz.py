"""schemathesis against the API's own OpenAPI spec: generated requests (a bounded number per
operation) never get a 5xx, and every status they get is one the document lists for that
operation, as a problem document where it is an error. Runs on the real PostgreSQL, as owner
alice with a valid key."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from service.errors import ServiceError

EXAMPLES = 25


def test_no_generated_request_gets_a_5xx(client):
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    document = client.get("/openapi.json").json()["paths"]
    headers = {"Authorization": client.headers["Authorization"]}
    failures = []
    undocumented = set()
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            listed = document[case.operation.path][case.operation.method.lower()]["responses"]
            if str(response.status_code) not in listed:
                undocumented.add((case.operation.label, response.status_code))
            elif response.status_code >= 400:
                kind = next(iter(listed[str(response.status_code)]["content"]))
                assert response.headers["content-type"][0].startswith(kind), response.text
            if response.status_code >= 500:
                failures.append((case.operation.label, case.path_parameters, case.query,
                                 str(case.body)[:200], response.status_code,
                                 response.text[:300]))

        check()
    assert failures == []
    assert undocumented == set()
    assert len(statuses) >= 5 * len(operations)  # the generator really ran
    print(f"{len(statuses)} requests over {len(operations)} operations; statuses "
          f"{sorted(set(statuses))}")


def _subclasses(kind: type) -> list[type]:
    return [sub for direct in kind.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_every_operation_lists_its_problems(client):
    """The document listed no 401, 404, 409, 413, 429 or 503, and its only error, 422, as
    FastAPI's HTTPValidationError, a body the API never sends."""
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {status: answer for status, answer in operation["responses"].items()
                      if status >= "400"}
            for answer in errors.values():
                assert answer["content"] == {"application/problem+json": answer["content"][
                    "application/problem+json"]}
                assert answer["content"]["application/problem+json"]["schema"] == problem
            if path.startswith("/v1/"):
                assert {"400", "401", "503"} <= set(errors), (method, path)
    jobs = document["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"413", "422", "429"} <= set(jobs) and "too-many-jobs" in jobs["429"]["description"]
    assert "404" in document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    assert "409" in document["paths"]["/v1/jobs/{job_id}/values"]["get"]["responses"]
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]
    # every problem type the service answers with is named where it can be answered
    named = " ".join(answer["description"] for operations in document["paths"].values()
                     for operation in operations.values()
                     for answer in operation["responses"].values())
    slugs = {kind.slug for kind in _subclasses(ServiceError)}
    assert {f"`{slug}`" for slug in slugs if f"`{slug}`" not in named} == set()
    creating = jobs["422"]["description"]
    assert "`webhook-url-refused`" in creating and "`webhook-secret-missing`" in creating
