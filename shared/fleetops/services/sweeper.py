"""The sweeper: on every maintenance tick, find operations nobody drives and act.

It re-dispatches a running operation whose step made no progress for a while
(a lost message), fails one past its deadline or whose lease expired (its
holder died) and hands the instance to the next queued operation, starts a
queued operation whose instance is free, and cancels approvals that timed out.
Each operation is handled in its own transaction: no document is hot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fleetops.contract.pubsub import PubsubMessage
from fleetops.contract.ticks import decode_tick
from fleetops.domain.decisions import Decision, sweep
from fleetops.domain.model import OperationStatus
from fleetops.ports import Publisher, StateStore, StateTransaction
from fleetops.services.alerts import AlertDeps, recheck_open_incidents
from fleetops.services.dispatch import carry_out, save
from fleetops.services.outcome import Outcome


@dataclass(frozen=True)
class SweepDeps:
    store: StateStore
    publisher: Publisher
    # The handler's clock bounds a tick's time: a replayed tick from the future must
    # not expire leases or deadlines early.
    now: Callable[[], datetime] | None = None
    # When set, every instance with an open incident is looked at again too.
    alerts: AlertDeps | None = None


@dataclass(frozen=True)
class SweepReport:
    looked_at: int
    changed: int
    actions: tuple[str, ...]


def handle_tick_message(message: PubsubMessage, deps: SweepDeps) -> Outcome:
    tick = decode_tick(message)
    at = min(tick.at, deps.now()) if deps.now is not None else tick.at
    report = sweep_all(at, deps)
    detail = f"swept at {tick.at.isoformat()}: {report.changed} of {report.looked_at} changed"
    if deps.alerts is not None:
        detail += f"; {recheck_open_incidents(deps.alerts)} open incident(s) looked at again"
    if report.actions:
        detail += " (" + "; ".join(report.actions[:20]) + ")"
    return Outcome.ack(detail)


def sweep_all(now: datetime, deps: SweepDeps) -> SweepReport:
    candidates = deps.store.operations_to_sweep(now)
    actions: list[str] = []
    for candidate in candidates:
        decision = deps.store.transact(_sweep_one(candidate.id, now))
        if decision.operations or decision.effects:
            carry_out(decision.effects, deps.publisher, now, nonce=f"s{int(now.timestamp())}")
            changed = [o for o in decision.operations if o.history]
            for op in changed:
                last = op.history[-1]
                actions.append(f"{op.id} {last.event}")
    return SweepReport(len(candidates), len(actions), tuple(actions))


def _sweep_one(operation_id: str, now: datetime) -> Callable[[StateTransaction], Decision]:
    def change(tx: StateTransaction) -> Decision:
        op = tx.get_operation(operation_id)
        if op is None or op.finished:
            return Decision()
        instance = tx.get_instance(op.instance)
        needs_queue = op.status in (OperationStatus.RUNNING, OperationStatus.QUEUED)
        queued = tx.queued_operations(op.instance, limit=10) if needs_queue else []
        decision = sweep(op, instance, queued, now)
        save(tx, decision)
        return decision

    return change
