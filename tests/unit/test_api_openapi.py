"""The OpenAPI document: valid OpenAPI 3.1, generated from the very table the API dispatches
from, and true of what the API answers."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from fleetops import remediation_documents as rdocs
from fleetops.api import control_models as cm
from fleetops.api import models
from fleetops.api.auth import Role
from fleetops.api.handlers import default_routes
from fleetops.api.openapi import document
from fleetops.api.routing import Answer, Route
from fleetops.contract.requests import InstanceRequested, duration_minutes
from fleetops.domain.model import Action
from fleetops.domain.remediation import Limits
from fleetops.domain.rollouts import Limit, parse_selector
from fleetops.domain.windows import parse_duration
from tests.unit.test_api_endpoints import ApiHarness

DOC = document(default_routes())


def schema_of(ref: str) -> OAS31Validator:
    """A validator for one component, resolving refs within the document's components."""
    return OAS31Validator({"$ref": ref, "components": DOC["components"]})


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


# Keywords pydantic writes when it cannot turn a constraint into JSON Schema: a client
# (or schemathesis) ignores them, so the document would allow what the API rejects.
PYDANTIC_ONLY = {"ge", "le", "gt", "lt", "multiple_of", "min_length", "max_length"}


def _keywords(node: Any, at: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield at, key
            if key != "properties":
                yield from _keywords(value, f"{at}/{key}")
            else:
                for name, schema in value.items():
                    yield from _keywords(schema, f"{at}/properties/{name}")
    elif isinstance(node, list):
        for n, item in enumerate(node):
            yield from _keywords(item, f"{at}/{n}")


def test_every_bound_is_a_json_schema_keyword() -> None:
    found = [f"{at}: {key}" for at, key in _keywords(DOC["components"]) if key in PYDANTIC_ONLY]
    assert not found, found
    limits = DOC["components"]["schemas"]["LimitsPatch"]["properties"]["max_remediations"]
    assert {"type": "integer", "minimum": 0, "maximum": 1_000_000} in limits["anyOf"]


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
    roles = {(r.method, r.path): r.role for r in default_routes() if r.method != "GET"}
    assert roles == {
        ("POST", "/v1/requests"): Role.OPERATOR,
        ("POST", "/v1/operations/{id}:approve"): Role.ADMIN,
        ("POST", "/v1/operations/{id}:cancel"): Role.OPERATOR,
        ("POST", "/v1/dead-letters/{id}:replay"): Role.OPERATOR,
        ("POST", "/v1/rollouts"): Role.OPERATOR,
        ("POST", "/v1/rollouts/{id}:pause"): Role.OPERATOR,
        ("POST", "/v1/rollouts/{id}:resume"): Role.OPERATOR,
        ("POST", "/v1/rollouts/{id}:abort"): Role.OPERATOR,
        ("POST", "/v1/automation:pause"): Role.OPERATOR,
        ("POST", "/v1/automation:resume"): Role.ADMIN,
        ("PATCH", "/v1/automation"): Role.ADMIN,
        ("POST", "/v1/maintenance:pause"): Role.ADMIN,
        ("POST", "/v1/maintenance:resume"): Role.ADMIN,
        ("POST", "/v1/maintenance:run-now"): Role.ADMIN,
        ("PUT", "/v1/maintenance/default-window"): Role.ADMIN,
        ("POST", "/v1/maintenance/freezes"): Role.ADMIN,
        ("POST", "/v1/instances/{id}/remediation:reset"): Role.OPERATOR,
    }
    reads = {r.role for r in default_routes() if r.method == "GET" and r.path.startswith("/v1/")}
    assert reads == {Role.VIEWER, None}


def test_the_request_body_is_the_contract_less_requested_by() -> None:
    body = DOC["components"]["schemas"]["RequestBody"]
    contract = set(InstanceRequested.model_fields)
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
    rollout = ids["rollout"]
    window = {"days": ["sun"], "start": "02:00", "duration": "4h", "timezone": "Asia/Tokyo"}
    freeze = {"start": "2026-12-20T00:00:00Z", "end": "2027-01-02T00:00:00Z", "reason": "year end"}
    calls: list[tuple[str, str, str, Any]] = [
        ("GET", "/v1/instances", "/v1/instances", None),
        ("POST", "/v1/rollouts", "/v1/rollouts", {"version": "4.0.0"}),
        ("GET", "/v1/rollouts", "/v1/rollouts", None),
        ("GET", "/v1/rollouts/{id}", f"/v1/rollouts/{rollout}", None),
        ("POST", "/v1/rollouts/{id}:pause", f"/v1/rollouts/{rollout}:pause", None),
        ("POST", "/v1/rollouts/{id}:resume", f"/v1/rollouts/{rollout}:resume", None),
        ("POST", "/v1/rollouts/{id}:abort", f"/v1/rollouts/{rollout}:abort", None),
        ("POST", "/v1/rollouts/{id}:abort", f"/v1/rollouts/{rollout}:abort", None),
        ("GET", "/v1/automation", "/v1/automation", None),
        ("POST", "/v1/automation:pause", "/v1/automation:pause", None),
        ("POST", "/v1/automation:resume", "/v1/automation:resume", None),
        ("PATCH", "/v1/automation", "/v1/automation", {"limits": {"cooldown_seconds": 60}}),
        ("PATCH", "/v1/automation", "/v1/automation", {"limits": {"cooldown": 60}}),
        ("GET", "/v1/maintenance", "/v1/maintenance", None),
        ("POST", "/v1/maintenance:pause", "/v1/maintenance:pause", None),
        ("POST", "/v1/maintenance:run-now", "/v1/maintenance:run-now", None),
        ("PUT", "/v1/maintenance/default-window", "/v1/maintenance/default-window", window),
        ("POST", "/v1/maintenance/freezes", "/v1/maintenance/freezes", freeze),
        ("GET", "/v1/instances/{id}/windows", "/v1/instances/acme-1/windows", None),
        ("GET", "/v1/instances/{id}/windows", "/v1/instances/nope-1/windows", None),
        (
            "POST",
            "/v1/instances/{id}/remediation:reset",
            "/v1/instances/acme-1/remediation:reset",
            None,
        ),
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


# ------------------------------------------------ rollouts, automation, maintenance


def test_the_control_bodies_are_documented_by_name() -> None:
    bodies = {
        (method, path): operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    }
    ref = "#/components/schemas/"
    assert bodies == {
        ("post", "/v1/requests"): ref + "RequestBody",
        ("post", "/v1/rollouts"): ref + "RolloutStart",
        ("patch", "/v1/automation"): ref + "AutomationPatch",
        ("put", "/v1/maintenance/default-window"): ref + "DefaultWindowBody",
        ("post", "/v1/maintenance/freezes"): ref + "FreezeBody",
    }


def test_the_limits_a_patch_takes_are_the_services_own() -> None:
    assert tuple(cm.LimitsPatch.model_fields) == rdocs.SETTING_NAMES
    assert tuple(cm.LimitsOut.model_fields) == tuple(rdocs.limits_to_doc(Limits()))


def test_a_rollout_may_carry_every_action_but_provision_and_delete() -> None:
    assert set(cm.ROLLOUT_ACTIONS) == {a.value for a in Action} - {"provision", "delete"}
    assert set(get_args(cm.RolloutAction)) == set(cm.ROLLOUT_ACTIONS)


@given(st.from_regex(cm.LIMIT_PATTERN, fullmatch=True))
def test_every_limit_the_document_allows_the_service_reads(text: str) -> None:
    Limit.parse(text).resolve(1000, at_least=0)


@given(st.from_regex(cm.SPAN_PATTERN, fullmatch=True))
def test_every_span_the_document_allows_the_service_reads(text: str) -> None:
    assert text == "0" or parse_duration(text) >= timedelta(0)


@given(st.from_regex(cm.CANARY_PATTERN, fullmatch=True))
def test_every_canary_the_document_allows_the_service_reads(text: str) -> None:
    if text and not text.isdigit():
        assert parse_selector(text)


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"version": "4.0.0"}, True),
        ({"action": "upgrade", "version": "4.0.0", "selector": {"!ring": "canary"}}, True),
        ({}, False),
        ({"action": "upgrade"}, False),
        ({"action": "upgrade", "version": None}, False),
        ({"action": "resize", "size": "large"}, True),
        ({"action": "resize"}, False),
        ({"action": "resize", "size": None}, False),
        ({"action": "restart"}, True),
        ({"action": "provision", "version": "1"}, False),
        ({"action": "restart", "canary": "2", "max_concurrency": 3, "max_errors": "10%"}, True),
        ({"action": "restart", "canary": None, "bake": "0", "cutoff": "1h30m"}, True),
        ({"action": "restart", "canary": ""}, True),
        ({"action": "restart", "canary": "ring"}, False),
        ({"action": "restart", "max_concurrency": "101%"}, False),
        ({"action": "restart", "max_concurrency": 1.5}, False),
        ({"action": "restart", "max_concurrency": 2.0}, True),
        ({"action": "restart", "max_errors": False}, False),
        ({"action": "restart", "selector": {"__name__": "x"}}, False),
        ({"action": "restart", "selector": {"ring": "x" * 64}}, False),
        ({"action": "restart", "bake": "10s"}, False),
        ({"action": "restart", "now": "true"}, False),
        ({"action": "restart", "created_by": "me"}, False),
    ],
)
def test_the_rollout_body_schema_agrees_with_the_api(
    tmp_path: Path, body: dict[str, Any], valid: bool
) -> None:
    assert schema_of("#/components/schemas/RolloutStart").is_valid(body) is valid
    harness = ApiHarness(tmp_path)
    harness.seed()
    response = harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=body)
    assert (response.status_code == 201) is valid, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "method", "schema", "body", "valid"),
    [
        ("/v1/automation", "PATCH", "AutomationPatch", {}, True),
        ("/v1/automation", "PATCH", "AutomationPatch", {"dry_run": True}, True),
        ("/v1/automation", "PATCH", "AutomationPatch", {"dry_run": 1}, False),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"flap_cycles": 2}}, True),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"flap_cycles": 2.5}}, False),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"flap_cycles": 145.0}}, True),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"flap_cycles": True}}, False),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"flap_cycles": "2"}}, False),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"x": 1}}, False),
        ("/v1/automation", "PATCH", "AutomationPatch", {"limits": {"cooldown_seconds": 0.5}}, True),
        (
            "/v1/automation",
            "PATCH",
            "AutomationPatch",
            {"limits": {"cooldown_seconds": 10**9}},
            False,
        ),
        (
            "/v1/maintenance/default-window",
            "PUT",
            "DefaultWindowBody",
            {"days": ["mon"], "start": "23:30", "duration": "168h", "timezone": "UTC"},
            True,
        ),
        (
            "/v1/maintenance/default-window",
            "PUT",
            "DefaultWindowBody",
            {"days": ["mon"], "start": "23:30", "duration": "0m", "timezone": "UTC"},
            False,
        ),
        (
            "/v1/maintenance/default-window",
            "PUT",
            "DefaultWindowBody",
            {"days": ["mon"], "start": "23:30", "duration": "4h", "timezone": "localtime"},
            False,
        ),
        (
            "/v1/maintenance/freezes",
            "POST",
            "FreezeBody",
            {
                "start": "2026-12-20T00:00:00+14:00",
                "end": "2999-12-31T23:59:59-12:00",
                "reason": "x",
            },
            True,
        ),
        (
            "/v1/maintenance/freezes",
            "POST",
            "FreezeBody",
            {"start": "0001-01-01T00:00:00+01:00", "end": "2027-01-01T00:00:00Z", "reason": "x"},
            False,
        ),
        (
            "/v1/maintenance/freezes",
            "POST",
            "FreezeBody",
            {"start": "2026-12-20T00:00:00Z", "end": "2027-01-01T00:00:00Z", "reason": " "},
            False,
        ),
    ],
)
def test_the_control_body_schemas_agree_with_the_api(
    tmp_path: Path, path: str, method: str, schema: str, body: dict[str, Any], valid: bool
) -> None:
    assert schema_of(f"#/components/schemas/{schema}").is_valid(body) is valid
    harness = ApiHarness(tmp_path)
    response = harness.call(method, path, Role.ADMIN, body=body)
    assert (response.status_code < 300) is valid, response.get_data(as_text=True)
