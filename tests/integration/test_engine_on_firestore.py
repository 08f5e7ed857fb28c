"""The engine's guarantees with the real Firestore emulator underneath.

Delivery is driven by hand (an in-memory publisher) so each test decides which
message is lost, late or duplicated; every read and write goes to Firestore.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from fleetops.adapters.memory import FakeClock, InMemoryActuator, InMemoryPublisher
from fleetops.contract.names import TOPIC_STEPS
from fleetops.contract.pubsub import PubsubMessage
from fleetops.domain.model import InstanceState, OperationStatus
from fleetops.services.control import ControlDeps, approve_operation
from fleetops.services.requests import RequestDeps, handle_request_message
from fleetops.services.steps import StepDeps, handle_step_message
from fleetops.services.sweeper import SweepDeps, sweep_all
from tests.helpers import request_message


class FirestoreFleet:
    def __init__(self, project: str) -> None:
        from google.cloud import firestore

        from fleetops.adapters.firestore_store import FirestoreStateStore

        self.store = FirestoreStateStore(firestore.Client(project=project))
        self.publisher = InMemoryPublisher()
        self.actuator = InMemoryActuator()
        self.clock = FakeClock()
        self.requests = RequestDeps(self.store, self.publisher, self.clock.now)
        self.steps = StepDeps(
            self.store, self.publisher, self.actuator, self.clock.now, sleep=lambda s: None
        )

    def request(self, data: dict[str, Any]) -> str:
        outcome = handle_request_message(request_message(data), self.requests)
        assert outcome.operation is not None
        return outcome.operation

    def messages(self) -> list[PubsubMessage]:
        return [
            PubsubMessage(m.data, m.attributes, m.message_id, topic=TOPIC_STEPS)
            for m in self.publisher.take(TOPIC_STEPS)
        ]

    def drain(self) -> None:
        for _ in range(100):
            pending = self.messages()
            if not pending:
                return
            for message in pending:
                handle_step_message(message, self.steps)
        raise AssertionError("steps never ran out")


@pytest.fixture
def fleet(gcp_env: Any) -> FirestoreFleet:
    f = FirestoreFleet(gcp_env.project)
    f.request({"instance": "acme-1", "action": "provision", "version": "1.0.0"})
    f.drain()
    return f


def test_a_dead_holder_s_lease_is_taken_over_and_its_late_write_refused(
    fleet: FirestoreFleet,
) -> None:
    holder = fleet.request({"instance": "acme-1", "action": "restart"})
    [late] = fleet.messages()  # its function died with this message
    successor = fleet.request({"instance": "acme-1", "action": "snapshot"})
    held = fleet.store.get_instance("acme-1")
    assert held is not None
    assert held.active_operation == holder
    fleet.clock.advance(timedelta(minutes=5))
    sweep_all(fleet.clock.now(), SweepDeps(fleet.store, fleet.publisher))
    failed = fleet.store.get_operation(holder)
    assert failed is not None
    assert failed.status is OperationStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("lease expired")
    taken = fleet.store.get_instance("acme-1")
    assert taken is not None
    assert (taken.active_operation, taken.lease_token) == (successor, held.lease_token + 1)
    handle_step_message(late, fleet.steps)  # the late writer comes back
    after = fleet.store.get_instance("acme-1")
    assert after is not None
    assert (after.active_operation, after.lease_token) == (successor, held.lease_token + 1)
    assert fleet.store.get_operation(holder).status is OperationStatus.FAILED  # type: ignore[union-attr]
    fleet.drain()
    assert fleet.store.get_operation(successor).status is OperationStatus.SUCCEEDED  # type: ignore[union-attr]


def test_concurrent_duplicate_deliveries_of_a_step_have_one_effect(fleet: FirestoreFleet) -> None:
    op_id = fleet.request({"instance": "acme-1", "action": "restart"})
    [message] = fleet.messages()
    errors: list[Exception] = []

    def deliver() -> None:
        # Contention may make a delivery fail: Pub/Sub would deliver it again.
        try:
            handle_step_message(message, fleet.steps)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) < 4
    fleet.drain()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED
    assert fleet.actuator.count("restart", "acme-1") == 1
    assert op.steps[0].attempts == 1


def test_an_approval_gated_delete_runs_only_after_a_second_principal(
    fleet: FirestoreFleet,
) -> None:
    op_id = fleet.request({"instance": "acme-1", "action": "delete", "requested_by": "alice"})
    assert fleet.messages() == []
    assert fleet.store.get_operation(op_id).status is OperationStatus.AWAITING_APPROVAL  # type: ignore[union-attr]
    approve_operation(op_id, "bob", ControlDeps(fleet.store, fleet.publisher, fleet.clock.now))
    fleet.drain()
    assert fleet.store.get_operation(op_id).status is OperationStatus.SUCCEEDED  # type: ignore[union-attr]
    gone = fleet.store.get_instance("acme-1")
    assert gone is not None
    assert gone.state is InstanceState.DELETED
    assert fleet.actuator.count("delete", "acme-1") == 1


def test_one_step_costs_one_read_and_one_transaction(fleet: FirestoreFleet) -> None:
    fleet.request({"instance": "acme-1", "action": "restart"})
    [first] = fleet.messages()
    before = fleet.store.counters.snapshot()
    handle_step_message(first, fleet.steps)
    after = fleet.store.counters.snapshot()
    cost = {k: after[k] - before[k] for k in after}
    # Reads: the operation before the effect, then the operation and the instance in
    # the transaction. Writes: the operation and the instance (its lease renewed).
    # The instance's history gains an entry only when something visible changes.
    assert cost == {"reads": 3, "writes": 2, "transactions": 1}, cost
