"""Pure decisions: (state, command, now) -> (new state, effects).

Services load state through ports, call one of these, save the result in one
transaction and only then carry out the effects (publishing messages).

One operation holds an instance at a time, through a lease on the instance
document: `active_operation`, a fencing token that grows with every holder,
and an expiry renewed at every step. A step's outcome is recorded only while
its operation still holds the lease with the token it started with, so a
holder that lost the lease cannot overwrite its successor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fleetops.domain.model import (
    Action,
    Health,
    HistoryEntry,
    Instance,
    InstanceState,
    Operation,
    OperationParams,
    OperationStatus,
    Origin,
    Size,
    Step,
    StepStatus,
    frozen_map,
)
from fleetops.domain.plans import Effect, Plan, StepSpec, Target, plan_for
from fleetops.domain.policy import ApprovalPolicy

ENGINE = "fleetops/operations"
SWEEPER = "fleetops/sweeper"
# A lease outlives its step's timeout by this much before anyone may take it over.
LEASE_MARGIN = timedelta(minutes=2)
# A running operation with no recorded progress for this long is dispatched again.
STALL_AFTER = timedelta(minutes=2)


class DecisionError(Exception):
    """A command that cannot be carried out as asked; the message says why."""


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
    actor: str = "fleetops/requests"


@dataclass(frozen=True)
class StepSucceeded:
    endpoint: str | None = None
    version: str | None = None
    snapshot: str | None = None


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


Effect_ = DispatchStep | AnnounceFinished


@dataclass(frozen=True)
class Decision:
    """What to save (each entry replaces the stored document) and what to do after."""

    operations: tuple[Operation, ...] = ()
    instances: tuple[Instance, ...] = ()
    effects: tuple[Effect_, ...] = ()
    instance_history: tuple[tuple[str, HistoryEntry], ...] = ()
    # Set when nothing may be saved: why the command was refused.
    refused: str | None = None


@dataclass
class _Builder:
    """Collects one decision's changes; the last version of each document wins."""

    now: datetime
    actor: str
    operations: dict[str, Operation] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    effects: list[Effect_] = field(default_factory=list)
    notes: list[tuple[str, HistoryEntry]] = field(default_factory=list)
    # Instances as read, so a later change is noted in their history without saving
    # an unchanged document.
    read: dict[str, Instance] = field(default_factory=dict)

    def op(self, op: Operation) -> Operation:
        self.operations[op.id] = op
        return op

    def seen(self, instance: Instance) -> None:
        self.read.setdefault(instance.id, instance)

    def instance(self, instance: Instance, why: str, operation: str | None) -> Instance:
        before = self.instances.get(instance.id) or self.read.get(instance.id)
        self.instances[instance.id] = instance
        change = describe_change(before, instance) if before else None
        if change:
            self.notes.append(
                (instance.id, HistoryEntry(self.now, self.actor, change, why, operation))
            )
        return instance

    def build(self) -> Decision:
        return Decision(
            tuple(self.operations.values()),
            tuple(self.instances.values()),
            tuple(self.effects),
            tuple(self.notes),
        )


def describe_change(before: Instance, after: Instance) -> str | None:
    parts = []
    for name in ("state", "health", "version", "size", "endpoint", "active_operation"):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            parts.append(f"{name} {_text(old)} -> {_text(new)}")
    return "; ".join(parts) or None


def _text(value: object) -> str:
    if value is None:
        return "none"
    return str(getattr(value, "value", value))


# --- requests -----------------------------------------------------------------


