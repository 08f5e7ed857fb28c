"""The dead-letter inbox on the in-memory fakes: reading any delivery, folding duplicates,
replaying once."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetops.adapters.memory import FakeClock, InMemoryPublisher
from fleetops.adapters.memory_dead_letters import InMemoryDeadLetterStore
from fleetops.contract.names import TOPIC_DEAD_LETTER, TOPIC_REQUESTS, TOPIC_STEPS
from fleetops.services.dead_letter_store import (
    MAX_KEPT_DATA_BYTES,
    DeadLetterNotFound,
    ReplayRefused,
    dead_letter_from_push,
    record_dead_letter,
    replay_attributes,
    replay_dead_letter,
)

SOURCE = f"//pubsub.googleapis.com/projects/p/topics/{TOPIC_DEAD_LETTER}"
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def push(
    data: bytes, attributes: dict[str, str], message_id: str = "900", **extra: Any
) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "publishTime": "2026-01-05T11:59:00.123456789Z",
            **extra,
        },
        "subscription": "projects/p/subscriptions/fleetops-dead-letter-to-deadletters",
    }


REJECTED = {
    "ce-id": "e-1",
    "ce-source": "//me",
    "fleetops-error": "unknown-action",
    "fleetops-reason": "action 'explode' is not one of: provision, ...",
    "fleetops-original-topic": TOPIC_REQUESTS,
    "fleetops-original-message-id": "123",
}
POLICY = {
    "ce-id": "e-2",
    "CloudPubSubDeadLetterSourceDeliveryCount": "5",
    "CloudPubSubDeadLetterSourceSubscription": "fleetops-steps-to-operations",
    "CloudPubSubDeadLetterSourceSubscriptionProject": "p",
    "CloudPubSubDeadLetterSourceTopicPublishTime": "2026-01-05T11:58:00.000Z",
}


def test_a_message_fleetops_rejected_is_read_with_its_reason() -> None:
    letter = dead_letter_from_push(push(b'{"action": "explode"}', REJECTED), SOURCE, NOW)
    assert letter.id == "123"
    assert letter.error_code == "unknown-action"
    assert letter.reason == REJECTED["fleetops-reason"]
    assert letter.original_topic == TOPIC_REQUESTS
    assert letter.original_message_id == "123"
    assert letter.message_id == "900"
    assert letter.data == b'{"action": "explode"}'
    assert letter.received_at == NOW
    assert letter.published_at == datetime(2026, 1, 5, 11, 59, 0, 123456, tzinfo=UTC)
    assert letter.note is None
    assert letter.replay_blocker() is None


def test_a_message_the_delivery_limit_moved_is_read_and_its_topic_found() -> None:
    letter = dead_letter_from_push(push(b"{}", POLICY), SOURCE, NOW)
    assert letter.error_code == "delivery-limit"
    assert letter.reason == "not acknowledged after 5 deliveries to fleetops-steps-to-operations"
    assert letter.original_topic == TOPIC_STEPS
    assert letter.delivery_count == 5
    assert letter.source_subscription == "fleetops-steps-to-operations"
    # Pub/Sub may dead-letter a message twice, with new message ids: one id for both.
    twice = dead_letter_from_push(push(b"{}", POLICY, message_id="901"), SOURCE, NOW)
    assert twice.id == letter.id
    other = dead_letter_from_push(push(b"{...}", POLICY, message_id="902"), SOURCE, NOW)
    assert other.id != letter.id


def test_pubsubs_own_source_message_id_names_the_letter_when_present() -> None:
    attributes = {**POLICY, "CloudPubSubDeadLetterSourceMessageId": "777"}
    assert dead_letter_from_push(push(b"{}", attributes), SOURCE, NOW).id == "777"


def test_a_subscription_path_and_an_unknown_naming_still_read() -> None:
    full = {**POLICY, "CloudPubSubDeadLetterSourceSubscription": "projects/p/subscriptions/a-to-b"}
    assert dead_letter_from_push(push(b"", full), SOURCE, NOW).original_topic == "a"
    odd = {**POLICY, "CloudPubSubDeadLetterSourceSubscription": "my-own-subscription"}
    letter = dead_letter_from_push(push(b"", odd), SOURCE, NOW)
    assert letter.original_topic is None
    assert "does not say which topic" in str(letter.replay_blocker())


@pytest.mark.parametrize(
    ("payload", "note"),
    [
        ({"message": {"data": "%%%not-base64", "messageId": "1"}}, "not base64"),
        ({"message": {"data": {"a": 1}, "messageId": "2"}}, "not a string"),
        ({"message": {"data": "", "attributes": ["x"], "messageId": "3"}}, "not an object"),
        ({"nothing": "here"}, "no 'message' object"),
        ("just a string", "no 'message' object"),
        (None, "no 'message' object"),
    ],
)
def test_whatever_arrives_is_kept_with_a_note(payload: Any, note: str) -> None:
    letter = dead_letter_from_push(payload, SOURCE, NOW)
    assert note in str(letter.note)
    assert letter.id
    assert letter.error_code == "unknown"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_reading_a_delivery_never_raises(payload: Any) -> None:
    for candidate in (payload, {"message": payload}, {"message": {"data": payload}}):
        letter = dead_letter_from_push(candidate, SOURCE, NOW)
        assert isinstance(letter.data, bytes)
        assert letter.id


def test_oversized_data_is_clipped_and_cannot_be_replayed() -> None:
    letter = dead_letter_from_push(push(b"x" * (MAX_KEPT_DATA_BYTES + 10), REJECTED), SOURCE, NOW)
    assert len(letter.data) == MAX_KEPT_DATA_BYTES
    assert letter.data_truncated
    assert "too large" in str(letter.replay_blocker())


def test_a_duplicate_is_folded_into_the_first_and_keeps_its_replay_mark() -> None:
    store, publisher, clock = InMemoryDeadLetterStore(), InMemoryPublisher(), FakeClock()
    first = record_dead_letter(push(b"{}", REJECTED), SOURCE, store, clock.now)
    assert first.new
    replay_dead_letter("123", "alice", store, publisher, clock.now)
    clock.advance(timedelta(minutes=1))
    again = record_dead_letter(push(b"{}", REJECTED, message_id="905"), SOURCE, store, clock.now)
    assert not again.new
    [kept] = store.list()
    assert kept.duplicates == 1
    assert kept.message_id == "900"
    assert kept.replayed_by == "alice"


def test_replay_publishes_the_original_once_without_dead_letter_attributes() -> None:
    store, publisher, clock = InMemoryDeadLetterStore(), InMemoryPublisher(), FakeClock()
    record_dead_letter(push(b"{}", POLICY), SOURCE, store, clock.now)
    [letter] = store.list()
    replayed = replay_dead_letter(letter.id, "bob", store, publisher, clock.now)
    [sent] = publisher.on(TOPIC_STEPS)
    assert sent.data == b"{}"
    assert dict(sent.attributes) == {"ce-id": "e-2"}
    assert replayed.replayed_by == "bob"
    assert replayed.replayed_at == clock.now()
    assert replayed.replay_message_id == sent.message_id
    with pytest.raises(ReplayRefused, match="already replayed by bob"):
        replay_dead_letter(letter.id, "carol", store, publisher, clock.now)
    assert len(publisher.on(TOPIC_STEPS)) == 1
    with pytest.raises(DeadLetterNotFound):
        replay_dead_letter("nope", "bob", store, publisher, clock.now)


def test_a_failed_publish_gives_the_claim_back() -> None:
    store, clock = InMemoryDeadLetterStore(), FakeClock()
    record_dead_letter(push(b"{}", REJECTED), SOURCE, store, clock.now)

    publisher = InMemoryPublisher()
    publisher.fail_next = 1
    with pytest.raises(ConnectionError):
        replay_dead_letter("123", "bob", store, publisher, clock.now)
    assert store.get("123").replayed_at is None  # type: ignore[union-attr]
    replay_dead_letter("123", "bob", store, publisher, clock.now)
    assert len(publisher.on(TOPIC_REQUESTS)) == 1


def test_a_letter_without_a_topic_is_refused_and_stays_unmarked() -> None:
    store, publisher, clock = InMemoryDeadLetterStore(), InMemoryPublisher(), FakeClock()
    record_dead_letter(
        push(b"{}", {"fleetops-error": "x"}, message_id="42"), SOURCE, store, clock.now
    )
    with pytest.raises(ReplayRefused, match="does not say which topic"):
        replay_dead_letter("42", "bob", store, publisher, clock.now)
    assert store.get("42").replayed_at is None  # type: ignore[union-attr]
    assert publisher.messages == []


def test_replay_attributes_drop_exactly_what_dead_lettering_added() -> None:
    attributes = {**REJECTED, **POLICY, "content-type": "application/json"}
    assert replay_attributes(attributes) == {
        "ce-id": "e-2",
        "ce-source": "//me",
        "content-type": "application/json",
    }


def test_letters_are_listed_newest_first_and_filtered_by_replay() -> None:
    store, publisher, clock = InMemoryDeadLetterStore(), InMemoryPublisher(), FakeClock()
    for n in range(3):
        attributes = {**REJECTED, "fleetops-original-message-id": f"m{n}"}
        record_dead_letter(push(b"{}", attributes), SOURCE, store, clock.now)
        clock.advance(timedelta(seconds=1))
    replay_dead_letter("m1", "bob", store, publisher, clock.now)
    assert [d.id for d in store.list()] == ["m2", "m1", "m0"]
    assert [d.id for d in store.list(limit=1)] == ["m2"]
    assert [d.id for d in store.list(replayed=False)] == ["m2", "m0"]
    assert [d.id for d in store.list(replayed=True)] == ["m1"]
