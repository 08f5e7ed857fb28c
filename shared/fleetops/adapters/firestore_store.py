"""Firestore state: instances, operations and processed-event keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.cloud import firestore

from fleetops import documents
from fleetops.contract.names import (
    COLLECTION_INSTANCES,
    COLLECTION_OPERATIONS,
    COLLECTION_PROCESSED_EVENTS,
)
from fleetops.domain.model import HistoryEntry, Instance, Operation, OperationStatus, ProcessedEvent

T = TypeVar("T")
SUBCOLLECTION_HISTORY = "history"
SUBCOLLECTION_INCIDENTS = "incidents"
BATCH_LIMIT = 500
PROCESSED_EVENT_TTL = timedelta(days=30)
# Contention on one instance's documents is short; a few more attempts than the default 5.
MAX_TRANSACTION_ATTEMPTS = 10


class FirestoreStateStore:
    def __init__(self, client: firestore.Client) -> None:
        self._db = client
        self.counters = OperationCounters()

    @property
    def client(self) -> firestore.Client:
        return self._db

    def transact(self, fn: Callable[[FirestoreStateTransaction], T]) -> T:
        def body(transaction: firestore.Transaction) -> T:
            tx = FirestoreStateTransaction(self._db, transaction, self.counters)
            result = fn(tx)
            tx.flush()
            return result

        self.counters.transactions += 1
        run = firestore.transactional(body)
        return run(self._db.transaction(max_attempts=MAX_TRANSACTION_ATTEMPTS))  # type: ignore[no-any-return]

    def get_instance(self, instance_id: str) -> Instance | None:
        snap = self._db.collection(COLLECTION_INSTANCES).document(instance_id).get()
        self.counters.reads += 1
        return documents.instance_from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def get_operation(self, operation_id: str) -> Operation | None:
        snap = self._db.collection(COLLECTION_OPERATIONS).document(operation_id).get()
        self.counters.reads += 1
        return documents.operation_from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]:
        found = []
        for snap in self._db.collection(COLLECTION_INSTANCES).stream():
            self.counters.reads += 1
            instance = documents.instance_from_doc(snap.id, snap.to_dict() or {})
            if include_deleted or instance.exists:
                found.append(instance)
        return sorted(found, key=lambda i: i.id)

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 100,
    ) -> list[Operation]:
        query: Any = self._db.collection(COLLECTION_OPERATIONS)
        if instance is not None:
            query = query.where(filter=firestore.FieldFilter("instance", "==", instance))
        if status is not None:
            query = query.where(filter=firestore.FieldFilter("status", "==", status.value))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        found = []
        for snap in query.stream():
            self.counters.reads += 1
            found.append(documents.operation_from_doc(snap.id, snap.to_dict() or {}))
        return found

    def instance_history(self, instance_id: str, limit: int = 50) -> list[HistoryEntry]:
        query = (
            self._db.collection(COLLECTION_INSTANCES)
            .document(instance_id)
            .collection(SUBCOLLECTION_HISTORY)
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        found = []
        for snap in query.stream():
            self.counters.reads += 1
            found.append(documents.history_from_doc(snap.to_dict() or {}))
        return found

    def operations_to_sweep(self, now: datetime, limit: int = 500) -> list[Operation]:
        live = [
            OperationStatus.RUNNING.value,
            OperationStatus.QUEUED.value,
            OperationStatus.AWAITING_APPROVAL.value,
        ]
        query = (
            self._db.collection(COLLECTION_OPERATIONS)
            .where(filter=firestore.FieldFilter("status", "in", live))
            .limit(limit)
        )
        found = []
        for snap in query.stream():
            self.counters.reads += 1
            found.append(documents.operation_from_doc(snap.id, snap.to_dict() or {}))
        return found

    def get_document(self, path: str) -> dict[str, Any] | None:
        snap = self._db.document(path).get()
        self.counters.reads += 1
        return snap.to_dict() if snap.exists else None

    def list_documents(
        self, collection_path: str, *, order_by: str | None = None, limit: int = 50
    ) -> list[tuple[str, dict[str, Any]]]:
        query: Any = self._db.collection(collection_path)
        if order_by is not None:
            query = query.order_by(order_by, direction=firestore.Query.DESCENDING)
        found = []
        for snap in query.limit(limit).stream():
            self.counters.reads += 1
            found.append((snap.id, snap.to_dict() or {}))
        return found

    def query_documents(
        self, collection_path: str, where: Sequence[tuple[str, str, Any]], limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for snap in _filtered(self._db.collection(collection_path), where).limit(limit).stream():
            self.counters.reads += 1
            found.append((snap.id, snap.to_dict() or {}))
        return found

    def count_documents(self, collection_path: str, where: Sequence[tuple[str, str, Any]]) -> int:
        query: Any = _filtered(self._db.collection(collection_path), where)
        result = query.count().get()
        self.counters.reads += 1
        return int(result[0][0].value)

    def write_documents(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        for start in range(0, len(items), BATCH_LIMIT):
            batch = self._db.batch()
            for path, doc in items[start : start + BATCH_LIMIT]:
                batch.set(self._db.document(path), dict(doc))
                self.counters.writes += 1
            batch.commit()


def _filtered(query: Any, where: Sequence[tuple[str, str, Any]]) -> Any:
    for name, op, value in where:
        query = query.where(filter=firestore.FieldFilter(name, op, value))
    return query


class OperationCounters:
    """Document reads, writes and transactions, for cost measurements."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.transactions = 0

    def snapshot(self) -> dict[str, int]:
        return {"reads": self.reads, "writes": self.writes, "transactions": self.transactions}