def why_not(
    action: Action, instance: Instance | None, instance_id: str, params: OperationParams
) -> str | None:
    """The reason a request cannot be carried out on the instance as it is, or None."""
    if plan_for(action) is None:
        return f"action {action.value} is not supported by this fleetops version"
    if action is Action.PROVISION:
        if instance is not None and instance.exists:
            return f"instance {instance_id} already exists (state {instance.state.value})"
        return None
    if instance is None or not instance.exists:
        return f"instance {instance_id} does not exist"
    suspended = instance.state is InstanceState.SUSPENDED
    if action is Action.RESUME and not suspended:
        return f"instance {instance_id} is not suspended (state {instance.state.value})"
    if action is Action.SUSPEND and suspended:
        return f"instance {instance_id} is already suspended"
    if suspended and action in (Action.RESTART, Action.UPGRADE, Action.RESIZE, Action.REPLACE):
        return f"instance {instance_id} is suspended: resume it first"
    if action is Action.UPGRADE and params.version == instance.version:
        return f"instance {instance_id} already runs version {instance.version}"
    if action is Action.RESIZE and params.size is instance.size:
        return f"instance {instance_id} is already {instance.size.value}"
    return None


def decide_request(
    cmd: RecordRequest,
    instance: Instance | None,
    now: datetime,
    policy: ApprovalPolicy | None = None,
) -> Decision:
    """Record a valid request: rejected, planned (dry run), awaiting approval, queued or started."""
    policy = policy or ApprovalPolicy()
    b = _Builder(now, cmd.actor)
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
    who = cmd.requested_by or "an unnamed requester"
    op = op.noted(
        now,
        cmd.actor,
        "requested",
        f"{cmd.action.value} by {who}" + (f": {cmd.reason}" if cmd.reason else ""),
    )
    busy = instance is not None and instance.active_operation not in (None, cmd.operation_id)
    reason = why_not(cmd.action, instance, cmd.instance, cmd.params)
    # A queued request is judged again when it starts: the instance may change meanwhile.
    if reason is not None and not (busy and not cmd.dry_run):
        b.op(_reject(op, reason, now, cmd.actor))
        return b.build()
    plan = plan_for(cmd.action)
    assert plan is not None
    if cmd.dry_run:
        planned = tuple(Step(spec.name, status=StepStatus.SKIPPED) for spec in plan.steps)
        done = op.evolve(
            status=OperationStatus.SUCCEEDED, steps=planned, started_at=now, finished_at=now
        )
        done = done.noted(
            now, cmd.actor, "planned", "dry run: " + ", ".join(s.name for s in plan.steps)
        )
        b.op(done)
        b.effects.append(AnnounceFinished(done))
        return b.build()
    labels = instance.labels if instance is not None and instance.exists else cmd.params.labels
    approval = policy.why_required(cmd.action, labels)
    if approval is not None:
        waiting = op.evolve(
            status=OperationStatus.AWAITING_APPROVAL,
            approval_expires_at=now + policy.timeout,
        ).noted(now, cmd.actor, "awaiting approval", approval)
        b.op(waiting)
        return b.build()
    if busy:
        assert instance is not None
        queued = op.noted(now, cmd.actor, "queued", f"behind {instance.active_operation}")
        b.op(queued)
        # Writing the instance document makes this transaction conflict with the
        # one that frees the instance, so a queued request is never missed.
        b.instance(instance, "", None)
        b.instances[instance.id] = instance.evolve(updated_at=now)
        return b.build()
    _start(b, op, instance)
    return b.build()


def start_operation(
    op: Operation, instance: Instance | None, now: datetime, actor: str = ENGINE
) -> Decision:
    """Start a queued or approved operation on a free instance, or reject it if moot."""
    b = _Builder(now, actor)
    _start(b, op, instance)
    return b.build()


