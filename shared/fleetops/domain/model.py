"""Instances, operations and their steps, as immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Action(StrEnum):
    PROVISION = "provision"
    UPGRADE = "upgrade"
    RESIZE = "resize"
    RESTART = "restart"
    SUSPEND = "suspend"
    RESUME = "resume"
    SNAPSHOT = "snapshot"
    DELETE = "delete"
    # Beyond the contract's eight: what remediation's ladder uses. Re-provisions the
    # instance at its version from its latest snapshot.
    REPLACE = "replace"


class Size(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class InstanceState(StrEnum):
    PROVISIONING = "provisioning"
    RUNNING = "running"
    UPGRADING = "upgrading"
    RESIZING = "resizing"
    RESTARTING = "restarting"
    SUSPENDED = "suspended"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class Origin(StrEnum):
    REQUEST = "request"
    REMEDIATION = "remediation"
    MAINTENANCE = "maintenance"


class OperationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {
        OperationStatus.SUCCEEDED,
        OperationStatus.FAILED,
        OperationStatus.REJECTED,
        OperationStatus.CANCELLED,
    }
)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


def frozen_map(values: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class MaintenanceWindow:
    days: tuple[str, ...]
    start: str
    duration: str
    timezone: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "start": self.start,
            "duration": self.duration,
            "timezone": self.timezone,
        }


@dataclass(frozen=True)
class Instance:
    id: str
    state: InstanceState
    created_at: datetime
    updated_at: datetime
    customer: str | None = None
    region: str | None = None
    size: Size = Size.SMALL
    version: str | None = None
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    maintenance_window: MaintenanceWindow | None = None
    endpoint: str | None = None
    health: Health = Health.UNKNOWN
    # The lease: the operation that holds this instance (later requests queue
    # behind it), a fencing token that grows with every new holder, and when the
    # lease lapses if its holder stops making progress.
    active_operation: str | None = None
    lease_token: int = 0
    lease_expires_at: datetime | None = None
    latest_snapshot: str | None = None

    @property
    def exists(self) -> bool:
        return self.state is not InstanceState.DELETED

    def evolve(self, **changes: Any) -> Instance:
        return replace(self, **changes)


@dataclass(frozen=True)
class Step:
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    # Earliest time the next attempt or check may run (retry backoff, wait polling).
    not_before: datetime | None = None
    checks: int = 0
    # A step of the declared compensation (rollback), run after a failure or a cancel.
    compensation: bool = False

    def evolve(self, **changes: Any) -> Step:
        return replace(self, **changes)


@dataclass(frozen=True)
class OperationParams:
    """What the request asked for, beyond the action itself."""

    version: str | None = None
    size: Size | None = None
    region: str | None = None
    customer: str | None = None
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    maintenance_window: MaintenanceWindow | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One change, who or what made it, and why."""

    at: datetime
    actor: str
    event: str
    detail: str = ""
    operation: str | None = None


@dataclass(frozen=True)
class Operation:
    id: str
    instance: str
    action: Action
    origin: Origin
    status: OperationStatus
    request_id: str
    created_at: datetime
    updated_at: datetime
    params: OperationParams = field(default_factory=OperationParams)
    steps: tuple[Step, ...] = ()
    current_step: int = 0
    requested_by: str | None = None
    reason: str | None = None
    error: str | None = None
    dry_run: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The instance's fencing token this operation holds while it runs.
    lease_token: int | None = None
    deadline_at: datetime | None = None
    approval_expires_at: datetime | None = None
    approved_by: str | None = None
    cancel_requested_by: str | None = None
    # The instance as it was when the operation started: what compensation restores.
    prior_state: InstanceState | None = None
    prior_version: str | None = None
    prior_size: Size | None = None
    compensating: bool = False
    # What made compensation start: the failure, or the cancel.
    failure: str | None = None
    outputs: Mapping[str, str] = field(default_factory=frozen_map)
    history: tuple[HistoryEntry, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status.terminal

    @property
    def step(self) -> Step | None:
        if 0 <= self.current_step < len(self.steps):
            return self.steps[self.current_step]
        return None

    def with_step(self, index: int, step: Step) -> Operation:
        steps = list(self.steps)
        steps[index] = step
        return replace(self, steps=tuple(steps))

    def evolve(self, **changes: Any) -> Operation:
        return replace(self, **changes)

    def noted(self, at: datetime, actor: str, event: str, detail: str = "") -> Operation:
        entry = HistoryEntry(at, actor, event, detail, self.id)
        return replace(self, history=(*self.history, entry), updated_at=at)


@dataclass(frozen=True)
class ProcessedEvent:
    """The record that an inbound event has had its effect (idempotency key)."""

    key: str
    source: str
    event_id: str
    event_type: str
    operation: str | None
    created_at: datetime
    # What the event led to, when it is not an operation (a remediation verdict).
    detail: str | None = None
