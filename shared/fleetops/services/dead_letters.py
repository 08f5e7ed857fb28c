"""Copying a message that can never succeed to the dead-letter topic, with its reason."""

from __future__ import annotations

from fleetops.contract.errors import PermanentError
from fleetops.contract.names import (
    ATTR_ERROR,
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_TOPIC,
    ATTR_REASON,
    TOPIC_DEAD_LETTER,
)
from fleetops.contract.pubsub import PubsubMessage
from fleetops.ports import Publisher

# Pub/Sub attribute values are limited to 1024 bytes.
MAX_REASON_BYTES = 1000


def dead_letter(publisher: Publisher, message: PubsubMessage, error: PermanentError) -> str:
    attributes = dict(message.attributes)
    attributes[ATTR_ERROR] = error.code
    attributes[ATTR_REASON] = _clip(error.reason)
    if message.topic:
        attributes[ATTR_ORIGINAL_TOPIC] = message.topic
    if message.message_id:
        attributes[ATTR_ORIGINAL_MESSAGE_ID] = message.message_id
    return publisher.publish(TOPIC_DEAD_LETTER, message.data, attributes)


def _clip(text: str) -> str:
    raw = text.encode()
    if len(raw) <= MAX_REASON_BYTES:
        return text
    return raw[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
