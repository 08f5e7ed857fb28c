"""Maintenance ticks: the time a tick stands for comes from the tick, never the handler's clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleetops.contract.errors import MalformedEvent
from fleetops.contract.names import EVENT_MAINTENANCE_TICK
from fleetops.contract.pubsub import PubsubMessage, decode_cloudevent


@dataclass(frozen=True)
class Tick:
    at: datetime
    source: str
    id: str


def decode_tick(message: PubsubMessage) -> Tick:
    """A tick's time: `ce-time` when the publisher set it, else the publish time.

    Cloud Scheduler's Pub/Sub target publishes plain messages, which carry no
    CloudEvent attributes: their publish time is the tick's time.
    """
    if "ce-type" in message.attributes or "content-type" in message.attributes:
        event = decode_cloudevent(message)
        if event.type != EVENT_MAINTENANCE_TICK:
            raise MalformedEvent(
                "unknown-type", f"event type {event.type!r} is not {EVENT_MAINTENANCE_TICK}"
            )
        at = event.time or message.publish_time
        if at is None:
            raise MalformedEvent(
                "malformed-time", "the tick has neither ce-time nor a publish time"
            )
        return Tick(at, event.source, event.id)
    if message.publish_time is None:
        raise MalformedEvent("malformed-time", "the tick has no publish time")
    return Tick(message.publish_time, message.topic or "pubsub", message.message_id)