def _start(b: _Builder, op: Operation, instance: Instance | None) -> Instance | None:
    now = b.now
    reason = why_not(op.action, instance, op.instance, op.params)
    plan = plan_for(op.action)
    if reason is not None or plan is None:
        b.op(_reject(op, reason or "no plan", now, b.actor))
        if op.status is OperationStatus.QUEUED:
            b.effects.append(AnnounceFinished(b.operations[op.id]))
        return instance
    token = (instance.lease_token if instance is not None else 0) + 1
    steps = tuple(Step(spec.name) for spec in plan.steps)
    running = op.evolve(
        status=OperationStatus.RUNNING,
        steps=steps,
        current_step=0,
        started_at=now,
        deadline_at=now + plan.deadline,
        lease_token=token,
        prior_state=instance.state if instance is not None and instance.exists else None,
        prior_version=instance.version if instance is not None and instance.exists else None,
        prior_size=instance.size if instance is not None and instance.exists else None,
        outputs=_start_outputs(op, instance),
    ).noted(now, b.actor, "started", f"holds {op.instance} with lease token {token}")
    b.op(running)
    if instance is not None:
        b.instance(instance, "", None)  # the state before, for the history
    held = _hold(instance, running, plan, token, now)
    b.instance(held, f"{op.action.value} {op.id} started", op.id)
    b.effects.append(DispatchStep(running.id, running.instance, 0))
    return held


def _start_outputs(op: Operation, instance: Instance | None) -> Mapping[str, str]:
    if op.action is Action.REPLACE and instance is not None and instance.latest_snapshot:
        return frozen_map({**op.outputs, "restore_snapshot": instance.latest_snapshot})
    return op.outputs


def _lease_until(plan: Plan, index: int, now: datetime) -> datetime:
    return now + plan.spec(index).timeout + LEASE_MARGIN


def _hold(
    instance: Instance | None, op: Operation, plan: Plan, token: int, now: datetime
) -> Instance:
    params = op.params
    lease = {
        "active_operation": op.id,
        "lease_token": token,
        "lease_expires_at": _lease_until(plan, 0, now),
        "updated_at": now,
    }
    if op.action is Action.PROVISION:
        return Instance(
            id=op.instance,
            state=plan.state_while_running or InstanceState.PROVISIONING,
            created_at=now,
            customer=params.customer,
            region=params.region,
            size=params.size or Size.SMALL,
            version=params.version,
            labels=params.labels,
            maintenance_window=params.maintenance_window,
            health=Health.UNKNOWN,
            **lease,  # type: ignore[arg-type]
        )
    assert instance is not None
    return instance.evolve(state=plan.state_while_running or instance.state, **lease)


def _reject(op: Operation, reason: str, now: datetime, actor: str) -> Operation:
    return op.evolve(status=OperationStatus.REJECTED, error=reason, finished_at=now).noted(
        now, actor, "rejected", reason
    )


# --- steps --------------------------------------------------------------------


def plan_of(op: Operation) -> Plan:
    plan = plan_for(op.action)
    assert plan is not None, f"operation {op.id} has no plan"
    return plan


def step_spec(op: Operation, index: int) -> StepSpec:
    return plan_of(op).spec(index)


def version_for(op: Operation, target: Target) -> str | None:
    return op.params.version if target is Target.REQUESTED else op.prior_version


def size_for(op: Operation, target: Target) -> Size | None:
    return op.params.size if target is Target.REQUESTED else op.prior_size


