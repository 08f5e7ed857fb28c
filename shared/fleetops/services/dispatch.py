"""Saving a decision in the open transaction, and carrying out its effects after commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fleetops.contract.names import (
    EVENT_OPERATION_FINISHED,
    EVENT_STEP_READY,
    SOURCE_OPERATIONS,
    TOPIC_EVENTS,
    TOPIC_STEPS,
)
from fleetops.contract.pubsub import CloudEvent, encode_binary, format_time
from fleetops.domain.decisions import AnnounceFinished, Decision, DispatchStep, Effect_
from fleetops.domain.model import Operation
from fleetops.ports import Publisher, StateTransaction


def save(tx: StateTransaction, decision: Decision) -> None:
    for op in decision.operations:
        tx.put_operation(op)
    for instance in decision.instances:
        tx.put_instance(instance)
    for instance_id, entry in decision.instance_history:
        tx.add_instance_history(instance_id, entry)


def step_event(effect: DispatchStep, now: datetime, *, nonce: str) -> CloudEvent:
    data: dict[str, Any] = {
        "operation": effect.operation,
        "instance": effect.instance,
        "step": effect.step,
    }
    if effect.not_before is not None:
        data["not_before"] = format_time(effect.not_before)
    return CloudEvent(
        # Step messages are deduplicated by the operation's state, not by id.
        id=f"{effect.operation}/{effect.step}/{nonce}",
        source=SOURCE_OPERATIONS,
        type=EVENT_STEP_READY,
        data=data,
        time=now,
        subject=effect.instance,
    )


def finished_event(op: Operation, now: datetime) -> CloudEvent:
    return CloudEvent(
        # One operation finishes once: its id makes duplicates recognisable downstream.
        id=f"{op.id}/finished",
        source=SOURCE_OPERATIONS,
        type=EVENT_OPERATION_FINISHED,
        data={
            "operation": op.id,
            "instance": op.instance,
            "action": op.action.value,
            "origin": op.origin.value,
            "status": op.status.value,
            "request_id": op.request_id,
            "error": op.error,
            "dry_run": op.dry_run,
        },
        time=now,
        subject=op.instance,
    )


def carry_out(
    effects: Iterable[Effect_], publisher: Publisher, now: datetime, *, nonce: str
) -> None:
    """Publish every effect; raises on the first failure so the message is retried."""
    for effect in effects:
        if isinstance(effect, DispatchStep):
            data, attributes = encode_binary(step_event(effect, now, nonce=nonce))
            publisher.publish(TOPIC_STEPS, data, attributes)
        elif isinstance(effect, AnnounceFinished):
            data, attributes = encode_binary(finished_event(effect.operation, now))
            publisher.publish(TOPIC_EVENTS, data, attributes)
