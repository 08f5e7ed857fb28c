"""The dead-letter inbox on the real emulators: the deadletters function in-process,
Firestore documents, Pub/Sub's own dead-letter policy, and replay through the API."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from google.cloud import firestore, pubsub_v1  # type: ignore[attr-defined]
from werkzeug.test import Client

from fleetops import runtime
from fleetops.adapters import firestore_dead_letters
from fleetops.adapters.firestore_dead_letters import FirestoreDeadLetterStore
from fleetops.adapters.pubsub_admin import PubsubAdmin
from fleetops.adapters.pubsub_publisher import PubsubPublisher
from fleetops.api.app import Api, deps_from_environment
from fleetops.api.auth import TokenFileAuthenticator
from fleetops.contract.names import ALL_TOPICS, TOPIC_DEAD_LETTER, TOPIC_REQUESTS, TOPIC_STEPS
from fleetops.contract.pubsub import PubsubMessage
from fleetops.local.api_tokens import write_tokens_file
from fleetops.services.dead_letter_store import (
    COLLECTION_DEAD_LETTERS,
    ReplayRefused,
    replay_dead_letter,
)
from tests.helpers import push_body, raw_message

ROOT = Path(__file__).resolve().parents[2]
INBOX = "dead-letter-inbox"


class Inbox:
    def __init__(self, project: str, tmp_path: Path) -> None:
        self.project = project
        self.admin = PubsubAdmin(project)
        for topic in ALL_TOPICS:
            self.admin.ensure_topic(topic)
        self.admin.ensure_pull_subscription(INBOX, TOPIC_DEAD_LETTER)
        self.deadletters = functions_framework.create_app(
            "record_dead_letter_event", str(ROOT / "functions/deadletters/main.py"), "cloudevent"
        ).test_client()
        self.requests = functions_framework.create_app(
            "handle_request", str(ROOT / "functions/requests/main.py"), "cloudevent"
        ).test_client()
        self.db = firestore.Client(project=project)
        self.tokens = write_tokens_file(tmp_path / "api-tokens.json")
        self.api = Client(
            Api(deps_from_environment, lambda: TokenFileAuthenticator(self.tokens.path))
        )

    def push(self, client: Any, topic: str, payload: Any) -> int:
        response = client.post(
            f"/projects/{self.project}/topics/{topic}",
            json=payload,
            headers={"Content-Type": "application/json"},
        )
        return int(response.status_code)

    def pull(self, subscription: str, wanted: int = 1, timeout: float = 20) -> list[Any]:
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(found) < wanted and time.monotonic() < deadline:
            received = self.admin.pull(subscription)
            self.admin.ack(subscription, [r.ack_id for r in received])
            found.extend(r.message for r in received)
        return found

    def deliver_inbox(self, timeout: float = 20) -> list[PubsubMessage]:
        """What reached the dead-letter topic, pushed to the deadletters function."""
        delivered = []
        for pulled in self.pull(INBOX, timeout=timeout):
            message = PubsubMessage(
                bytes(pulled.data), dict(pulled.attributes), pulled.message_id, topic=None
            )
            assert self.push(self.deadletters, TOPIC_DEAD_LETTER, push_body(message)) == 200
            delivered.append(message)
        return delivered

    def docs(self) -> dict[str, dict[str, Any]]:
        return {
            snap.id: snap.to_dict() or {}
            for snap in self.db.collection(COLLECTION_DEAD_LETTERS).stream()
        }


@pytest.fixture
def inbox(gcp_env: Any, tmp_path: Path) -> Iterator[Inbox]:
    runtime.reset_clients()
    firestore_dead_letters.default_store.cache_clear()
    made = Inbox(gcp_env.project, tmp_path)
    yield made
    made.admin.close()
    runtime.reset_clients()
    firestore_dead_letters.default_store.cache_clear()


def bad_request() -> PubsubMessage:
    return raw_message(
        b'{"instance": "acme-9", "action": "explode"}',
        {
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": "//tests",
            "ce-type": "fleetops.instance.requested",
            "content-type": "application/json",
        },
    )


def test_a_rejected_request_is_recorded_once_however_often_it_arrives(inbox: Inbox) -> None:
    message = bad_request()
    assert inbox.push(inbox.requests, TOPIC_REQUESTS, push_body(message)) == 200
    [delivered] = inbox.deliver_inbox()
    # Pub/Sub delivers at least once: the same message again, and a copy under a new id.
    again = PubsubMessage(delivered.data, delivered.attributes, "another-delivery-id")
    assert inbox.push(inbox.deadletters, TOPIC_DEAD_LETTER, push_body(delivered)) == 200
    assert inbox.push(inbox.deadletters, TOPIC_DEAD_LETTER, push_body(again)) == 200
    docs = inbox.docs()
    assert list(docs) == [message.message_id]
    doc = docs[message.message_id]
    assert doc["duplicates"] == 2
    assert doc["error_code"] == "unknown-action"
    assert doc["reason"].startswith("action 'explode' is not one of")
    assert doc["original_topic"] == TOPIC_REQUESTS
    assert doc["data"] == message.data
    assert doc["attributes"]["ce-source"] == "//tests"
    assert doc["received_at"] is not None
    assert doc["replayed"] is False


def test_what_cannot_be_read_is_kept_and_acknowledged(inbox: Inbox) -> None:
    envelope = {"subscription": f"projects/{inbox.project}/subscriptions/s"}
    garbage = {"message": {"data": "%%%", "attributes": "nope", "messageId": "g-1"}}
    binary = {"message": {"data": base64.b64encode(b"\xff\xfe\x00").decode(), "messageId": "g-2"}}
    assert inbox.push(inbox.deadletters, TOPIC_DEAD_LETTER, {**envelope, **garbage}) == 200
    assert inbox.push(inbox.deadletters, TOPIC_DEAD_LETTER, {**envelope, **binary}) == 200
    docs = inbox.docs()
    assert docs["g-1"]["data"] == b"%%%"
    assert "not base64" in docs["g-1"]["note"]
    assert "attributes were not an object" in docs["g-1"]["note"]
    assert docs["g-1"]["error_code"] == "unknown"
    assert docs["g-2"]["data"] == b"\xff\xfe\x00"
    auth = {"Authorization": f"Bearer {inbox.tokens.viewer.token}"}
    shown = inbox.api.get("/v1/dead-letters/g-2", headers=auth).get_json()
    assert shown["data_text"] is None
    assert base64.b64decode(shown["data_base64"]) == b"\xff\xfe\x00"


def test_pubsubs_delivery_limit_lands_in_the_inbox_and_replays_through_the_api(
    inbox: Inbox,
) -> None:
    subscriber = pubsub_v1.SubscriberClient()
    steps_sub = f"projects/{inbox.project}/subscriptions/{TOPIC_STEPS}-to-operations"
    subscriber.create_subscription(
        request={
            "name": steps_sub,
            "topic": f"projects/{inbox.project}/topics/{TOPIC_STEPS}",
            "ack_deadline_seconds": 10,
            "dead_letter_policy": {
                "dead_letter_topic": f"projects/{inbox.project}/topics/{TOPIC_DEAD_LETTER}",
                "max_delivery_attempts": 5,
            },
        }
    )
    publisher = PubsubPublisher(inbox.project)
    publisher.publish(TOPIC_STEPS, b'{"operation": "op-1", "step": 0}', {"k": "v"})
    # Nack every delivery until Pub/Sub gives up and moves the message (after the 5th).
    attempts = 0
    delivered: list[PubsubMessage] = []
    deadline = time.monotonic() + 60
    while not delivered and time.monotonic() < deadline:
        pulled = subscriber.pull(request={"subscription": steps_sub, "max_messages": 5}, timeout=5)
        for received in pulled.received_messages:
            attempts = max(attempts, received.delivery_attempt)
        if pulled.received_messages:
            subscriber.modify_ack_deadline(
                request={
                    "subscription": steps_sub,
                    "ack_ids": [r.ack_id for r in pulled.received_messages],
                    "ack_deadline_seconds": 0,
                }
            )
        if attempts >= 5:
            delivered = inbox.deliver_inbox(timeout=2)
    assert attempts == 5
    assert len(delivered) == 1
    [(letter_id, doc)] = inbox.docs().items()
    assert doc["error_code"] == "delivery-limit"
    assert doc["original_topic"] == TOPIC_STEPS
    assert doc["delivery_count"] == 5
    assert doc["reason"] == (f"not acknowledged after 5 deliveries to {TOPIC_STEPS}-to-operations")
    assert inbox.push(inbox.deadletters, TOPIC_DEAD_LETTER, push_body(delivered[0])) == 200
    assert list(inbox.docs()) == [letter_id]
    assert inbox.docs()[letter_id]["duplicates"] == 1

    auth = {"Authorization": f"Bearer {inbox.tokens.operator.token}"}
    listed = inbox.api.get("/v1/dead-letters", headers=auth).get_json()
    assert [d["id"] for d in listed["dead_letters"]] == [letter_id]
    replayed = inbox.api.post(f"/v1/dead-letters/{letter_id}:replay", headers=auth)
    assert replayed.status_code == 200, replayed.get_data(as_text=True)
    assert replayed.get_json()["replayed_by"] == "operator@local"
    [again] = [
        r.message
        for r in subscriber.pull(
            request={"subscription": steps_sub, "max_messages": 5}, timeout=10
        ).received_messages
    ]
    assert bytes(again.data) == b'{"operation": "op-1", "step": 0}'
    assert dict(again.attributes) == {"k": "v"}
    twice = inbox.api.post(f"/v1/dead-letters/{letter_id}:replay", headers=auth)
    assert twice.status_code == 409
    assert "already replayed by operator@local" in twice.get_json()["error"]["message"]
    subscriber.close()


def test_concurrent_replays_publish_once(inbox: Inbox) -> None:
    message = bad_request()
    assert inbox.push(inbox.requests, TOPIC_REQUESTS, push_body(message)) == 200
    inbox.deliver_inbox()
    inbox.admin.ensure_pull_subscription("requests-tap", TOPIC_REQUESTS)
    store = FirestoreDeadLetterStore(inbox.db)
    publisher = PubsubPublisher(inbox.project)
    results: list[str] = []

    def replay(who: str) -> None:
        try:
            replay_dead_letter(message.message_id, who, store, publisher, runtime.utc_now)
            results.append("replayed")
        except ReplayRefused:
            results.append("refused")

    threads = [threading.Thread(target=replay, args=(f"p{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["refused"] * 2 + ["replayed"]
    tapped = inbox.pull("requests-tap", wanted=2, timeout=3)
    assert len(tapped) == 1
    assert base64.b64encode(bytes(tapped[0].data)) == base64.b64encode(message.data)
    assert "fleetops-error" not in tapped[0].attributes
