"""Pub/Sub messages as they reach a function, and CloudEvents carried on them.

Two encodings of a CloudEvent on Pub/Sub are accepted (contract section 2):
binary mode (`ce-*` attributes, JSON data) and structured mode
(`content-type: application/cloudevents+json`, the whole event as JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleetops.contract.errors import MalformedEvent

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
JSON_CONTENT_TYPE = "application/json"
_REQUIRED = ("id", "source", "type", "specversion")


@dataclass(frozen=True)
class PubsubMessage:
    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: datetime | None = None
    topic: str | None = None

    @classmethod
    def from_push(cls, payload: Mapping[str, Any], source: str | None = None) -> PubsubMessage:
        """Read the `{"message": {...}, "subscription": ...}` body of a push delivery.

        `source` is the CloudEvent source functions-framework derives from the
        push path (`//pubsub.googleapis.com/projects/P/topics/T`).
        """
        if not isinstance(payload, Mapping):
            raise MalformedEvent("malformed-push", "the push body is not a JSON object")
        message = payload.get("message")
        if not isinstance(message, Mapping):
            raise MalformedEvent("malformed-push", "the push body has no 'message' object")
        raw = message.get("data") or ""
        try:
            data = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedEvent("malformed-push", f"message data is not base64: {exc}") from exc
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise MalformedEvent("malformed-push", "message attributes are not an object")
        message_id = str(message.get("messageId") or message.get("message_id") or "")
        published = message.get("publishTime") or message.get("publish_time")
        return cls(
            data=data,
            attributes={str(k): str(v) for k, v in attributes.items()},
            message_id=message_id,
            publish_time=parse_time(published) if isinstance(published, str) else None,
            topic=topic_from_source(source),
        )


def topic_from_source(source: str | None) -> str | None:
    if not source or "/topics/" not in source:
        return None
    return source.rsplit("/topics/", 1)[1] or None


def parse_time(value: str) -> datetime | None:
    """RFC 3339 to an aware UTC datetime; None when unreadable."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.11 reads at most 6 fractional digits; Pub/Sub sends up to 9.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{tail}"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        # Year 1 or 9999 with an offset cannot be moved to UTC: not a usable time.
        return None


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    data: Any = None
    specversion: str = "1.0"
    time: datetime | None = None
    subject: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key of contract section 2."""
        return (self.source, self.id)


def decode_cloudevent(message: PubsubMessage) -> CloudEvent:
    """Read a CloudEvent from a Pub/Sub message in binary or structured mode."""
    content_type = message.attributes.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED_CONTENT_TYPE:
        return _decode_structured(message.data)
    return _decode_binary(message)


def _decode_binary(message: PubsubMessage) -> CloudEvent:
    attrs = message.attributes
    missing = [name for name in _REQUIRED if not attrs.get(f"ce-{name}")]
    if missing:
        names = ", ".join(f"ce-{name}" for name in missing)
        raise MalformedEvent(
            "missing-attribute",
            f"not a CloudEvent: attribute(s) {names} missing "
            f"(binary mode needs ce-id, ce-source, ce-type, ce-specversion)",
        )
    _check_specversion(attrs["ce-specversion"])
    data = _json_data(message.data)
    time_text = attrs.get("ce-time")
    known = {f"ce-{name}" for name in (*_REQUIRED, "time", "subject")}
    return CloudEvent(
        id=attrs["ce-id"],
        source=attrs["ce-source"],
        type=attrs["ce-type"],
        specversion=attrs["ce-specversion"],
        data=data,
        time=_event_time(time_text),
        subject=attrs.get("ce-subject") or None,
        extensions={k[3:]: v for k, v in attrs.items() if k.startswith("ce-") and k not in known},
    )


def _decode_structured(raw: bytes) -> CloudEvent:
    envelope = _json_data(raw)
    if not isinstance(envelope, dict):
        raise MalformedEvent("malformed-json", "a structured CloudEvent must be a JSON object")
    missing = [name for name in _REQUIRED if not envelope.get(name)]
    if missing:
        raise MalformedEvent(
            "missing-attribute",
            f"not a CloudEvent: field(s) {', '.join(missing)} missing from the structured event",
        )
    _check_specversion(str(envelope["specversion"]))
    data: Any = envelope.get("data")
    if "data_base64" in envelope:
        try:
            data = _json_data(base64.b64decode(str(envelope["data_base64"]), validate=True))
        except (binascii.Error, ValueError) as exc:
            raise MalformedEvent("malformed-json", f"data_base64 is not base64: {exc}") from exc
    time_value = envelope.get("time")
    known = {*_REQUIRED, "time", "subject", "data", "data_base64", "datacontenttype"}
    return CloudEvent(
        id=str(envelope["id"]),
        source=str(envelope["source"]),
        type=str(envelope["type"]),
        specversion=str(envelope["specversion"]),
        data=data,
        time=_event_time(time_value if isinstance(time_value, str) else None),
        subject=str(envelope["subject"]) if envelope.get("subject") else None,
        extensions={k: str(v) for k, v in envelope.items() if k not in known},
    )


def _check_specversion(value: str) -> None:
    if value != "1.0":
        raise MalformedEvent(
            "unsupported-specversion", f"CloudEvents specversion {value!r} is not supported (1.0)"
        )


def _event_time(text: str | None) -> datetime | None:
    if not text:
        return None
    parsed = parse_time(text)
    if parsed is None:
        raise MalformedEvent("malformed-time", f"ce-time {text!r} is not an RFC 3339 timestamp")
    return parsed


def _json_data(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedEvent("malformed-json", f"message data is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise MalformedEvent("malformed-json", f"message data is not valid JSON: {exc}") from exc


def encode_binary(event: CloudEvent) -> tuple[bytes, dict[str, str]]:
    """A CloudEvent as Pub/Sub data and attributes, in binary mode."""
    attributes = {
        "ce-specversion": event.specversion,
        "ce-id": event.id,
        "ce-source": event.source,
        "ce-type": event.type,
        "content-type": JSON_CONTENT_TYPE,
    }
    if event.time is not None:
        attributes["ce-time"] = format_time(event.time)
    if event.subject:
        attributes["ce-subject"] = event.subject
    for name, value in event.extensions.items():
        attributes[f"ce-{name}"] = value
    data = json.dumps(event.data, separators=(",", ":"), sort_keys=True).encode()
    return data, attributes


def encode_structured(event: CloudEvent) -> tuple[bytes, dict[str, str]]:
    """A CloudEvent as Pub/Sub data and attributes, in structured mode."""
    envelope: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "datacontenttype": JSON_CONTENT_TYPE,
        "data": event.data,
    }
    if event.time is not None:
        envelope["time"] = format_time(event.time)
    if event.subject:
        envelope["subject"] = event.subject
    envelope.update(event.extensions)
    return json.dumps(envelope, separators=(",", ":")).encode(), {
        "content-type": STRUCTURED_CONTENT_TYPE
    }
