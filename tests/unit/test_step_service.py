"""Running steps: exactly one effect per step under duplicates and crashes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleetops.contract.errors import InvalidRequest
from fleetops.contract.names import TOPIC_EVENTS
from fleetops.domain.model import Health, InstanceState, OperationStatus, StepStatus
from fleetops.ports import ActuatorError
from tests.helpers import FakeFleet

PROVISION = {"instance": "acme-prod", "action": "provision", "version": "1.0.0"}


def provisioned(fleet: FakeFleet) -> None:
    fleet.request(PROVISION)
    fleet.drain()


def test_provision_runs_to_a_running_healthy_instance() -> None:
    fleet = FakeFleet()
    op_id = fleet.request(PROVISION).operation
    assert fleet.drain() == 2
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED
    assert all(s.status is StepStatus.SUCCEEDED and s.attempts == 1 for s in op.steps)
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert (instance.state, instance.health) == (InstanceState.RUNNING, Health.HEALTHY)
    assert instance.endpoint == "memory://acme-prod"
    assert instance.active_operation is None
    finished = fleet.publisher.on(TOPIC_EVENTS)
    assert len(finished) == 1
    assert finished[0].attributes["ce-type"] == "fleetops.operation.finished"


def test_a_step_delivered_twice_has_one_effect() -> None:
    fleet = FakeFleet()
    provisioned(fleet)
    fleet.request({"instance": "acme-prod", "action": "restart"})
    [message] = fleet.step_messages()
    fleet.run_step(message)
    fleet.run_step(message)
    fleet.drain()
    assert fleet.actuator.count("restart", "acme-prod") == 1


def test_a_crash_after_the_effect_and_before_the_record_gives_one_effect() -> None:
    fleet = FakeFleet()
    provisioned(fleet)
    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    [message] = fleet.step_messages()
    real_transact = fleet.store.transact

    def crash(fn: object) -> object:
        raise SystemExit("killed between the effect and the state write")

    fleet.store.transact = crash  # type: ignore[method-assign,assignment]
    with pytest.raises(SystemExit):
        fleet.run_step(message)
    assert fleet.actuator.count("restart", "acme-prod") == 1
    fleet.store.transact = real_transact  # type: ignore[method-assign]
    fleet.run_step(message)  # Pub/Sub redelivers the unacknowledged message
    fleet.drain()
    assert fleet.actuator.count("restart", "acme-prod") == 1
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED


def test_a_lost_next_step_message_is_published_again_by_the_redelivery() -> None:
    fleet = FakeFleet()
    op_id = fleet.request(PROVISION).operation
    [first] = fleet.step_messages()
    fleet.publisher.fail_next = 1  # the step is recorded, the next message is not published
    with pytest.raises(ConnectionError):
        fleet.run_step(first)
    assert fleet.step_messages() == []
    fleet.run_step(first)  # redelivered
    fleet.drain()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED
    assert fleet.actuator.count("provision", "acme-prod") == 1


def test_a_transient_failure_is_retried_with_backoff_then_succeeds() -> None:
    fleet = FakeFleet()
    provisioned(fleet)
    fleet.actuator.fail_next["restart"] = ActuatorError("agent busy")
    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    fleet.drain()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED
    assert op.steps[0].attempts == 2
    assert fleet.slept
    assert fleet.slept[0] > 0
    assert fleet.actuator.count("restart", "acme-prod") == 1


def test_a_permanent_failure_fails_the_operation_and_the_instance() -> None:
    fleet = FakeFleet()
    provisioned(fleet)
    fleet.actuator.fail_next["restart"] = ActuatorError("no such disk", permanent=True)
    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    fleet.drain()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.FAILED
    assert op.error == "step restart_instance failed: no such disk"
    assert op.steps[0].status is StepStatus.FAILED
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert instance.state is InstanceState.FAILED
    assert instance.active_operation is None


def test_retries_stop_after_the_step_s_attempts() -> None:
    fleet = FakeFleet()
    provisioned(fleet)
    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    for _ in range(5):
        fleet.actuator.fail_next["restart"] = ActuatorError("agent busy")
        for message in fleet.step_messages():
            fleet.run_step(message)
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.FAILED
    assert op.steps[0].attempts == 3


def test_waiting_for_health_times_out_and_fails() -> None:
    fleet = FakeFleet()
    fleet.actuator.unhealthy.add("acme-prod")
    op_id = fleet.request(PROVISION).operation
    fleet.drain(limit=1000)
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.FAILED
    assert op.steps[1].error is not None
    assert op.steps[1].error.startswith("timed out after 90s")
    assert op.steps[1].checks > 1


def test_a_step_message_for_an_unknown_operation_is_dead_lettered() -> None:
    fleet = FakeFleet()
    fleet.request(PROVISION)
    [message] = fleet.step_messages()
    fleet.store.docs["operations"].clear()
    with pytest.raises(InvalidRequest) as raised:
        fleet.run_step(message)
    assert raised.value.code == "unknown-operation"


def test_a_step_not_yet_due_waits_briefly_then_republishes() -> None:
    fleet = FakeFleet()
    provisioned(fleet)
    fleet.actuator.fail_next["restart"] = ActuatorError("agent busy")
    fleet.request({"instance": "acme-prod", "action": "restart"})
    [first] = fleet.step_messages()
    fleet.run_step(first)  # fails, schedules a retry after the backoff
    [retry] = fleet.step_messages()
    fleet.clock.advance(timedelta(seconds=-10))  # the retry arrives well before it is due
    outcome = fleet.run_step(retry)
    assert "not due yet" in outcome.detail
    assert len(fleet.step_messages()) == 1