class FirestoreStateTransaction:
    def __init__(
        self, db: firestore.Client, transaction: firestore.Transaction, counters: OperationCounters
    ) -> None:
        self._db = db
        self._tx = transaction
        self._counters = counters
        self._writes: list[tuple[str, str, dict[str, Any]]] = []
        self._history: list[tuple[str, dict[str, Any]]] = []
        self._paths: list[tuple[str, dict[str, Any]]] = []

    def _get(self, collection: str, doc_id: str) -> tuple[str, dict[str, Any]] | None:
        self._no_reads_after_writes()
        ref = self._db.collection(collection).document(doc_id)
        snap = ref.get(transaction=self._tx)
        self._counters.reads += 1
        return (snap.id, snap.to_dict() or {}) if snap.exists else None

    def get_instance(self, instance_id: str) -> Instance | None:
        found = self._get(COLLECTION_INSTANCES, instance_id)
        return documents.instance_from_doc(*found) if found else None

    def get_operation(self, operation_id: str) -> Operation | None:
        found = self._get(COLLECTION_OPERATIONS, operation_id)
        return documents.operation_from_doc(*found) if found else None

    def get_processed_event(self, key: str) -> ProcessedEvent | None:
        found = self._get(COLLECTION_PROCESSED_EVENTS, key)
        return documents.processed_event_from_doc(*found) if found else None

    def queued_operations(self, instance_id: str, limit: int = 1) -> list[Operation]:
        self._no_reads_after_writes()
        query = (
            self._db.collection(COLLECTION_OPERATIONS)
            .where(filter=firestore.FieldFilter("instance", "==", instance_id))
            .where(filter=firestore.FieldFilter("status", "==", OperationStatus.QUEUED.value))
            .order_by("created_at")
            .limit(limit)
        )
        found = []
        for snap in query.get(transaction=self._tx):
            self._counters.reads += 1
            found.append(documents.operation_from_doc(snap.id, snap.to_dict() or {}))
        # Ties on created_at are broken by id, as in every other listing.
        return sorted(found, key=lambda o: (o.created_at, o.id))

    def put_instance(self, instance: Instance) -> None:
        self._writes.append(
            (COLLECTION_INSTANCES, instance.id, documents.instance_to_doc(instance))
        )

    def put_operation(self, operation: Operation) -> None:
        self._writes.append(
            (COLLECTION_OPERATIONS, operation.id, documents.operation_to_doc(operation))
        )

    def put_processed_event(self, event: ProcessedEvent) -> None:
        doc = documents.processed_event_to_doc(
            event, expire_at=event.created_at + PROCESSED_EVENT_TTL
        )
        self._writes.append((COLLECTION_PROCESSED_EVENTS, event.key, doc))

    def add_instance_history(self, instance_id: str, entry: HistoryEntry) -> None:
        self._history.append((instance_id, documents.history_to_doc(entry)))

    def get_document(self, path: str) -> dict[str, Any] | None:
        self._no_reads_after_writes()
        snap = self._db.document(path).get(transaction=self._tx)
        self._counters.reads += 1
        return snap.to_dict() if snap.exists else None

    def put_document(self, path: str, doc: Mapping[str, Any]) -> None:
        self._paths.append((path, dict(doc)))

    def add_document(self, collection_path: str, doc: Mapping[str, Any]) -> None:
        self._paths.append((f"{collection_path}/{uuid.uuid4().hex}", dict(doc)))

    def incidents_opened_since(self, since: datetime) -> list[dict[str, Any]]:
        self._no_reads_after_writes()
        query = self._db.collection_group(SUBCOLLECTION_INCIDENTS).where(
            filter=firestore.FieldFilter("opened_at", ">=", since)
        )
        found = []
        for snap in query.get(transaction=self._tx):
            self._counters.reads += 1
            found.append(snap.to_dict() or {})
        return found

    def count_live_instances(self) -> int:
        self._no_reads_after_writes()
        query: Any = self._db.collection(COLLECTION_INSTANCES).where(
            filter=firestore.FieldFilter("state", "!=", "deleted")
        )
        result = query.count().get(transaction=self._tx)
        self._counters.reads += 1
        return int(result[0][0].value)

    def query_documents(
        self, collection_path: str, where: Sequence[tuple[str, str, Any]], limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        self._no_reads_after_writes()
        query = _filtered(self._db.collection(collection_path), where).limit(limit)
        found = []
        for snap in query.get(transaction=self._tx):
            self._counters.reads += 1
            found.append((snap.id, snap.to_dict() or {}))
        return found

    def count_documents(self, collection_path: str, where: Sequence[tuple[str, str, Any]]) -> int:
        self._no_reads_after_writes()
        query: Any = _filtered(self._db.collection(collection_path), where)
        result = query.count().get(transaction=self._tx)
        self._counters.reads += 1
        return int(result[0][0].value)

    def _no_reads_after_writes(self) -> None:
        if self._writes or self._history or self._paths:
            raise RuntimeError("read after write in a transaction")

    def flush(self) -> None:
        # The same document written twice in one decision keeps its last version.
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for collection, doc_id, doc in self._writes:
            latest[(collection, doc_id)] = doc
        for (collection, doc_id), doc in latest.items():
            self._tx.set(self._db.collection(collection).document(doc_id), doc)
            self._counters.writes += 1
        for instance_id, entry in self._history:
            history = (
                self._db.collection(COLLECTION_INSTANCES)
                .document(instance_id)
                .collection(SUBCOLLECTION_HISTORY)
            )
            self._tx.set(history.document(), entry)
            self._counters.writes += 1
        for path, doc in self._paths:
            self._tx.set(self._db.document(path), doc)
            self._counters.writes += 1
        self._writes.clear()
        self._history.clear()
        self._paths.clear()
