"""One contract for every StateStore: the in-memory fake and the Firestore adapter.

The Firestore half runs on the real emulator, so the fake cannot drift from it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetops.domain.model import (
    Action,
    Health,
    Instance,
    InstanceState,
    MaintenanceWindow,
    Operation,
    OperationParams,
    OperationStatus,
    Origin,
    ProcessedEvent,
    Size,
    Step,
    StepStatus,
    frozen_map,
)
from fleetops.ports import StateStore, StateTransaction

T0 = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC)


@pytest.fixture(params=["memory", "firestore"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        from fleetops.adapters.memory import InMemoryStateStore

        yield InMemoryStateStore()
        return
    env = request.getfixturevalue("gcp_env")
    from google.cloud import firestore

    from fleetops.adapters.firestore_store import FirestoreStateStore

    yield FirestoreStateStore(firestore.Client(project=env.project))


def an_instance(**changes: Any) -> Instance:
    base = Instance(
        id="acme-prod",
        state=InstanceState.RUNNING,
        created_at=T0,
        updated_at=T0,
        customer="Acme",
        region="europe-west1",
        size=Size.MEDIUM,
        version="5.2.1",
        labels=frozen_map({"ring": "canary"}),
        maintenance_window=MaintenanceWindow(("sat", "sun"), "02:00", "4h", "America/New_York"),
        endpoint="http://127.0.0.1:9999",
        health=Health.HEALTHY,
    )
    return base.evolve(**changes)


def an_operation(op_id: str = "op-1", **changes: Any) -> Operation:
    base = Operation(
        id=op_id,
        instance="acme-prod",
        action=Action.UPGRADE,
        origin=Origin.REQUEST,
        status=OperationStatus.RUNNING,
        request_id="req-1",
        created_at=T0,
        updated_at=T0,
        params=OperationParams(version="5.3.0", labels=frozen_map({"a": "b"})),
        steps=(
            Step("snapshot", StepStatus.SUCCEEDED, 1, T0, T0 + timedelta(seconds=2)),
            Step("switch", StepStatus.RUNNING, 2, T0, None, "agent busy", T0, 3),
        ),
        current_step=1,
        requested_by="alice",
        reason="monthly",
        started_at=T0,
    )
    return base.evolve(**changes)


def put(store: StateStore, *items: Instance | Operation | ProcessedEvent) -> None:
    def write(tx: StateTransaction) -> None:
        for item in items:
            if isinstance(item, Instance):
                tx.put_instance(item)
            elif isinstance(item, Operation):
                tx.put_operation(item)
            else:
                tx.put_processed_event(item)

    store.transact(write)


def test_an_instance_round_trips_unchanged(store: StateStore) -> None:
    put(store, an_instance())
    assert store.get_instance("acme-prod") == an_instance()
    assert store.get_instance("nobody") is None


def test_an_operation_round_trips_unchanged(store: StateStore) -> None:
    put(store, an_operation())
    assert store.get_operation("op-1") == an_operation()
    assert store.get_operation("op-none") is None


def test_reads_inside_a_transaction_see_committed_state(store: StateStore) -> None:
    event = ProcessedEvent("k1", "//s", "e1", "t", "op-1", T0)
    put(store, an_instance(), an_operation(), event)

    def read(tx: StateTransaction) -> tuple[Any, Any, Any, Any]:
        return (
            tx.get_instance("acme-prod"),
            tx.get_operation("op-1"),
            tx.get_processed_event("k1"),
            tx.get_processed_event("k2"),
        )

    assert store.transact(read) == (an_instance(), an_operation(), event, None)


def test_a_transaction_that_raises_writes_nothing(store: StateStore) -> None:
    def fail(tx: StateTransaction) -> None:
        tx.put_instance(an_instance())
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        store.transact(fail)
    assert store.get_instance("acme-prod") is None


def test_reading_after_writing_in_a_transaction_is_refused(store: StateStore) -> None:
    def misuse(tx: StateTransaction) -> None:
        tx.put_instance(an_instance())
        tx.get_operation("op-1")

    with pytest.raises(RuntimeError, match="read after write"):
        store.transact(misuse)


def test_queued_operations_come_oldest_first_for_one_instance(store: StateStore) -> None:
    put(
        store,
        an_operation("op-c", status=OperationStatus.QUEUED, created_at=T0 + timedelta(seconds=3)),
        an_operation("op-a", status=OperationStatus.QUEUED, created_at=T0 + timedelta(seconds=1)),
        an_operation("op-b", status=OperationStatus.QUEUED, created_at=T0 + timedelta(seconds=2)),
        an_operation("op-r", status=OperationStatus.RUNNING),
        an_operation("op-x", instance="other", status=OperationStatus.QUEUED),
    )
    found = store.transact(lambda tx: tx.queued_operations("acme-prod", limit=2))
    assert [o.id for o in found] == ["op-a", "op-b"]


def test_listings_filter_and_order_newest_first(store: StateStore) -> None:
    put(
        store,
        an_instance(),
        an_instance(id="gone", state=InstanceState.DELETED),
        an_operation("op-1", created_at=T0),
        an_operation("op-2", created_at=T0 + timedelta(minutes=1), status=OperationStatus.FAILED),
        an_operation("op-3", created_at=T0 + timedelta(minutes=2), instance="other"),
    )
    assert [i.id for i in store.list_instances()] == ["acme-prod"]
    assert [i.id for i in store.list_instances(include_deleted=True)] == ["acme-prod", "gone"]
    assert [o.id for o in store.list_operations()] == ["op-3", "op-2", "op-1"]
    assert [o.id for o in store.list_operations(instance="acme-prod")] == ["op-2", "op-1"]
    assert [o.id for o in store.list_operations(status=OperationStatus.FAILED)] == ["op-2"]
    assert [o.id for o in store.list_operations(limit=1)] == ["op-3"]


def test_concurrent_transactions_on_one_document_lose_no_update(store: StateStore) -> None:
    put(store, an_instance(labels=frozen_map({})))

    def add_label(n: int) -> None:
        def change(tx: StateTransaction) -> None:
            current = tx.get_instance("acme-prod")
            assert current is not None
            labels = dict(current.labels) | {f"l{n}": "x"}
            tx.put_instance(current.evolve(labels=frozen_map(labels)))

        store.transact(change)

    threads = [threading.Thread(target=add_label, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = store.get_instance("acme-prod")
    assert found is not None
    assert set(found.labels) == {"l0", "l1"}


INSTANCE_FIELDS = (
    "customer",
    "region",
    "size",
    "version",
    "labels",
    "maintenance_window",
    "endpoint",
    "state",
    "health",
    "active_operation",
    "lease_token",
    "lease_expires_at",
    "latest_snapshot",
    "created_at",
    "updated_at",
)


def test_a_projection_of_instances_reads_only_the_fields_asked(store: StateStore) -> None:
    leased = an_instance(
        id="acme-test",
        labels=frozen_map({"ring": "canary", "tier": "gold"}),
        active_operation="op-9",
        lease_token=7,
        lease_expires_at=T0 + timedelta(minutes=5),
    )
    put(store, an_instance(), leased, an_instance(id="gone", state=InstanceState.DELETED))
    # Every field asked: the same instances as the whole documents, value for value.
    assert store.list_instances(fields=INSTANCE_FIELDS) == store.list_instances()
    found = store.list_instances(fields=("version", "labels"))
    assert [i.id for i in found] == ["acme-prod", "acme-test"]
    projected = found[1]
    assert (projected.state, projected.version, projected.labels) == (
        InstanceState.RUNNING,
        "5.2.1",
        {"ring": "canary", "tier": "gold"},
    )
    assert (projected.created_at, projected.updated_at) == (T0, T0)
    # What was not asked keeps its default.
    assert projected.region is None
    assert projected.maintenance_window is None
    assert projected.lease_token == 0
    assert projected.active_operation is None
    deleted = store.list_instances(include_deleted=True, fields=("version",))
    assert [i.id for i in deleted] == ["acme-prod", "acme-test", "gone"]


def test_many_documents_are_all_written_across_batches(store: StateStore) -> None:
    items = [(f"rollouts/r-2/targets/t-{n:04d}", {"n": n, "at": T0}) for n in range(1_201)]
    items.append(("rollouts/r-2", {"status": "running"}))
    store.write_documents(items)
    assert store.count_documents("rollouts/r-2/targets", []) == 1_201
    assert store.get_document("rollouts/r-2/targets/t-0600") == {"n": 600, "at": T0}
    assert store.get_document("rollouts/r-2") == {"status": "running"}


def test_documents_by_path_come_in_one_call_in_the_order_asked(store: StateStore) -> None:
    event = ProcessedEvent("k1", "//s", "e1", "t", "op-1", T0)
    put(store, an_instance(), event)
    store.transact(lambda tx: tx.put_document("remediation/acme-prod", {"attempt": 2}))
    paths = [
        "remediation/acme-prod",
        "instances/acme-prod",
        "remediation/nobody",
        "processed_events/k1",
        "instances/acme-prod",
    ]

    def read(tx: StateTransaction) -> list[dict[str, Any] | None]:
        return tx.get_documents(paths)

    for found in (store.transact(read), store.get_documents(paths)):
        state, instance, missing, key, again = found
        assert state == {"attempt": 2}
        assert instance is not None
        assert instance["customer"] == "Acme"
        assert again == instance
        assert missing is None
        assert key is not None
        assert key["operation"] == "op-1"
    assert store.get_documents([]) == []


def test_reading_several_documents_after_writing_is_refused(store: StateStore) -> None:
    def misuse(tx: StateTransaction) -> None:
        tx.put_document("remediation/acme-prod", {"attempt": 1})
        tx.get_documents(["instances/acme-prod"])

    with pytest.raises(RuntimeError, match="read after write"):
        store.transact(misuse)


def test_counts_outside_a_transaction(store: StateStore) -> None:
    put(
        store,
        an_instance(),
        an_instance(id="other"),
        an_instance(id="gone", state=InstanceState.DELETED),
    )

    def states(tx: StateTransaction) -> None:
        tx.put_document("remediation/a", {"last_incident_at": T0 - timedelta(minutes=11)})
        tx.put_document("remediation/b", {"last_incident_at": T0 - timedelta(minutes=10)})
        tx.put_document("remediation/c", {"last_incident_at": T0})
        tx.put_document("remediation/d", {"last_incident_at": None})
        tx.put_document("remediation/e", {"attempt": 1})
        tx.put_document("elsewhere/f", {"last_incident_at": T0})

    store.transact(states)
    assert store.count_live_instances() == 2
    since = T0 - timedelta(minutes=10)
    assert store.count_documents_since("remediation", "last_incident_at", since) == 2
    assert store.count_documents_since("remediation", "last_incident_at", T0) == 1
    later = T0 + timedelta(seconds=1)
    assert store.count_documents_since("remediation", "last_incident_at", later) == 0
