"""Running one step of an operation per message, with exactly one effect per step.

A step costs one read before its effect and one transaction after it: the
effect is made safe to repeat by its token (operation id and step index), and
the transaction records the outcome only if the operation still waits on that
step, so a duplicate or late delivery cannot record twice.
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
    step_spec,
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
from fleetops.services.dispatch import carry_out
from fleetops.services.outcome import Outcome

# A function waits in place at most this long for a step that is not yet due.
MAX_IN_PLACE_WAIT = timedelta(seconds=2)
# A waiting step checks the world for at most this long per message.
MAX_CHECK_TIME = timedelta(seconds=3)
CHECK_INTERVAL = 0.2


@dataclass(frozen=True)
class StepDeps:
    store: StateStore
    publisher: Publisher
    actuator: Actuator
    now: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = field(default=random.random)


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
            carry_out(
                (DispatchStep(op.id, op.instance, op.current_step),),
                deps.publisher,
                deps.now(),
                nonce=nonce,
            )
            return Outcome.ack(f"{stale}; dispatched step {op.current_step} again", **ids)
        return Outcome.ack(stale, **ids)

    due_in = _due_in(op, command, deps.now())
    if due_in > timedelta(0):
        deps.sleep(min(due_in, MAX_IN_PLACE_WAIT).total_seconds())
        if _due_in(op, command, deps.now()) > timedelta(0):
            not_before = deps.now() + _due_in(op, command, deps.now())
            effect = DispatchStep(op.id, op.instance, command.step, not_before)
            carry_out((effect,), deps.publisher, deps.now(), nonce=nonce)
            return Outcome.ack(f"step {command.step} not due yet", **ids)

    started = deps.now()
    spec = step_spec(op, command.step)
    outcome = perform(spec, op, command.step, deps)
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
    params = op.params
    try:
        if spec.effect is Effect.PROVISION:
            if not params.version:
                return StepFailed("provision needs a version", permanent=True)
            result = deps.actuator.provision(
                InstanceSpec(
                    id=op.instance,
                    version=params.version,
                    size=params.size or Size.SMALL,
                    region=params.region,
                    labels=dict(params.labels),
                ),
                token,
            )
            return StepSucceeded(endpoint=result.endpoint, version=params.version)
        if spec.effect is Effect.RESTART:
            result = deps.actuator.restart(op.instance, token)
            return StepSucceeded(endpoint=result.endpoint)
        if spec.effect is Effect.DELETE:
            deps.actuator.delete(op.instance, token)
            return StepSucceeded()
        return _wait_healthy(op, deps)
    except ActuatorError as exc:
        return StepFailed(str(exc), permanent=exc.permanent)


def _wait_healthy(op: Operation, deps: StepDeps) -> StepOutcome:
    wanted = op.params.version
    deadline = deps.now() + MAX_CHECK_TIME
    detail = "no check made"
    while True:
        probe = deps.actuator.probe(op.instance)
        if probe.healthy and (wanted is None or probe.version in (None, wanted)):
            return StepSucceeded(version=probe.version)
        if probe.healthy:
            detail = f"healthy but serving version {probe.version}, not {wanted}"
        else:
            detail = f"not healthy: {probe.detail}" if probe.detail else "not healthy"
        if deps.now() >= deadline:
            return StepNotYet(detail)
        deps.sleep(CHECK_INTERVAL)


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
    finishing = isinstance(outcome, StepFailed | StepSucceeded)

    def save(tx: StateTransaction) -> tuple[Decision | None, str]:
        op = tx.get_operation(operation_id)
        if op is None or op.finished or op.current_step != index:
            return None, "a later delivery already recorded this step"
        if op.steps[index].status not in (StepStatus.PENDING, StepStatus.RUNNING):
            return None, "this step is already recorded"
        instance = tx.get_instance(op.instance)
        last = index + 1 >= len(op.steps)
        queued = (
            tx.queued_operations(op.instance, limit=10)
            if finishing and (last or isinstance(outcome, StepFailed))
            else []
        )
        begun = begin_step(op, index, started)
        decision = complete_step(begun, instance, index, outcome, now, jitter=jitter, queued=queued)
        for changed in decision.operations:
            tx.put_operation(changed)
        for changed_instance in decision.instances:
            tx.put_instance(changed_instance)
        return decision, _describe(begun, index, outcome)

    decision, detail = deps.store.transact(save)
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
