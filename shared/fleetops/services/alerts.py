"""Health alerts to safe remediation.

Each alert is one transaction on its instance's own documents: it records the
incident, decides with every safety limit (`domain.remediation`), records the
decision and its reason and, when it acts, claims a slot of the fleet-wide
semaphore and records the remediation operation (keyed by the incident, as a
request is keyed by its event). The fleet-wide facts the limits need are read
just before the transaction, not in it (see `_Fleet`). After the commit, the
operation's first step and any escalation are published, and a recheck is
scheduled so an incident that outlives its remediation climbs the playbook's
ladder.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleetops import documents, log
from fleetops import remediation_documents as rdocs
from fleetops.contract.errors import InvalidRequest
from fleetops.contract.incidents import decode_incident
from fleetops.contract.names import (
    COLLECTION_INSTANCES,
    COLLECTION_OPERATIONS,
    COLLECTION_PROCESSED_EVENTS,
    EVENT_REMEDIATION_ESCALATED,
    EVENT_REMEDIATION_RECHECK,
    SOURCE_MONITORING,
    SOURCE_REMEDIATION,
    TOPIC_ALERTS,
    TOPIC_EVENTS,
)
from fleetops.contract.pubsub import (
    CloudEvent,
    PubsubMessage,
    decode_cloudevent,
    encode_binary,
    format_time,
    parse_time,
)
from fleetops.domain.decisions import Decision, Effect_, RecordRequest, decide_request
from fleetops.domain.model import (
    Action,
    Health,
    HistoryEntry,
    Instance,
    OperationParams,
    Origin,
    ProcessedEvent,
)
from fleetops.domain.policy import ApprovalPolicy
from fleetops.domain.remediation import (
    DEFAULT_PLAYBOOK,
    AlertDecision,
    AlertFacts,
    AutomationSettings,
    Circuit,
    Escalate,
    Incident,
    Playbook,
    RemediationState,
    StartRemediation,
    Verdict,
    decide_on_close,
    decide_on_open,
    incident_window_start,
    playbook_from_dict,
    reconsider,
)
from fleetops.ports import Publisher, StateStore, StateTransaction, TransactionContention
from fleetops.services.dispatch import carry_out, save
from fleetops.services.outcome import Outcome
from fleetops.services.requests import event_key, operation_id_for, resume_effects

ACTOR = "fleetops/remediation"
# Rechecks further away than this are left to the sweeper's tick.
MAX_RECHECK_DELAY = timedelta(seconds=60)
WAITING_RECHECK = timedelta(seconds=5)
# A slot naming an operation that does not exist stays taken this long (an earlier
# version reserved the slot first and recorded the operation in a second transaction).
SLOT_RESERVATION = timedelta(minutes=5)
MAX_IN_PLACE_WAIT = 2.0
# Fleet-wide facts read again, and the transaction run again, when what it claims
# (a slot, the circuit) changed after they were read.
MAX_FRESH_READS = 5
CONTENTION_JITTER_SECONDS = 1.0
_logger = log.get("alerts")
# The fleet-wide reads that do not depend on each other are sent at once (threads start
# on first use).
_READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fleet-facts")


@dataclass(frozen=True)
class AlertDeps:
    store: StateStore
    publisher: Publisher
    now: Callable[[], datetime]
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    sleep: Callable[[float], None] = time.sleep
    # Called with each escalation's JSON (a webhook for chat or paging), best effort.
    notify: Callable[[dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class _Result:
    instance: str
    incident: str
    decision: AlertDecision | None
    operation: str | None
    duplicate: bool = False
    recheck_at: datetime | None = None
    # The remediation operation's own effects (its first step, or "finished" for a dry run).
    effects: tuple[Effect_, ...] = ()


class _Stale:
    """What the transaction would claim changed since the fleet-wide facts were read."""


_STALE = _Stale()


@dataclass(frozen=True)
class _Slot:
    """A slot of the fleet-wide semaphore that looked free, and the operation it named."""

    number: int
    holder: str | None


@dataclass
class _Fleet:
    """The fleet-wide facts of one alert, read before its transaction, never in it.

    They are thresholds over many instances, not invariants of one instance: a
    count a moment old can only let the alerts already in flight past a limit
    that the next alert will see. Read inside the transaction, they would lock
    what every concurrent alert writes, and alerts would wait on each other.
    What must stay exact is claimed in the transaction itself: the slot a
    remediation takes and the circuit it opens are read again there, and a
    change since sends the alert back here (`_Stale`).
    """

    store: StateStore
    settings: AutomationSettings
    circuit: Circuit
    size: int
    recent: int
    slot: _Slot | None
    playbooks: dict[str, dict[str, Any] | None]

    def playbook(self, name: str) -> tuple[Playbook, str | None]:
        if name not in self.playbooks:
            # Playbooks are written by people; like the settings, read outside the transaction.
            self.playbooks[name] = self.store.get_document(rdocs.playbook_path(name))
        doc = self.playbooks[name]
        if name == DEFAULT_PLAYBOOK.name:
            return (playbook_from_dict(name, doc), None) if doc else (DEFAULT_PLAYBOOK, None)
        if doc is None:
            return DEFAULT_PLAYBOOK, f"playbook {name} does not exist: the default was used"
        try:
            return playbook_from_dict(name, doc), None
        except ValueError as exc:
            return DEFAULT_PLAYBOOK, f"{exc}: the default was used"

    def facts(
        self, instance: Instance, state: RemediationState, playbook: Playbook, now: datetime
    ) -> AlertFacts:
        return AlertFacts(
            now=now,
            instance=instance,
            state=state,
            settings=self.settings,
            circuit=self.circuit,
            fleet_size=self.size,
            instances_with_recent_incidents=self.recent,
            free_slot=self.slot.number if self.slot is not None else None,
            busy_with=instance.active_operation,
            playbook=playbook,
        )


def _read_fleet(store: StateStore, instance: str, now: datetime, playbook: str | None) -> _Fleet:
    name = playbook or DEFAULT_PLAYBOOK.name
    size_read = _READS.submit(store.count_live_instances)
    settings_doc, circuit_doc, playbook_doc = store.get_documents(
        [rdocs.SETTINGS_PATH, rdocs.CIRCUIT_PATH, rdocs.playbook_path(name)]
    )
    settings = rdocs.settings_from_doc(settings_doc)
    circuit = rdocs.circuit_from_doc(circuit_doc)
    since = incident_window_start(settings.limits, circuit, now)
    # One count aggregation over the instances' remediation states: its cost does not
    # grow with the incidents, and no document is written for the count's sake.
    recent_read = _READS.submit(
        store.count_documents_since, rdocs.STATES, rdocs.LAST_INCIDENT_AT, since
    )
    size = size_read.result()
    slot = _free_slot(store, settings.limits.concurrency(size), instance, now)
    recent = recent_read.result()
    return _Fleet(store, settings, circuit, size, recent, slot, {name: playbook_doc})


def _free_slot(store: StateStore, slots: int, instance: str, now: datetime) -> _Slot | None:
    """A slot of the fleet-wide remediation semaphore: free when empty or its operation ended.

    The search starts at a place derived from the instance, so concurrent alerts
    for different instances mostly claim different slot documents.
    """
    start = sum(instance.encode()) % slots
    for offset in range(slots):
        n = (start + offset) % slots
        doc = store.get_document(rdocs.slot_path(n))
        holder = str(doc["operation"]) if doc and doc.get("operation") else None
        if holder is None:
            return _Slot(n, None)
        operation = store.get_operation(holder)
        if operation is None:
            taken = doc.get("taken_at") if doc else None
            if isinstance(taken, datetime) and now - taken < SLOT_RESERVATION:
                continue
            return _Slot(n, holder)
        # A finished operation never runs again, so this slot stays free until claimed.
        if operation.finished:
            return _Slot(n, holder)
    return None


def _transact(
    deps: AlertDeps,
    instance: str,
    now: datetime,
    playbook: str | None,
    body: Callable[[StateTransaction, _Fleet], _Result | _Stale | None],
) -> _Result | None:
    for _ in range(MAX_FRESH_READS):
        fleet = _read_fleet(deps.store, instance, now, playbook)

        def attempt(tx: StateTransaction, fleet: _Fleet = fleet) -> _Result | _Stale | None:
            return body(tx, fleet)

        try:
            result = deps.store.transact(attempt)
        except TransactionContention:
            # Alerts racing for the last free slot (or to open the circuit) can keep
            # aborting each other in step. Each waits a random moment, so one claims
            # first, and the rest decide again with facts that show it.
            time.sleep(random.uniform(0.0, CONTENTION_JITTER_SECONDS))  # noqa: S311 (jitter, not a secret)
            continue
        if not isinstance(result, _Stale):
            return result
    # Raised, the message is delivered again later with the fleet's facts read anew.
    raise RuntimeError(
        f"the remediation slots or the circuit of {instance}'s alert changed "
        f"{MAX_FRESH_READS} times while it was decided"
    )


def handle_alert_message(message: PubsubMessage, deps: AlertDeps) -> Outcome:
    if message.attributes.get("ce-type") == EVENT_REMEDIATION_RECHECK:
        return handle_recheck(message, deps)
    incident = decode_incident(message)
    return handle_incident(incident, deps)


def handle_incident(incident: Incident, deps: AlertDeps) -> Outcome:
    now = deps.now()
    key = event_key(SOURCE_MONITORING, f"{incident.incident_id}/{incident.state}")
    result: _Result | _Stale | None
    if incident.state == "open":
        result = _transact(
            deps,
            incident.instance,
            now,
            incident.playbook,
            lambda tx, fleet: _record(tx, incident, key, now, fleet, deps.approvals),
        )
    else:
        # A closing incident decides on the instance's own state alone.
        result = deps.store.transact(
            lambda tx: _record(tx, incident, key, now, None, deps.approvals)
        )
    if not isinstance(result, _Result):
        raise AssertionError(f"incident {incident.incident_id}: no decision was recorded")
    if result.duplicate:
        result = _replay_effects(result, deps.store)
    _carry_out(result, deps, now)
    if result.decision is None:
        return Outcome.ack("duplicate incident: already handled", instance=incident.instance)
    verb = "duplicate: " if result.duplicate else ""
    return Outcome.ack(
        f"{verb}incident {incident.incident_id} {incident.state}: "
        f"{result.decision.verdict.value}: {result.decision.reason}",
        operation=result.operation,
        instance=incident.instance,
    )


def _record(
    tx: StateTransaction,
    incident: Incident,
    key: str,
    now: datetime,
    fleet: _Fleet | None,
    approvals: ApprovalPolicy,
) -> _Result | _Stale:
    incident_path = rdocs.incident_path(incident.instance, incident.incident_id)
    seen, found, state_doc, known = tx.get_documents(
        [
            f"{COLLECTION_PROCESSED_EVENTS}/{key}",
            f"{COLLECTION_INSTANCES}/{incident.instance}",
            rdocs.state_path(incident.instance),
            incident_path,
        ]
    )
    if seen is not None:
        return _replayed(incident, documents.processed_event_from_doc(key, seen))
    instance = documents.instance_from_doc(incident.instance, found) if found else None
    if instance is None or not instance.exists:
        raise InvalidRequest(
            "unknown-instance",
            f"the incident names instance {incident.instance}, which does not exist",
        )
    state = rdocs.state_from_doc(instance.id, state_doc)
    cooldown = timedelta(0)
    playbook_note: str | None = None
    if fleet is not None:
        playbook, playbook_note = fleet.playbook(incident.playbook or state.playbook)
        decision = decide_on_open(incident, fleet.facts(instance, state, playbook, now))
        cooldown = fleet.settings.limits.cooldown
    else:
        decision = decide_on_close(incident, state, now)
    health = Health.UNHEALTHY if incident.state == "open" else Health.HEALTHY
    changed = (
        instance if instance.health is health else instance.evolve(health=health, updated_at=now)
    )
    # This incident's own key, read above, is what makes its operation new.
    plan = _plan(tx, decision, fleet, changed, incident.incident_id, now, approvals, new=True)
    if plan is None:
        return _STALE
    _write(tx, instance.id, incident.incident_id, decision, plan, now, playbook_note)
    tx.put_document(incident_path, _incident_doc(incident, known or {}, now))
    if changed is not instance:
        tx.put_instance(changed)
        tx.add_instance_history(
            instance.id,
            HistoryEntry(
                now,
                ACTOR,
                f"health {instance.health.value} -> {health.value}",
                f"incident {incident.incident_id} {incident.state}: {incident.summary}".strip(),
            ),
        )
    if plan.recorded is not None:
        # After the health change: the last write of the instance (its lease) carries both.
        save(tx, plan.recorded)
    tx.put_processed_event(
        ProcessedEvent(
            key=key,
            source=SOURCE_MONITORING,
            event_id=f"{incident.incident_id}/{incident.state}",
            event_type=f"monitoring.incident.{incident.state}",
            operation=plan.operation,
            created_at=now,
            detail=json.dumps(_summary(decision)),
        )
    )
    return _Result(
        instance.id,
        incident.incident_id,
        decision,
        plan.operation,
        recheck_at=_recheck_at(decision, now, cooldown),
        effects=plan.effects,
    )


@dataclass(frozen=True)
class _Plan:
    """What a decision writes besides the remediation state: its operation, if any."""

    operation: str | None = None
    # The operation's decision (recorded, started, awaiting approval); None when it
    # exists already.
    recorded: Decision | None = None
    effects: tuple[Effect_, ...] = ()


def _plan(
    tx: StateTransaction,
    decision: AlertDecision,
    fleet: _Fleet | None,
    instance: Instance,
    incident_id: str,
    now: datetime,
    approvals: ApprovalPolicy,
    *,
    new: bool,
) -> _Plan | None:
    """Read, in one more round trip, what the decision claims; None when it changed.

    Only a remediation that acts reads a slot, only an alert that opens the circuit
    reads the circuit, so alerts for different instances share no document unless
    both claim the same slot or both open the circuit.
    """
    start = decision.start
    operation = _operation_id(decision)
    slot = start.slot if start is not None and not start.dry_run else None
    paths: list[str] = []
    if decision.circuit is not None:
        paths.append(rdocs.CIRCUIT_PATH)
    if slot is not None:
        paths.append(rdocs.slot_path(slot))
    if operation is not None and not new:
        paths.append(f"{COLLECTION_OPERATIONS}/{operation}")
    docs = dict(zip(paths, tx.get_documents(paths), strict=True))
    if decision.circuit is not None and (
        fleet is None or rdocs.circuit_from_doc(docs[rdocs.CIRCUIT_PATH]) != fleet.circuit
    ):
        return None
    if slot is not None:
        holder = (docs[rdocs.slot_path(slot)] or {}).get("operation") or None
        if fleet is None or fleet.slot != _Slot(slot, holder):
            return None
    if start is None or operation is None:
        return _Plan()
    existing = docs.get(f"{COLLECTION_OPERATIONS}/{operation}")
    if existing is not None:
        found = documents.operation_from_doc(operation, existing)
        return _Plan(operation, None, resume_effects(found))
    command = RecordRequest(
        operation_id=operation,
        request_id=incident_id,
        instance=instance.id,
        action=Action(start.action),
        origin=Origin.REMEDIATION,
        params=OperationParams(),
        requested_by=ACTOR,
        reason=f"incident {incident_id}: {decision.reason}",
        dry_run=start.dry_run,
        actor=ACTOR,
    )
    recorded = decide_request(command, instance, now, approvals)
    return _Plan(operation, recorded, recorded.effects)


def _recheck_at(decision: AlertDecision, now: datetime, cooldown: timedelta) -> datetime | None:
    """When to look again at an incident that is still open; None: leave it to the sweeper."""
    match decision.verdict:
        case Verdict.ACTED:
            at = now + max(cooldown, timedelta(seconds=2))
        case Verdict.COOLDOWN:
            last = decision.state.last_remediation_at or now
            at = max(last + cooldown, now + timedelta(seconds=1))
        case Verdict.WAITING:
            at = now + WAITING_RECHECK
        case _:
            return None
    return at if at - now <= MAX_RECHECK_DELAY else None


def handle_recheck(message: PubsubMessage, deps: AlertDeps) -> Outcome:
    event = decode_cloudevent(message)
    data = event.data if isinstance(event.data, dict) else {}
    instance_id, incident_id = data.get("instance"), data.get("incident")
    if not isinstance(instance_id, str) or not isinstance(incident_id, str):
        raise InvalidRequest("invalid-recheck", "fields 'instance' and 'incident' are required")
    not_before = parse_time(str(data.get("not_before") or "")) or deps.now()
    early = (not_before - deps.now()).total_seconds()
    if early > 0:
        deps.sleep(min(early, MAX_IN_PLACE_WAIT))
        if not_before > deps.now():
            _publish_recheck(deps, instance_id, incident_id, not_before, deps.now())
            return Outcome.ack("recheck not due yet", instance=instance_id)
    return recheck(instance_id, incident_id, deps)


def recheck(instance_id: str, incident_id: str | None, deps: AlertDeps) -> Outcome:
    """Look again at an instance's open incident: climb the ladder, or keep waiting."""
    now = deps.now()

    def change(tx: StateTransaction, fleet: _Fleet) -> _Result | _Stale | None:
        found, state_doc = tx.get_documents(
            [f"{COLLECTION_INSTANCES}/{instance_id}", rdocs.state_path(instance_id)]
        )
        instance = documents.instance_from_doc(instance_id, found) if found else None
        if instance is None or not instance.exists:
            return None
        state = rdocs.state_from_doc(instance_id, state_doc)
        if state.open_incident is None or (incident_id and state.open_incident != incident_id):
            return None
        playbook, note = fleet.playbook(state.playbook)
        decision = reconsider(fleet.facts(instance, state, playbook, now))
        if decision is None:
            return None
        # No key of its own: a recheck delivered twice finds the operation it recorded.
        plan = _plan(
            tx, decision, fleet, instance, state.open_incident, now, deps.approvals, new=False
        )
        if plan is None:
            return _STALE
        _write(tx, instance_id, state.open_incident, decision, plan, now, note)
        if plan.recorded is not None:
            save(tx, plan.recorded)
        recheck_at = _recheck_at(decision, now, fleet.settings.limits.cooldown)
        return _Result(
            instance_id,
            state.open_incident,
            decision,
            plan.operation,
            recheck_at=recheck_at,
            effects=plan.effects,
        )

    result = _transact(deps, instance_id, now, None, change)
    if result is None or result.decision is None:
        return Outcome.ack("nothing to recheck: the incident is over", instance=instance_id)
    _carry_out(result, deps, now)
    return Outcome.ack(
        f"recheck of {result.incident}: {result.decision.verdict.value}: {result.decision.reason}",
        operation=result.operation,
        instance=instance_id,
    )


