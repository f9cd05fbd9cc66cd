"""schemathesis against the API's own OpenAPI spec: generated requests (a bounded number per
operation) never get a 5xx. Runs on the real PostgreSQL, as owner alice with a valid key."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = 25


def test_no_generated_request_gets_a_5xx(client):
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    headers = {"Authorization": client.headers["Authorization"]}
    failures = []
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
            if response.status_code >= 500:
                failures.append((case.operation.label, case.path_parameters, case.query,
                                 str(case.body)[:200], response.status_code,
                                 response.text[:300]))

        check()
    assert failures == []
    assert len(statuses) >= 5 * len(operations)  # the generator really ran
    print(f"{len(statuses)} requests over {len(operations)} operations; statuses "
          f"{sorted(set(statuses))}")
