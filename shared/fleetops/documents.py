"""Domain values to Firestore documents and back (contract section 5).

Shared by the Firestore adapter and the in-memory fake, so both store exactly
the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fleetops.domain.model import (
    Action,
    Health,
    HistoryEntry,
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


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        # Firestore gives DatetimeWithNanoseconds; keep a plain aware datetime.
        return datetime.fromtimestamp(value.timestamp(), tz=UTC)
    raise TypeError(f"expected a timestamp, got {type(value).__name__}")


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError("a required timestamp is missing")
    return parsed


def window_to_doc(window: MaintenanceWindow | None) -> dict[str, Any] | None:
    return window.to_dict() if window else None


def window_from_doc(doc: Mapping[str, Any] | None) -> MaintenanceWindow | None:
    if not doc:
        return None
    return MaintenanceWindow(
        days=tuple(doc.get("days") or ()),
        start=str(doc["start"]),
        duration=str(doc["duration"]),
        timezone=str(doc["timezone"]),
    )


def instance_to_doc(instance: Instance) -> dict[str, Any]:
    return {
        "customer": instance.customer,
        "region": instance.region,
        "size": instance.size.value,
        "version": instance.version,
        "labels": dict(instance.labels),
        "maintenance_window": window_to_doc(instance.maintenance_window),
        "endpoint": instance.endpoint,
        "state": instance.state.value,
        "health": instance.health.value,
        "active_operation": instance.active_operation,
        "lease_token": instance.lease_token,
        "lease_expires_at": instance.lease_expires_at,
        "latest_snapshot": instance.latest_snapshot,
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
    }


def instance_from_doc(instance_id: str, doc: Mapping[str, Any]) -> Instance:
    return Instance(
        id=instance_id,
        state=InstanceState(doc["state"]),
        created_at=_required_time(doc.get("created_at")),
        updated_at=_required_time(doc.get("updated_at")),
        customer=doc.get("customer"),
        region=doc.get("region"),
        size=Size(doc.get("size") or Size.SMALL.value),
        version=doc.get("version"),
        labels=frozen_map(doc.get("labels")),
        maintenance_window=window_from_doc(doc.get("maintenance_window")),
        endpoint=doc.get("endpoint"),
        health=Health(doc.get("health") or Health.UNKNOWN.value),
        active_operation=doc.get("active_operation"),
        lease_token=int(doc.get("lease_token") or 0),
        lease_expires_at=_time(doc.get("lease_expires_at")),
        latest_snapshot=doc.get("latest_snapshot"),
    )


def step_to_doc(step: Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status.value,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "error": step.error,
        "not_before": step.not_before,
        "checks": step.checks,
        "compensation": step.compensation,
    }


def step_from_doc(doc: Mapping[str, Any]) -> Step:
    return Step(
        name=str(doc["name"]),
        status=StepStatus(doc.get("status") or StepStatus.PENDING.value),
        attempts=int(doc.get("attempts") or 0),
        started_at=_time(doc.get("started_at")),
        finished_at=_time(doc.get("finished_at")),
        error=doc.get("error"),
        not_before=_time(doc.get("not_before")),
        checks=int(doc.get("checks") or 0),
        compensation=bool(doc.get("compensation")),
    )


def params_to_doc(params: OperationParams) -> dict[str, Any]:
    return {
        "version": params.version,
        "size": params.size.value if params.size else None,
        "region": params.region,
        "customer": params.customer,
        "labels": dict(params.labels),
        "maintenance_window": window_to_doc(params.maintenance_window),
    }


def params_from_doc(doc: Mapping[str, Any] | None) -> OperationParams:
    doc = doc or {}
    return OperationParams(
        version=doc.get("version"),
        size=Size(doc["size"]) if doc.get("size") else None,
        region=doc.get("region"),
        customer=doc.get("customer"),
        labels=frozen_map(doc.get("labels")),
        maintenance_window=window_from_doc(doc.get("maintenance_window")),
    )


def operation_to_doc(op: Operation) -> dict[str, Any]:
    return {
        "instance": op.instance,
        "action": op.action.value,
        "origin": op.origin.value,
        "status": op.status.value,
        "request_id": op.request_id,
        "params": params_to_doc(op.params),
        "steps": [step_to_doc(s) for s in op.steps],
        "current_step": op.current_step,
        "requested_by": op.requested_by,
        "reason": op.reason,
        "error": op.error,
        "dry_run": op.dry_run,
        "created_at": op.created_at,
        "updated_at": op.updated_at,
        "started_at": op.started_at,
        "finished_at": op.finished_at,
        "lease_token": op.lease_token,
        "deadline_at": op.deadline_at,
        "approval_expires_at": op.approval_expires_at,
        "approved_by": op.approved_by,
        "cancel_requested_by": op.cancel_requested_by,
        "prior_state": op.prior_state.value if op.prior_state else None,
        "prior_version": op.prior_version,
        "prior_size": op.prior_size.value if op.prior_size else None,
        "compensating": op.compensating,
        "failure": op.failure,
        "outputs": dict(op.outputs),
        "history": [history_to_doc(h) for h in op.history],
    }


def operation_from_doc(operation_id: str, doc: Mapping[str, Any]) -> Operation:
    return Operation(
        id=operation_id,
        instance=str(doc["instance"]),
        action=Action(doc["action"]),
        origin=Origin(doc.get("origin") or Origin.REQUEST.value),
        status=OperationStatus(doc["status"]),
        request_id=str(doc.get("request_id") or ""),
        created_at=_required_time(doc.get("created_at")),
        updated_at=_required_time(doc.get("updated_at")),
        params=params_from_doc(doc.get("params")),
        steps=tuple(step_from_doc(s) for s in doc.get("steps") or ()),
        current_step=int(doc.get("current_step") or 0),
        requested_by=doc.get("requested_by"),
        reason=doc.get("reason"),
        error=doc.get("error"),
        dry_run=bool(doc.get("dry_run")),
        started_at=_time(doc.get("started_at")),
        finished_at=_time(doc.get("finished_at")),
        lease_token=doc.get("lease_token"),
        deadline_at=_time(doc.get("deadline_at")),
        approval_expires_at=_time(doc.get("approval_expires_at")),
        approved_by=doc.get("approved_by"),
        cancel_requested_by=doc.get("cancel_requested_by"),
        prior_state=InstanceState(doc["prior_state"]) if doc.get("prior_state") else None,
        prior_version=doc.get("prior_version"),
        prior_size=Size(doc["prior_size"]) if doc.get("prior_size") else None,
        compensating=bool(doc.get("compensating")),
        failure=doc.get("failure"),
        outputs=frozen_map(doc.get("outputs")),
        history=tuple(history_from_doc(h) for h in doc.get("history") or ()),
    )


def history_to_doc(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "actor": entry.actor,
        "event": entry.event,
        "detail": entry.detail,
        "operation": entry.operation,
    }


def history_from_doc(doc: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        at=_required_time(doc.get("at")),
        actor=str(doc.get("actor") or ""),
        event=str(doc.get("event") or ""),
        detail=str(doc.get("detail") or ""),
        operation=doc.get("operation"),
    )


def processed_event_to_doc(event: ProcessedEvent, *, expire_at: datetime) -> dict[str, Any]:
    return {
        "source": event.source,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "operation": event.operation,
        "created_at": event.created_at,
        "detail": event.detail,
        # Firestore's TTL policy on this field removes old keys.
        "expire_at": expire_at,
    }


def processed_event_from_doc(key: str, doc: Mapping[str, Any]) -> ProcessedEvent:
    return ProcessedEvent(
        key=key,
        source=str(doc.get("source") or ""),
        event_id=str(doc.get("event_id") or ""),
        event_type=str(doc.get("event_type") or ""),
        operation=doc.get("operation"),
        created_at=_required_time(doc.get("created_at")),
        detail=doc.get("detail"),
    )
