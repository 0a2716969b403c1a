"""Property-based runs over the OpenAPI spec: no 5xx, responses match the spec (schemathesis),
and no path or query parameter the database cannot hold reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_conforms_to_its_spec(app: FastAPI, admin: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def run(case: schemathesis.Case) -> None:
            # Schemathesis connects as "testclient", not from loopback: over TLS, as remote
            # clients must.
            case.call_and_validate(base_url="https://testserver", headers=admin, checks=CHECKS)

        run()


def _parameters(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] in ("path", "query"):
                    yield method, path, parameter


def _types(schema: dict[str, Any]) -> set[str]:
    return {option.get("type", "") for option in schema.get("anyOf", [schema])}


def _url(path: str, ids: dict[str, str], parameter: dict[str, Any], value: object) -> str:
    """``path`` with ``value`` in ``parameter``, real IDs and plausible values elsewhere."""
    if parameter["in"] == "path":
        path = path.replace("{" + parameter["name"] + "}", quote(str(value), safe=""))
    for name, default in {**ids, "action": "suspend", "version": "1"}.items():
        path = path.replace("{" + name + "}", default)
    return path if parameter["in"] == "path" else f"{path}?{urlencode({parameter['name']: value})}"


def test_no_path_or_query_parameter_out_of_the_columns_range_is_a_500(
    app: FastAPI, client: TestClient, admin: dict[str, str], real_ids: dict[str, str]
) -> None:
    """Integers past the database's INTEGER range, and strings with a NUL byte (which
    PostgreSQL refuses), are a 4xx naming the parameter on every route that takes them."""
    walked = list(_parameters(app.openapi()))
    integers = [entry for entry in walked if "integer" in _types(entry[2]["schema"])]
    texts = [entry for entry in walked if "string" in _types(entry[2]["schema"])]
    assert len(integers) >= 4 and len(texts) >= 10
    out_of_range = st.integers(min_value=2**31) | st.integers(max_value=-(2**31) - 1)
    text_with_nul = st.text(max_size=5).map(lambda text: text + "\x00")

    @given(entry=st.sampled_from(integers + texts), integer=out_of_range, text=text_with_nul)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(entry: tuple[str, str, dict[str, Any]], integer: int, text: str) -> None:
        method, path, parameter = entry
        value = integer if "integer" in _types(parameter["schema"]) else text
        response = client.request(method, _url(path, real_ids, parameter, value), headers=admin)
        assert 400 <= response.status_code < 500, (method, path, value, response.text)
        body = response.json()
        if response.status_code == 422 and method == "get":
            assert body["field"] == parameter["name"], body

    for entry in integers:  # every integer parameter at the boundaries, whatever is drawn
        method, path, parameter = entry
        for value in (2**31, 2**63, 10**23, -(2**63) - 1):
            response = client.request(method, _url(path, real_ids, parameter, value), headers=admin)
            assert response.status_code == 422, (method, path, value, response.text)
            assert response.json()["field"] == parameter["name"]
    refused()
