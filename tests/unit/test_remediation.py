"""Health alerts to remediation on fakes, with a manual clock: every safety limit and its edges."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from fleetops.contract.errors import InvalidRequest
from fleetops.contract.names import TOPIC_EVENTS
from fleetops.domain.model import Health, Origin
from fleetops.domain.remediation import Incident
from fleetops.services import automation
from fleetops.services.alerts import handle_incident, recheck
from tests.helpers import FakeFleet


def fleet_of(n: int) -> FakeFleet:
    fleet = FakeFleet()
    for i in range(1, n + 1):
        fleet.request({"instance": f"inst-{i}", "action": "provision", "version": "1.0.0"})
    fleet.drain(limit=1000)
    fleet.publisher.take(TOPIC_EVENTS)
    return fleet


def verdicts(fleet: FakeFleet, instance: str) -> list[str]:
    return [d["verdict"] for d in fleet.decisions(instance)]


def remediations(fleet: FakeFleet, instance: str) -> list[str]:
    return [
        o.action.value
        for o in reversed(fleet.store.list_operations(instance=instance))
        if o.origin is Origin.REMEDIATION and not o.dry_run
    ]


def escalations(fleet: FakeFleet) -> list[dict[str, object]]:
    return [
        json.loads(m.data)
        for m in fleet.publisher.on(TOPIC_EVENTS)
        if m.attributes["ce-type"] == "fleetops.remediation.escalated"
    ]


def test_an_open_incident_restarts_the_instance_and_records_why() -> None:
    fleet = fleet_of(3)
    outcome = fleet.alert("inst-1", "inc-1")
    assert "acted" in outcome.detail
    fleet.drain()
    [op] = [
        o for o in fleet.store.list_operations(instance="inst-1") if o.origin is Origin.REMEDIATION
    ]
    assert (op.action.value, op.request_id, op.status.value) == ("restart", "inc-1", "succeeded")
    [decision] = fleet.decisions("inst-1")
    assert decision["verdict"] == "acted"
    assert decision["operation"] == op.id
    assert fleet.store.get_instance("inst-1").health is Health.HEALTHY  # type: ignore[union-attr]
    assert fleet.store.get_document("instances/inst-1/incidents/inc-1")["state"] == "open"  # type: ignore[index]


def test_an_alert_whose_transaction_gave_up_on_locks_decides_again_with_fresh_facts() -> None:
    from fleetops.ports import TransactionContention

    fleet = fleet_of(3)
    store = fleet.store
    gave_up: list[str] = []

    class Contended:
        """The first transaction meets only locks, as alerts racing for one slot can."""

        def transact(self, fn: Any) -> Any:
            if not gave_up:
                gave_up.append("once")
                raise TransactionContention("Failed to commit transaction in 10 attempts.")
            return store.transact(fn)

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    deps = replace(fleet.alert_deps, store=Contended())
    before = store.transactions
    outcome = handle_incident(
        Incident("inc-1", "inst-1", "open", fleet.clock.now(), None, "", "", None), deps
    )
    assert "acted" in outcome.detail
    assert gave_up == ["once"]
    assert store.transactions == before + 1
    assert verdicts(fleet, "inst-1") == ["acted"]


def test_closed_marks_the_instance_healthy() -> None:
    fleet = fleet_of(3)
    fleet.alert("inst-1", "inc-1")
    assert fleet.store.get_instance("inst-1").health is Health.UNHEALTHY  # type: ignore[union-attr]
    fleet.alert("inst-1", "inc-1", "closed")
    assert fleet.store.get_instance("inst-1").health is Health.HEALTHY  # type: ignore[union-attr]
    assert verdicts(fleet, "inst-1")[-1] == "healed"


def test_the_same_incident_three_times_gives_one_remediation() -> None:
    fleet = fleet_of(3)
    for _ in range(3):
        fleet.alert("inst-1", "inc-1")
    fleet.drain()
    assert remediations(fleet, "inst-1") == ["restart"]
    assert fleet.actuator.count("restart", "inst-1") == 1


def test_an_incident_for_an_unknown_instance_is_refused() -> None:
    fleet = fleet_of(1)
    with pytest.raises(InvalidRequest) as raised:
        fleet.alert("ghost", "inc-1")
    assert raised.value.code == "unknown-instance"


@pytest.mark.parametrize(("after", "verdict"), [(299, "suppressed_by_cooldown"), (300, "acted")])
def test_cooldown_edge(after: int, verdict: str) -> None:
    fleet = fleet_of(3)
    fleet.alert("inst-1", "inc-1")
    fleet.drain()
    fleet.alert("inst-1", "inc-1", "closed")
    fleet.clock.advance(timedelta(seconds=after))
    fleet.alert("inst-1", "inc-2")
    assert verdicts(fleet, "inst-1")[-1] == verdict


def test_the_per_instance_cap_escalates_once_and_stops_acting() -> None:
    fleet = fleet_of(3)
    fleet.set_limit("cooldown_seconds", 0)
    fleet.set_limit("flap_cycles", 100)
    for n in range(3):
        fleet.alert("inst-1", f"inc-{n}")
        fleet.drain()
        fleet.alert("inst-1", f"inc-{n}", "closed")
        fleet.clock.advance(timedelta(minutes=1))
    fleet.alert("inst-1", "inc-3")
    assert verdicts(fleet, "inst-1")[-1] == "cap_reached"
    fleet.alert("inst-1", "inc-3", "closed")
    fleet.alert("inst-1", "inc-4")
    assert verdicts(fleet, "inst-1")[-1] == "escalated"
    assert len(remediations(fleet, "inst-1")) == 3
    assert len(escalations(fleet)) == 1
    automation.reset_instance(fleet.store, "inst-1", "oncall@example.com", fleet.clock.now())
    fleet.alert("inst-1", "inc-4", "closed")
    fleet.alert("inst-1", "inc-5")
    assert verdicts(fleet, "inst-1")[-1] == "acted"


def test_remediations_older_than_the_cap_window_do_not_count() -> None:
    fleet = fleet_of(3)
    fleet.set_limit("cooldown_seconds", 0)
    fleet.set_limit("flap_cycles", 100)
    for n in range(3):
        fleet.alert("inst-1", f"inc-{n}")
        fleet.drain()
        fleet.alert("inst-1", f"inc-{n}", "closed")
    fleet.clock.advance(timedelta(minutes=60))
    fleet.alert("inst-1", "inc-3")
    assert verdicts(fleet, "inst-1")[-1] == "acted"


def test_flapping_is_escalated_not_remediated() -> None:
    fleet = fleet_of(3)
    fleet.set_limit("cooldown_seconds", 0)
    fleet.set_limit("max_remediations", 100)
    for n in range(4):
        fleet.alert("inst-1", f"flap-{n}")
        fleet.drain()
        fleet.alert("inst-1", f"flap-{n}", "closed")
        fleet.clock.advance(timedelta(minutes=5))
    fleet.alert("inst-1", "flap-4")
    assert verdicts(fleet, "inst-1")[-1] == "flapping"
    assert len(remediations(fleet, "inst-1")) == 4
    assert str(escalations(fleet)[0]["reason"]).startswith("flapping")


def test_flaps_outside_the_window_do_not_count() -> None:
    fleet = fleet_of(3)
    fleet.set_limit("cooldown_seconds", 0)
    fleet.set_limit("max_remediations", 100)
    for n in range(4):
        fleet.alert("inst-1", f"flap-{n}")
        fleet.drain()
        fleet.alert("inst-1", f"flap-{n}", "closed")
        fleet.clock.advance(timedelta(minutes=8))
    fleet.alert("inst-1", "flap-4")
    assert verdicts(fleet, "inst-1")[-1] == "acted"


def test_fleet_concurrency_makes_the_rest_wait_then_act() -> None:
    fleet = fleet_of(10)  # at most max(1, 10%) = 1 at once
    fleet.alert("inst-1", "inc-1")
    fleet.alert("inst-2", "inc-2")
    assert verdicts(fleet, "inst-2") == ["waiting"]
    assert remediations(fleet, "inst-2") == []
    fleet.clock.advance(timedelta(seconds=10))
    fleet.settle()
    assert remediations(fleet, "inst-2") == ["restart"]


def test_the_circuit_breaker_opens_above_its_threshold_and_escalates_once() -> None:
    fleet = fleet_of(10)  # opens when more than max(2, 20%) = 2 instances have incidents
    for n in (1, 2, 3, 4, 5):
        fleet.alert(f"inst-{n}", f"inc-{n}")
    assert verdicts(fleet, "inst-1") == ["acted"]
    assert verdicts(fleet, "inst-2") == ["waiting"]
    for n in (3, 4, 5):
        assert verdicts(fleet, f"inst-{n}") == ["circuit_open"]
    fleet.settle()
    acted = [n for n in range(1, 6) if remediations(fleet, f"inst-{n}")]
    assert acted == [1]
    [escalation] = escalations(fleet)
    assert escalation["fleet_wide"] is True
    assert fleet.notified == [escalation]
    status = automation.status(fleet.store)
    assert status.circuit.open
    fleet.clock.advance(timedelta(seconds=1))
    automation.resume(fleet.store, "oncall@example.com", fleet.clock.now())
    fleet.clock.advance(timedelta(seconds=1))
    fleet.alert("inst-6", "inc-6")
    assert verdicts(fleet, "inst-6") == ["acted"]
    assert not automation.status(fleet.store).circuit.open


def test_one_failure_in_a_fleet_of_three_still_heals() -> None:
    fleet = fleet_of(3)
    fleet.alert("inst-1", "inc-1")
    assert verdicts(fleet, "inst-1") == ["acted"]


@pytest.mark.parametrize(("incidents", "opens"), [(2, False), (3, True)])
def test_circuit_threshold_edge_in_a_fleet_of_ten(incidents: int, opens: bool) -> None:
    fleet = fleet_of(10)
    for n in range(1, incidents + 1):
        fleet.alert(f"inst-{n}", f"inc-{n}")
    assert automation.status(fleet.store).circuit.open is opens


def test_the_kill_switch_records_and_does_nothing() -> None:
    fleet = fleet_of(3)
    automation.pause(fleet.store, "oncall@example.com")
    fleet.alert("inst-1", "inc-1")
    assert verdicts(fleet, "inst-1") == ["paused"]
    assert "oncall@example.com" in fleet.decisions("inst-1")[0]["reason"]
    fleet.settle()
    assert remediations(fleet, "inst-1") == []


def test_dry_run_goes_the_same_path_and_touches_nothing() -> None:
    fleet = fleet_of(3)
    automation.set_dry_run(fleet.store, True)
    before = list(fleet.actuator.effects)
    fleet.alert("inst-1", "inc-1")
    fleet.settle()
    assert verdicts(fleet, "inst-1") == ["dry_run"]
    [op] = [
        o for o in fleet.store.list_operations(instance="inst-1") if o.origin is Origin.REMEDIATION
    ]
    assert op.dry_run
    assert [s.name for s in op.steps] == ["restart_instance", "wait_healthy"]
    assert fleet.actuator.effects == before


def test_a_crash_looping_instance_gets_three_remediations_then_one_escalation() -> None:
    fleet = fleet_of(3)
    fleet.set_limit("cooldown_seconds", 10)
    fleet.actuator.unhealthy.add("inst-1")
    fleet.alert("inst-1", "inc-1")
    for _ in range(40):
        fleet.clock.advance(timedelta(seconds=15))
        fleet.settle()
    assert remediations(fleet, "inst-1") == ["restart", "restart", "replace"]
    assert verdicts(fleet, "inst-1")[-1] in ("cap_reached", "escalated")
    assert len(escalations(fleet)) == 1
    fleet.clock.advance(timedelta(minutes=30))
    fleet.settle()
    assert len(remediations(fleet, "inst-1")) == 3


def test_a_playbook_is_data() -> None:
    fleet = fleet_of(3)
    fleet.store.transact(
        lambda tx: tx.put_document(
            "playbooks/gentle", {"ladder": [{"action": "snapshot"}, {"action": "escalate"}]}
        )
    )
    from fleetops.contract.incidents import notification
    from fleetops.contract.pubsub import PubsubMessage
    from fleetops.services.alerts import handle_alert_message

    body = notification("inc-1", "inst-1", "open", started_at=fleet.clock.now(), playbook="gentle")
    handle_alert_message(PubsubMessage(json.dumps(body).encode(), {}, "m1"), fleet.alert_deps)
    fleet.drain()
    assert remediations(fleet, "inst-1") == ["snapshot"]


def test_an_alert_is_one_transaction_even_when_it_acts() -> None:
    fleet = fleet_of(10)
    before = fleet.store.transactions
    fleet.alert("inst-1", "inc-1")
    assert fleet.store.transactions == before + 1
    assert verdicts(fleet, "inst-1") == ["acted"]
    [op] = [
        o for o in fleet.store.list_operations(instance="inst-1") if o.origin is Origin.REMEDIATION
    ]
    assert op.status.value == "running"
    instance = fleet.store.get_instance("inst-1")
    assert instance is not None
    # The health change and the remediation's lease, written by the same transaction.
    assert (instance.health, instance.active_operation) == (Health.UNHEALTHY, op.id)
    assert fleet.store.get_document("remediation_slots/0") == {
        "operation": op.id,
        "instance": "inst-1",
        "taken_at": fleet.clock.now(),
    }


def test_the_circuit_counts_an_instance_once_however_many_incidents_it_had() -> None:
    fleet = fleet_of(10)  # opens when more than 2 instances had incidents
    fleet.set_limit("cooldown_seconds", 0)
    for n in range(3):
        fleet.alert("inst-1", f"inc-{n}")
        fleet.alert("inst-1", f"inc-{n}", "closed")
    fleet.alert("inst-2", "inc-a")
    assert not automation.status(fleet.store).circuit.open
    fleet.alert("inst-3", "inc-b")
    assert automation.status(fleet.store).circuit.open


def test_incidents_older_than_the_circuit_window_do_not_count() -> None:
    fleet = fleet_of(10)
    fleet.alert("inst-1", "inc-1")
    fleet.drain()
    fleet.alert("inst-2", "inc-2")
    fleet.drain()
    fleet.clock.advance(timedelta(minutes=10, seconds=1))
    fleet.alert("inst-3", "inc-3")
    assert not automation.status(fleet.store).circuit.open
    assert verdicts(fleet, "inst-3") == ["acted"]


class _Meddling:
    """A store that lets something else commit between the fleet-wide reads and the
    alert's first transaction, as a concurrent alert would."""

    def __init__(self, store: Any, meddle: Any) -> None:
        self._store = store
        self._meddle = meddle
        self.transactions = 0

    def transact(self, fn: Any) -> Any:
        self.transactions += 1
        if self._meddle is not None:
            meddle, self._meddle = self._meddle, None
            meddle()
        return self._store.transact(fn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_slot_taken_after_it_was_read_sends_the_alert_back_to_read_again() -> None:
    fleet = fleet_of(10)  # one slot
    taken = fleet.request({"instance": "inst-9", "action": "restart"}).operation

    def take_the_slot() -> None:
        fleet.store.transact(
            lambda tx: tx.put_document("remediation_slots/0", {"operation": taken})
        )

    store = _Meddling(fleet.store, take_the_slot)
    deps = replace(fleet.alert_deps, store=store)
    handle_incident(_incident("inst-1", "inc-1", fleet), deps)
    # The first transaction found the slot changed and wrote nothing; the second waits.
    assert store.transactions == 2
    assert verdicts(fleet, "inst-1") == ["waiting"]
    assert remediations(fleet, "inst-1") == []
    assert fleet.store.get_document("remediation_slots/0") == {"operation": taken}


def test_a_circuit_opened_after_it_was_read_is_not_opened_twice() -> None:
    fleet = fleet_of(10)
    fleet.alert("inst-1", "inc-1")
    fleet.alert("inst-2", "inc-2")

    def open_it() -> None:
        fleet.alert("inst-3", "inc-3")

    store = _Meddling(fleet.store, None)
    deps = replace(fleet.alert_deps, store=store)
    # Read the fleet's facts, then let inst-3 open the circuit before the transaction.
    store._meddle = open_it
    handle_incident(_incident("inst-4", "inc-4", fleet), deps)
    assert verdicts(fleet, "inst-3") == ["circuit_open"]
    assert verdicts(fleet, "inst-4") == ["circuit_open"]
    assert len([e for e in escalations(fleet) if e["fleet_wide"]]) == 1


def test_a_recheck_in_dry_run_plans_its_operation_once() -> None:
    fleet = fleet_of(3)
    automation.set_dry_run(fleet.store, True)
    fleet.alert("inst-1", "inc-1")
    planned = fleet.store.list_operations(instance="inst-1")
    for _ in range(3):
        recheck("inst-1", "inc-1", fleet.alert_deps)
    assert fleet.store.list_operations(instance="inst-1") == planned
    assert verdicts(fleet, "inst-1") == ["dry_run"] * 4


def test_a_duplicate_delivery_publishes_a_first_step_that_was_lost() -> None:
    fleet = fleet_of(3)
    fleet.alert("inst-1", "inc-1")
    [lost] = fleet.step_messages()  # the function died before this was delivered
    outcome = fleet.alert("inst-1", "inc-1")
    assert outcome.detail.startswith("duplicate")
    [again] = fleet.step_messages()
    assert (again.data, again.attributes["ce-id"]) == (lost.data, lost.attributes["ce-id"])
    fleet.run_step(again)
    fleet.drain()
    assert fleet.actuator.count("restart", "inst-1") == 1


def _incident(instance: str, incident: str, fleet: FakeFleet) -> Incident:
    return Incident(incident, instance, "open", fleet.clock.now(), None, "", "", None)
