"""Rollouts: planned once into waves, advanced by maintenance ticks, progress by query.

Planning writes one document per target (`rollouts/{id}/targets/{instance}`) in
batches and the rollout document last. Each tick refreshes the targets that
run from their operations, then decides in one transaction on the rollout
document (so two ticks never both start the same slot), and submits the new
operations through the engine with origin `maintenance` and the rollout's id
as `request_id`. Counts come from count aggregations over the targets, never
from a counter that every completion writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleetops.contract.names import SOURCE_OPERATIONS, TOPIC_EVENTS
from fleetops.contract.pubsub import CloudEvent, PubsubMessage, encode_binary
from fleetops.contract.ticks import decode_tick
from fleetops.documents import _time
from fleetops.domain.decisions import DecisionError, RecordRequest
from fleetops.domain.model import Action, Instance, OperationParams, OperationStatus, Origin, Size
from fleetops.domain.policy import ApprovalPolicy
from fleetops.domain.rollouts import (
    Limit,
    Rollout,
    RolloutStatus,
    TargetStatus,
    TickFacts,
    Wave,
    WaveCounts,
    eligible,
    healthy_after,
    matches,
    plan_tick,
    plan_waves,
)
from fleetops.domain.windows import freeze_from_dict, maintenance_allowed, window_from_dict
from fleetops.ports import Publisher, StateStore, StateTransaction
from fleetops.services.outcome import Outcome
from fleetops.services.requests import RequestDeps, operation_id_for, submit_operation

SOURCE_MAINTENANCE = "//fleetops/maintenance"
# All that planning reads of an instance: `matches` (labels, and region, customer,
# size, version), `eligible` (state) and the canary ring (labels). Windows are
# judged per tick, when a target starts, from the whole instance.
PLANNING_FIELDS = ("state", "version", "labels", "region", "customer", "size")
EVENT_ROLLOUT_HALTED = "fleetops.rollout.halted"
SETTINGS_PATH = "maintenance/settings"
ACTOR = "fleetops/maintenance"


@dataclass(frozen=True)
class RolloutDeps:
    store: StateStore
    publisher: Publisher
    now: Callable[[], datetime]
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)


@dataclass(frozen=True)
class StartRollout:
    action: Action = Action.UPGRADE
    version: str | None = None
    size: Size | None = None
    selector: dict[str, str] = field(default_factory=dict)
    max_concurrency: Limit = field(default_factory=lambda: Limit(10, percent=True))
    max_errors: Limit = field(default_factory=lambda: Limit(0, percent=False))
    canary: str | None = "ring=canary"
    bake: timedelta = timedelta(minutes=10)
    cutoff: timedelta = timedelta(minutes=30)
    respect_windows: bool = True
    requested_by: str = "unknown"


def _targets(rollout_id: str) -> str:
    return f"rollouts/{rollout_id}/targets"


def plan_rollout(cmd: StartRollout, deps: RolloutDeps, rollout_id: str | None = None) -> Rollout:
    if cmd.action is Action.UPGRADE and not cmd.version:
        raise DecisionError("an upgrade rollout needs --version")
    if cmd.action is Action.RESIZE and cmd.size is None:
        raise DecisionError("a resize rollout needs --size")
    if cmd.action in (Action.PROVISION, Action.DELETE):
        raise DecisionError(f"a rollout cannot {cmd.action.value}: request it per instance")
    now = deps.now()
    rollout_id = rollout_id or f"ro-{now.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    chosen = [
        i
        for i in deps.store.list_instances(fields=PLANNING_FIELDS)
        if matches(i, cmd.selector) and eligible(i, cmd.action)
    ]
    already = [i for i in chosen if cmd.action is Action.UPGRADE and i.version == cmd.version]
    skipped = {i.id for i in already}
    chosen = [i for i in chosen if i.id not in skipped]
    if not chosen:
        raise DecisionError("no instance matches the selector (or all already run that version)")
    waves = plan_waves(chosen, cmd.canary)
    total = len(chosen)
    rollout = Rollout(
        id=rollout_id,
        action=cmd.action,
        status=RolloutStatus.RUNNING,
        waves=waves,
        max_concurrency=cmd.max_concurrency.resolve(total, at_least=1),
        max_errors=cmd.max_errors.resolve(total, at_least=0),
        respect_windows=cmd.respect_windows,
        bake=cmd.bake,
        cutoff=cmd.cutoff,
        created_at=now,
        updated_at=now,
        created_by=cmd.requested_by,
        target_version=cmd.version,
        size=cmd.size.value if cmd.size else None,
        selector=dict(cmd.selector),
        max_concurrency_spec=str(cmd.max_concurrency),
        max_errors_spec=str(cmd.max_errors),
    ).noted(
        now,
        cmd.requested_by,
        "planned",
        f"{total} target(s) in {len(waves)} wave(s)"
        + (f"; {len(already)} already at {cmd.version}" if already else ""),
    )
    items: list[tuple[str, dict[str, Any]]] = [
        (
            f"{_targets(rollout_id)}/{instance}",
            {
                "instance": instance,
                "wave": wave.index,
                "status": TargetStatus.PENDING.value,
                "operation": None,
                "reason": None,
                "updated_at": now,
            },
        )
        for wave in waves
        for instance in wave.instances
    ]
    # The rollout document last: a rollout exists only once all its targets do.
    items.append((f"rollouts/{rollout_id}", rollout_to_doc(rollout)))
    deps.store.write_documents(items)
    return rollout


@dataclass(frozen=True)
class TickReport:
    rollout: str
    started: tuple[str, ...]
    halted: str | None
    status: str


def handle_tick_message(message: PubsubMessage, deps: RolloutDeps) -> Outcome:
    tick = decode_tick(message)
    reports = advance_all(tick.at, deps)
    if not reports:
        return Outcome.ack(
            f"tick at {tick.at.isoformat()}: no running rollout (or automation paused)"
        )
    parts = [
        f"{r.rollout} {r.status}"
        + (f" started {len(r.started)}" if r.started else "")
        + (f" halted: {r.halted}" if r.halted else "")
        for r in reports
    ]
    return Outcome.ack(f"tick at {tick.at.isoformat()}: " + "; ".join(parts))


def advance_all(now: datetime, deps: RolloutDeps) -> list[TickReport]:
    from fleetops import remediation_documents as rdocs

    settings = rdocs.settings_from_doc(deps.store.get_document(rdocs.SETTINGS_PATH))
    if settings.paused:
        return []
    running = deps.store.query_documents("rollouts", [("status", "==", "running")], limit=100)
    return [advance(rollout_id, now, deps) for rollout_id, _ in running]


def advance(rollout_id: str, now: datetime, deps: RolloutDeps) -> TickReport:
    _refresh(rollout_id, deps, now)
    result = deps.store.transact(lambda tx: _decide(tx, rollout_id, now))
    rollout, starts = result
    request_deps = RequestDeps(deps.store, deps.publisher, deps.now, deps.approvals)
    wave = rollout.waves[min(rollout.current_wave, len(rollout.waves) - 1)]
    for instance in starts:
        command = RecordRequest(
            operation_id=operation_id_for(SOURCE_MAINTENANCE, f"{rollout.id}/{instance}"),
            request_id=rollout.id,
            instance=instance,
            action=rollout.action,
            origin=Origin.MAINTENANCE,
            params=OperationParams(
                version=rollout.target_version, size=Size(rollout.size) if rollout.size else None
            ),
            requested_by=rollout.created_by,
            reason=f"rollout {rollout.id}, {wave.name}",
            actor=ACTOR,
        )
        submit_operation(
            command,
            SOURCE_MAINTENANCE,
            f"{rollout.id}/{instance}",
            "fleetops.rollout.target",
            request_deps,
        )
    if rollout.status is RolloutStatus.HALTED and rollout.finished_at == now:
        event = CloudEvent(
            id=f"{rollout.id}/halted",
            source=SOURCE_OPERATIONS,
            type=EVENT_ROLLOUT_HALTED,
            data={"rollout": rollout.id, "reason": rollout.halted_reason, "wave": wave.name},
            time=now,
        )
        data, attributes = encode_binary(event)
        deps.publisher.publish(TOPIC_EVENTS, data, attributes)
    return TickReport(rollout.id, tuple(starts), rollout.halted_reason, rollout.status.value)


def _refresh(rollout_id: str, deps: RolloutDeps, now: datetime) -> None:
    """Targets whose operation finished take its outcome (idempotent, target by target)."""
    running = deps.store.query_documents(
        _targets(rollout_id), [("status", "==", TargetStatus.STARTED.value)], limit=2000
    )
    updates: list[tuple[str, dict[str, Any]]] = []
    for target_id, doc in running:
        op = deps.store.get_operation(str(doc.get("operation")))
        if op is None or not op.finished:
            continue
        status = (
            TargetStatus.SUCCEEDED
            if op.status is OperationStatus.SUCCEEDED
            else TargetStatus.FAILED
        )
        reason = op.error if status is TargetStatus.FAILED else None
        updates.append(
            (
                f"{_targets(rollout_id)}/{target_id}",
                {**doc, "status": status.value, "reason": reason, "updated_at": now},
            )
        )
    if updates:
        deps.store.write_documents(updates)


def _decide(tx: StateTransaction, rollout_id: str, now: datetime) -> tuple[Rollout, list[str]]:
    doc = tx.get_document(f"rollouts/{rollout_id}")
    if doc is None:
        raise DecisionError(f"rollout {rollout_id} does not exist")
    rollout = rollout_from_doc(rollout_id, doc)
    if rollout.status is not RolloutStatus.RUNNING:
        return rollout, []
    targets = _targets(rollout_id)
    wave = rollout.current_wave

    def count(status: TargetStatus, only_wave: bool = True) -> int:
        where: list[tuple[str, str, Any]] = [("status", "==", status.value)]
        if only_wave:
            where.append(("wave", "==", wave))
        return tx.count_documents(targets, where)

    counts = WaveCounts(
        pending=count(TargetStatus.PENDING),
        started=count(TargetStatus.STARTED),
        succeeded=count(TargetStatus.SUCCEEDED),
        failed=count(TargetStatus.FAILED),
        skipped=count(TargetStatus.SKIPPED),
    )
    unhealthy: list[str] = []
    if counts.done:
        for target_id, _ in tx.query_documents(
            targets,
            [("wave", "==", wave), ("status", "==", TargetStatus.SUCCEEDED.value)],
            limit=5000,
        ):
            if not healthy_after(tx.get_instance(target_id)):
                unhealthy.append(target_id)
    facts = TickFacts(
        now=now,
        rollout=rollout,
        wave=counts,
        total_failed=count(TargetStatus.FAILED, only_wave=False),
        total_started=count(TargetStatus.STARTED, only_wave=False),
        unhealthy_in_wave=tuple(unhealthy),
        paused_by_automation=False,
    )
    plan = plan_tick(facts)
    writes: list[tuple[str, dict[str, Any]]] = []
    starts: list[str] = []
    if plan.may_start > 0:
        settings = tx.get_document(SETTINGS_PATH) or {}
        default = (
            window_from_dict(settings["default_window"]) if settings.get("default_window") else None
        )
        freezes = [freeze_from_dict(f) for f in settings.get("freezes") or ()]
        pending = tx.query_documents(
            targets, [("wave", "==", wave), ("status", "==", TargetStatus.PENDING.value)], limit=500
        )
        for target_id, target in pending:
            if len(starts) >= plan.may_start:
                break
            instance = tx.get_instance(target_id)
            status, reason = _judge(rollout, instance, now, default, freezes)
            if status is TargetStatus.STARTED:
                starts.append(target_id)
                op_id = operation_id_for(SOURCE_MAINTENANCE, f"{rollout.id}/{target_id}")
                writes.append(
                    (
                        f"{targets}/{target_id}",
                        {
                            **target,
                            "status": status.value,
                            "operation": op_id,
                            "reason": None,
                            "started_at": now,
                            "updated_at": now,
                        },
                    )
                )
            elif status is TargetStatus.SKIPPED or target.get("reason") != reason:
                writes.append(
                    (
                        f"{targets}/{target_id}",
                        {**target, "status": status.value, "reason": reason, "updated_at": now},
                    )
                )
    updated = plan.rollout.evolve(updated_at=now)
    if starts:
        updated = updated.noted(
            now, ACTOR, "started", f"{len(starts)} target(s): {', '.join(starts[:10])}"
        )
    # Written on every tick: two ticks for one rollout conflict here and run one after the other.
    tx.put_document(f"rollouts/{rollout_id}", {**rollout_to_doc(updated), "tick_at": now})
    for path, target_doc in writes:
        tx.put_document(path, target_doc)
    return updated, starts


def _judge(
    rollout: Rollout,
    instance: Instance | None,
    now: datetime,
    default: Any,
    freezes: list[Any],
) -> tuple[TargetStatus, str | None]:
    if instance is None or not eligible(instance, rollout.action):
        state = instance.state.value if instance else "gone"
        return TargetStatus.SKIPPED, f"instance is {state}"
    if rollout.action is Action.UPGRADE and instance.version == rollout.target_version:
        return TargetStatus.SKIPPED, f"already runs {rollout.target_version}"
    if rollout.respect_windows:
        verdict = maintenance_allowed(
            instance.maintenance_window,
            freezes,
            now,
            rollout.cutoff,
            default,
            task=rollout.action.value,
        )
        if not verdict.allowed:
            return TargetStatus.PENDING, verdict.reason
    elif freezes:
        verdict = maintenance_allowed(
            None, freezes, now, rollout.cutoff, None, task=rollout.action.value
        )
        if not verdict.allowed:
            return TargetStatus.PENDING, verdict.reason
    return TargetStatus.STARTED, None


def set_status(rollout_id: str, status: RolloutStatus, who: str, deps: RolloutDeps) -> Rollout:
    now = deps.now()
    allowed = {
        RolloutStatus.PAUSED: (RolloutStatus.RUNNING,),
        RolloutStatus.RUNNING: (RolloutStatus.PAUSED,),
        RolloutStatus.ABORTED: (RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.PENDING),
    }[status]

    def change(tx: StateTransaction) -> Rollout:
        doc = tx.get_document(f"rollouts/{rollout_id}")
        if doc is None:
            raise DecisionError(f"rollout {rollout_id} does not exist")
        rollout = rollout_from_doc(rollout_id, doc)
        if rollout.status not in allowed:
            raise DecisionError(
                f"rollout {rollout_id} is {rollout.status.value}: cannot make it {status.value}"
            )
        changed = rollout.evolve(
            status=status, finished_at=now if status is RolloutStatus.ABORTED else None
        )
        changed = changed.noted(
            now, who, {"paused": "paused", "running": "resumed", "aborted": "aborted"}[status.value]
        )
        tx.put_document(
            f"rollouts/{rollout_id}", {**rollout_to_doc(changed), "tick_at": doc.get("tick_at")}
        )
        return changed

    return deps.store.transact(change)


@dataclass(frozen=True)
class WaveProgress:
    wave: Wave
    counts: dict[str, int]


def progress(rollout_id: str, store: StateStore) -> tuple[Rollout, list[WaveProgress]]:
    doc = store.get_document(f"rollouts/{rollout_id}")
    if doc is None:
        raise DecisionError(f"rollout {rollout_id} does not exist")
    rollout = rollout_from_doc(rollout_id, doc)
    waves = []
    for wave in rollout.waves:
        counts = {
            status.value: store.count_documents(
                _targets(rollout_id), [("wave", "==", wave.index), ("status", "==", status.value)]
            )
            for status in TargetStatus
        }
        waves.append(WaveProgress(wave, counts))
    return rollout, waves


def rollout_to_doc(r: Rollout) -> dict[str, Any]:
    return {
        "action": r.action.value,
        "status": r.status.value,
        "target_version": r.target_version,
        "size": r.size,
        "selector": dict(r.selector),
        "waves": [
            {"index": w.index, "name": w.name, "instances": list(w.instances)} for w in r.waves
        ],
        "max_concurrency": r.max_concurrency,
        "max_errors": r.max_errors,
        "max_concurrency_spec": r.max_concurrency_spec,
        "max_errors_spec": r.max_errors_spec,
        "respect_windows": r.respect_windows,
        "bake_seconds": r.bake.total_seconds(),
        "cutoff_seconds": r.cutoff.total_seconds(),
        "current_wave": r.current_wave,
        "wave_done_at": r.wave_done_at,
        "halted_reason": r.halted_reason,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "finished_at": r.finished_at,
        "created_by": r.created_by,
        "history": list(r.history),
        "total": r.total,
    }


def rollout_from_doc(rollout_id: str, doc: dict[str, Any]) -> Rollout:
    created = _time(doc.get("created_at"))
    assert created is not None
    return Rollout(
        id=rollout_id,
        action=Action(doc.get("action", "upgrade")),
        status=RolloutStatus(doc["status"]),
        waves=tuple(
            Wave(int(w["index"]), str(w["name"]), tuple(w.get("instances") or ()))
            for w in doc.get("waves") or ()
        ),
        max_concurrency=int(doc.get("max_concurrency") or 1),
        max_errors=int(doc.get("max_errors") or 0),
        respect_windows=bool(doc.get("respect_windows", True)),
        bake=timedelta(seconds=float(doc.get("bake_seconds") or 0)),
        cutoff=timedelta(seconds=float(doc.get("cutoff_seconds") or 0)),
        created_at=created,
        updated_at=_time(doc.get("updated_at")) or created,
        created_by=str(doc.get("created_by") or ""),
        target_version=doc.get("target_version"),
        size=doc.get("size"),
        selector=dict(doc.get("selector") or {}),
        max_concurrency_spec=str(doc.get("max_concurrency_spec") or ""),
        max_errors_spec=str(doc.get("max_errors_spec") or ""),
        current_wave=int(doc.get("current_wave") or 0),
        wave_done_at=_time(doc.get("wave_done_at")),
        halted_reason=doc.get("halted_reason"),
        finished_at=_time(doc.get("finished_at")),
        history=tuple({**h, "at": _time(h.get("at"))} for h in doc.get("history") or ()),
    )
