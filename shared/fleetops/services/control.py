"""What people do to operations: approve and cancel. Every change names who made it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fleetops.domain.decisions import Decision, DecisionError, approve, request_cancel
from fleetops.domain.model import Operation
from fleetops.ports import Publisher, StateStore, StateTransaction
from fleetops.services.dispatch import carry_out, save


@dataclass(frozen=True)
class ControlDeps:
    store: StateStore
    publisher: Publisher
    now: Callable[[], datetime]


def approve_operation(operation_id: str, approver: str, deps: ControlDeps) -> Operation:
    now = deps.now()

    def change(tx: StateTransaction) -> Decision:
        op = _load(tx, operation_id)
        return _saved(tx, approve(op, tx.get_instance(op.instance), approver, now))

    return _finish(deps.store.transact(change), operation_id, deps, now)


def cancel_operation(operation_id: str, who: str, deps: ControlDeps) -> Operation:
    now = deps.now()

    def change(tx: StateTransaction) -> Decision:
        # A step recording at the same time reads and writes the same operation
        # document, so Firestore orders the two: the cancel lands at a boundary.
        return _saved(tx, request_cancel(_load(tx, operation_id), who, now))

    return _finish(deps.store.transact(change), operation_id, deps, now)


def _load(tx: StateTransaction, operation_id: str) -> Operation:
    op = tx.get_operation(operation_id)
    if op is None:
        raise DecisionError(f"operation {operation_id} does not exist")
    return op


def _saved(tx: StateTransaction, decision: Decision) -> Decision:
    save(tx, decision)
    return decision


def _finish(decision: Decision, operation_id: str, deps: ControlDeps, now: datetime) -> Operation:
    carry_out(decision.effects, deps.publisher, now, nonce=f"c{int(now.timestamp())}")
    return next(o for o in decision.operations if o.id == operation_id)
