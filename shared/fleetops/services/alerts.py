"""Health alerts to safe remediation.

One transaction per alert records the incident on the instance, decides with
every safety limit (`domain.remediation`), records the decision and its
reason, and reserves a fleet-wide remediation slot when it acts. After the
commit, the remediation operation is submitted through the operations engine
(idempotently, keyed by the incident), escalations are published, and a
recheck is scheduled so an incident that outlives its remediation climbs the
playbook's ladder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleetops import log
from fleetops import remediation_documents as rdocs
from fleetops.contract.errors import InvalidRequest
from fleetops.contract.incidents import decode_incident
from fleetops.contract.names import (
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
from fleetops.domain.decisions import RecordRequest
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
    Escalate,
    Incident,
    Playbook,
    RemediationState,
    StartRemediation,
    Verdict,
    decide_on_close,
    decide_on_open,
    playbook_from_dict,
    reconsider,
)
from fleetops.ports import Publisher, StateStore, StateTransaction
from fleetops.services.outcome import Outcome
from fleetops.services.requests import (
    RequestDeps,
    event_key,
    operation_id_for,
    submit_operation,
)

ACTOR = "fleetops/remediation"
# Rechecks further away than this are left to the sweeper's tick.
MAX_RECHECK_DELAY = timedelta(seconds=60)
WAITING_RECHECK = timedelta(seconds=5)
# A slot reserved for an operation that does not exist yet stays taken this long.
SLOT_RESERVATION = timedelta(minutes=5)
MAX_IN_PLACE_WAIT = 2.0
_logger = log.get("alerts")


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


def handle_alert_message(message: PubsubMessage, deps: AlertDeps) -> Outcome:
    if message.attributes.get("ce-type") == EVENT_REMEDIATION_RECHECK:
        return handle_recheck(message, deps)
    incident = decode_incident(message)
    return handle_incident(incident, deps)


def handle_incident(incident: Incident, deps: AlertDeps) -> Outcome:
    now = deps.now()
    key = event_key(SOURCE_MONITORING, f"{incident.incident_id}/{incident.state}")
    result = deps.store.transact(lambda tx: _record(tx, incident, key, now))
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


def _record(tx: StateTransaction, incident: Incident, key: str, now: datetime) -> _Result:
    seen = tx.get_processed_event(key)
    if seen is not None:
        return _replayed(incident, seen)
    instance = tx.get_instance(incident.instance)
    if instance is None or not instance.exists:
        raise InvalidRequest(
            "unknown-instance",
            f"the incident names instance {incident.instance}, which does not exist",
        )
    state = rdocs.state_from_doc(instance.id, tx.get_document(rdocs.state_path(instance.id)))
    incident_path = f"instances/{instance.id}/incidents/{incident.incident_id}"
    known = tx.get_document(incident_path) or {}
    cooldown = timedelta(0)
    if incident.state == "open":
        facts, playbook_note = _facts(tx, instance, state, now, incident.playbook)
        decision = decide_on_open(incident, facts)
        cooldown = facts.settings.limits.cooldown
    else:
        decision, playbook_note = decide_on_close(incident, state, now), None
    operation = _operation_id(decision)
    _write(tx, instance, incident.incident_id, decision, operation, now, playbook_note)
    tx.put_document(incident_path, _incident_doc(incident, known, now))
    health = Health.UNHEALTHY if incident.state == "open" else Health.HEALTHY
    if instance.health is not health:
        tx.put_instance(instance.evolve(health=health, updated_at=now))
        tx.add_instance_history(
            instance.id,
            HistoryEntry(
                now,
                ACTOR,
                f"health {instance.health.value} -> {health.value}",
                f"incident {incident.incident_id} {incident.state}: {incident.summary}".strip(),
            ),
        )
    tx.put_processed_event(
        ProcessedEvent(
            key=key,
            source=SOURCE_MONITORING,
            event_id=f"{incident.incident_id}/{incident.state}",
            event_type=f"monitoring.incident.{incident.state}",
            operation=operation,
            created_at=now,
            detail=json.dumps(_summary(decision)),
        )
    )
    return _Result(
        instance.id,
        incident.incident_id,
        decision,
        operation,
        recheck_at=_recheck_at(decision, now, cooldown),
    )


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

    def change(tx: StateTransaction) -> _Result | None:
        instance = tx.get_instance(instance_id)
        if instance is None or not instance.exists:
            return None
        state = rdocs.state_from_doc(instance_id, tx.get_document(rdocs.state_path(instance_id)))
        if state.open_incident is None or (incident_id and state.open_incident != incident_id):
            return None
        facts, note = _facts(tx, instance, state, now, None)
        decision = reconsider(facts)
        if decision is None:
            return None
        operation = _operation_id(decision)
        _write(tx, instance, state.open_incident, decision, operation, now, note)
        recheck_at = _recheck_at(decision, now, facts.settings.limits.cooldown)
        return _Result(instance_id, state.open_incident, decision, operation, recheck_at=recheck_at)

    result = deps.store.transact(change)
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
    for instance_id, doc in deps.store.list_documents("remediation", limit=limit):
        if doc.get("open_incident") and not doc.get("escalated_at"):
            recheck(instance_id, str(doc["open_incident"]), deps)
            count += 1
    return count


def _carry_out(result: _Result, deps: AlertDeps, now: datetime) -> None:
    decision = result.decision
    if decision is None:
        return
    start = decision.start
    if start is not None:
        command = RecordRequest(
            operation_id=operation_id_for(SOURCE_REMEDIATION, start.operation_key),
            request_id=result.incident,
            instance=result.instance,
            action=Action(start.action),
            origin=Origin.REMEDIATION,
            params=OperationParams(),
            requested_by=ACTOR,
            reason=f"incident {result.incident}: {decision.reason}",
            dry_run=start.dry_run,
            actor=ACTOR,
        )
        request_deps = RequestDeps(deps.store, deps.publisher, deps.now, deps.approvals)
        submit_operation(
            command,
            SOURCE_REMEDIATION,
            start.operation_key,
            "fleetops.remediation.started",
            request_deps,
        )
    if decision.escalate is not None:
        _escalate(result, decision, deps, now)
    if result.recheck_at is not None:
        _publish_recheck(deps, result.instance, result.incident, result.recheck_at, now)


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


def _facts(
    tx: StateTransaction,
    instance: Instance,
    state: RemediationState,
    now: datetime,
    playbook_name: str | None,
) -> tuple[AlertFacts, str | None]:
    settings = rdocs.settings_from_doc(tx.get_document(rdocs.SETTINGS_PATH))
    circuit = rdocs.circuit_from_doc(tx.get_document(rdocs.CIRCUIT_PATH))
    playbook, note = _playbook(tx, playbook_name or state.playbook)
    limits = settings.limits
    since = now - limits.circuit_window
    if circuit.closed_at is not None and circuit.closed_at > since:
        since = circuit.closed_at
    recent = {
        str(doc.get("instance")) for doc in tx.incidents_opened_since(since) if doc.get("instance")
    }
    fleet = tx.count_live_instances()
    slot = _free_slot(tx, limits.concurrency(fleet), instance.id, now)
    return (
        AlertFacts(
            now=now,
            instance=instance,
            state=state,
            settings=settings,
            circuit=circuit,
            fleet_size=fleet,
            instances_with_recent_incidents=frozenset(recent - {instance.id}),
            free_slot=slot,
            busy_with=instance.active_operation,
            playbook=playbook,
        ),
        note,
    )


def _playbook(tx: StateTransaction, name: str) -> tuple[Playbook, str | None]:
    if name == DEFAULT_PLAYBOOK.name:
        doc = tx.get_document(f"playbooks/{name}")
        return (playbook_from_dict(name, doc), None) if doc else (DEFAULT_PLAYBOOK, None)
    doc = tx.get_document(f"playbooks/{name}")
    if doc is None:
        return DEFAULT_PLAYBOOK, f"playbook {name} does not exist: the default was used"
    try:
        return playbook_from_dict(name, doc), None
    except ValueError as exc:
        return DEFAULT_PLAYBOOK, f"{exc}: the default was used"


def _free_slot(tx: StateTransaction, slots: int, instance: str, now: datetime) -> int | None:
    """A slot of the fleet-wide remediation semaphore: free when empty or its operation ended.

    The search starts at a place derived from the instance, so concurrent alerts
    for different instances mostly touch different slot documents.
    """
    start = sum(instance.encode()) % slots
    for offset in range(slots):
        n = (start + offset) % slots
        doc = tx.get_document(f"remediation_slots/{n}")
        if not doc or not doc.get("operation"):
            return n
        holder = tx.get_operation(str(doc["operation"]))
        if holder is None:
            # Reserved moments ago and not submitted yet, or its submission was lost.
            taken = doc.get("taken_at")
            if isinstance(taken, datetime) and now - taken < SLOT_RESERVATION:
                continue
            return n
        if holder.finished:
            return n
    return None


def _operation_id(decision: AlertDecision) -> str | None:
    if decision.start is None:
        return None
    return operation_id_for(SOURCE_REMEDIATION, decision.start.operation_key)


def _write(
    tx: StateTransaction,
    instance: Instance,
    incident_id: str,
    decision: AlertDecision,
    operation: str | None,
    now: datetime,
    note: str | None,
) -> None:
    state = decision.state
    if operation is not None and decision.start is not None and not decision.start.dry_run:
        state = state.evolve(last_operation=operation)
        tx.put_document(
            f"remediation_slots/{decision.start.slot}",
            {"operation": operation, "instance": instance.id, "taken_at": now},
        )
    repeated = decision.verdict.value == state.last_verdict and decision.verdict in (
        Verdict.WAITING,
        Verdict.COOLDOWN,
    )
    tx.put_document(
        rdocs.state_path(instance.id),
        rdocs.state_to_doc(state.evolve(last_verdict=decision.verdict.value)),
    )
    if decision.circuit is not None:
        tx.put_document(rdocs.CIRCUIT_PATH, rdocs.circuit_to_doc(decision.circuit))
    if not repeated:
        reason = decision.reason + (f" ({note})" if note else "")
        tx.add_document(
            f"instances/{instance.id}/decisions",
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
