"""Publishing to Pub/Sub (or its emulator, from PUBSUB_EMULATOR_HOST alone)."""

from __future__ import annotations

from collections.abc import Mapping

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.pubsub_v1 import PublisherClient as GapicPublisherClient
from google.pubsub_v1 import PubsubMessage

PUBLISH_TIMEOUT_SECONDS = 30.0


class PubsubPublisher:
    """One Publish call per message, answered before `publish` returns.

    Every caller waits for each message (the handler must know it was published
    before it acknowledges its own), so the client's batching could only add its
    delay: a batch of one still waits for a commit thread, and any `max_latency`
    is paid in full by every handler. The client's own `publish` batches; the
    underlying API call, with its default retries, does not.
    """

    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        self._project = project
        # The wrapper, not the bare API client: it points itself at the emulator.
        self._client = client or pubsub_v1.PublisherClient()
        self.published = 0

    def topic_path(self, topic: str) -> str:
        return f"projects/{self._project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        message = PubsubMessage(data=data, attributes=dict(attributes))
        response = GapicPublisherClient.publish(
            self._client,
            topic=self.topic_path(topic),
            messages=[message],
            timeout=PUBLISH_TIMEOUT_SECONDS,
        )
        self.published += 1
        return str(response.message_ids[0])
