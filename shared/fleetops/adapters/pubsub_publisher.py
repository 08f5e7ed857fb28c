"""Publishing to Pub/Sub (or its emulator, from PUBSUB_EMULATOR_HOST alone)."""

from __future__ import annotations

from collections.abc import Mapping

from google.cloud import pubsub_v1  # type: ignore[attr-defined]

PUBLISH_TIMEOUT_SECONDS = 30.0


class PubsubPublisher:
    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        self._project = project
        # Low batching latency: fleetops publishes a few messages per handled event.
        self._client = client or pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.005)
        )
        self.published = 0

    def topic_path(self, topic: str) -> str:
        return f"projects/{self._project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        future = self._client.publish(self.topic_path(topic), data, **dict(attributes))
        message_id = future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        self.published += 1
        return str(message_id)
