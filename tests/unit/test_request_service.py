"""Recording requests as operations, with the in-memory fakes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from fleetops.contract.errors import InvalidRequest, MalformedEvent
from fleetops.contract.names import TOPIC_EVENTS, TOPIC_STEPS
from fleetops.domain.model import InstanceState, OperationStatus, StepStatus
from tests.helpers import FakeFleet, raw_message, request_message

PROVISION = {"instance": "acme-prod", "action": "provision", "version": "1.0.0"}


def test_a_request_becomes_a_running_operation_and_dispatches_its_first_step() -> None:
    fleet = FakeFleet()
    outcome = fleet.request(PROVISION)
    op = fleet.store.get_operation(outcome.operation)
    assert op is not None
    assert op.status is OperationStatus.RUNNING
    assert [s.name for s in op.steps] == ["create_instance", "wait_healthy"]
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert instance.state is InstanceState.PROVISIONING
    assert instance.active_operation == op.id
    steps = fleet.publisher.on(TOPIC_STEPS)
    assert len(steps) == 1
    assert json.loads(steps[0].data) == {"operation": op.id, "instance": "acme-prod", "step": 0}


def test_the_same_request_five_times_gives_one_operation_and_one_effect() -> None:
    fleet = FakeFleet()
    outcomes = [fleet.request(PROVISION, event_id="same-id") for _ in range(5)]
    assert len({o.operation for o in outcomes}) == 1
    assert len(fleet.store.list_operations()) == 1
    # A duplicate may publish the first step again (it cannot know the first
    # delivery published it); the step's state makes the extra messages no-ops.
    fleet.drain()
    assert fleet.actuator.effects == [("provision", "acme-prod")]
    op = fleet.store.list_operations()[0]
    assert op.status is OperationStatus.SUCCEEDED
    assert [s.attempts for s in op.steps] == [1, 1]


def test_a_crash_between_saving_and_publishing_is_healed_by_the_redelivery() -> None:
    fleet = FakeFleet()
    fleet.publisher.fail_next = 1
    with pytest.raises(ConnectionError):
        fleet.request(PROVISION, event_id="e-1")
    assert len(fleet.store.list_operations()) == 1
    assert fleet.publisher.on(TOPIC_STEPS) == []
    fleet.request(PROVISION, event_id="e-1")
    assert len(fleet.store.list_operations()) == 1
    assert len(fleet.publisher.on(TOPIC_STEPS)) == 1
    fleet.drain()
    assert fleet.actuator.count("provision", "acme-prod") == 1


def test_malformed_json_is_refused_and_creates_nothing() -> None:
    fleet = FakeFleet()
    from fleetops.services.requests import handle_request_message

    attributes = {
        "ce-id": "1",
        "ce-source": "s",
        "ce-type": "fleetops.instance.requested",
        "ce-specversion": "1.0",
    }
    with pytest.raises(MalformedEvent):
        handle_request_message(raw_message(b"{oops", attributes), fleet.request_deps)
    assert fleet.store.docs["operations"] == {}
    assert fleet.store.docs["processed_events"] == {}


def test_an_unknown_action_is_refused_and_creates_nothing() -> None:
    fleet = FakeFleet()
    with pytest.raises(InvalidRequest) as raised:
        fleet.request({"instance": "acme-prod", "action": "explode"})
    assert raised.value.code == "unknown-action"
    assert fleet.store.docs["operations"] == {}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"instance": "ghost", "action": "restart"}, "instance ghost does not exist"),
        ({"instance": "ghost", "action": "delete"}, "instance ghost does not exist"),
    ],
)
def test_a_valid_request_that_cannot_be_done_is_rejected_with_a_reason(
    data: dict[str, str], error: str
) -> None:
    fleet = FakeFleet()
    op = fleet.store.get_operation(fleet.request(data).operation)
    assert op is not None
    assert op.status is OperationStatus.REJECTED
    assert op.error == error
    assert fleet.publisher.on(TOPIC_STEPS) == []
    assert len(fleet.publisher.on(TOPIC_EVENTS)) == 0


def test_provisioning_an_existing_instance_is_rejected() -> None:
    fleet = FakeFleet()
    fleet.request(PROVISION)
    fleet.drain()
    op = fleet.store.get_operation(fleet.request(PROVISION).operation)
    assert op is not None
    assert op.status is OperationStatus.REJECTED
    assert op.error == "instance acme-prod already exists (state running)"


def test_a_dry_run_records_the_plan_and_touches_nothing() -> None:
    fleet = FakeFleet()
    op = fleet.store.get_operation(fleet.request({**PROVISION, "dry_run": True}).operation)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED
    assert op.dry_run
    assert [(s.name, s.status) for s in op.steps] == [
        ("create_instance", StepStatus.SKIPPED),
        ("wait_healthy", StepStatus.SKIPPED),
    ]
    assert fleet.store.get_instance("acme-prod") is None
    assert fleet.publisher.on(TOPIC_STEPS) == []
    assert fleet.actuator.effects == []


def test_requests_for_a_busy_instance_queue_and_start_in_order() -> None:
    fleet = FakeFleet()
    fleet.request(PROVISION)
    queued = []
    for n in range(3):
        fleet.clock.advance(__import__("datetime").timedelta(seconds=1))
        queued.append(fleet.request({"instance": "acme-prod", "action": "restart"}).operation)
    assert [fleet.store.get_operation(o).status for o in queued] == [OperationStatus.QUEUED] * 3  # type: ignore[union-attr]
    fleet.drain()
    ops = [fleet.store.get_operation(o) for o in queued]
    assert all(o is not None and o.status is OperationStatus.SUCCEEDED for o in ops)
    starts = [o.started_at for o in ops if o is not None]
    assert starts == sorted(starts)
    assert fleet.actuator.count("restart", "acme-prod") == 3


def test_a_queued_request_that_no_longer_applies_is_rejected_when_its_turn_comes() -> None:
    fleet = FakeFleet()
    fleet.request(PROVISION)
    fleet.drain()
    fleet.request({"instance": "acme-prod", "action": "restart"})
    delete = fleet.request({"instance": "acme-prod", "action": "delete"}).operation
    fleet.approve(delete)
    fleet.clock.advance(__import__("datetime").timedelta(seconds=1))
    restart = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    fleet.drain()
    assert fleet.store.get_operation(delete).status is OperationStatus.SUCCEEDED  # type: ignore[union-attr]
    late = fleet.store.get_operation(restart)
    assert late is not None
    assert late.status is OperationStatus.REJECTED
    assert late.error == "instance acme-prod does not exist"


class _Recording:
    """A transaction that notes each read it is asked for."""

    def __init__(self, tx: Any, reads: list[str]) -> None:
        self._tx = tx
        self._reads = reads

    def __getattr__(self, name: str) -> Any:
        if name.startswith("get_") or name.startswith("queued_"):
            self._reads.append(name)
        return getattr(self._tx, name)


def _recording(fleet: FakeFleet) -> tuple[list[str], Any]:
    from dataclasses import replace

    reads: list[str] = []
    store = fleet.store

    class Store:
        def transact(self, fn: Any) -> Any:
            return store.transact(lambda tx: fn(_Recording(tx, reads)))

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    return reads, replace(fleet.request_deps, store=Store())


def test_a_request_reads_its_key_and_its_instance_in_one_round_trip() -> None:
    from fleetops.services.requests import handle_request_message

    fleet = FakeFleet()
    fleet.request(PROVISION)
    fleet.drain()
    reads, deps = _recording(fleet)
    before = fleet.store.transactions
    message = request_message({"instance": "acme-prod", "action": "restart"}, event_id="r-1")
    handle_request_message(message, deps)
    assert reads == ["get_documents"]
    # A duplicate reads its operation too, still in the one transaction.
    reads.clear()
    handle_request_message(message, deps)
    assert reads == ["get_documents", "get_operation"]
    assert fleet.store.transactions == before + 2
    assert len(fleet.store.list_operations()) == 2


def test_only_parsing_a_request_imports_its_model() -> None:
    # Remediation, rollouts and the API import this module without parsing requests;
    # the model (pydantic) is most of what importing it would cost them.
    code = (
        "import sys\n"
        "import fleetops.services.requests\n"
        "import fleetops.services.rollouts\n"
        "assert 'fleetops.contract.requests' not in sys.modules\n"
        "assert 'pydantic' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_transaction_run_again_stamps_the_request_with_the_attempt_that_commits() -> None:
    # Two requests for one instance race; the loser's transaction runs again and must be
    # recorded, and queued, after the winner, or the queue's order is not the recording order.
    from dataclasses import replace
    from datetime import timedelta

    from fleetops.services.requests import handle_request_message

    fleet = FakeFleet()
    store = fleet.store

    class LostRace(Exception):
        pass

    class Store:
        """Runs each transaction once and throws it away, as Firestore does after a conflict."""

        def transact(self, fn: Any) -> Any:
            def lose(tx: Any) -> Any:
                fn(tx)
                fleet.clock.advance(timedelta(seconds=2))
                raise LostRace

            with pytest.raises(LostRace):
                store.transact(lose)
            return store.transact(fn)

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    first_try = fleet.clock.now()
    outcome = handle_request_message(
        request_message(PROVISION), replace(fleet.request_deps, store=Store())
    )
    op = store.get_operation(outcome.operation)
    assert op is not None
    assert op.created_at == first_try + timedelta(seconds=2)
    assert len(store.list_operations()) == 1


def test_a_request_that_waited_for_the_instance_is_stamped_after_the_wait() -> None:
    # Firestore makes a transaction that reads a locked instance wait for the lock's holder;
    # what it records must come after what the holder recorded.
    from dataclasses import replace
    from datetime import timedelta

    from fleetops.services.requests import handle_request_message

    fleet = FakeFleet()
    store = fleet.store

    class Waiting:
        def __init__(self, tx: Any) -> None:
            self._tx = tx

        def get_documents(self, paths: list[str]) -> Any:
            fleet.clock.advance(timedelta(seconds=2))
            return self._tx.get_documents(paths)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._tx, name)

    class Store:
        def transact(self, fn: Any) -> Any:
            return store.transact(lambda tx: fn(Waiting(tx)))

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    before = fleet.clock.now()
    outcome = handle_request_message(
        request_message(PROVISION), replace(fleet.request_deps, store=Store())
    )
    op = store.get_operation(outcome.operation)
    assert op is not None
    assert op.created_at == before + timedelta(seconds=2)
