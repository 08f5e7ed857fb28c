"""The alert path's concurrency on the real Firestore emulator.

The emulator locks what a transaction reads until it commits, and a transaction
that meets a lock waits for it (about two seconds) and is then run again. Alerts
for different instances must therefore share no document: every transaction
function here is counted, and one that ran twice met a lock.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from fleetops import documents
from fleetops.adapters.memory import FakeClock, InMemoryPublisher
from fleetops.contract.incidents import notification
from fleetops.contract.names import TOPIC_ALERTS, TOPIC_EVENTS
from fleetops.contract.pubsub import PubsubMessage
from fleetops.domain.model import Health, Instance, InstanceState, OperationStatus, Origin, Size
from fleetops.ports import StateTransaction
from fleetops.services import automation
from fleetops.services.alerts import AlertDeps, handle_alert_message

T = TypeVar("T")


class CountingStore:
    """The Firestore store, counting each run of a transaction function."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.transactions = 0
        self.attempts = 0

    def transact(self, fn: Callable[[StateTransaction], T]) -> T:
        with self._lock:
            self.transactions += 1

        def counted(tx: StateTransaction) -> T:
            with self._lock:
                self.attempts += 1
            return fn(tx)

        return self._store.transact(counted)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class AlertFleet:
    def __init__(self, project: str, size: int) -> None:
        from google.cloud import firestore

        from fleetops.adapters.firestore_store import FirestoreStateStore

        self.firestore = FirestoreStateStore(firestore.Client(project=project))
        self.store = CountingStore(self.firestore)
        self.publisher = InMemoryPublisher()
        self.clock = FakeClock()
        self.ids = [f"inst-{n:02d}" for n in range(1, size + 1)]
        self.firestore.write_documents(
            [(f"instances/{i}", documents.instance_to_doc(self._instance(i))) for i in self.ids]
        )
        self.deps = AlertDeps(self.store, self.publisher, self.clock.now, sleep=lambda s: None)

    def _instance(self, instance_id: str) -> Instance:
        now = self.clock.now()
        return Instance(
            id=instance_id,
            state=InstanceState.RUNNING,
            created_at=now,
            updated_at=now,
            customer="Acme",
            region="europe-west1",
            size=Size.SMALL,
            version="1.0.0",
            endpoint=f"http://127.0.0.1:9/{instance_id}",
            health=Health.HEALTHY,
        )

    def alert(self, instance: str, incident: str | None = None) -> Any:
        body = notification(
            incident or f"inc-{instance}", instance, "open", started_at=self.clock.now()
        )
        message = PubsubMessage(
            json.dumps(body).encode(), {}, str(uuid.uuid4()), topic=TOPIC_ALERTS
        )
        return handle_alert_message(message, self.deps)

    def burst(self, instances: list[str]) -> list[Exception]:
        errors: list[Exception] = []
        gate = threading.Barrier(len(instances))

        def one(instance: str) -> None:
            gate.wait()
            try:
                self.alert(instance)
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return errors

    def verdicts(self, instance: str) -> list[str]:
        found = self.firestore.list_documents(f"instances/{instance}/decisions", order_by="at")
        return [doc["verdict"] for _, doc in reversed(found)]

    def fleet_escalations(self) -> list[dict[str, Any]]:
        return [
            json.loads(m.data)
            for m in self.publisher.on(TOPIC_EVENTS)
            if m.attributes["ce-type"] == "fleetops.remediation.escalated"
            and json.loads(m.data)["fleet_wide"]
        ]

    def remediations(self) -> list[Any]:
        return [
            o
            for o in self.firestore.list_operations(limit=1000)
            if o.origin is Origin.REMEDIATION and not o.dry_run
        ]


@pytest.fixture
def gcp_project(gcp_env: Any) -> str:
    return str(gcp_env.project)