def recheck_open_incidents(deps: AlertDeps, limit: int = 1000) -> int:
    """The sweeper's safety net: every instance with an open incident is looked at again."""
    count = 0
    for instance_id, doc in deps.store.list_documents(rdocs.STATES, limit=limit):
        if doc.get("open_incident") and not doc.get("escalated_at"):
            recheck(instance_id, str(doc["open_incident"]), deps)
            count += 1
    return count


def _carry_out(result: _Result, deps: AlertDeps, now: datetime) -> None:
    decision = result.decision
    if decision is None:
        return
    if result.effects and decision.start is not None:
        # The same nonce as a request keyed by the remediation, so a step message
        # published again after a crash has the same id.
        nonce = event_key(SOURCE_REMEDIATION, decision.start.operation_key)[:12]
        carry_out(result.effects, deps.publisher, now, nonce=nonce)
    if decision.escalate is not None:
        _escalate(result, decision, deps, now)
    if result.recheck_at is not None:
        _publish_recheck(deps, result.instance, result.incident, result.recheck_at, now)


def _replay_effects(result: _Result, store: StateStore) -> _Result:
    """A duplicate delivery publishes its operation's first step again if it never ran."""
    if result.operation is None:
        return result
    found = store.get_operation(result.operation)
    if found is None:
        return result
    return _Result(
        result.instance,
        result.incident,
        result.decision,
        result.operation,
        duplicate=True,
        effects=resume_effects(found),
    )


