"""In-memory fakes of the ports, for fast unit tests.

They keep documents in the same shape as Firestore (through `documents`), and
the same contract tests run against them and the Firestore adapter.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fleetops import documents
from fleetops.contract.names import (
    COLLECTION_INSTANCES,
    COLLECTION_OPERATIONS,
    COLLECTION_PROCESSED_EVENTS,
)
from fleetops.domain.model import (
    HistoryEntry,
    Instance,
    Operation,
    OperationStatus,
    ProcessedEvent,
    Size,
)
from fleetops.ports import (
    INSTANCE_FIELDS_ALWAYS,
    ActuationResult,
    ActuatorError,
    InstanceSpec,
    Probe,
)

T = TypeVar("T")
HISTORY = "history"
PATH = "<path>"
ADD = "<add>"
PROCESSED_EVENT_TTL = timedelta(days=30)


class InMemoryStateStore:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, dict[str, Any]]] = {
            COLLECTION_INSTANCES: {},
            COLLECTION_OPERATIONS: {},
            COLLECTION_PROCESSED_EVENTS: {},
        }
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.paths: dict[str, dict[str, Any]] = {}
        self._generated = itertools.count(1)
        self._lock = threading.RLock()
        self.transactions = 0

    def transact(self, fn: Callable[[_InMemoryTransaction], T]) -> T:
        with self._lock:
            tx = _InMemoryTransaction(self)
            result = fn(tx)
            for collection, doc_id, doc in tx.writes:
                if collection == HISTORY:
                    self.history.setdefault(doc_id, []).append(doc)
                elif collection == PATH:
                    self.paths[doc_id] = doc
                elif collection == ADD:
                    self.paths[f"{doc_id}/auto-{next(self._generated):08d}"] = doc
                else:
                    self.docs[collection][doc_id] = doc
            self.transactions += 1
            return result

    def _read(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        doc = self.docs[collection].get(doc_id)
        return copy.deepcopy(doc) if doc is not None else None

    def get_instance(self, instance_id: str) -> Instance | None:
        doc = self._read(COLLECTION_INSTANCES, instance_id)
        return documents.instance_from_doc(instance_id, doc) if doc else None

    def get_operation(self, operation_id: str) -> Operation | None:
        doc = self._read(COLLECTION_OPERATIONS, operation_id)
        return documents.operation_from_doc(operation_id, doc) if doc else None

    def list_instances(
        self, *, include_deleted: bool = False, fields: Sequence[str] | None = None
    ) -> list[Instance]:
        # A projection leaves out what it was not asked for, as Firestore's does.
        kept = None if fields is None else {*fields, *INSTANCE_FIELDS_ALWAYS}
        with self._lock:
            found = [
                documents.instance_from_doc(
                    i,
                    copy.deepcopy(d if kept is None else {k: v for k, v in d.items() if k in kept}),
                )
                for i, d in self.docs[COLLECTION_INSTANCES].items()
            ]
        found = [i for i in found if include_deleted or i.exists]
        return sorted(found, key=lambda i: i.id)

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 100,
    ) -> list[Operation]:
        with self._lock:
            found = [
                documents.operation_from_doc(i, copy.deepcopy(d))
                for i, d in self.docs[COLLECTION_OPERATIONS].items()
            ]
        found = [
            o
            for o in found
            if (instance is None or o.instance == instance)
            and (status is None or o.status is status)
        ]
        found.sort(key=lambda o: (o.created_at, o.id), reverse=True)
        return found[:limit]

    def instance_history(self, instance_id: str, limit: int = 50) -> list[HistoryEntry]:
        with self._lock:
            entries = [documents.history_from_doc(d) for d in self.history.get(instance_id, [])]
        entries.sort(key=lambda e: e.at, reverse=True)
        return entries[:limit]

    def get_document(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self.paths.get(path)
            return copy.deepcopy(doc) if doc is not None else None

    def get_documents(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        with self._lock:
            return [self._by_path(path) for path in paths]

    def _by_path(self, path: str) -> dict[str, Any] | None:
        # Instances, operations and keys live in their own maps; the rest by path.
        collection, _, doc_id = path.partition("/")
        if collection in self.docs and "/" not in doc_id:
            return self._read(collection, doc_id)
        doc = self.paths.get(path)
        return copy.deepcopy(doc) if doc is not None else None

    def count_live_instances(self) -> int:
        return len(self.list_instances())

    def count_documents_since(self, collection_path: str, field: str, since: datetime) -> int:
        return sum(
            1
            for _, doc in self.list_documents(collection_path, limit=10**9)
            if isinstance(doc.get(field), datetime) and doc[field] >= since
        )

    def list_documents(
        self, collection_path: str, *, order_by: str | None = None, limit: int = 50
    ) -> list[tuple[str, dict[str, Any]]]:
        prefix = collection_path.rstrip("/") + "/"
        with self._lock:
            found = [
                (path[len(prefix) :], copy.deepcopy(doc))
                for path, doc in self.paths.items()
                if path.startswith(prefix) and "/" not in path[len(prefix) :]
            ]
        if order_by is not None:
            oldest = datetime.min.replace(tzinfo=UTC)
            # Ties in time keep the order of creation (generated ids grow).
            found.sort(key=lambda item: (item[1].get(order_by) or oldest, item[0]), reverse=True)
        return found[:limit]

    def query_documents(
        self, collection_path: str, where: Sequence[tuple[str, str, Any]], limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        found = [
            item
            for item in self.list_documents(collection_path, limit=10**9)
            if all(item[1].get(f) == v for f, _, v in where)
        ]
        return sorted(found)[:limit]

    def count_documents(self, collection_path: str, where: Sequence[tuple[str, str, Any]]) -> int:
        return len(self.query_documents(collection_path, where, limit=10**9))

    def write_documents(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        with self._lock:
            for path, doc in items:
                self.paths[path] = copy.deepcopy(dict(doc))

    def operations_to_sweep(self, now: datetime, limit: int = 500) -> list[Operation]:
        live = (OperationStatus.RUNNING, OperationStatus.QUEUED, OperationStatus.AWAITING_APPROVAL)
        found: list[Operation] = []
        for status in live:
            found.extend(self.list_operations(status=status, limit=limit))
        return found[:limit]


class _InMemoryTransaction:
    def __init__(self, store: InMemoryStateStore) -> None:
        self._store = store
        self.writes: list[tuple[str, str, dict[str, Any]]] = []

    def _check_no_writes(self) -> None:
        # Firestore refuses reads after writes in a transaction; so does the fake.
        if self.writes:
            raise RuntimeError("read after write in a transaction")

    def get_instance(self, instance_id: str) -> Instance | None:
        self._check_no_writes()
        return self._store.get_instance(instance_id)

    def get_operation(self, operation_id: str) -> Operation | None:
        self._check_no_writes()
        return self._store.get_operation(operation_id)

    def get_processed_event(self, key: str) -> ProcessedEvent | None:
        self._check_no_writes()
        doc = self._store._read(COLLECTION_PROCESSED_EVENTS, key)
        return documents.processed_event_from_doc(key, doc) if doc else None

    def queued_operations(self, instance_id: str, limit: int = 1) -> list[Operation]:
        self._check_no_writes()
        ops = self._store.list_operations(
            instance=instance_id, status=OperationStatus.QUEUED, limit=10**9
        )
        ops.sort(key=lambda o: (o.created_at, o.id))
        return ops[:limit]

    def put_instance(self, instance: Instance) -> None:
        self.writes.append((COLLECTION_INSTANCES, instance.id, documents.instance_to_doc(instance)))

    def put_operation(self, operation: Operation) -> None:
        self.writes.append(
            (COLLECTION_OPERATIONS, operation.id, documents.operation_to_doc(operation))
        )

    def put_processed_event(self, event: ProcessedEvent) -> None:
        doc = documents.processed_event_to_doc(
            event, expire_at=event.created_at + PROCESSED_EVENT_TTL
        )
        self.writes.append((COLLECTION_PROCESSED_EVENTS, event.key, doc))

    def add_instance_history(self, instance_id: str, entry: HistoryEntry) -> None:
        self.writes.append((HISTORY, instance_id, documents.history_to_doc(entry)))

    def get_document(self, path: str) -> dict[str, Any] | None:
        self._check_no_writes()
        return self._store.get_document(path)

    def get_documents(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        self._check_no_writes()
        return self._store.get_documents(paths)

    def put_document(self, path: str, doc: Mapping[str, Any]) -> None:
        self.writes.append((PATH, path, copy.deepcopy(dict(doc))))

    def add_document(self, collection_path: str, doc: Mapping[str, Any]) -> None:
        self.writes.append((ADD, collection_path, copy.deepcopy(dict(doc))))

    def incidents_opened_since(self, since: datetime) -> list[dict[str, Any]]:
        self._check_no_writes()
        with self._store._lock:
            return [
                copy.deepcopy(doc)
                for path, doc in self._store.paths.items()
                if path.startswith("instances/")
                and path.split("/")[2:3] == ["incidents"]
                and doc.get("opened_at") is not None
                and doc["opened_at"] >= since
            ]

    def count_live_instances(self) -> int:
        self._check_no_writes()
        return len(self._store.list_instances())

    def query_documents(
        self, collection_path: str, where: Sequence[tuple[str, str, Any]], limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        self._check_no_writes()
        return self._store.query_documents(collection_path, where, limit)

    def count_documents(self, collection_path: str, where: Sequence[tuple[str, str, Any]]) -> int:
        self._check_no_writes()
        return self._store.count_documents(collection_path, where)


@dataclass(frozen=True)
class PublishedMessage:
    topic: str
    data: bytes
    attributes: Mapping[str, str]
    message_id: str


class InMemoryPublisher:
    def __init__(self) -> None:
        self.messages: list[PublishedMessage] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.fail_next: int = 0

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                raise ConnectionError("publish failed (injected)")
            message_id = str(next(self._ids))
            self.messages.append(PublishedMessage(topic, data, dict(attributes), message_id))
            return message_id

    def on(self, topic: str) -> list[PublishedMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def take(self, topic: str) -> list[PublishedMessage]:
        """Remove and return the messages published on `topic`."""
        with self._lock:
            taken = [m for m in self.messages if m.topic == topic]
            self.messages = [m for m in self.messages if m.topic != topic]
            return taken


@dataclass
class FakeInstance:
    spec: InstanceSpec
    running: bool = True
    version: str = ""
    size: Size = Size.SMALL
    restarts: int = 0
    snapshots: list[str] = field(default_factory=list)


@dataclass
class InMemoryActuator:
    """Instances as dictionary entries; counts every effect so tests can prove 'exactly once'.

    `unhealthy_versions` never turn healthy; `fail_next[kind]` makes the next call
    of that kind raise; `unhealthy` instances answer their health check with 503.
    """

    instances: dict[str, FakeInstance] = field(default_factory=dict)
    applied_tokens: set[str] = field(default_factory=set)
    effects: list[tuple[str, str]] = field(default_factory=list)
    fail_next: dict[str, ActuatorError] = field(default_factory=dict)
    unhealthy: set[str] = field(default_factory=set)
    unhealthy_versions: set[str] = field(default_factory=set)
    # Per instance: versions that never turn healthy there.
    broken: dict[str, set[str]] = field(default_factory=dict)

    def _once(self, token: str, kind: str, instance_id: str) -> bool:
        error = self.fail_next.pop(kind, None)
        if error is not None:
            raise error
        if token in self.applied_tokens:
            return False
        self.applied_tokens.add(token)
        self.effects.append((kind, instance_id))
        return True

    def _get(self, instance_id: str) -> FakeInstance:
        found = self.instances.get(instance_id)
        if found is None:
            raise ActuatorError(f"instance {instance_id} is unknown", permanent=True)
        return found

    def _result(self, instance_id: str, applied: bool) -> ActuationResult:
        return ActuationResult(endpoint=f"memory://{instance_id}", applied=applied)

    def provision(self, spec: InstanceSpec, token: str) -> ActuationResult:
        applied = self._once(token, "provision", spec.id)
        if applied:
            self.instances[spec.id] = FakeInstance(spec, version=spec.version, size=spec.size)
        return self._result(spec.id, applied)

    def start(self, instance_id: str, token: str) -> ActuationResult:
        found = self._get(instance_id)
        applied = self._once(token, "start", instance_id)
        found.running = True
        return self._result(instance_id, applied)

    def stop(self, instance_id: str, token: str) -> ActuationResult:
        found = self._get(instance_id)
        applied = self._once(token, "stop", instance_id)
        found.running = False
        return self._result(instance_id, applied)

    def restart(self, instance_id: str, token: str) -> ActuationResult:
        found = self._get(instance_id)
        applied = self._once(token, "restart", instance_id)
        if applied:
            found.restarts += 1
            found.running = True
        return self._result(instance_id, applied)

    def set_version(self, instance_id: str, version: str, token: str) -> ActuationResult:
        found = self._get(instance_id)
        applied = self._once(token, "set_version", instance_id)
        found.version = version
        return self._result(instance_id, applied)

    def set_size(self, instance_id: str, size: Size, token: str) -> ActuationResult:
        found = self._get(instance_id)
        applied = self._once(token, "set_size", instance_id)
        found.size = size
        return self._result(instance_id, applied)

    def suspend(self, instance_id: str, token: str) -> ActuationResult:
        return self.stop(instance_id, token)

    def resume(self, instance_id: str, token: str) -> ActuationResult:
        return self.start(instance_id, token)

    def snapshot(self, instance_id: str, token: str) -> ActuationResult:
        found = self._get(instance_id)
        applied = self._once(token, "snapshot", instance_id)
        name = f"snap-{token.replace('/', '-')}"
        if applied:
            found.snapshots.append(name)
        return ActuationResult(applied=applied, snapshot=name)

    def delete(self, instance_id: str, token: str) -> ActuationResult:
        applied = self._once(token, "delete", instance_id)
        if applied:
            self.instances.pop(instance_id, None)
        return ActuationResult(applied=applied)

    def probe(self, instance_id: str) -> Probe:
        found = self.instances.get(instance_id)
        if found is None or not found.running:
            return Probe(healthy=False, detail="not running")
        healthy = (
            instance_id not in self.unhealthy
            and found.version not in self.unhealthy_versions
            and found.version not in self.broken.get(instance_id, set())
        )
        return Probe(healthy=healthy, version=found.version, detail="" if healthy else "503")

    def count(self, kind: str, instance_id: str) -> int:
        return sum(1 for k, i in self.effects if (k, i) == (kind, instance_id))


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta
