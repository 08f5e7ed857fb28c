"""Running one step of an operation per message, with exactly one effect per step.

A step costs one read before its effect and one transaction after it. The
effect is made safe to repeat by its token (operation id and step index); the
transaction records the outcome only if the operation still waits on that
step and still holds the instance's lease with its fencing token, so a
duplicate, a late delivery or a holder that lost its lease records nothing.

A step that must wait (for health, or for a retry's backoff) never holds a
function for longer than one check: its message is published again with a
`not_before` time, and a function that receives it early waits at most
`MAX_IN_PLACE_WAIT` before publishing it again. The sweeper re-drives any
operation whose messages were lost.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fleetops.contract.errors import InvalidRequest, MalformedEvent
from fleetops.contract.names import EVENT_STEP_READY
from fleetops.contract.pubsub import CloudEvent, PubsubMessage, decode_cloudevent, parse_time
from fleetops.domain.decisions import (
    Decision,
    DispatchStep,
    StepFailed,
    StepNotYet,
    StepOutcome,
    StepSucceeded,
    begin_step,
    complete_step,
    size_for,
    step_spec,
    version_for,
)
from fleetops.domain.model import Operation, Size, StepStatus
from fleetops.domain.plans import Effect, StepSpec
from fleetops.ports import (
    Actuator,
    ActuatorError,
    InstanceSpec,
    Publisher,
    StateStore,
    StateTransaction,
)
from fleetops.services.dispatch import carry_out, save
from fleetops.services.outcome import Outcome

# A function waits in place at most this long for a step that is not yet due.
MAX_IN_PLACE_WAIT = timedelta(seconds=2)


@dataclass(frozen=True)
class StepDeps:
    store: StateStore
    publisher: Publisher
    actuator: Actuator
    now: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = field(default=random.random)
    # Overrides how long a wait for health may last (the plans' default is 90 s).
    wait_timeout: timedelta | None = None
    # Called between a step's effect and the record of its outcome (fault injection).
    after_effect: Callable[[Operation, int], None] = field(default=lambda op, index: None)


@dataclass(frozen=True)
class StepCommand:
    operation: str
    step: int
    not_before: datetime | None


def parse_step(event: CloudEvent) -> StepCommand:
    if event.type != EVENT_STEP_READY:
        raise MalformedEvent("unknown-type", f"event type {event.type!r} is not a step event")
    data = event.data
    if not isinstance(data, dict):
        raise InvalidRequest("invalid-step", "step event data must be a JSON object")
    operation, step = data.get("operation"), data.get("step")
    if not isinstance(operation, str) or not operation:
        raise InvalidRequest("invalid-step", "field 'operation' is required")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InvalidRequest("invalid-step", "field 'step' must be a non-negative integer")
    not_before = data.get("not_before")
    return StepCommand(
        operation, step, parse_time(not_before) if isinstance(not_before, str) else None
    )


def handle_step_message(message: PubsubMessage, deps: StepDeps) -> Outcome:
    return handle_step_event(decode_cloudevent(message), deps)


def handle_step_event(event: CloudEvent, deps: StepDeps) -> Outcome:
    command = parse_step(event)
    nonce = event.id.rsplit("/", 1)[-1][:12]
    op = deps.store.get_operation(command.operation)
    if op is None:
        raise InvalidRequest("unknown-operation", f"operation {command.operation} does not exist")
    ids = {"operation": op.id, "instance": op.instance}
    if op.finished:
        return Outcome.ack(f"operation is already {op.status.value}", **ids)
    if command.step >= len(op.steps):
        raise InvalidRequest("invalid-step", f"operation {op.id} has no step {command.step}")
    if command.step != op.current_step:
        stale = f"step {command.step} is not current (current is {op.current_step})"
        current = op.step
        if (
            command.step == op.current_step - 1
            and current is not None
            and current.status is StepStatus.PENDING
            and current.attempts == 0
        ):
            # The step before was recorded but the next message may never have gone out.
            redo = DispatchStep(op.id, op.instance, op.current_step)
            carry_out((redo,), deps.publisher, deps.now(), nonce=nonce)
            return Outcome.ack(f"{stale}; dispatched step {op.current_step} again", **ids)
        return Outcome.ack(stale, **ids)

    due_in = _due_in(op, command, deps.now())
    if due_in > timedelta(0):
        deps.sleep(min(due_in, MAX_IN_PLACE_WAIT).total_seconds())
        left = _due_in(op, command, deps.now())
        if left > timedelta(0):
            effect = DispatchStep(op.id, op.instance, command.step, deps.now() + left)
            carry_out((effect,), deps.publisher, deps.now(), nonce=nonce)
            return Outcome.ack(f"step {command.step} not due yet", **ids)

    started = deps.now()
    spec = step_spec(op, command.step)
    outcome = perform(spec, op, command.step, deps)
    deps.after_effect(op, command.step)
    return record_outcome(op.id, command.step, started, outcome, deps, nonce=nonce)


def _due_in(op: Operation, command: StepCommand, now: datetime) -> timedelta:
    candidates = [t for t in (op.steps[command.step].not_before, command.not_before) if t]
    if not candidates:
        return timedelta(0)
    return max(candidates) - now


def step_token(op: Operation, index: int) -> str:
    return f"{op.id}/{index}"


def perform(spec: StepSpec, op: Operation, index: int, deps: StepDeps) -> StepOutcome:
    """Carry out the step's effect once (safe to repeat with the same token)."""
    token = step_token(op, index)
    actuator = deps.actuator
    name = op.instance
    try:
        match spec.effect:
            case Effect.PROVISION:
                version = version_for(op, spec.target)
                if not version:
                    return StepFailed("provision needs a version", permanent=True)
                spec_ = InstanceSpec(
                    id=name,
                    version=version,
                    size=size_for(op, spec.target) or Size.SMALL,
                    region=op.params.region,
                    labels=dict(op.params.labels),
                    restore_snapshot=op.outputs.get("restore_snapshot"),
                )
                result = actuator.provision(spec_, token)
                return StepSucceeded(endpoint=result.endpoint, version=version)
            case Effect.SET_VERSION:
                version = version_for(op, spec.target)
                if not version:
                    return StepFailed("no version to switch to", permanent=True)
                actuator.set_version(name, version, token)
                return StepSucceeded(version=version)
            case Effect.SET_SIZE:
                size = size_for(op, spec.target)
                if size is None:
                    return StepFailed("no size to switch to", permanent=True)
                actuator.set_size(name, size, token)
                return StepSucceeded()
            case Effect.SNAPSHOT:
                result = actuator.snapshot(name, token)
                return StepSucceeded(snapshot=result.snapshot or token)
            case Effect.WAIT_HEALTHY:
                return _check_health(op, spec, deps)
            case _:
                call = {
                    Effect.START: actuator.start,
                    Effect.STOP: actuator.stop,
                    Effect.RESTART: actuator.restart,
                    Effect.SUSPEND: actuator.suspend,
                    Effect.RESUME: actuator.resume,
                    Effect.DELETE: actuator.delete,
                }[spec.effect]
                result = call(name, token)
                return StepSucceeded(endpoint=result.endpoint)
    except ActuatorError as exc:
        return StepFailed(str(exc), permanent=exc.permanent)