def fenced(op: Operation, instance: Instance | None) -> str | None:
    """Why this operation may not write the instance any more, or None."""
    if instance is None:
        return f"instance {op.instance} is gone"
    if instance.active_operation != op.id or instance.lease_token != op.lease_token:
        return (
            f"operation {op.id} lost its lease on {op.instance} "
            f"(token {op.lease_token}; the instance is held by "
            f"{instance.active_operation or 'nobody'} with token {instance.lease_token})"
        )
    return None


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
    actor: str = ENGINE,
    wait_timeout: timedelta | None = None,
) -> Decision:
    """Record a step's outcome and decide what happens next.

    `queued` are the instance's queued operations, oldest first: when this
    operation finishes, the first of them that still applies starts.
    """
    refusal = fenced(op, instance)
    if refusal is not None:
        return Decision(refused=refusal)
    assert instance is not None
    b = _Builder(now, actor)
    b.instance(instance, "", None)
    plan = plan_of(op)
    spec = plan.spec(index)
    step = op.steps[index]
    label = f"step {step.name}" + (" (rollback)" if step.compensation else "")

    if isinstance(outcome, StepNotYet):
        started = step.started_at or now
        timeout = wait_timeout or spec.timeout
        if now - started < timeout:
            waiting = step.evolve(
                checks=step.checks + 1, not_before=now + spec.poll_interval, error=outcome.detail
            )
            b.op(op.with_step(index, waiting).evolve(updated_at=now))
            b.effects.append(DispatchStep(op.id, op.instance, index, waiting.not_before))
            return b.build()
        outcome = StepFailed(
            f"timed out after {int(spec.timeout.total_seconds())}s: {outcome.detail}",
            permanent=True,
        )

    if isinstance(outcome, StepFailed):
        if not outcome.permanent and step.attempts < spec.retry.max_attempts:
            delay = spec.retry.backoff(step.attempts, jitter)
            retry = step.evolve(
                status=StepStatus.PENDING, error=outcome.error, not_before=now + delay
            )
            retried = op.with_step(index, retry).noted(
                now,
                actor,
                "retrying",
                f"{label} attempt {step.attempts} failed: {outcome.error}; "
                f"next in {delay.total_seconds():.1f}s",
            )
            b.op(retried)
            b.instance(_renew(instance, plan, index, now), "", None)
            b.effects.append(DispatchStep(op.id, op.instance, index, retry.not_before))
            return b.build()
        failed_step = step.evolve(status=StepStatus.FAILED, error=outcome.error, finished_at=now)
        op = op.with_step(index, failed_step).noted(
            now, actor, "step failed", f"{label}: {outcome.error}"
        )
        failure = f"{label} failed: {outcome.error}"
        if (
            not op.compensating
            and plan.compensate_from is not None
            and index >= plan.compensate_from
        ):
            _compensate(b, op, instance, plan, failure)
        else:
            error = f"{op.failure}; rollback failed: {failure}" if op.compensating else failure
            _end(
                b,
                op,
                instance,
                OperationStatus.FAILED,
                error,
                InstanceState.FAILED,
                Health.UNKNOWN,
                queued,
            )
        return b.build()

    done_step = step.evolve(
        status=StepStatus.SUCCEEDED, error=None, finished_at=now, not_before=None
    )
    op = op.with_step(index, done_step).noted(now, actor, "step succeeded", label)
    if outcome.snapshot:
        op = op.evolve(outputs=frozen_map({**op.outputs, "snapshot": outcome.snapshot}))
    instance = _apply_success(instance, spec, outcome, op, now)
    b.instance(instance, f"{label} of {op.action.value} {op.id}", op.id)
    following = index + 1
    if op.cancel_requested_by and not op.compensating and following < len(op.steps):
        if plan.compensate_from is not None and index >= plan.compensate_from:
            _compensate(b, op, instance, plan, f"cancelled by {op.cancel_requested_by}")
        else:
            prior = op.prior_state or InstanceState.FAILED
            _end(
                b,
                op,
                instance,
                OperationStatus.CANCELLED,
                f"cancelled by {op.cancel_requested_by}",
                prior,
                None,
                queued,
            )
        return b.build()
    if following < len(op.steps):
        op = op.evolve(current_step=following)
        b.op(op)
        b.instance(_renew(instance, plan, following, now), "", None)
        b.effects.append(DispatchStep(op.id, op.instance, following))
        return b.build()
    if op.compensating:
        status = OperationStatus.CANCELLED if op.cancel_requested_by else OperationStatus.FAILED
        restored = (
            f"rolled back to version {op.prior_version}" if op.prior_version else "rolled back"
        )
        _end(
            b,
            op,
            instance,
            status,
            f"{op.failure}; {restored}",
            op.prior_state or InstanceState.RUNNING,
            None,
            queued,
        )
    else:
        _end(
            b,
            op,
            instance,
            OperationStatus.SUCCEEDED,
            None,
            plan.state_after or instance.state,
            None,
            queued,
        )
    return b.build()