def _publish_recheck(
    deps: AlertDeps, instance: str, incident: str, not_before: datetime, now: datetime
) -> None:
    event = CloudEvent(
        id=f"{instance}/{incident}/{format_time(not_before)}",
        source=SOURCE_REMEDIATION,
        type=EVENT_REMEDIATION_RECHECK,
        data={"instance": instance, "incident": incident, "not_before": format_time(not_before)},
        time=now,
        subject=instance,
    )
    data, attributes = encode_binary(event)
    deps.publisher.publish(TOPIC_ALERTS, data, attributes)


def escalation_payload(
    result_instance: str, incident: str, reason: str, fleet_wide: bool
) -> dict[str, Any]:
    return {
        "instance": None if fleet_wide else result_instance,
        "incident": incident,
        "reason": reason,
        "fleet_wide": fleet_wide,
        "next_step": (
            "fleetops automation resume"
            if fleet_wide
            else f"fleetops remediation reset {result_instance}"
        ),
    }


def _escalate(result: _Result, decision: AlertDecision, deps: AlertDeps, now: datetime) -> None:
    assert decision.escalate is not None
    fleet_wide = decision.escalate.fleet_wide
    payload = escalation_payload(
        result.instance, result.incident, decision.escalate.reason, fleet_wide
    )
    event = CloudEvent(
        # One escalation per incident (or per circuit opening): duplicates share the id.
        id=f"circuit/{result.incident}"
        if fleet_wide
        else f"{result.instance}/{result.incident}/escalated",
        source=SOURCE_REMEDIATION,
        type=EVENT_REMEDIATION_ESCALATED,
        data=payload,
        time=now,
        subject=None if fleet_wide else result.instance,
    )
    data, attributes = encode_binary(event)
    deps.publisher.publish(TOPIC_EVENTS, data, attributes)
    _logger.warning(
        "escalated: %s",
        decision.escalate.reason,
        extra={"instance": result.instance, "code": "escalated"},
    )
    if deps.notify is not None:
        try:
            deps.notify(payload)
        except Exception as exc:
            _logger.error("escalation webhook failed: %s", exc, extra={"instance": result.instance})


