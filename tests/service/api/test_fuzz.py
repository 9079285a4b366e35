"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis), bounded for CI.

Every generated request must get a response that matches the schema and is not a 5xx. The
operations are driven with Hypothesis directly (``operation.as_strategy()``), which keeps the
test independent of schemathesis' pytest plugin.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import LiveServer

EXAMPLES_PER_OPERATION = 12
# Not "positive data acceptance": random bytes are schema-valid binary but not images, and
# refusing them (415) is the documented answer.
CHECKS = [
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]


def test_every_operation_holds_its_schema(live_server: LiveServer):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/count", "/segment", "/model", "/ready"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            response = case.call(timeout=60)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            case.validate_response(response, checks=CHECKS)

        check()
