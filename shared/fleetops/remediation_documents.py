"""Remediation state, settings and the circuit breaker as Firestore documents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from fleetops.documents import _time
from fleetops.domain.remediation import (
    AutomationSettings,
    Circuit,
    IncidentCycle,
    Limits,
    RemediationState,
)

SETTINGS_PATH = "automation/settings"
CIRCUIT_PATH = "automation/circuit"
STATES = "remediation"
# Counted by the circuit breaker (a count aggregation over `remediation/*`).
LAST_INCIDENT_AT = "last_incident_at"

_LIMIT_SECONDS = ("cap_window", "cooldown", "flap_window", "circuit_window")
_LIMIT_NUMBERS = (
    "max_remediations",
    "flap_cycles",
    "concurrency_percent",
    "circuit_percent",
    "circuit_minimum",
)
SETTING_NAMES = (*_LIMIT_NUMBERS, *(f"{name}_seconds" for name in _LIMIT_SECONDS))


def state_path(instance: str) -> str:
    return f"{STATES}/{instance}"


def slot_path(slot: int) -> str:
    return f"remediation_slots/{slot}"


def playbook_path(name: str) -> str:
    return f"playbooks/{name}"


def incident_path(instance: str, incident: str) -> str:
    return f"instances/{instance}/incidents/{incident}"


def settings_from_doc(doc: Mapping[str, Any] | None) -> AutomationSettings:
    doc = doc or {}
    limits_doc = doc.get("limits") or {}
    defaults = Limits()
    values: dict[str, Any] = {}
    for name in _LIMIT_NUMBERS:
        if name in limits_doc:
            values[name] = type(getattr(defaults, name))(limits_doc[name])
    for name in _LIMIT_SECONDS:
        key = f"{name}_seconds"
        if key in limits_doc:
            values[name] = timedelta(seconds=float(limits_doc[key]))
    return AutomationSettings(
        paused=bool(doc.get("paused")),
        dry_run=bool(doc.get("dry_run")),
        paused_by=doc.get("paused_by"),
        limits=Limits(**values),
    )


def limits_to_doc(limits: Limits) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(limits, name) for name in _LIMIT_NUMBERS}
    for name in _LIMIT_SECONDS:
        doc[f"{name}_seconds"] = getattr(limits, name).total_seconds()
    return doc


def settings_to_doc(settings: AutomationSettings) -> dict[str, Any]:
    return {
        "paused": settings.paused,
        "dry_run": settings.dry_run,
        "paused_by": settings.paused_by,
        "limits": limits_to_doc(settings.limits),
    }


def circuit_from_doc(doc: Mapping[str, Any] | None) -> Circuit:
    doc = doc or {}
    return Circuit(
        bool(doc.get("open")),
        _time(doc.get("opened_at")),
        doc.get("reason"),
        _time(doc.get("closed_at")),
    )


def circuit_to_doc(circuit: Circuit) -> dict[str, Any]:
    return {
        "open": circuit.open,
        "opened_at": circuit.opened_at,
        "reason": circuit.reason,
        "closed_at": circuit.closed_at,
    }


def state_from_doc(instance: str, doc: Mapping[str, Any] | None) -> RemediationState:
    doc = doc or {}
    return RemediationState(
        instance=instance,
        remediations=tuple(t for t in (_time(v) for v in doc.get("remediations") or ()) if t),
        attempt=int(doc.get("attempt") or 0),
        last_remediation_at=_time(doc.get("last_remediation_at")),
        last_operation=doc.get("last_operation"),
        escalated_at=_time(doc.get("escalated_at")),
        escalation_reason=doc.get("escalation_reason"),
        open_incident=doc.get("open_incident"),
        cycles=tuple(
            IncidentCycle(
                str(c.get("incident_id")),
                _time(c.get("opened_at")) or _required(c),
                _time(c.get("closed_at")),
            )
            for c in doc.get("cycles") or ()
        ),
        playbook=str(doc.get("playbook") or "default"),
        last_verdict=doc.get("last_verdict"),
        last_incident_at=_time(doc.get(LAST_INCIDENT_AT)),
    )


def _required(cycle: Mapping[str, Any]) -> Any:
    raise ValueError(f"incident cycle without opened_at: {dict(cycle)}")


def state_to_doc(state: RemediationState) -> dict[str, Any]:
    return {
        "instance": state.instance,
        "remediations": list(state.remediations),
        "attempt": state.attempt,
        "last_remediation_at": state.last_remediation_at,
        "last_operation": state.last_operation,
        "escalated_at": state.escalated_at,
        "escalation_reason": state.escalation_reason,
        "open_incident": state.open_incident,
        "cycles": [
            {"incident_id": c.incident_id, "opened_at": c.opened_at, "closed_at": c.closed_at}
            for c in state.cycles
        ],
        "playbook": state.playbook,
        "last_verdict": state.last_verdict,
        LAST_INCIDENT_AT: state.last_incident_at,
    }
