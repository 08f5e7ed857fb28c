"""The CloudEvents-on-Pub/Sub codec: binary and structured mode, and its errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetops.contract.errors import MalformedEvent
from fleetops.contract.pubsub import (
    CloudEvent,
    PubsubMessage,
    decode_cloudevent,
    encode_binary,
    encode_structured,
    parse_time,
)

DATA = Path(__file__).parent.parent / "data"


def fixture_message(name: str) -> PubsubMessage:
    sample = json.loads((DATA / name).read_text())
    return PubsubMessage(json.dumps(sample["data"]).encode(), sample["attributes"], "m-1")


def test_binary_mode_sample_decodes_with_nanosecond_time() -> None:
    event = decode_cloudevent(fixture_message("request_provision_binary.json"))
    assert event.key == ("//fleetops/cli/alice@laptop", "7f1c2e4a-0d5b-4a8e-9a51-3c1f5b2f7d10")
    assert event.type == "fleetops.instance.requested"
    assert event.subject == "acme-prod"
    assert event.time == datetime(2026, 11, 28, 2, 0, 0, 123456, tzinfo=UTC)
    assert event.data["maintenance_window"]["timezone"] == "America/New_York"


def test_structured_mode_sample_decodes() -> None:
    event = decode_cloudevent(fixture_message("request_restart_structured.json"))
    assert event.key == ("//api/bob@example.com", "restart-0001")
    assert event.data == {"instance": "acme-prod", "action": "restart", "reason": "stuck workers"}


@pytest.mark.parametrize("encode", [encode_binary, encode_structured])
def test_round_trip_in_both_modes(encode: object) -> None:
    event = CloudEvent(
        id="e-1",
        source="//s",
        type="t.x",
        data={"a": [1, 2], "b": None},
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        subject="inst",
        extensions={"traceparent": "00-abc"},
    )
    data, attributes = encode(event)  # type: ignore[operator]
    assert decode_cloudevent(PubsubMessage(data, attributes, "1")) == event


def test_push_body_from_eventarc_sample() -> None:
    body = json.loads((DATA / "eventarc_push.json").read_text())
    message = PubsubMessage.from_push(body, source="//pubsub.googleapis.com/projects/p/topics/t")
    assert message.data == b"test message 3"
    assert message.message_id == "message-id"
    assert message.topic == "t"
    assert message.publish_time == datetime(2021, 2, 5, 4, 6, 14, 109000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "attributes", "code"),
    [
        (b'{"instance": "x"}', {}, "missing-attribute"),
        (
            b"{not json",
            {"ce-id": "1", "ce-source": "s", "ce-type": "t", "ce-specversion": "1.0"},
            "malformed-json",
        ),
        (
            b"\xff\xfe",
            {"ce-id": "1", "ce-source": "s", "ce-type": "t", "ce-specversion": "1.0"},
            "malformed-json",
        ),
        (
            b"{}",
            {"ce-id": "1", "ce-source": "s", "ce-type": "t", "ce-specversion": "0.3"},
            "unsupported-specversion",
        ),
        (
            b"{}",
            {
                "ce-id": "1",
                "ce-source": "s",
                "ce-type": "t",
                "ce-specversion": "1.0",
                "ce-time": "yesterday",
            },
            "malformed-time",
        ),
        (b"[1, 2]", {"content-type": "application/cloudevents+json"}, "malformed-json"),
        (b'{"id": "1"}', {"content-type": "application/cloudevents+json"}, "missing-attribute"),
    ],
)
def test_malformed_messages_raise_a_coded_permanent_error(
    data: bytes, attributes: dict[str, str], code: str
) -> None:
    with pytest.raises(MalformedEvent) as raised:
        decode_cloudevent(PubsubMessage(data, attributes, "1"))
    assert raised.value.code == code
    assert raised.value.reason


def test_push_body_without_message_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="no 'message'"):
        PubsubMessage.from_push({"subscription": "s"})


def test_push_body_with_bad_base64_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="base64"):
        PubsubMessage.from_push({"message": {"data": "@@@", "messageId": "1"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-29T01:30:00Z", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        ("2026-03-29T03:30:00+02:00", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        ("2026-03-29T01:30:00.123456789Z", datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC)),
        ("garbage", None),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    assert parse_time(text) == expected
