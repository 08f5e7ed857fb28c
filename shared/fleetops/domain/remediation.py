"""Health alerts to remediation: the pure decision and every safety limit.

An `open` incident may start a remediation operation, subject to, in order:
the kill switch, the circuit breaker, an escalated instance, flapping, the
per-instance cap, the cooldown, the instance being busy, and the fleet-wide
concurrency limit. Every decision is recorded with its verdict and reason, so
"why did or didn't it heal?" has an answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from fleetops.domain.model import Action, Instance


class Verdict(StrEnum):
    ACTED = "acted"
    WAITING = "waiting"
    COOLDOWN = "suppressed_by_cooldown"
    FLAPPING = "flapping"
    CAP_REACHED = "cap_reached"
    CIRCUIT_OPEN = "circuit_open"
    PAUSED = "paused"
    DRY_RUN = "dry_run"
    ESCALATED = "escalated"
    RECORDED = "recorded"
    HEALED = "healed"


@dataclass(frozen=True)
class Rung:
    """One rung of a playbook's ladder: an action, tried up to `attempts` times."""

    action: str
    attempts: int = 1


@dataclass(frozen=True)
class Playbook:
    name: str
    ladder: tuple[Rung, ...]

    def action_for(self, attempt: int) -> str | None:
        """The action of remediation number `attempt` (0-based), or None: escalate."""
        seen = 0
        for rung in self.ladder:
            if attempt < seen + rung.attempts:
                return None if rung.action == "escalate" else rung.action
            seen += rung.attempts
        return None


DEFAULT_PLAYBOOK = Playbook("default", (Rung("restart", 2), Rung("replace", 1), Rung("escalate")))
REMEDIATION_ACTIONS = frozenset({"restart", "replace", "resume", "resize", "snapshot"})


def playbook_from_dict(name: str, doc: Mapping[str, Any]) -> Playbook:
    """`{"ladder": [{"action": "restart", "attempts": 2}, {"action": "escalate"}]}`."""
    raw = doc.get("ladder")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"playbook {name}: 'ladder' must be a non-empty list")
    rungs = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ValueError(f"playbook {name}: ladder[{index}] must be an object")
        action = str(item.get("action", ""))
        if action != "escalate" and action not in REMEDIATION_ACTIONS:
            known = ", ".join(sorted(REMEDIATION_ACTIONS | {"escalate"}))
            raise ValueError(
                f"playbook {name}: ladder[{index}].action {action!r} is not one of {known}"
            )
        attempts = item.get("attempts", 1)
        if not isinstance(attempts, int) or attempts < 1:
            raise ValueError(
                f"playbook {name}: ladder[{index}].attempts must be a positive integer"
            )
        rungs.append(Rung(action, attempts))
    return Playbook(name, tuple(rungs))


@dataclass(frozen=True)
class Limits:
    """Every safety limit, with its default."""

    max_remediations: int = 3
    cap_window: timedelta = timedelta(minutes=60)
    cooldown: timedelta = timedelta(minutes=5)
    flap_cycles: int = 4
    flap_window: timedelta = timedelta(minutes=30)
    concurrency_percent: float = 10.0
    circuit_percent: float = 20.0
    circuit_minimum: int = 2
    circuit_window: timedelta = timedelta(minutes=10)

    def concurrency(self, fleet_size: int) -> int:
        return max(1, math.floor(fleet_size * self.concurrency_percent / 100))

    def circuit_threshold(self, fleet_size: int) -> int:
        """The circuit opens when MORE than this many instances had incidents recently."""
        return max(self.circuit_minimum, math.floor(fleet_size * self.circuit_percent / 100))


@dataclass(frozen=True)
class AutomationSettings:
    paused: bool = False
    dry_run: bool = False
    paused_by: str | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Circuit:
    open: bool = False
    opened_at: datetime | None = None
    reason: str | None = None
    # Incidents before a person closed the circuit do not count towards opening it again.
    closed_at: datetime | None = None


@dataclass(frozen=True)
class IncidentCycle:
    incident_id: str
    opened_at: datetime
    closed_at: datetime | None = None


@dataclass(frozen=True)
class RemediationState:
    """Per instance: what automation did lately, and whether a person must step in."""

    instance: str
    remediations: tuple[datetime, ...] = ()
    attempt: int = 0  # remediations in the current episode: the rung of the ladder
    last_remediation_at: datetime | None = None
    last_operation: str | None = None
    escalated_at: datetime | None = None
    escalation_reason: str | None = None
    open_incident: str | None = None
    cycles: tuple[IncidentCycle, ...] = ()
    playbook: str = DEFAULT_PLAYBOOK.name
    # The last verdict recorded, so a repeated "waiting" is recorded once.
    last_verdict: str | None = None
    # When its latest incident opened: the circuit breaker counts instances by this field.
    last_incident_at: datetime | None = None

    def evolve(self, **changes: Any) -> RemediationState:
        return replace(self, **changes)


