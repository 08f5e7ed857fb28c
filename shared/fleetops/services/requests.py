"""Recording a request as an operation, exactly once per `(ce-source, ce-id)`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fleetops import documents
from fleetops.contract.names import COLLECTION_INSTANCES, COLLECTION_PROCESSED_EVENTS
from fleetops.contract.pubsub import CloudEvent, PubsubMessage, decode_cloudevent
from fleetops.domain.decisions import DispatchStep, Effect_, RecordRequest, decide_request
from fleetops.domain.model import Operation, OperationStatus, Origin, ProcessedEvent, StepStatus
from fleetops.domain.policy import ApprovalPolicy
from fleetops.ports import Publisher, StateStore, StateTransaction
from fleetops.services.dispatch import carry_out, save
from fleetops.services.outcome import Outcome


@dataclass(frozen=True)
class RequestDeps:
    store: StateStore
    publisher: Publisher
    now: Callable[[], datetime]
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)


def event_key(source: str, event_id: str) -> str:
    return hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()[:40]


def operation_id_for(source: str, event_id: str) -> str:
    """Derived from the idempotency key, so a repeated event names the same operation."""
    return "op-" + hashlib.sha256(f"op\n{source}\n{event_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Recorded:
    operation: Operation
    duplicate: bool
    effects: tuple[Effect_, ...]
    at: datetime


def handle_request_message(message: PubsubMessage, deps: RequestDeps) -> Outcome:
    return handle_request_event(decode_cloudevent(message), deps)


def handle_request_event(event: CloudEvent, deps: RequestDeps) -> Outcome:
    # The request model (pydantic) is imported here, not with the module: remediation,
    # rollouts and the API use this module's other functions and never parse a request.
    from fleetops.contract.requests import parse_request

    request = parse_request(event)
    command = RecordRequest(
        operation_id=operation_id_for(event.source, event.id),
        request_id=event.id,
        instance=request.instance,
        action=request.action,
        origin=Origin.REQUEST,
        params=request.params(),
        requested_by=request.requested_by,
        reason=request.reason,
        dry_run=request.dry_run,
        actor=f"fleetops/requests ({event.source})",
    )
    recorded = submit_operation(command, event.source, event.id, event.type, deps)
    op = recorded.operation
    verb = "duplicate of" if recorded.duplicate else "recorded"
    return Outcome.ack(
        f"{verb} operation {op.id}: {op.action.value} {op.instance} is {op.status.value}"
        + (f" ({op.error})" if op.error else ""),
        operation=op.id,
        instance=op.instance,
    )


@dataclass(frozen=True)
class Submitted:
    operation: Operation
    duplicate: bool


def submit_operation(
    command: RecordRequest, source: str, event_id: str, event_type: str, deps: RequestDeps
) -> Submitted:
    """Record an operation once per `(source, event_id)`, then publish its first step.

    The one path by which requests, remediation and rollouts start operations.
    """
    key = event_key(source, event_id)

    def record(tx: StateTransaction) -> _Recorded:
        # The key and the instance in one round trip: most events are new, and a new
        # one needs both. Only a duplicate reads its operation, in a second one.
        key_doc, instance_doc = tx.get_documents(
            [f"{COLLECTION_PROCESSED_EVENTS}/{key}", f"{COLLECTION_INSTANCES}/{command.instance}"]
        )
        # The clock is read after the instance, by each attempt: a request that waited for
        # another's lock on the instance, or lost the race and ran again, is stamped, and
        # queued, after the one that won, so creation times follow the recording order.
        now = deps.now()
        seen = documents.processed_event_from_doc(key, key_doc) if key_doc is not None else None
        if seen is not None and seen.operation is not None:
            existing = tx.get_operation(seen.operation)
            if existing is not None:
                return _Recorded(existing, True, resume_effects(existing), now)
        instance = (
            documents.instance_from_doc(command.instance, instance_doc)
            if instance_doc is not None
            else None
        )
        decision = decide_request(command, instance, now, deps.approvals)
        save(tx, decision)
        tx.put_processed_event(
            ProcessedEvent(
                key=key,
                source=source,
                event_id=event_id,
                event_type=event_type,
                operation=command.operation_id,
                created_at=now,
            )
        )
        return _Recorded(decision.operations[0], False, decision.effects, now)

    recorded = deps.store.transact(record)
    carry_out(recorded.effects, deps.publisher, recorded.at, nonce=key[:12])
    return Submitted(recorded.operation, recorded.duplicate)


def resume_effects(op: Operation) -> tuple[Effect_, ...]:
    """After a crash between saving and publishing, a redelivery publishes again."""
    step = op.step
    if (
        op.status is OperationStatus.RUNNING
        and step is not None
        and step.status is StepStatus.PENDING
        and step.attempts == 0
    ):
        return (DispatchStep(op.id, op.instance, op.current_step),)
    return ()