def _check_health(op: Operation, spec: StepSpec, deps: StepDeps) -> StepOutcome:
    """One check; a waiting step is checked again from a new message."""
    wanted = version_for(op, spec.target)
    probe = deps.actuator.probe(op.instance)
    if probe.healthy and (wanted is None or probe.version in (None, wanted)):
        return StepSucceeded(version=probe.version)
    if probe.healthy:
        return StepNotYet(f"healthy but serving version {probe.version}, not {wanted}")
    return StepNotYet(f"not healthy: {probe.detail}" if probe.detail else "not healthy")


def record_outcome(
    operation_id: str,
    index: int,
    started: datetime,
    outcome: StepOutcome,
    deps: StepDeps,
    *,
    nonce: str,
) -> Outcome:
    now = deps.now()
    jitter = deps.jitter()

    def record(tx: StateTransaction) -> tuple[Decision | None, str]:
        op = tx.get_operation(operation_id)
        if op is None or op.finished or op.current_step != index:
            return None, "a later delivery already recorded this step"
        if op.steps[index].status not in (StepStatus.PENDING, StepStatus.RUNNING):
            return None, "this step is already recorded"
        instance = tx.get_instance(op.instance)
        might_finish = not isinstance(outcome, StepNotYet)
        queued = tx.queued_operations(op.instance, limit=10) if might_finish else []
        begun = begin_step(op, index, started)
        decision = complete_step(
            begun,
            instance,
            index,
            outcome,
            now,
            jitter=jitter,
            queued=queued,
            wait_timeout=deps.wait_timeout,
        )
        if decision.refused is not None:
            return None, f"refused: {decision.refused}"
        save(tx, decision)
        return decision, _describe(begun, index, outcome)

    decision, detail = deps.store.transact(record)
    if decision is not None:
        carry_out(decision.effects, deps.publisher, now, nonce=nonce)
    op = decision.operations[0] if decision else None
    return Outcome.ack(
        detail + (f"; operation is {op.status.value}" if op else ""),
        operation=operation_id,
        instance=op.instance if op else None,
    )


def _describe(op: Operation, index: int, outcome: StepOutcome) -> str:
    name = op.steps[index].name
    if isinstance(outcome, StepSucceeded):
        return f"step {name} succeeded"
    if isinstance(outcome, StepFailed):
        return f"step {name} failed: {outcome.error}"
    return f"step {name} waiting: {outcome.detail}"