def _renew(instance: Instance, plan: Plan, index: int, now: datetime) -> Instance:
    return instance.evolve(lease_expires_at=_lease_until(plan, index, now), updated_at=now)


def _compensate(b: _Builder, op: Operation, instance: Instance, plan: Plan, failure: str) -> None:
    """Skip what is left of the plan and run its declared compensation."""
    skipped = tuple(
        s.evolve(status=StepStatus.SKIPPED) if s.status is StepStatus.PENDING else s
        for s in op.steps
    )
    extra = tuple(Step(spec.name, compensation=True) for spec in plan.compensation)
    first = len(skipped)
    rolling = op.evolve(
        steps=skipped + extra, current_step=first, compensating=True, failure=failure
    ).noted(
        b.now,
        b.actor,
        "compensating",
        f"{failure}; running {', '.join(s.name for s in plan.compensation)}",
    )
    b.op(rolling)
    b.instance(_renew(instance, plan, first, b.now), "", None)
    b.effects.append(DispatchStep(op.id, op.instance, first))


def _apply_success(
    instance: Instance, spec: StepSpec, outcome: StepSucceeded, op: Operation, now: datetime
) -> Instance:
    changes: dict[str, object] = {"updated_at": now}
    if outcome.endpoint:
        changes["endpoint"] = outcome.endpoint
    effect = spec.effect
    if effect is Effect.SET_VERSION:
        changes["version"] = version_for(op, spec.target) or instance.version
    elif effect is Effect.SET_SIZE:
        changes["size"] = size_for(op, spec.target) or instance.size
    elif effect is Effect.SNAPSHOT and outcome.snapshot:
        changes["latest_snapshot"] = outcome.snapshot
    elif effect is Effect.WAIT_HEALTHY:
        changes["health"] = Health.HEALTHY
    elif effect in (Effect.STOP, Effect.SUSPEND):
        changes["health"] = Health.UNKNOWN
    elif effect is Effect.DELETE:
        changes["endpoint"] = None
        changes["health"] = Health.UNKNOWN
    return instance.evolve(**changes)


def _end(
    b: _Builder,
    op: Operation,
    instance: Instance | None,
    status: OperationStatus,
    error: str | None,
    state: InstanceState,
    health: Health | None,
    queued: Sequence[Operation],
) -> None:
    """Finish the operation, release the instance, and start the next queued operation."""
    now = b.now
    left = tuple(
        s.evolve(status=StepStatus.SKIPPED) if s.status is StepStatus.PENDING else s
        for s in op.steps
    )
    finished = op.evolve(status=status, error=error, steps=left, finished_at=now).noted(
        now, b.actor, status.value, error or ""
    )
    b.op(finished)
    b.effects.append(AnnounceFinished(finished))
    if instance is None:
        return
    released = instance.evolve(
        state=state,
        health=health or instance.health,
        active_operation=None,
        lease_expires_at=None,
        updated_at=now,
    )
    b.instance(released, f"{op.action.value} {op.id} {status.value}", op.id)
    current: Instance | None = released
    for waiting in queued:
        current = _start(b, waiting, current)
        if b.operations[waiting.id].status is OperationStatus.RUNNING:
            break


# --- approvals and cancels ----------------------------------------------------


def approve(op: Operation, instance: Instance | None, approver: str, now: datetime) -> Decision:
    if op.status is not OperationStatus.AWAITING_APPROVAL:
        raise DecisionError(f"operation {op.id} is {op.status.value}, not awaiting approval")
    if op.requested_by and approver == op.requested_by:
        raise DecisionError(
            f"{approver} requested operation {op.id} and cannot approve it: a second person must"
        )
    if op.approval_expires_at is not None and now >= op.approval_expires_at:
        raise DecisionError(
            f"the approval of operation {op.id} timed out at {op.approval_expires_at.isoformat()}"
        )
    b = _Builder(now, approver)
    approved = op.evolve(status=OperationStatus.QUEUED, approved_by=approver).noted(
        now, approver, "approved"
    )
    busy = instance is not None and instance.active_operation is not None
    if busy:
        assert instance is not None
        b.op(approved.noted(now, approver, "queued", f"behind {instance.active_operation}"))
        b.instances[instance.id] = instance.evolve(updated_at=now)
        return b.build()
    _start(b, approved, instance)
    return b.build()


