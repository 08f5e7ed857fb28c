"""The sweeper: on every maintenance tick, find operations nobody drives and act.

It re-dispatches a running operation whose step made no progress for a while
(a lost message), fails one past its deadline or whose lease expired (its
holder died) and hands the instance to the next queued operation, starts a
queued operation whose instance is free, and cancels approvals that timed out.
Each operation that needs a change is handled in its own transaction: no document
is hot, and an operation that needs none takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from fleetops.contract.names import COLLECTION_INSTANCES
from fleetops.contract.pubsub import PubsubMessage
from fleetops.contract.ticks import decode_tick
from fleetops.documents import instance_from_doc
from fleetops.domain.decisions import Decision, sweep
from fleetops.domain.model import Instance, Operation, OperationStatus
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
    instances = _instances_of(deps.store, candidates)
    actions: list[str] = []
    for candidate in candidates:
        if not _worth_a_transaction(candidate, instances.get(candidate.instance), now):
            continue
        decision = deps.store.transact(_sweep_one(candidate.id, now))
        if decision.operations or decision.effects:
            carry_out(decision.effects, deps.publisher, now, nonce=f"s{int(now.timestamp())}")
            changed = [o for o in decision.operations if o.history]
            for op in changed:
                last = op.history[-1]
                actions.append(f"{op.id} {last.event}")
    return SweepReport(len(candidates), len(actions), tuple(actions))


def _instances_of(store: StateStore, candidates: Sequence[Operation]) -> dict[str, Instance]:
    ids = sorted({c.instance for c in candidates})
    docs = store.get_documents([f"{COLLECTION_INSTANCES}/{i}" for i in ids]) if ids else []
    return {i: instance_from_doc(i, doc) for i, doc in zip(ids, docs, strict=True) if doc}


def _worth_a_transaction(op: Operation, instance: Instance | None, now: datetime) -> bool:
    """Would the sweep change anything, judged from documents read without locks?

    A transaction reads the instance and its queue with locks, so sweeping every live
    operation on every tick would make each tick contend with the requests and steps
    of every busy instance. The decision is pure, so it is tried first on the
    unlocked snapshot and taken again inside the transaction only when it acts. A
    queued operation counts as first in line here; the transaction checks the queue.
    A snapshot that changes meanwhile is seen again on the next tick.
    """
    queued = [op] if op.status is OperationStatus.QUEUED else []
    decision = sweep(op, instance, queued, now)
    return bool(decision.operations or decision.instances or decision.effects)


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
