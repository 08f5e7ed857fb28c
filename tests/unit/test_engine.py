"""The operations engine on fakes: plans, compensation, cancel, approvals, leases, sweeping."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import Health, InstanceState, OperationStatus, Size, StepStatus
from fleetops.ports import ActuatorError
from tests.helpers import FakeFleet

PROVISION = {"instance": "acme-prod", "action": "provision", "version": "1.0.0"}


@pytest.fixture
def fleet() -> FakeFleet:
    f = FakeFleet()
    f.request(PROVISION)
    f.drain()
    return f


def run(fleet: FakeFleet, data: dict[str, object]) -> object:
    op_id = fleet.request({"instance": "acme-prod", **data}).operation
    fleet.drain(limit=1000)
    op = fleet.store.get_operation(op_id)
    assert op is not None
    return op


def test_upgrade_snapshots_stops_switches_starts_and_waits(fleet: FakeFleet) -> None:
    op = run(fleet, {"action": "upgrade", "version": "2.0.0"})
    assert op.status is OperationStatus.SUCCEEDED  # type: ignore[attr-defined]
    assert [s.name for s in op.steps] == [  # type: ignore[attr-defined]
        "take_snapshot",
        "stop_instance",
        "switch_version",
        "start_instance",
        "wait_healthy",
    ]
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert (instance.state, instance.version, instance.health) == (
        InstanceState.RUNNING,
        "2.0.0",
        Health.HEALTHY,
    )
    assert instance.latest_snapshot is not None
    assert fleet.actuator.instances["acme-prod"].version == "2.0.0"


@pytest.mark.parametrize(
    ("data", "state", "check"),
    [
        ({"action": "resize", "size": "large"}, InstanceState.RUNNING, ("size", Size.LARGE)),
        ({"action": "restart"}, InstanceState.RUNNING, ("version", "1.0.0")),
        ({"action": "suspend"}, InstanceState.SUSPENDED, ("version", "1.0.0")),
        ({"action": "snapshot"}, InstanceState.RUNNING, ("version", "1.0.0")),
    ],
)
def test_each_action_reaches_its_final_state(
    fleet: FakeFleet, data: dict[str, object], state: InstanceState, check: tuple[str, object]
) -> None:
    op = run(fleet, data)
    assert op.status is OperationStatus.SUCCEEDED  # type: ignore[attr-defined]
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert instance.state is state
    assert getattr(instance, check[0]) == check[1]
    assert instance.active_operation is None


def test_resume_brings_a_suspended_instance_back(fleet: FakeFleet) -> None:
    run(fleet, {"action": "suspend"})
    op = run(fleet, {"action": "resume"})
    assert op.status is OperationStatus.SUCCEEDED  # type: ignore[attr-defined]
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert (instance.state, instance.health) == (InstanceState.RUNNING, Health.HEALTHY)


def test_resume_of_a_running_instance_is_rejected(fleet: FakeFleet) -> None:
    op = run(fleet, {"action": "resume"})
    assert op.status is OperationStatus.REJECTED  # type: ignore[attr-defined]
    assert op.error == "instance acme-prod is not suspended (state running)"  # type: ignore[attr-defined]


def test_an_upgrade_that_never_turns_healthy_is_rolled_back(fleet: FakeFleet) -> None:
    fleet.actuator.unhealthy_versions.add("2.0.0")
    op = run(fleet, {"action": "upgrade", "version": "2.0.0"})
    assert op.status is OperationStatus.FAILED  # type: ignore[attr-defined]
    assert op.error.startswith("step wait_healthy failed: timed out")  # type: ignore[attr-defined]
    assert op.error.endswith("rolled back to version 1.0.0")  # type: ignore[attr-defined]
    rollback = [s for s in op.steps if s.compensation]  # type: ignore[attr-defined]
    assert [s.name for s in rollback] == [
        "stop_instance",
        "restore_version",
        "start_instance",
        "wait_healthy",
    ]
    assert all(s.status is StepStatus.SUCCEEDED for s in rollback)
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert (instance.state, instance.version, instance.health) == (
        InstanceState.RUNNING,
        "1.0.0",
        Health.HEALTHY,
    )
    assert fleet.actuator.probe("acme-prod").version == "1.0.0"
    assert fleet.actuator.probe("acme-prod").healthy


def test_a_failed_rollback_leaves_the_instance_failed(fleet: FakeFleet) -> None:
    fleet.actuator.unhealthy_versions.update({"2.0.0", "1.0.0"})
    op = run(fleet, {"action": "upgrade", "version": "2.0.0"})
    assert op.status is OperationStatus.FAILED  # type: ignore[attr-defined]
    assert "rollback failed" in op.error  # type: ignore[attr-defined]
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert instance.state is InstanceState.FAILED


def test_a_failure_before_the_compensated_part_needs_no_rollback(fleet: FakeFleet) -> None:
    fleet.actuator.fail_next["snapshot"] = ActuatorError("disk busy", permanent=True)
    op = run(fleet, {"action": "upgrade", "version": "2.0.0"})
    assert op.status is OperationStatus.FAILED  # type: ignore[attr-defined]
    assert not any(s.compensation for s in op.steps)  # type: ignore[attr-defined]
    assert fleet.actuator.count("stop", "acme-prod") == 0


def test_cancel_stops_at_the_next_boundary_and_compensates(fleet: FakeFleet) -> None:
    op_id = fleet.request(
        {"instance": "acme-prod", "action": "upgrade", "version": "2.0.0"}
    ).operation
    for _ in range(3):  # snapshot, stop, switch_version
        [message] = fleet.step_messages()
        fleet.run_step(message)
    fleet.cancel(op_id, "carol@example.com")
    fleet.drain()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.CANCELLED
    assert op.error == "cancelled by carol@example.com; rolled back to version 1.0.0"
    assert [s.name for s in op.steps if s.status is StepStatus.SKIPPED] == ["wait_healthy"]
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert (instance.version, instance.state) == ("1.0.0", InstanceState.RUNNING)
    assert any(h.event == "cancel requested" and h.actor == "carol@example.com" for h in op.history)


def test_cancel_of_a_queued_operation_is_immediate(fleet: FakeFleet) -> None:
    fleet.request({"instance": "acme-prod", "action": "restart"})
    queued = fleet.request({"instance": "acme-prod", "action": "snapshot"}).operation
    op = fleet.cancel(queued)
    assert op.status is OperationStatus.CANCELLED
    with pytest.raises(DecisionError, match="already cancelled"):
        fleet.cancel(queued)


def test_delete_waits_for_a_second_person(fleet: FakeFleet) -> None:
    op_id = fleet.request(
        {"instance": "acme-prod", "action": "delete", "requested_by": "alice@example.com"}
    ).operation
    assert fleet.step_messages() == []
    waiting = fleet.store.get_operation(op_id)
    assert waiting is not None
    assert waiting.status is OperationStatus.AWAITING_APPROVAL
    with pytest.raises(DecisionError, match="cannot approve it: a second person must"):
        fleet.approve(op_id, "alice@example.com")
    assert fleet.actuator.count("delete", "acme-prod") == 0
    fleet.approve(op_id, "bob@example.com")
    fleet.drain()
    done = fleet.store.get_operation(op_id)
    assert done is not None
    assert done.status is OperationStatus.SUCCEEDED
    assert done.approved_by == "bob@example.com"
    assert fleet.actuator.count("delete", "acme-prod") == 1
    instance = fleet.store.get_instance("acme-prod")
    assert instance is not None
    assert instance.state is InstanceState.DELETED


def test_enterprise_instances_need_approval_for_any_action() -> None:
    fleet = FakeFleet()
    op_id = fleet.request({**PROVISION, "labels": {"tier": "enterprise"}}).operation
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.AWAITING_APPROVAL


def test_an_approval_that_times_out_is_cancelled_by_the_sweeper(fleet: FakeFleet) -> None:
    op_id = fleet.request({"instance": "acme-prod", "action": "delete"}).operation
    fleet.clock.advance(timedelta(hours=23, minutes=59))
    fleet.sweep()
    assert fleet.store.get_operation(op_id).status is OperationStatus.AWAITING_APPROVAL  # type: ignore[union-attr]
    fleet.clock.advance(timedelta(minutes=1))
    fleet.sweep()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.CANCELLED
    assert op.error == "the approval timed out"
    with pytest.raises(DecisionError, match="cancelled, not awaiting approval"):
        fleet.approve(op_id)


def test_a_dead_holder_loses_its_lease_and_its_late_write_is_refused(fleet: FakeFleet) -> None:
    holder = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    [lost] = fleet.step_messages()  # the function that had this message died
    waiting = fleet.request({"instance": "acme-prod", "action": "snapshot"}).operation
    before = fleet.store.get_instance("acme-prod")
    assert before is not None
    assert before.active_operation == holder
    fleet.clock.advance(timedelta(minutes=3))
    fleet.sweep()  # not yet expired: the step's timeout is 2 minutes plus a 2 minute margin
    assert fleet.store.get_operation(holder).status is OperationStatus.RUNNING  # type: ignore[union-attr]
    fleet.clock.advance(timedelta(minutes=2))
    fleet.sweep()
    failed = fleet.store.get_operation(holder)
    assert failed is not None
    assert failed.status is OperationStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("lease expired")
    taken = fleet.store.get_instance("acme-prod")
    assert taken is not None
    assert taken.active_operation == waiting
    assert taken.lease_token == before.lease_token + 1
    outcome = fleet.run_step(lost)  # the late writer
    assert outcome.detail == "operation is already failed"
    fleet.drain()
    assert fleet.store.get_operation(waiting).status is OperationStatus.SUCCEEDED  # type: ignore[union-attr]


def test_a_step_recorded_under_an_old_lease_token_is_refused(fleet: FakeFleet) -> None:
    from fleetops.domain.decisions import StepSucceeded, complete_step

    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    op = fleet.store.get_operation(op_id)
    instance = fleet.store.get_instance("acme-prod")
    assert op is not None
    assert instance is not None
    newer = instance.evolve(lease_token=instance.lease_token + 1, active_operation="op-newer")
    decision = complete_step(op, newer, 0, StepSucceeded(), fleet.clock.now(), jitter=0.5)
    assert decision.refused is not None
    assert "lost its lease" in decision.refused
    assert decision.operations == ()
    assert decision.instances == ()


def test_a_stalled_operation_is_dispatched_again_by_the_sweeper(fleet: FakeFleet) -> None:
    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    fleet.step_messages()  # lost
    fleet.clock.advance(timedelta(minutes=2))
    report = fleet.sweep()
    assert report.changed == 1
    fleet.drain()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.status is OperationStatus.SUCCEEDED
    assert any(h.event == "resumed" for h in op.history)
    assert fleet.actuator.count("restart", "acme-prod") == 1


def test_an_operation_past_its_deadline_is_failed_by_the_sweeper(fleet: FakeFleet) -> None:
    op_id = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    fleet.step_messages()
    op = fleet.store.get_operation(op_id)
    assert op is not None
    assert op.deadline_at is not None
    fleet.clock.current = op.deadline_at
    fleet.sweep()
    failed = fleet.store.get_operation(op_id)
    assert failed is not None
    assert failed.status is OperationStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("deadline passed")


def test_ten_requests_for_one_instance_run_one_at_a_time_in_order(fleet: FakeFleet) -> None:
    ids = []
    for n in range(10):
        fleet.clock.advance(timedelta(seconds=1))
        ids.append(
            fleet.request(
                {"instance": "acme-prod", "action": "restart", "reason": str(n)}
            ).operation
        )
    fleet.drain(limit=1000)
    ops = [fleet.store.get_operation(i) for i in ids]
    assert all(o is not None and o.status is OperationStatus.SUCCEEDED for o in ops)
    spans = [(o.started_at, o.finished_at) for o in ops if o is not None]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None
        assert start is not None
        assert end <= start
    tokens = [o.lease_token for o in ops if o is not None]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 10


def test_history_tells_the_story_of_operation_and_instance(fleet: FakeFleet) -> None:
    op = run(
        fleet, {"action": "upgrade", "version": "2.0.0", "requested_by": "dave", "reason": "CVE"}
    )
    events = [h.event for h in op.history]  # type: ignore[attr-defined]
    assert events[0] == "requested"
    assert op.history[0].detail == "upgrade by dave: CVE"  # type: ignore[attr-defined]
    assert events[1] == "started"
    assert events.count("step succeeded") == 5
    assert events[-1] == "succeeded"
    story = fleet.store.instance_history("acme-prod")
    assert any("version 1.0.0 -> 2.0.0" in h.event for h in story)
    assert any("state upgrading -> running" in h.event for h in story)


def test_a_dry_run_of_an_upgrade_plans_every_step_and_touches_nothing(fleet: FakeFleet) -> None:
    before = list(fleet.actuator.effects)
    op = run(fleet, {"action": "upgrade", "version": "2.0.0", "dry_run": True})
    assert op.status is OperationStatus.SUCCEEDED  # type: ignore[attr-defined]
    assert len(op.steps) == 5  # type: ignore[attr-defined]
    assert all(s.status is StepStatus.SKIPPED for s in op.steps)  # type: ignore[attr-defined]
    assert fleet.actuator.effects == before
    assert fleet.store.get_instance("acme-prod").version == "1.0.0"  # type: ignore[union-attr]


def test_a_sweep_of_operations_that_need_nothing_takes_no_transaction(fleet: FakeFleet) -> None:
    """A busy instance's running and queued operations are looked at without locks."""
    running = fleet.request({"instance": "acme-prod", "action": "restart"}).operation
    queued = fleet.request({"instance": "acme-prod", "action": "suspend"}).operation
    held = fleet.step_messages()  # delivered later: the step has not stalled yet
    before = fleet.store.transactions
    instance_before = fleet.store.get_instance("acme-prod")
    report = fleet.sweep()
    assert (report.looked_at, report.changed) == (2, 0)
    assert fleet.store.transactions == before
    assert fleet.store.get_instance("acme-prod") == instance_before
    for message in held:
        fleet.run_step(message)
    fleet.drain()
    statuses = [fleet.store.get_operation(i).status for i in (running, queued)]  # type: ignore[union-attr]
    assert statuses == [OperationStatus.SUCCEEDED, OperationStatus.SUCCEEDED]
