"""Creating topics and subscriptions (used by the local stack; Terraform does it on GCP)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta

from google.api_core import exceptions
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.protobuf import duration_pb2


@dataclass(frozen=True)
class PushSubscription:
    name: str
    topic: str
    endpoint: str
    dead_letter_topic: str | None
    max_delivery_attempts: int = 5
    # None: no retry policy, so a failed push is delivered again about once a second.
    minimum_backoff: timedelta | None = timedelta(seconds=1)
    maximum_backoff: timedelta | None = timedelta(seconds=30)
    ack_deadline_seconds: int = 120


def _duration(value: timedelta) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value.total_seconds()))


class PubsubAdmin:
    def __init__(self, project: str) -> None:
        self.project = project
        self._publisher = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def ensure_topic(self, topic: str) -> None:
        with contextlib.suppress(exceptions.AlreadyExists):
            self._publisher.create_topic(request={"name": self.topic_path(topic)})

    def ensure_push_subscription(self, sub: PushSubscription) -> None:
        request: dict[str, object] = {
            "name": self.subscription_path(sub.name),
            "topic": self.topic_path(sub.topic),
            "push_config": {"push_endpoint": sub.endpoint},
            "ack_deadline_seconds": sub.ack_deadline_seconds,
        }
        if sub.minimum_backoff is not None and sub.maximum_backoff is not None:
            request["retry_policy"] = {
                "minimum_backoff": _duration(sub.minimum_backoff),
                "maximum_backoff": _duration(sub.maximum_backoff),
            }
        if sub.dead_letter_topic:
            request["dead_letter_policy"] = {
                "dead_letter_topic": self.topic_path(sub.dead_letter_topic),
                "max_delivery_attempts": sub.max_delivery_attempts,
            }
        try:
            self._subscriber.create_subscription(request=request)
        except exceptions.AlreadyExists:
            self._subscriber.delete_subscription(request={"subscription": request["name"]})
            self._subscriber.create_subscription(request=request)

    def ensure_pull_subscription(self, name: str, topic: str) -> None:
        with contextlib.suppress(exceptions.AlreadyExists):
            self._subscriber.create_subscription(
                request={
                    "name": self.subscription_path(name),
                    "topic": self.topic_path(topic),
                    "ack_deadline_seconds": 60,
                }
            )

    def pull(
        self, subscription: str, max_messages: int = 100, timeout: float = 2.0
    ) -> list[pubsub_v1.types.ReceivedMessage]:
        """What is waiting now, or an empty list after `timeout` seconds."""
        try:
            response = self._subscriber.pull(
                request={
                    "subscription": self.subscription_path(subscription),
                    "max_messages": max_messages,
                },
                timeout=timeout,
                retry=None,
            )
        except exceptions.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        if ack_ids:
            self._subscriber.acknowledge(
                request={"subscription": self.subscription_path(subscription), "ack_ids": ack_ids}
            )

    def close(self) -> None:
        self._subscriber.close()
