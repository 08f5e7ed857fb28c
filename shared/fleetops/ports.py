"""The boundaries of the core: what services need from the world, as Protocols."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from fleetops.domain.model import (
    HistoryEntry,
    Instance,
    Operation,
    OperationStatus,
    ProcessedEvent,
    Size,
)

T = TypeVar("T")
# (field, "==", value): equality is all the queries here need.
Filter = tuple[str, str, Any]
# What every Instance has: a projection of instances always reads these.
INSTANCE_FIELDS_ALWAYS = ("state", "created_at", "updated_at")


class TransactionContention(Exception):
    """A transaction kept meeting other transactions' locks and gave up.

    Nothing was written; run it again later, or decide again with fresher facts.
    """


class StateTransaction(Protocol):
    """Reads and writes that commit together or not at all.

    Every read happens before any write is applied: writes are buffered and
    applied when the transaction function returns.
    """

    def get_instance(self, instance_id: str) -> Instance | None: ...

    def get_operation(self, operation_id: str) -> Operation | None: ...

    def get_processed_event(self, key: str) -> ProcessedEvent | None: ...

    def queued_operations(self, instance_id: str, limit: int = 1) -> list[Operation]:
        """Operations of the instance with status `queued`, oldest first."""
        ...

    def put_instance(self, instance: Instance) -> None: ...

    def put_operation(self, operation: Operation) -> None: ...

    def put_processed_event(self, event: ProcessedEvent) -> None: ...

    def add_instance_history(self, instance_id: str, entry: HistoryEntry) -> None:
        """Append to `instances/{id}/history`, the instance's story of changes."""
        ...

    # Plain documents by path ("automation/settings", "instances/x/incidents/y"),
    # for state that has no domain type of its own in the store.
    def get_document(self, path: str) -> dict[str, Any] | None: ...

    def get_documents(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        """Documents by path (any collection, `instances/x` too) in one round trip,
        in the order asked; None for a document that does not exist."""
        ...

    def put_document(self, path: str, doc: Mapping[str, Any]) -> None: ...

    def add_document(self, collection_path: str, doc: Mapping[str, Any]) -> None:
        """A new document with a generated id in the collection."""
        ...

    def incidents_opened_since(self, since: datetime) -> list[dict[str, Any]]:
        """Every `instances/*/incidents/*` document with `opened_at >= since`."""
        ...

    def count_live_instances(self) -> int:
        """Instances that are not deleted (a count query, never a counter document)."""
        ...

    def query_documents(
        self, collection_path: str, where: Sequence[Filter], limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Documents of one collection matching every `(field, "==", value)` filter."""
        ...

    def count_documents(self, collection_path: str, where: Sequence[Filter]) -> int: ...


class StateStore(Protocol):
    """Firestore state: `instances`, `operations`, `processed_events`."""

    def transact(self, fn: Callable[[StateTransaction], T]) -> T:
        """Run `fn` in one transaction; it may be run again on contention, and
        TransactionContention says it gave up."""
        ...

    def get_instance(self, instance_id: str) -> Instance | None: ...

    def get_operation(self, operation_id: str) -> Operation | None: ...

    def list_instances(
        self, *, include_deleted: bool = False, fields: Sequence[str] | None = None
    ) -> list[Instance]:
        """Sorted by id. With `fields`, a projection: only those fields (and
        `INSTANCE_FIELDS_ALWAYS`) are read, and the rest of each Instance keeps its
        default; for a caller that reads nothing else, over a large fleet."""
        ...

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 100,
    ) -> list[Operation]:
        """Newest first."""
        ...

    def instance_history(self, instance_id: str, limit: int = 50) -> list[HistoryEntry]:
        """Newest first."""
        ...

    def operations_to_sweep(self, now: datetime, limit: int = 500) -> list[Operation]:
        """Operations a sweeper must look at: running, queued, and awaiting approval."""
        ...

    def get_document(self, path: str) -> dict[str, Any] | None: ...

    def get_documents(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        """Documents by path in one round trip, in the order asked; None where missing."""
        ...

    def count_live_instances(self) -> int:
        """Instances that are not deleted (a count query, never a counter document)."""
        ...

    def count_documents_since(self, collection_path: str, field: str, since: datetime) -> int:
        """Documents of one collection whose time `field` is at or after `since`: a count
        aggregation, so its cost does not grow with the documents it counts."""
        ...

    def list_documents(
        self, collection_path: str, *, order_by: str | None = None, limit: int = 50
    ) -> list[tuple[str, dict[str, Any]]]:
        """(id, document) pairs; newest first when ordered."""
        ...

    def query_documents(
        self, collection_path: str, where: Sequence[Filter], limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]: ...

    def count_documents(self, collection_path: str, where: Sequence[Filter]) -> int:
        """A count aggregation, never a counter document."""
        ...

    def write_documents(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Many documents in batches, outside any transaction (planning a large rollout)."""
        ...


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish and wait for the server's ack; returns the message id."""
        ...


@dataclass(frozen=True)
class InstanceSpec:
    """What an actuator needs to bring an instance into being."""

    id: str
    version: str
    size: Size = Size.SMALL
    region: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # Start from this snapshot's data (a name the same actuator's `snapshot` returned).
    restore_snapshot: str | None = None


@dataclass(frozen=True)
class ActuationResult:
    endpoint: str | None = None
    # False when the token had already been applied: the effect happened before.
    applied: bool = True
    # The snapshot a `snapshot` call made (its name in the actuator's world).
    snapshot: str | None = None


@dataclass(frozen=True)
class Probe:
    healthy: bool
    version: str | None = None
    detail: str = ""


class ActuatorError(Exception):
    """An actuator call failed. `permanent` errors are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Actuator(Protocol):
    """Brings instances into being and changes them.

    Every change carries a `token` that names the step asking for it; a call
    repeated with a token already applied has no second effect, and a call
    that finds the world already as asked (stopping a stopped instance) is
    not an error.
    """

    def provision(self, spec: InstanceSpec, token: str) -> ActuationResult:
        """Create and start the instance; its endpoint in the result."""
        ...

    def start(self, instance_id: str, token: str) -> ActuationResult: ...

    def stop(self, instance_id: str, token: str) -> ActuationResult:
        """Stop it, keeping its data and configuration."""
        ...

    def restart(self, instance_id: str, token: str) -> ActuationResult: ...

    def set_version(self, instance_id: str, version: str, token: str) -> ActuationResult:
        """Switch the version it runs at its next start (it may be stopped)."""
        ...

    def set_size(self, instance_id: str, size: Size, token: str) -> ActuationResult:
        """Switch its size at its next start (it must be stopped on some clouds)."""
        ...

    def suspend(self, instance_id: str, token: str) -> ActuationResult: ...

    def resume(self, instance_id: str, token: str) -> ActuationResult: ...

    def snapshot(self, instance_id: str, token: str) -> ActuationResult:
        """Copy its data; the snapshot's name in the result."""
        ...

    def delete(self, instance_id: str, token: str) -> ActuationResult:
        """Stop it and remove everything it had; deleting what is gone is not an error."""
        ...

    def probe(self, instance_id: str) -> Probe:
        """One health check of the instance as it runs now; never raises for a dead instance."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


__all__ = [
    "ActuationResult",
    "Actuator",
    "ActuatorError",
    "Clock",
    "InstanceSpec",
    "Probe",
    "Publisher",
    "StateStore",
    "StateTransaction",
]


@dataclass(frozen=True)
class ScheduledJob:
    """One Cloud Scheduler job (or the local scheduler's), as `fleetops maintenance status`
    shows it."""

    id: str
    name: str
    description: str
    schedule: str
    time_zone: str
    state: str
    topic: str | None
    next_run: datetime | None
    last_attempt: datetime | None
    # None when the last attempt succeeded or there was none.
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SchedulerJobs(Protocol):
    """Cloud Scheduler's jobs (or the local scheduler's) in fleetops' location."""

    def list_jobs(self) -> list[ScheduledJob]: ...

    def pause_job(self, job: str) -> ScheduledJob:
        """Pausing a paused job is not an error."""
        ...

    def resume_job(self, job: str) -> ScheduledJob:
        """Resuming an enabled job is not an error."""
        ...

    def run_job(self, job: str) -> ScheduledJob: ...