@dataclass(frozen=True)
class Incident:
    incident_id: str
    instance: str
    state: str  # "open" or "closed"
    started_at: datetime | None
    ended_at: datetime | None
    summary: str
    policy: str
    playbook: str | None


@dataclass(frozen=True)
class AlertFacts:
    """What the alert handler loaded before deciding.

    The fleet-wide facts (settings, circuit, fleet size, the count of instances with
    recent incidents, a free slot) may be a moment older than the instance's own state.
    """

    now: datetime
    instance: Instance
    state: RemediationState
    settings: AutomationSettings
    circuit: Circuit
    fleet_size: int
    # Instances whose latest incident opened at or after `incident_window_start`; this
    # instance among them if its own state says so.
    instances_with_recent_incidents: int
    free_slot: int | None
    busy_with: str | None
    playbook: Playbook


@dataclass(frozen=True)
class StartRemediation:
    operation_key: str
    action: str
    slot: int | None
    dry_run: bool


@dataclass(frozen=True)
class Escalate:
    reason: str
    fleet_wide: bool = False


@dataclass(frozen=True)
class AlertDecision:
    verdict: Verdict
    reason: str
    state: RemediationState
    circuit: Circuit | None = None
    start: StartRemediation | None = None
    escalate: Escalate | None = None


def _recent(times: Sequence[datetime], now: datetime, window: timedelta) -> list[datetime]:
    return [t for t in times if now - t < window]


def incident_window_start(limits: Limits, circuit: Circuit, now: datetime) -> datetime:
    """Incidents opened at or after this count towards opening the circuit."""
    since = now - limits.circuit_window
    if circuit.closed_at is not None and circuit.closed_at > since:
        return circuit.closed_at
    return since


def _other_recent_instances(facts: AlertFacts) -> int:
    since = incident_window_start(facts.settings.limits, facts.circuit, facts.now)
    counted = facts.state.last_incident_at is not None and facts.state.last_incident_at >= since
    return max(0, facts.instances_with_recent_incidents - (1 if counted else 0))


def _noted(state: RemediationState, incident: Incident, now: datetime) -> RemediationState:
    opened = next(
        (c.opened_at for c in state.cycles if c.incident_id == incident.incident_id),
        incident.started_at or now,
    )
    latest = state.last_incident_at
    return state.evolve(last_incident_at=opened if latest is None else max(latest, opened))


def decide_on_open(incident: Incident, facts: AlertFacts) -> AlertDecision:
    now, limits = facts.now, facts.settings.limits
    state = facts.state
    cycles = tuple(
        c for c in state.cycles if now - c.opened_at < max(limits.flap_window, timedelta(hours=1))
    )
    if not any(c.incident_id == incident.incident_id for c in cycles):
        cycles = (*cycles, IncidentCycle(incident.incident_id, incident.started_at or now))
    state = _noted(state.evolve(open_incident=incident.incident_id, cycles=cycles), incident, now)

    if facts.settings.paused:
        by = f" by {facts.settings.paused_by}" if facts.settings.paused_by else ""
        return AlertDecision(
            Verdict.PAUSED, f"automation is paused{by}: recorded, not acted on", state
        )
    if facts.circuit.open:
        return AlertDecision(
            Verdict.CIRCUIT_OPEN,
            f"the circuit breaker is open since {_at(facts.circuit.opened_at)}: "
            f"{facts.circuit.reason}",
            state,
        )
    affected = _other_recent_instances(facts) + 1
    threshold = limits.circuit_threshold(facts.fleet_size)
    if affected > threshold:
        reason = (
            f"{affected} of {facts.fleet_size} instances had incidents within "
            f"{_minutes(limits.circuit_window)}: more than {threshold}, so automatic remediation "
            "stops fleet-wide until a person resumes it"
        )
        circuit = Circuit(True, now, reason)
        return AlertDecision(
            Verdict.CIRCUIT_OPEN,
            reason,
            state,
            circuit=circuit,
            escalate=Escalate(reason, fleet_wide=True),
        )
    if state.escalated_at is not None:
        return AlertDecision(
            Verdict.ESCALATED,
            f"escalated at {_at(state.escalated_at)} ({state.escalation_reason}): waiting for "
            f"`fleetops remediation reset {incident.instance}`",
            state,
        )
    flaps = [
        c for c in cycles if c.closed_at is not None and now - c.opened_at < limits.flap_window
    ]
    if len(flaps) >= limits.flap_cycles:
        reason = (
            f"flapping: incidents opened and closed {len(flaps)} times within "
            f"{_minutes(limits.flap_window)}"
        )
        return _escalate(Verdict.FLAPPING, reason, state, now)
    return _act_or_wait(incident, facts, state)


