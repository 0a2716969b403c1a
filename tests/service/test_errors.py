"""The error shape for bodies that are not what a JSON route reads: malformed JSON, not an
object, none at all, or another content type; on every route that takes a JSON body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
NOT_OBJECTS = JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3)
OBJECTS = st.dictionaries(st.text(max_size=5), JSON_SCALARS, min_size=1, max_size=3)


def _json_routes(app: FastAPI, ids: dict[str, str]) -> list[tuple[str, str, bool]]:
    """Each route reading a JSON body: method, path with real IDs, whether the body is required."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {})
            if "application/json" in body.get("content", {}):
                for name, value in {**ids, "action": "suspend"}.items():
                    path = path.replace("{" + name + "}", value)
                routes.append((method, path, bool(body.get("required"))))
    return routes


@pytest.fixture
def routes(app: FastAPI, real_ids: dict[str, str]) -> list[tuple[str, str, bool]]:
    found = _json_routes(app, real_ids)
    assert len(found) >= 7
    return found


def _send(
    client: TestClient, admin: dict[str, str], route: tuple[str, str, bool], **request: Any
) -> Any:
    method, path, _ = route
    return client.request(method, path, headers={**admin, **request.pop("headers", {})}, **request)


def test_malformed_json_names_the_body_and_the_position(
    client: TestClient, admin: dict[str, str], routes: list[tuple[str, str, bool]]
) -> None:
    @given(route=st.sampled_from(routes), document=OBJECTS, cut=st.integers(min_value=1))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(route: tuple[str, str, bool], document: dict[str, Any], cut: int) -> None:
        text = json.dumps(document)
        truncated = text[: 1 + cut % (len(text) - 1)]  # a proper prefix of an object: not JSON
        response = _send(
            client, admin, route, content=truncated, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (route, truncated, response.text)
        body = response.json()
        assert body["field"] == "body"
        assert body["detail"].startswith("body: malformed JSON at position "), body

    refused()
    response = client.post(
        "/partners", content='{"name": ', headers={**admin, "content-type": "application/json"}
    )
    assert response.json() == {
        "error": "invalid_request",
        "detail": "body: malformed JSON at position 9: Expecting value",
        "field": "body",
    }


def test_a_body_that_is_not_an_object_or_is_missing_names_the_body(
    client: TestClient, admin: dict[str, str], routes: list[tuple[str, str, bool]]
) -> None:
    @given(route=st.sampled_from(routes), value=NOT_OBJECTS)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(route: tuple[str, str, bool], value: Any) -> None:
        if value is None and not route[2]:
            return  # an optional body may be null
        json_headers = {"content-type": "application/json"}
        response = _send(client, admin, route, content=json.dumps(value), headers=json_headers)
        assert response.status_code == 422, (route, value, response.text)
        body = response.json()
        assert body["field"] == "body"
        assert "body: must be a JSON object, not " in body["detail"]

    refused()
    for route in routes:
        if route[2]:
            response = _send(client, admin, route)
            assert response.status_code == 422, (route, response.text)
            assert response.json()["field"] == "body"
            assert "request has no body" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
)
def test_another_content_type_is_415_naming_the_one_expected(
    client: TestClient,
    admin: dict[str, str],
    routes: list[tuple[str, str, bool]],
    content_type: str | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    for route in routes:
        response = _send(client, admin, route, content=b'{"name": "x"}', headers=headers)
        assert response.status_code == 415, (route, response.text)
        body = response.json()
        assert (body["error"], body["field"]) == ("unsupported_media_type", "body")
        assert "application/json" in body["detail"]
        assert (content_type or "no Content-Type") in body["detail"]
