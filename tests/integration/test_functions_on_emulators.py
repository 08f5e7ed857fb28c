"""The functions in-process (functions-framework's own test client) on the real emulators."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from fleetops import runtime
from fleetops.adapters.memory import InMemoryActuator
from fleetops.contract.names import ALL_TOPICS, TOPIC_DEAD_LETTER, TOPIC_REQUESTS, TOPIC_STEPS
from fleetops.contract.pubsub import PubsubMessage
from fleetops.domain.model import InstanceState, OperationStatus
from tests.helpers import push_body, raw_message, request_message

ROOT = Path(__file__).resolve().parents[2]


class Harness:
    def __init__(self, project: str) -> None:
        from fleetops.adapters.pubsub_admin import PubsubAdmin

        self.project = project
        self.admin = PubsubAdmin(project)
        for topic in ALL_TOPICS:
            self.admin.ensure_topic(topic)
        self.admin.ensure_pull_subscription("dead-letters", TOPIC_DEAD_LETTER)
        self.admin.ensure_pull_subscription("steps", TOPIC_STEPS)
        self.requests = functions_framework.create_app(
            "handle_request", str(ROOT / "functions/requests/main.py"), "cloudevent"
        ).test_client()
        self.operations = functions_framework.create_app(
            "run_step", str(ROOT / "functions/operations/main.py"), "cloudevent"
        ).test_client()

    def push(self, client: Any, topic: str, message: PubsubMessage) -> int:
        response = client.post(
            f"/projects/{self.project}/topics/{topic}",
            json=push_body(message),
            headers={"Content-Type": "application/json"},
        )
        return int(response.status_code)

    def pull(self, subscription: str) -> list[Any]:
        found: list[Any] = []
        for _ in range(5):
            received = self.admin.pull(subscription)
            self.admin.ack(subscription, [r.ack_id for r in received])
            found.extend(r.message for r in received)
            if found:
                break
        return found


@pytest.fixture
def harness(gcp_env: Any) -> Iterator[Harness]:
    runtime.reset_clients()
    actuator = InMemoryActuator()
    runtime.actuator.cache_clear()
    original = runtime.actuator
    # The operations function runs against a fake actuator here: the real one is
    # exercised by the local-actuator and end-to-end tests.
    runtime.actuator = lambda: actuator  # type: ignore[assignment]
    h = Harness(gcp_env.project)
    h.fake_actuator = actuator  # type: ignore[attr-defined]
    yield h
    runtime.actuator = original  # type: ignore[assignment]
    h.admin.close()
    runtime.reset_clients()


def test_a_request_push_records_an_operation_and_publishes_its_first_step(
    harness: Harness,
) -> None:
    message = request_message({"instance": "acme-1", "action": "provision", "version": "1.0.0"})
    for _ in range(5):
        assert harness.push(harness.requests, TOPIC_REQUESTS, message) == 200
    ops = runtime.state_store().list_operations(instance="acme-1")
    assert len(ops) == 1
    assert ops[0].status is OperationStatus.RUNNING
    steps = harness.pull("steps")
    assert steps
    assert {json.loads(m.data)["operation"] for m in steps} == {ops[0].id}


def test_steps_pushed_to_the_operations_function_finish_the_operation(harness: Harness) -> None:
    message = request_message({"instance": "acme-2", "action": "provision", "version": "1.0.0"})
    assert harness.push(harness.requests, TOPIC_REQUESTS, message) == 200
    for _ in range(10):
        pulled = harness.pull("steps")
        if not pulled:
            break
        for step in pulled:
            step_message = PubsubMessage(bytes(step.data), dict(step.attributes), step.message_id)
            assert harness.push(harness.operations, TOPIC_STEPS, step_message) == 200
    [op] = runtime.state_store().list_operations(instance="acme-2")
    assert op.status is OperationStatus.SUCCEEDED
    instance = runtime.state_store().get_instance("acme-2")
    assert instance is not None
    assert instance.state is InstanceState.RUNNING
    assert harness.fake_actuator.count("provision", "acme-2") == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "attributes", "code"),
    [
        (b"{this is not json", None, "malformed-json"),
        (b'{"instance": "acme-3", "action": "explode"}', None, "unknown-action"),
        (b'{"instance": "acme-3", "action": "restart"}', {}, "missing-attribute"),
    ],
)
def test_bad_requests_are_dead_lettered_with_a_reason_and_create_nothing(
    harness: Harness, data: bytes, attributes: dict[str, str] | None, code: str
) -> None:
    if attributes is None:
        attributes = {
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": "//tests",
            "ce-type": "fleetops.instance.requested",
            "content-type": "application/json",
        }
    message = raw_message(data, attributes)
    assert harness.push(harness.requests, TOPIC_REQUESTS, message) == 200
    [dead] = harness.pull("dead-letters")
    assert bytes(dead.data) == data
    assert dead.attributes["fleetops-error"] == code
    assert dead.attributes["fleetops-reason"]
    assert dead.attributes["fleetops-original-topic"] == TOPIC_REQUESTS
    assert dead.attributes["fleetops-original-message-id"] == message.message_id
    assert runtime.state_store().list_operations() == []


def test_the_publisher_is_built_by_the_first_publish_and_not_before(harness: Harness) -> None:
    from fleetops.contract.names import EVENT_STEP_READY
    from fleetops.runtime import LazyPublisher

    message = request_message({"instance": "acme-4", "action": "provision", "version": "1.0.0"})
    publisher = runtime.publisher()
    assert isinstance(publisher, LazyPublisher)
    assert not publisher.built
    assert harness.push(harness.requests, TOPIC_REQUESTS, message) == 200
    assert publisher.built
    [step] = harness.pull("steps")
    assert step.attributes["ce-type"] == EVENT_STEP_READY
    [op] = runtime.state_store().list_operations(instance="acme-4")
    assert json.loads(step.data) == {"operation": op.id, "instance": "acme-4", "step": 0}
    # A process that only sees a step with nothing left to do never builds one.
    runtime.publisher.cache_clear()
    step_message = PubsubMessage(bytes(step.data), dict(step.attributes), step.message_id)
    done = runtime.state_store().transact(lambda tx: tx.get_operation(op.id))
    assert done is not None
    runtime.state_store().transact(
        lambda tx: tx.put_operation(done.evolve(status=OperationStatus.CANCELLED))
    )
    assert harness.push(harness.operations, TOPIC_STEPS, step_message) == 200
    fresh = runtime.publisher()
    assert isinstance(fresh, LazyPublisher)
    assert not fresh.built
    assert harness.pull("steps") == []
