"""The gateway against its own OpenAPI document: the document is valid
OpenAPI 3.1, and a few hundred generated requests (schemathesis, a fixed seed)
get no 5xx and only answers the document describes (status, content type,
headers, body schema). The SSE endpoints stream forever: checked by
test_gateway_events.py instead."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from launcher.mesh import LocalMesh

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Examples per operation: about 330 requests over the 18 operations
# (some 15 s on the local mesh); schemathesis' coverage phase (every boundary
# value of every parameter, thousands of requests) is left to a manual run.
EXAMPLES = 30


# The same on both profiles (only the transport behind it differs): the embedded mesh only.
pytestmark = pytest.mark.parametrize("local_mesh", ["embedded"], indirect=True)


@pytest.fixture
def gateway_document(local_mesh: LocalMesh) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{local_mesh.gateway_url}/openapi.json", timeout=10).json()
    return document


@pytest.fixture
def gateway_schema(gateway_document: dict[str, Any], local_mesh: LocalMesh) -> Any:
    config = SchemathesisConfig.from_dict({"base-url": local_mesh.gateway_url})
    return schemathesis.openapi.from_dict(gateway_document, config=config).exclude(path_regex="events$")


def test_the_document_is_valid_openapi_3_1_and_names_every_route(gateway_document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(gateway_document)
    schema.validate()
    operations = {(method.upper(), path) for path, item in gateway_document["paths"].items() for method in item}
    assert {("POST", "/api/orders"), ("GET", "/orders/{id}/events"), ("GET", "/events")} <= operations
    assert len(operations) == 20


def test_generated_requests_get_no_5xx_and_documented_answers(gateway_schema: Any) -> None:
    # Not schemathesis' pytest plugin (its lazy fixture loader does not run
    # on pytest 9): each operation's cases are drawn by Hypothesis here.
    operations = [result.ok() for result in gateway_schema.get_all_operations()]
    assert len(operations) == 18
    for operation in operations:

        @seed(20261130)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        answers_as_documented()
