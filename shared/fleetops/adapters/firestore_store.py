"""Firestore state: instances, operations and processed-event keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.api_core.exceptions import Aborted
from google.cloud import firestore
from google.cloud.firestore_v1.types import RunQueryRequest, StructuredQuery

from fleetops import documents
from fleetops.contract.names import (
    COLLECTION_INSTANCES,
    COLLECTION_OPERATIONS,
    COLLECTION_PROCESSED_EVENTS,
)
from fleetops.domain.model import HistoryEntry, Instance, Operation, OperationStatus, ProcessedEvent
from fleetops.ports import INSTANCE_FIELDS_ALWAYS, TransactionContention

T = TypeVar("T")
SUBCOLLECTION_HISTORY = "history"
SUBCOLLECTION_INCIDENTS = "incidents"
BATCH_LIMIT = 500
# Batches committing at once while the next ones are encoded.
WRITERS = 4
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
        try:
            return run(self._db.transaction(max_attempts=MAX_TRANSACTION_ATTEMPTS))  # type: ignore[no-any-return]
        except Aborted as exc:
            raise TransactionContention(f"a read waited too long for a lock: {exc}") from exc
        except ValueError as exc:
            # The client's way of saying every commit attempt was aborted.
            if isinstance(exc.__cause__, Aborted):
                raise TransactionContention(str(exc)) from exc
            raise

    def get_instance(self, instance_id: str) -> Instance | None:
        snap = self._db.collection(COLLECTION_INSTANCES).document(instance_id).get()
        self.counters.reads += 1
        return documents.instance_from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def get_operation(self, operation_id: str) -> Operation | None:
        snap = self._db.collection(COLLECTION_OPERATIONS).document(operation_id).get()
        self.counters.reads += 1
        return documents.operation_from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def list_instances(
        self, *, include_deleted: bool = False, fields: Sequence[str] | None = None
    ) -> list[Instance]:
        found = []
        if fields is None:
            for snap in self._db.collection(COLLECTION_INSTANCES).stream():
                self.counters.reads += 1
                instance = documents.instance_from_doc(snap.id, snap.to_dict() or {})
                if include_deleted or instance.exists:
                    found.append(instance)
        else:
            for doc_id, doc in _projection(
                self._db, COLLECTION_INSTANCES, sorted({*fields, *INSTANCE_FIELDS_ALWAYS})
            ):
                self.counters.reads += 1
                instance = documents.instance_from_doc(doc_id, doc)
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

    def get_documents(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        return _get_all(self._db, paths, None, self.counters)

    def count_live_instances(self) -> int:
        query: Any = self._db.collection(COLLECTION_INSTANCES).where(
            filter=firestore.FieldFilter("state", "!=", "deleted")
        )
        result = query.count().get()
        self.counters.reads += 1
        return int(result[0][0].value)

    def count_documents_since(self, collection_path: str, field: str, since: datetime) -> int:
        query: Any = self._db.collection(collection_path).where(
            filter=firestore.FieldFilter(field, ">=", since)
        )
        result = query.count().get()
        self.counters.reads += 1
        return int(result[0][0].value)

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
        """Batches of 500, a few committing at once; the last batch commits after every
        other has, so the last item exists only once all the others do."""
        batches = []
        for start in range(0, len(items), BATCH_LIMIT):
            batch = self._db.batch()
            for path, doc in items[start : start + BATCH_LIMIT]:
                batch.set(self._db.document(path), dict(doc))
            batches.append(batch)
        if not batches:
            return
        *first, last = batches
        if first:
            # Encoding the next batch overlaps the emulator's (or server's) commit of
            # the previous ones: a large plan is written in well under half the time.
            with ThreadPoolExecutor(WRITERS, thread_name_prefix="fleetops-writer") as pool:
                for done in [pool.submit(b.commit) for b in first]:
                    done.result()
        last.commit()
        self.counters.writes += len(items)


def _get_all(
    db: firestore.Client,
    paths: Sequence[str],
    transaction: firestore.Transaction | None,
    counters: OperationCounters,
) -> list[dict[str, Any] | None]:
    if not paths:
        return []
    refs = {path: db.document(path) for path in paths}
    found: dict[str, dict[str, Any]] = {}
    # Snapshots come back in any order, and once per distinct document.
    for snap in db.get_all(list(refs.values()), transaction=transaction):
        counters.reads += 1
        if snap.exists:
            found[snap.reference.path] = snap.to_dict() or {}
    return [found.get(refs[path].path) for path in paths]


def _projection(
    db: firestore.Client, collection: str, fields: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, document with only `fields`) for every document of a top-level collection.

    The library's `select(...).stream()` turns each result into a snapshot (a
    reference, a decoded copy, another copy for `to_dict`): for 10,000 instances that
    is three times the CPU of the query itself. Here the query is sent through the
    client's own API client and each result's values are read from the protobuf.
    """
    query = StructuredQuery(
        select=StructuredQuery.Projection(
            fields=[StructuredQuery.FieldReference(field_path=f) for f in fields]
        ),
        from_=[StructuredQuery.CollectionSelector(collection_id=collection)],
    )
    request = RunQueryRequest(parent=f"{db._database_string}/documents", structured_query=query)
    responses = db._firestore_api.run_query(request=request, metadata=db._rpc_metadata)
    for response in responses:
        pb = response._pb
        if pb.HasField("document"):
            document = pb.document
            yield (
                document.name.rpartition("/")[2],
                {name: _decoded(value) for name, value in document.fields.items()},
            )


def _decoded(value: Any) -> Any:
    """A Firestore `Value` protobuf as the library's snapshots would give it."""
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind is None or kind == "null_value":
        return None
    if kind == "timestamp_value":
        return value.timestamp_value.ToDatetime(tzinfo=UTC)
    if kind == "map_value":
        return {k: _decoded(v) for k, v in value.map_value.fields.items()}
    if kind == "array_value":
        return [_decoded(v) for v in value.array_value.values]
    if kind == "geo_point_value":
        return firestore.GeoPoint(value.geo_point_value.latitude, value.geo_point_value.longitude)
    # Scalars: boolean, integer, double, bytes; a reference as its path.
    return getattr(value, kind)


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

    def get_documents(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        self._no_reads_after_writes()
        return _get_all(self._db, paths, self._tx, self._counters)

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