def _operation_id(decision: AlertDecision) -> str | None:
    if decision.start is None:
        return None
    return operation_id_for(SOURCE_REMEDIATION, decision.start.operation_key)


def _write(
    tx: StateTransaction,
    instance: str,
    incident_id: str,
    decision: AlertDecision,
    plan: _Plan,
    now: datetime,
    note: str | None,
) -> None:
    state = decision.state
    operation = plan.operation
    if operation is not None and decision.start is not None and not decision.start.dry_run:
        state = state.evolve(last_operation=operation)
        tx.put_document(
            rdocs.slot_path(_claimed(decision.start)),
            {"operation": operation, "instance": instance, "taken_at": now},
        )
    repeated = decision.verdict.value == state.last_verdict and decision.verdict in (
        Verdict.WAITING,
        Verdict.COOLDOWN,
    )
    tx.put_document(
        rdocs.state_path(instance),
        rdocs.state_to_doc(state.evolve(last_verdict=decision.verdict.value)),
    )
    if decision.circuit is not None:
        tx.put_document(rdocs.CIRCUIT_PATH, rdocs.circuit_to_doc(decision.circuit))
    if not repeated:
        reason = decision.reason + (f" ({note})" if note else "")
        tx.add_document(
            f"instances/{instance}/decisions",
            {
                "at": now,
                "incident": incident_id,
                "verdict": decision.verdict.value,
                "reason": reason,
                "operation": operation,
                "action": decision.start.action if decision.start else None,
                "dry_run": bool(decision.start and decision.start.dry_run),
            },
        )


