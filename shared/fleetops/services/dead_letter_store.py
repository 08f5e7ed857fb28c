"""The dead-letter inbox: every message that reached `fleetops-dead-letter`, kept for people.

Recording never fails on a message it cannot read: the inbox's own function
consumes the dead-letter topic, so a message it rejected would come straight
back to it. Whatever cannot be decoded is kept as it came, with a note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from fleetops.contract.names import (
    ATTR_ERROR,
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_TOPIC,
    ATTR_REASON,
    TOPIC_DEAD_LETTER,
)
from fleetops.contract.pubsub import parse_time, topic_from_source
from fleetops.ports import Publisher

COLLECTION_DEAD_LETTERS = "dead_letters"

# Pub/Sub's own attributes on a message its dead-letter policy moved.
PUBSUB_DEAD_LETTER_PREFIX = "CloudPubSubDeadLetter"
PUBSUB_SOURCE_MESSAGE_ID = "CloudPubSubDeadLetterSourceMessageId"
PUBSUB_SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
PUBSUB_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
PUBSUB_DELIVERY_ERROR = "CloudPubSubDeadLetterSourceDeliveryErrorMessage"
PUBSUB_TOPIC_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
FLEETOPS_ATTRIBUTE_PREFIX = "fleetops-"

# A Firestore document stays under 1 MiB: larger data is kept clipped and cannot be replayed.
MAX_KEPT_DATA_BYTES = 512 * 1024
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Subscriptions to function triggers are named `<topic>-to-<function>`, here and in Terraform.
_SUBSCRIPTION_TO_FUNCTION = re.compile(r"^(?P<topic>.+)-to-[a-z0-9-]+$")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    error_code: str
    reason: str
    received_at: datetime
    original_topic: str | None = None
    original_message_id: str | None = None
    source_subscription: str | None = None
    delivery_count: int | None = None
    published_at: datetime | None = None
    data_truncated: bool = False
    # What could not be read in the delivery, when something could not.
    note: str | None = None
    duplicates: int = 0
    replayed_at: datetime | None = None
    replayed_by: str | None = None
    replay_message_id: str | None = None

    @property
    def replayed(self) -> bool:
        return self.replayed_at is not None

    def replay_blocker(self) -> str | None:
        """Why this letter cannot be replayed, or None when it can."""
        if self.replayed_at is not None:
            by = f" by {self.replayed_by}" if self.replayed_by else ""
            return (
                f"dead letter {self.id} was already replayed{by} at {self.replayed_at.isoformat()}"
            )
        if not self.original_topic:
            return f"dead letter {self.id} does not say which topic it came from"
        if self.original_topic == TOPIC_DEAD_LETTER:
            return f"dead letter {self.id} came from {TOPIC_DEAD_LETTER} itself"
        if self.data_truncated:
            return f"dead letter {self.id} was too large to keep whole"
        return None


class DeadLetterNotFound(Exception):
    def __init__(self, letter_id: str) -> None:
        super().__init__(f"dead letter {letter_id} does not exist")
        self.letter_id = letter_id


class ReplayRefused(Exception):
    """The letter cannot be replayed (already replayed, or no topic to replay it to)."""


class DeadLetterStore(Protocol):
    """`dead_letters/{id}`: one document per dead-lettered message, duplicates folded in."""

    def record(self, letter: DeadLetter) -> bool:
        """Keep the letter; True when new, False when a letter with its id was kept before
        (then only its duplicate count grows, and a replay mark stays)."""
        ...

    def get(self, letter_id: str) -> DeadLetter | None: ...

    def list(self, *, limit: int = 50, replayed: bool | None = None) -> list[DeadLetter]:
        """Newest first."""
        ...

    def claim_replay(self, letter_id: str, who: str, at: datetime) -> DeadLetter:
        """Mark the letter replayed in one transaction, if nothing blocks it.

        Raises DeadLetterNotFound, or ReplayRefused with the reason.
        """
        ...

    def release_replay(self, letter_id: str) -> None:
        """Undo a claim whose publish failed."""
        ...

    def finish_replay(self, letter_id: str, message_id: str) -> None: ...


def letter_to_doc(letter: DeadLetter) -> dict[str, Any]:
    return {
        "message_id": letter.message_id,
        "data": letter.data,
        "attributes": dict(letter.attributes),
        "error_code": letter.error_code,
        "reason": letter.reason,
        "received_at": letter.received_at,
        "original_topic": letter.original_topic,
        "original_message_id": letter.original_message_id,
        "source_subscription": letter.source_subscription,
        "delivery_count": letter.delivery_count,
        "published_at": letter.published_at,
        "data_truncated": letter.data_truncated,
        "note": letter.note,
        "duplicates": letter.duplicates,
        # Kept as a flag too, so "not yet replayed" is one equality filter.
        "replayed": letter.replayed_at is not None,
        "replayed_at": letter.replayed_at,
        "replayed_by": letter.replayed_by,
        "replay_message_id": letter.replay_message_id,
    }


def letter_from_doc(letter_id: str, doc: Mapping[str, Any]) -> DeadLetter:
    count = doc.get("delivery_count")
    return DeadLetter(
        id=letter_id,
        message_id=str(doc.get("message_id") or ""),
        data=bytes(doc.get("data") or b""),
        attributes={str(k): str(v) for k, v in (doc.get("attributes") or {}).items()},
        error_code=str(doc.get("error_code") or "unknown"),
        reason=str(doc.get("reason") or ""),
        received_at=_aware(doc.get("received_at")) or datetime.fromtimestamp(0, UTC),
        original_topic=doc.get("original_topic"),
        original_message_id=doc.get("original_message_id"),
        source_subscription=doc.get("source_subscription"),
        delivery_count=int(count) if count is not None else None,
        published_at=_aware(doc.get("published_at")),
        data_truncated=bool(doc.get("data_truncated")),
        note=doc.get("note"),
        duplicates=int(doc.get("duplicates") or 0),
        replayed_at=_aware(doc.get("replayed_at")),
        replayed_by=doc.get("replayed_by"),
        replay_message_id=doc.get("replay_message_id"),
    )


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        # Firestore gives DatetimeWithNanoseconds; keep a plain aware datetime.
        return datetime.fromtimestamp(value.timestamp(), tz=UTC)
    return None


@dataclass
class _Reading:
    """What could be read of one push delivery; `notes` say what could not."""

    data: bytes = b""
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    published_at: datetime | None = None
    notes: list[str] = field(default_factory=list)


def _read_push(payload: Any) -> _Reading:
    reading = _Reading()
    message = payload.get("message") if isinstance(payload, Mapping) else None
    if not isinstance(message, Mapping):
        reading.notes.append("the push body had no 'message' object; kept the body as data")
        reading.data = _as_bytes(payload)
        return reading
    raw = message.get("data")
    if raw is None:
        reading.data = b""
    elif isinstance(raw, str):
        try:
            reading.data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            reading.notes.append("message data was not base64; kept as sent")
            reading.data = raw.encode("utf-8", errors="replace")
    else:
        reading.notes.append("message data was not a string; kept as JSON")
        reading.data = _as_bytes(raw)
    attributes = message.get("attributes")
    if isinstance(attributes, Mapping):
        reading.attributes = {str(k): str(v) for k, v in attributes.items()}
    elif attributes is not None:
        reading.notes.append("message attributes were not an object; dropped")
    reading.message_id = str(message.get("messageId") or message.get("message_id") or "")
    published = message.get("publishTime") or message.get("publish_time")
    if isinstance(published, str):
        reading.published_at = parse_time(published)
    return reading


def _as_bytes(value: Any) -> bytes:
    try:
        return json.dumps(value, default=str, sort_keys=True).encode()
    except (TypeError, ValueError):
        return repr(value).encode("utf-8", errors="replace")


def _letter_id(reading: _Reading) -> str:
    """The same dead-lettered message always gets the same id, so a duplicate overwrites."""
    attrs = reading.attributes
    candidate = attrs.get(ATTR_ORIGINAL_MESSAGE_ID) or attrs.get(PUBSUB_SOURCE_MESSAGE_ID)
    if not candidate and PUBSUB_SOURCE_SUBSCRIPTION in attrs and PUBSUB_TOPIC_PUBLISH_TIME in attrs:
        # Pub/Sub may dead-letter one message more than once, each time with a new
        # message id: what stays the same is where it was published, when, and its bytes.
        candidate = "pubsub-" + _digest(
            attrs[PUBSUB_SOURCE_SUBSCRIPTION].encode(),
            attrs[PUBSUB_TOPIC_PUBLISH_TIME].encode(),
            reading.data,
        )
    if not candidate:
        candidate = reading.message_id
    if not candidate:
        candidate = "body-" + _digest(reading.data, _as_bytes(attrs))
    if _SAFE_ID.match(candidate) and not candidate.startswith("__"):
        return candidate
    return "id-" + _digest(candidate.encode())


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:32]


def original_topic_of(attributes: Mapping[str, str]) -> str | None:
    named = attributes.get(ATTR_ORIGINAL_TOPIC)
    if named:
        return named
    subscription = attributes.get(PUBSUB_SOURCE_SUBSCRIPTION, "").rsplit("/", 1)[-1]
    match = _SUBSCRIPTION_TO_FUNCTION.match(subscription)
    return match.group("topic") if match else None


def dead_letter_from_push(payload: Any, source: str | None, now: datetime) -> DeadLetter:
    """Read a push delivery from the dead-letter topic; never raises."""
    reading = _read_push(payload)
    attrs = reading.attributes
    count_text = attrs.get(PUBSUB_DELIVERY_COUNT)
    delivery_count = int(count_text) if count_text and count_text.isdigit() else None
    subscription = attrs.get(PUBSUB_SOURCE_SUBSCRIPTION)
    if ATTR_ERROR in attrs:
        error_code = attrs[ATTR_ERROR]
    elif count_text is not None:
        error_code = "delivery-limit"
    else:
        error_code = "unknown"
    reason = attrs.get(ATTR_REASON) or attrs.get(PUBSUB_DELIVERY_ERROR) or ""
    if not reason:
        if count_text is not None:
            reason = f"not acknowledged after {count_text} deliveries" + (
                f" to {subscription}" if subscription else ""
            )
        else:
            reason = "published to the dead-letter topic without a reason"
    data = reading.data
    truncated = len(data) > MAX_KEPT_DATA_BYTES
    if truncated:
        data = data[:MAX_KEPT_DATA_BYTES]
        reading.notes.append(f"data clipped to {MAX_KEPT_DATA_BYTES} bytes")
    if topic_from_source(source) not in (None, TOPIC_DEAD_LETTER):
        reading.notes.append(f"delivered from {topic_from_source(source)}, not {TOPIC_DEAD_LETTER}")
    return DeadLetter(
        id=_letter_id(reading),
        message_id=reading.message_id,
        data=data,
        attributes=attrs,
        error_code=error_code,
        reason=reason,
        received_at=now,
        original_topic=original_topic_of(attrs),
        original_message_id=attrs.get(ATTR_ORIGINAL_MESSAGE_ID)
        or attrs.get(PUBSUB_SOURCE_MESSAGE_ID),
        source_subscription=subscription,
        delivery_count=delivery_count,
        published_at=reading.published_at,
        data_truncated=truncated,
        note="; ".join(reading.notes) or None,
    )


@dataclass(frozen=True)
class Recorded:
    letter: DeadLetter
    new: bool


def record_dead_letter(
    payload: Any, source: str | None, store: DeadLetterStore, now: Callable[[], datetime]
) -> Recorded:
    """Keep one push delivery from the dead-letter topic.

    Only the store can fail (then the delivery is retried); the message itself never does.
    """
    letter = dead_letter_from_push(payload, source, now())
    return Recorded(letter, store.record(letter))


def list_dead_letters(
    store: DeadLetterStore, *, limit: int = 50, replayed: bool | None = None
) -> list[DeadLetter]:
    return store.list(limit=limit, replayed=replayed)


def replay_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """The original attributes, without what dead-lettering added."""
    return {
        k: v
        for k, v in attributes.items()
        if not k.startswith((FLEETOPS_ATTRIBUTE_PREFIX, PUBSUB_DEAD_LETTER_PREFIX))
    }


def replay_dead_letter(
    letter_id: str,
    who: str,
    store: DeadLetterStore,
    publisher: Publisher,
    now: Callable[[], datetime],
) -> DeadLetter:
    """Publish the original message again to its topic, once.

    Claimed before publishing, so two people replaying at once publish once;
    a failed publish gives the claim back.
    """
    letter = store.claim_replay(letter_id, who, now())
    try:
        if not letter.original_topic:
            raise ReplayRefused(f"dead letter {letter_id} does not say which topic it came from")
        message_id = publisher.publish(
            letter.original_topic, letter.data, replay_attributes(letter.attributes)
        )
    except BaseException:
        store.release_replay(letter_id)
        raise
    store.finish_replay(letter_id, message_id)
    replayed = store.get(letter_id)
    return replayed if replayed is not None else letter
