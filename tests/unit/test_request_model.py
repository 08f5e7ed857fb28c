"""Validation of fleetops.instance.requested data: each error names its field."""

from __future__ import annotations

from typing import Any

import pytest

from fleetops.contract.errors import InvalidRequest, MalformedEvent
from fleetops.contract.requests import new_request_event, parse_request
from fleetops.domain.model import Action, Size


def parse(data: Any) -> Any:
    return parse_request(new_request_event(data, source="//t", event_id="1"))


def test_provision_gets_small_by_default_and_keeps_its_window() -> None:
    request = parse(
        {
            "instance": "acme-prod",
            "action": "provision",
            "version": "5.2.1",
            "maintenance_window": {
                "days": ["sun"],
                "start": "02:00",
                "duration": "4h",
                "timezone": "America/New_York",
            },
        }
    )
    params = request.params()
    assert request.action is Action.PROVISION
    assert params.size is Size.SMALL
    assert params.maintenance_window is not None
    assert params.maintenance_window.days == ("sun",)


@pytest.mark.parametrize(
    ("data", "code", "names"),
    [
        ({"action": "restart"}, "invalid-request", "'instance'"),
        ({"instance": "acme-prod"}, "invalid-request", "'action'"),
        ({"instance": "acme-prod", "action": "explode"}, "unknown-action", "explode"),
        ({"instance": "acme-prod", "action": "provision"}, "invalid-request", "'version'"),
        ({"instance": "acme-prod", "action": "upgrade"}, "invalid-request", "'version'"),
        ({"instance": "acme-prod", "action": "resize"}, "invalid-request", "'size'"),
        ({"instance": "Acme", "action": "restart"}, "invalid-request", "'instance'"),
        ({"instance": "ab", "action": "restart"}, "invalid-request", "'instance'"),
        ({"instance": "a" * 41, "action": "restart"}, "invalid-request", "'instance'"),
        ({"instance": "acme-", "action": "restart"}, "invalid-request", "'instance'"),
        ({"instance": "acme", "action": "resize", "size": "huge"}, "invalid-request", "'size'"),
        ({"instance": "acme", "action": "restart", "colour": "red"}, "invalid-request", "'colour'"),
        (
            {
                "instance": "acme",
                "action": "provision",
                "version": "1",
                "maintenance_window": {
                    "days": ["sun"],
                    "start": "25:00",
                    "duration": "4h",
                    "timezone": "UTC",
                },
            },
            "invalid-request",
            "maintenance_window.start",
        ),
        (
            {
                "instance": "acme",
                "action": "provision",
                "version": "1",
                "maintenance_window": {
                    "days": ["sun"],
                    "start": "02:00",
                    "duration": "4h",
                    "timezone": "Mars/Olympus",
                },
            },
            "invalid-request",
            "Mars/Olympus",
        ),
        ([1, 2, 3], "invalid-request", "JSON object"),
        ({"instance": "acme", "action": {"x": 1}}, "unknown-action", "is not one of"),
        ({"instance": "acme", "action": ["restart"]}, "unknown-action", "is not one of"),
        (
            {
                "instance": "acme",
                "action": "provision",
                "version": "1",
                "labels": {"__name__": "x"},
            },
            "invalid-request",
            "labels",
        ),
    ],
)
def test_invalid_requests_name_the_field(data: Any, code: str, names: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(data)
    assert raised.value.code == code
    assert names in raised.value.reason


def test_other_event_types_are_refused() -> None:
    event = new_request_event({"instance": "acme", "action": "restart"}, source="//t")
    wrong = event.__class__(**{**event.__dict__, "type": "com.example.other"})
    with pytest.raises(MalformedEvent) as raised:
        parse_request(wrong)
    assert raised.value.code == "unknown-type"