def request_cancel(op: Operation, who: str, now: datetime) -> Decision:
    """Cancel now when nothing runs yet; else at the next step boundary, with compensation."""
    if op.finished:
        raise DecisionError(f"operation {op.id} is already {op.status.value}")
    b = _Builder(now, who)
    if op.status in (OperationStatus.QUEUED, OperationStatus.AWAITING_APPROVAL):
        cancelled = op.evolve(
            status=OperationStatus.CANCELLED, error=f"cancelled by {who}", finished_at=now
        )
        b.op(cancelled.noted(now, who, "cancelled", "before it started"))
        b.effects.append(AnnounceFinished(b.operations[op.id]))
        return b.build()
    if op.cancel_requested_by:
        raise DecisionError(
            f"operation {op.id} is already being cancelled by {op.cancel_requested_by}"
        )
    b.op(
        op.evolve(cancel_requested_by=who).noted(
            now, who, "cancel requested", "stops at the next step boundary"
        )
    )
    return b.build()


# --- the sweeper --------------------------------------------------------------


def sweep(
    op: Operation,
    instance: Instance | None,
    queued: Sequence[Operation],
    now: datetime,
    actor: str = SWEEPER,
) -> Decision:
    """Resume, fail or start an operation that nobody is driving any more."""
    b = _Builder(now, actor)
    if op.status is OperationStatus.AWAITING_APPROVAL:
        if op.approval_expires_at is not None and now >= op.approval_expires_at:
            expired = op.evolve(
                status=OperationStatus.CANCELLED, error="the approval timed out", finished_at=now
            )
            b.op(expired.noted(now, actor, "cancelled", "nobody approved it in time"))
            b.effects.append(AnnounceFinished(b.operations[op.id]))
        return b.build()
    if op.status is OperationStatus.QUEUED:
        oldest = queued[0].id if queued else None
        if oldest == op.id and (instance is None or instance.active_operation is None):
            _start(b, op, instance)
        return b.build()
    if op.status is not OperationStatus.RUNNING:
        return b.build()
    refusal = fenced(op, instance)
    if refusal is not None:
        b.op(
            op.evolve(status=OperationStatus.FAILED, error=refusal, finished_at=now).noted(
                now, actor, "failed", refusal
            )
        )
        b.effects.append(AnnounceFinished(b.operations[op.id]))
        return b.build()
    assert instance is not None
    b.seen(instance)
    if op.deadline_at is not None and now >= op.deadline_at:
        why = f"deadline passed at {op.deadline_at.isoformat()}"
        _end(
            b,
            op,
            instance,
            OperationStatus.FAILED,
            why,
            InstanceState.FAILED,
            Health.UNKNOWN,
            queued,
        )
        return b.build()
    if instance.lease_expires_at is not None and now >= instance.lease_expires_at:
        why = (
            f"lease expired at {instance.lease_expires_at.isoformat()}: "
            "the operation stopped making progress"
        )
        _end(
            b,
            op,
            instance,
            OperationStatus.FAILED,
            why,
            InstanceState.FAILED,
            Health.UNKNOWN,
            queued,
        )
        return b.build()
    step = op.step
    due = step is not None and (step.not_before is None or step.not_before <= now)
    if due and now - op.updated_at >= STALL_AFTER:
        b.op(
            op.noted(
                now,
                actor,
                "resumed",
                f"step {op.current_step} had no progress since {op.updated_at.isoformat()}",
            )
        )
        b.effects.append(DispatchStep(op.id, op.instance, op.current_step))
    return b.build()