def _claimed(start: StartRemediation) -> int:
    if start.slot is None:
        raise ValueError(f"remediation {start.operation_key} acts without a slot")
    return start.slot


def _incident_doc(incident: Incident, known: dict[str, Any], now: datetime) -> dict[str, Any]:
    doc = dict(known)
    doc.update(
        {
            "instance": incident.instance,
            "incident_id": incident.incident_id,
            "state": incident.state,
            "summary": incident.summary or doc.get("summary", ""),
            "policy": incident.policy or doc.get("policy", ""),
            "updated_at": now,
        }
    )
    if incident.state == "open":
        doc.setdefault("opened_at", incident.started_at or now)
    else:
        doc["closed_at"] = incident.ended_at or now
        doc.setdefault("opened_at", incident.started_at or now)
    return doc


def _summary(decision: AlertDecision) -> dict[str, Any]:
    start = decision.start
    return {
        "verdict": decision.verdict.value,
        "reason": decision.reason,
        "action": start.action if start else None,
        "key": start.operation_key if start else None,
        "dry_run": bool(start and start.dry_run),
        "escalate": decision.escalate.reason if decision.escalate else None,
        "fleet_wide": bool(decision.escalate and decision.escalate.fleet_wide),
    }


def _replayed(incident: Incident, seen: ProcessedEvent) -> _Result:
    """A duplicate delivery: the decision stands; its effects are carried out again
    (each is idempotent), in case the first delivery died before finishing them."""
    summary = json.loads(seen.detail or "{}")
    start = None
    if summary.get("action") and summary.get("key"):
        start = StartRemediation(
            summary["key"], summary["action"], None, bool(summary.get("dry_run"))
        )
    escalate = (
        Escalate(summary["escalate"], bool(summary.get("fleet_wide")))
        if summary.get("escalate")
        else None
    )
    decision = AlertDecision(
        Verdict(summary.get("verdict", Verdict.RECORDED.value)),
        str(summary.get("reason", "")),
        RemediationState(incident.instance),
        start=start,
        escalate=escalate,
    )
    return _Result(
        incident.instance, incident.incident_id, decision, seen.operation, duplicate=True
    )