def reconsider(facts: AlertFacts) -> AlertDecision | None:
    """An incident still open after a remediation ended, or after waiting: try the next rung."""
    state = facts.state
    if state.open_incident is None or state.escalated_at is not None:
        return None
    if facts.settings.paused or facts.circuit.open:
        return None
    incident = Incident(state.open_incident, facts.instance.id, "open", None, None, "", "", None)
    return _act_or_wait(incident, facts, state)


def _act_or_wait(incident: Incident, facts: AlertFacts, state: RemediationState) -> AlertDecision:
    now, limits = facts.now, facts.settings.limits
    recent = _recent(state.remediations, now, limits.cap_window)
    if len(recent) >= limits.max_remediations:
        reason = (
            f"{len(recent)} remediations within {_minutes(limits.cap_window)} "
            f"(the cap is {limits.max_remediations})"
        )
        return _escalate(Verdict.CAP_REACHED, reason, state, now)
    if state.last_remediation_at is not None and now - state.last_remediation_at < limits.cooldown:
        until = state.last_remediation_at + limits.cooldown
        return AlertDecision(
            Verdict.COOLDOWN, f"cooldown after the last remediation until {_at(until)}", state
        )
    if facts.busy_with is not None:
        return AlertDecision(
            Verdict.WAITING, f"the instance is busy with operation {facts.busy_with}", state
        )
    action = facts.playbook.action_for(state.attempt)
    if action is None:
        reason = (
            f"playbook {facts.playbook.name} has no rung left after {state.attempt} remediation(s)"
        )
        return _escalate(Verdict.ESCALATED, reason, state, now)
    if facts.free_slot is None:
        cap = limits.concurrency(facts.fleet_size)
        return AlertDecision(
            Verdict.WAITING,
            f"{cap} remediation(s) already run fleet-wide "
            f"(the limit for {facts.fleet_size} instances)",
            state,
        )
    dry_run = facts.settings.dry_run
    key = f"{incident.incident_id}/{len(state.remediations)}"
    if dry_run:
        return AlertDecision(
            Verdict.DRY_RUN,
            f"dry run: would {action} (rung {state.attempt + 1} of playbook {facts.playbook.name})",
            state,
            start=StartRemediation(key, action, None, dry_run=True),
        )
    acted = state.evolve(
        remediations=(*_recent(state.remediations, now, limits.cap_window), now),
        attempt=state.attempt + 1,
        last_remediation_at=now,
        playbook=facts.playbook.name,
    )
    return AlertDecision(
        Verdict.ACTED,
        f"{action} (remediation {state.attempt + 1} of playbook {facts.playbook.name})",
        acted,
        start=StartRemediation(key, action, facts.free_slot, dry_run=False),
    )


def _escalate(
    verdict: Verdict, reason: str, state: RemediationState, now: datetime
) -> AlertDecision:
    escalated = state.evolve(escalated_at=now, escalation_reason=reason)
    return AlertDecision(
        verdict, f"{reason}: escalated to a person", escalated, escalate=Escalate(reason)
    )


def decide_on_close(incident: Incident, state: RemediationState, now: datetime) -> AlertDecision:
    cycles = tuple(
        replace(c, closed_at=incident.ended_at or now)
        if c.incident_id == incident.incident_id and c.closed_at is None
        else c
        for c in state.cycles
    )
    if not any(c.incident_id == incident.incident_id for c in cycles):
        cycles = (
            *cycles,
            IncidentCycle(
                incident.incident_id, incident.started_at or now, incident.ended_at or now
            ),
        )
    closed = state.evolve(
        cycles=cycles,
        open_incident=None if state.open_incident == incident.incident_id else state.open_incident,
        attempt=0 if state.open_incident in (None, incident.incident_id) else state.attempt,
    )
    closed = _noted(closed, incident, now)
    return AlertDecision(
        Verdict.HEALED, "the incident closed: the instance is healthy again", closed
    )


def reset(state: RemediationState) -> RemediationState:
    """A person took over: forget the escalation, the cap's count and the ladder's rung."""
    return state.evolve(
        escalated_at=None, escalation_reason=None, remediations=(), attempt=0, cycles=()
    )


def remediation_action(name: str) -> Action:
    return Action(name)


def _at(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "an unknown time"


def _minutes(value: timedelta) -> str:
    return f"{int(value.total_seconds() // 60)} minutes"