def test_concurrent_alerts_for_distinct_instances_commit_without_waiting_on_each_other(
    gcp_project: str,
) -> None:
    fleet = AlertFleet(gcp_project, 12)
    automation.set_dry_run(fleet.firestore, True)
    automation.set_limit(fleet.firestore, "circuit_minimum", "100")
    fleet.alert(fleet.ids[0])  # the clients' first connections, outside the burst
    fleet.store.transactions = fleet.store.attempts = 0

    errors = fleet.burst(fleet.ids[1:])

    assert errors == []
    assert fleet.store.transactions == 11  # one transaction per alert
    assert fleet.store.attempts == 11  # none ran twice: no lock was met
    for instance in fleet.ids:
        assert fleet.verdicts(instance) == ["dry_run"]
    planned = fleet.firestore.list_operations(limit=100)
    assert len(planned) == 12
    assert all(o.dry_run and o.status is OperationStatus.SUCCEEDED for o in planned)


def test_the_circuit_breaker_opens_at_its_threshold(gcp_project: str) -> None:
    fleet = AlertFleet(gcp_project, 10)  # opens when more than max(2, 20%) = 2 instances
    automation.set_dry_run(fleet.firestore, True)
    fleet.alert("inst-01")
    fleet.alert("inst-02")
    fleet.alert("inst-01", "inc-again")  # one instance twice is still one instance
    assert not automation.status(fleet.firestore).circuit.open
    fleet.alert("inst-03")
    assert automation.status(fleet.firestore).circuit.open
    assert fleet.verdicts("inst-03") == ["circuit_open"]
    assert len(fleet.fleet_escalations()) == 1
    fleet.alert("inst-04")
    assert fleet.verdicts("inst-04") == ["circuit_open"]
    assert len(fleet.fleet_escalations()) == 1

    fleet.clock.advance(timedelta(seconds=1))
    automation.resume(fleet.firestore, "oncall@example.com", fleet.clock.now())
    fleet.clock.advance(timedelta(seconds=1))
    fleet.alert("inst-05")  # incidents before the resume no longer count
    assert fleet.verdicts("inst-05") == ["dry_run"]


def test_a_burst_over_the_threshold_opens_the_circuit_once(gcp_project: str) -> None:
    fleet = AlertFleet(gcp_project, 10)
    automation.set_dry_run(fleet.firestore, True)
    fleet.alert("inst-01")  # the clients' first connections, outside the burst

    errors = fleet.burst(fleet.ids[1:9])

    assert errors == []
    # Each alert counts the incidents committed before it: those in flight with it may
    # pass, and the first to see more than the threshold opens the circuit.
    fleet.alert("inst-10")
    assert automation.status(fleet.firestore).circuit.open
    assert fleet.verdicts("inst-10") == ["circuit_open"]
    assert len(fleet.fleet_escalations()) == 1
    passed = [i for i in fleet.ids if fleet.verdicts(i) == ["dry_run"]]
    assert len(passed) >= 2
    stopped = [i for i in fleet.ids if fleet.verdicts(i) == ["circuit_open"]]
    assert sorted(passed + stopped) == fleet.ids


def test_concurrent_remediations_never_exceed_the_slots(gcp_project: str) -> None:
    fleet = AlertFleet(gcp_project, 20)  # at most max(1, 10%) = 2 at once
    automation.set_limit(fleet.firestore, "circuit_minimum", "100")
    fleet.alert("inst-20")
    [first] = fleet.remediations()
    assert first.status is OperationStatus.RUNNING

    errors = fleet.burst(fleet.ids[:8])

    assert errors == []
    running = [o for o in fleet.remediations() if o.status is OperationStatus.RUNNING]
    assert len(running) == 2
    holders = {
        str(doc["operation"]) for _, doc in fleet.firestore.list_documents("remediation_slots")
    }
    assert holders == {o.id for o in running}
    verdicts = [v for i in fleet.ids[:8] for v in fleet.verdicts(i)]
    assert sorted(verdicts) == ["acted"] + ["waiting"] * 7
