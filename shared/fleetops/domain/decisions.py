"""Pure decisions: (state, command, now) -> (new state, effects).

Services load state through ports, call one of these, save the result in one
transaction and only then carry out the effects (publishing messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleetops.domain.model import (
    Action,
    Health,
    Instance,
    InstanceState,
    Operation,
    OperationParams,
    OperationStatus,
    Origin,
    Size,
    Step,
    StepStatus,
)
from fleetops.domain.plans import Plan, StepSpec, plan_for

# --- commands -----------------------------------------------------------------


@dataclass(frozen=True)
class RecordRequest:
    operation_id: str
    request_id: str
    instance: str
    action: Action
    origin: Origin
    params: OperationParams
    requested_by: str | None = None
    reason: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class StepSucceeded:
    endpoint: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class StepFailed:
    error: str
    permanent: bool = False


@dataclass(frozen=True)
class StepNotYet:
    """A waiting step checked the world and must check again later."""

    detail: str


StepOutcome = StepSucceeded | StepFailed | StepNotYet


# --- effects ------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchStep:
    """Publish the message that runs `step` of `operation`, not before `not_before`."""

    operation: str
    instance: str
    step: int
    not_before: datetime | None = None


@dataclass(frozen=True)
class AnnounceFinished:
    operation: Operation


Effect = DispatchStep | AnnounceFinished


@dataclass(frozen=True)
class Decision:
    """What to save (each entry replaces the stored document) and what to do after."""

    operations: tuple[Operation, ...] = ()
    instances: tuple[Instance, ...] = ()
    effects: tuple[Effect, ...] = ()


# --- requests -----------------------------------------------------------------


def why_not(action: Action, instance: Instance | None, instance_id: str) -> str | None:
    """The reason a request cannot be carried out on the instance as it is, or None."""
    if plan_for(action) is None:
        return f"action {action.value} is not supported by this fleetops version"
    live = instance is not None and instance.exists
    if action is Action.PROVISION:
        if live:
            assert instance is not None
            return f"instance {instance_id} already exists (state {instance.state.value})"
        return None
    if not live:
        return f"instance {instance_id} does not exist"
    assert instance is not None
    if instance.state is InstanceState.SUSPENDED and action is Action.RESTART:
        return f"instance {instance_id} is suspended: resume it instead of restarting it"
    return None


def decide_request(cmd: RecordRequest, instance: Instance | None, now: datetime) -> Decision:
    """Record a valid request as an operation: rejected, planned (dry run), queued or started."""
    op = Operation(
        id=cmd.operation_id,
        instance=cmd.instance,
        action=cmd.action,
        origin=cmd.origin,
        status=OperationStatus.QUEUED,
        request_id=cmd.request_id,
        created_at=now,
        updated_at=now,
        params=cmd.params,
        requested_by=cmd.requested_by,
        reason=cmd.reason,
        dry_run=cmd.dry_run,
    )
    busy = instance is not None and instance.active_operation not in (None, cmd.operation_id)
    reason = why_not(cmd.action, instance, cmd.instance)
    # A queued request is judged again when it starts: the instance may change meanwhile.
    if reason is not None and not (busy and not cmd.dry_run):
        return Decision(operations=(_reject(op, reason, now),))
    plan = plan_for(cmd.action)
    assert plan is not None or busy
    if cmd.dry_run:
        assert plan is not None
        planned = tuple(Step(spec.name, status=StepStatus.SKIPPED) for spec in plan.steps)
        done = op.evolve(
            status=OperationStatus.SUCCEEDED, steps=planned, started_at=now, finished_at=now
        )
        return Decision(operations=(done,), effects=(AnnounceFinished(done),))
    if busy:
        assert instance is not None
        # Writing the instance document makes this transaction conflict with the
        # one that frees the instance, so a queued request is never missed.
        return Decision(operations=(op,), instances=(instance.evolve(updated_at=now),))
    return start_operation(op, instance, now)


def start_operation(op: Operation, instance: Instance | None, now: datetime) -> Decision:
    """Start a queued operation on a free instance, or reject it if it no longer applies."""
    reason = why_not(op.action, instance, op.instance)
    plan = plan_for(op.action)
    if reason is not None or plan is None:
        return Decision(operations=(_reject(op, reason or "no plan", now),))
    steps = tuple(Step(spec.name) for spec in plan.steps)
    running = op.evolve(
        status=OperationStatus.RUNNING, steps=steps, current_step=0, started_at=now, updated_at=now
    )
    held = _hold(instance, running, plan, now)
    return Decision(
        operations=(running,),
        instances=(held,),
        effects=(DispatchStep(running.id, running.instance, 0),),
    )


def _hold(instance: Instance | None, op: Operation, plan: Plan, now: datetime) -> Instance:
    params = op.params
    if op.action is Action.PROVISION:
        return Instance(
            id=op.instance,
            state=plan.state_while_running,
            created_at=now,
            updated_at=now,
            customer=params.customer,
            region=params.region,
            size=params.size or Size.SMALL,
            version=params.version,
            labels=params.labels,
            maintenance_window=params.maintenance_window,
            health=Health.UNKNOWN,
            active_operation=op.id,
        )
    assert instance is not None
    return instance.evolve(state=plan.state_while_running, active_operation=op.id, updated_at=now)


def _reject(op: Operation, reason: str, now: datetime) -> Operation:
    return op.evolve(status=OperationStatus.REJECTED, error=reason, updated_at=now, finished_at=now)


# --- steps --------------------------------------------------------------------


def step_spec(op: Operation, index: int) -> StepSpec:
    plan = plan_for(op.action)
    assert plan is not None, f"operation {op.id} has no plan"
    return plan.steps[index]


def begin_step(op: Operation, index: int, now: datetime) -> Operation:
    """Mark a step as running; a new attempt when it was pending."""
    step = op.steps[index]
    if step.status is StepStatus.PENDING:
        step = step.evolve(
            status=StepStatus.RUNNING,
            attempts=step.attempts + 1,
            started_at=step.started_at or now,
            not_before=None,
        )
    return op.with_step(index, step).evolve(updated_at=now)


def complete_step(
    op: Operation,
    instance: Instance | None,
    index: int,
    outcome: StepOutcome,
    now: datetime,
    *,
    jitter: float,
    queued: Sequence[Operation] = (),
) -> Decision:
    """Record a step's outcome and decide what happens next.

    `queued` are the instance's queued operations, oldest first: when this
    operation finishes, the first of them that still applies starts.
    """
    spec = step_spec(op, index)
    step = op.steps[index]
    if isinstance(outcome, StepNotYet):
        started = step.started_at or now
        if now - started >= spec.timeout:
            outcome = StepFailed(
                f"timed out after {int(spec.timeout.total_seconds())}s: {outcome.detail}",
                permanent=True,
            )
        else:
            waiting = step.evolve(checks=step.checks + 1, not_before=now + spec.poll_interval)
            op = op.with_step(index, waiting).evolve(updated_at=now)
            return Decision(
                operations=(op,),
                effects=(DispatchStep(op.id, op.instance, index, waiting.not_before),),
            )
    if isinstance(outcome, StepFailed):
        if not outcome.permanent and step.attempts < spec.retry.max_attempts:
            delay = spec.retry.backoff(step.attempts, jitter)
            retry = step.evolve(
                status=StepStatus.PENDING, error=outcome.error, not_before=now + delay
            )
            op = op.with_step(index, retry).evolve(updated_at=now)
            return Decision(
                operations=(op,),
                effects=(DispatchStep(op.id, op.instance, index, retry.not_before),),
            )
        failed_step = step.evolve(status=StepStatus.FAILED, error=outcome.error, finished_at=now)
        failed = op.with_step(index, failed_step).evolve(
            status=OperationStatus.FAILED,
            error=f"step {step.name} failed: {outcome.error}",
            updated_at=now,
            finished_at=now,
        )
        after = None
        if instance is not None:
            after = instance.evolve(
                state=InstanceState.FAILED,
                health=Health.UNKNOWN,
                active_operation=None,
                updated_at=now,
            )
        return _finish(failed, after, now, queued)

    done_step = step.evolve(status=StepStatus.SUCCEEDED, error=None, finished_at=now)
    op = op.with_step(index, done_step).evolve(updated_at=now)
    if instance is not None:
        instance = _apply_success(instance, spec, outcome, now)
    if index + 1 < len(op.steps):
        op = op.evolve(current_step=index + 1)
        return Decision(
            operations=(op,),
            instances=(instance,) if instance is not None else (),
            effects=(DispatchStep(op.id, op.instance, index + 1),),
        )
    plan = plan_for(op.action)
    assert plan is not None
    finished = op.evolve(status=OperationStatus.SUCCEEDED, finished_at=now)
    after = None
    if instance is not None:
        after = instance.evolve(state=plan.state_after, active_operation=None, updated_at=now)
        if plan.state_after is InstanceState.DELETED:
            after = after.evolve(endpoint=None, health=Health.UNKNOWN)
    return _finish(finished, after, now, queued)


def _apply_success(
    instance: Instance, spec: StepSpec, outcome: StepSucceeded, now: datetime
) -> Instance:
    changes: dict[str, object] = {"updated_at": now}
    if outcome.endpoint:
        changes["endpoint"] = outcome.endpoint
    if outcome.version:
        changes["version"] = outcome.version
    if spec.waits:
        changes["health"] = Health.HEALTHY
    return instance.evolve(**changes)


def _finish(
    op: Operation, instance: Instance | None, now: datetime, queued: Sequence[Operation]
) -> Decision:
    operations = [op]
    effects: list[Effect] = [AnnounceFinished(op)]
    for waiting in queued:
        started = start_operation(waiting, instance, now)
        operations.extend(started.operations)
        effects.extend(started.effects)
        effects.extend(AnnounceFinished(o) for o in started.operations if o.finished)
        if started.instances:
            instance = started.instances[0]
            break
    instances = (instance,) if instance is not None else ()
    return Decision(tuple(operations), instances, tuple(effects))


def step_is_due(op: Operation, index: int, now: datetime) -> timedelta:
    """How long until the step may run (zero or negative: now)."""
    step = op.steps[index]
    if step.not_before is None:
        return timedelta(0)
    return step.not_before - now
