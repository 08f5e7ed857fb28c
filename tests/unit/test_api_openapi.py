"""The OpenAPI document: valid OpenAPI 3.1, generated from the very table the API dispatches
from, and true of what the API answers."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from fleetops.api import models
from fleetops.api.auth import Role
from fleetops.api.handlers import default_routes
from fleetops.api.openapi import document
from fleetops.api.routing import Answer, Route
from fleetops.contract.requests import duration_minutes
from tests.unit.test_api_endpoints import ApiHarness

DOC = document(default_routes())


def schema_of(ref: str) -> OAS31Validator:
    """A validator for one component, resolving refs within the document's components."""
    return OAS31Validator({"$ref": ref, "components": DOC["components"]})


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


def test_the_validator_would_catch_a_broken_document() -> None:
    broken = copy.deepcopy(DOC)
    del broken["paths"]["/v1/instances"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    routes = {(r.method.lower(), r.path) for r in default_routes()}
    documented = {(method, path) for path, item in DOC["paths"].items() for method in item}
    assert routes == documented
    ids = [op["operationId"] for item in DOC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("route", default_routes(), ids=lambda r: f"{r.method} {r.path}")
def test_each_route_documents_its_role_parameters_and_answers(route: Route) -> None:
    operation = DOC["paths"][route.path][route.method.lower()]
    if route.role is None:
        assert operation["security"] == []
        assert "x-fleetops-role" not in operation
    else:
        assert operation["security"] == [{"bearer": []}]
        assert operation["x-fleetops-role"] == route.role.value
        assert f"`{route.role.value}`" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])
    assert [p["name"] for p in operation.get("parameters", [])] == [p.name for p in route.params]
    assert set(operation["responses"]) == {str(a.status) for a in route.answers}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            assert parameter["required"] is True
            assert "{" + parameter["name"] + "}" in route.path


def test_roles_in_the_table_are_the_documented_ones() -> None:
    roles = {r.path: r.role for r in default_routes() if r.method == "POST"}
    assert roles == {
        "/v1/requests": Role.OPERATOR,
        "/v1/operations/{id}:approve": Role.ADMIN,
        "/v1/operations/{id}:cancel": Role.OPERATOR,
        "/v1/dead-letters/{id}:replay": Role.OPERATOR,
    }


def test_the_request_body_is_the_contract_less_requested_by() -> None:
    body = DOC["components"]["schemas"]["RequestBody"]
    contract = set(models.InstanceRequested.model_fields)
    assert set(body["properties"]) == contract - {"requested_by"}
    assert body["additionalProperties"] is False
    assert body["required"] == ["instance", "action"]


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"instance": "acme-1", "action": "restart"}, True),
        ({"instance": "acme-1", "action": "upgrade", "version": "2.0.0"}, True),
        ({"instance": "acme-1", "action": "upgrade"}, False),
        ({"instance": "acme-1", "action": "upgrade", "version": None}, False),
        ({"instance": "acme-1", "action": "resize", "size": "large"}, True),
        ({"instance": "acme-1", "action": "resize"}, False),
        ({"instance": "acme-1", "action": "restart", "requested_by": "me"}, False),
        ({"instance": "acme-1", "action": "restart", "dry_run": "true"}, False),
        ({"instance": "acme-1", "action": "restart", "labels": {"__name__": "x"}}, False),
        ({"instance": "acme-1", "action": "restart", "labels": {"_name_": "x"}}, True),
        ({"instance": "acme-1", "action": {}}, False),
    ],
)
def test_the_body_schema_agrees_with_the_api(
    tmp_path: Path, body: dict[str, Any], valid: bool
) -> None:
    assert schema_of("#/components/schemas/RequestBody").is_valid(body) is valid
    harness = ApiHarness(tmp_path)
    response = harness.call("POST", "/v1/requests", Role.OPERATOR, body=body)
    assert (response.status_code == 202) is valid, response.get_data(as_text=True)


@given(st.from_regex(models.DURATION_PATTERN, fullmatch=True))
def test_every_duration_the_document_allows_the_contract_accepts(text: str) -> None:
    assert 0 < duration_minutes(text) <= 7 * 24 * 60


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=10100))
def test_the_document_allows_the_plain_spellings_of_every_valid_duration(h: int, m: int) -> None:
    pattern = re.compile(models.DURATION_PATTERN)
    if 0 < h <= 168:
        assert pattern.fullmatch(f"{h}h")
    if 0 < m <= 9999:
        assert pattern.fullmatch(f"{m}m")
    if 0 < h < 168 and m < 60:
        assert pattern.fullmatch(f"{h}h{m}m")


def test_every_time_zone_offered_is_one_the_contract_accepts() -> None:
    zones = models.time_zones()
    assert "Europe/Paris" in zones
    for zone in zones:
        ZoneInfo(zone)


def _answer(route_path: str, method: str, status: int) -> Answer:
    route = next(r for r in default_routes() if (r.path, r.method) == (route_path, method))
    return next(a for a in route.answers if a.status == status)


def test_what_the_api_answers_is_what_the_document_says(tmp_path: Path) -> None:
    harness = ApiHarness(tmp_path)
    ids = harness.seed()
    calls: list[tuple[str, str, str, Any]] = [
        ("GET", "/v1/instances", "/v1/instances", None),
        ("GET", "/v1/instances/{id}", "/v1/instances/acme-1", None),
        ("GET", "/v1/operations", "/v1/operations", None),
        ("GET", "/v1/operations/{id}", f"/v1/operations/{ids['pending']}", None),
        ("GET", "/v1/dead-letters", "/v1/dead-letters", None),
        ("GET", "/v1/dead-letters/{id}", f"/v1/dead-letters/{ids['letter']}", None),
        ("GET", "/v1/me", "/v1/me", None),
        ("POST", "/v1/requests", "/v1/requests", {"instance": "acme-1", "action": "snapshot"}),
        ("POST", "/v1/operations/{id}:approve", f"/v1/operations/{ids['pending']}:approve", None),
        ("POST", "/v1/dead-letters/{id}:replay", f"/v1/dead-letters/{ids['letter']}:replay", None),
    ]
    for method, template, path, body in calls:
        response = harness.call(method, path, Role.ADMIN, body=body)
        answer = _answer(template, method, response.status_code)
        assert answer.model is not None
        errors = list(
            schema_of(f"#/components/schemas/{answer.model.__name__}").iter_errors(
                response.get_json()
            )
        )
        assert errors == [], (path, errors[:1])
    wrong = harness.call("GET", "/v1/instances/nope-1", Role.VIEWER)
    assert schema_of("#/components/schemas/ErrorBody").is_valid(wrong.get_json())
    assert not schema_of("#/components/schemas/ErrorBody").is_valid({"error": "nope"})
