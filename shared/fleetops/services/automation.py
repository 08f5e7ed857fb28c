"""The fleet-wide kill switch, the circuit breaker's reset, limits, and per-instance reset.

These documents are written by people, rarely: never once per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from fleetops import remediation_documents as rdocs
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import HistoryEntry
from fleetops.domain.remediation import AutomationSettings, Circuit, Limits, reset
from fleetops.ports import StateStore, StateTransaction


@dataclass(frozen=True)
class AutomationStatus:
    settings: AutomationSettings
    circuit: Circuit

    def to_json(self) -> dict[str, Any]:
        return {
            "paused": self.settings.paused,
            "paused_by": self.settings.paused_by,
            "dry_run": self.settings.dry_run,
            "circuit": rdocs.circuit_to_doc(self.circuit),
            "limits": rdocs.limits_to_doc(self.settings.limits),
        }


def status(store: StateStore) -> AutomationStatus:
    return AutomationStatus(
        rdocs.settings_from_doc(store.get_document(rdocs.SETTINGS_PATH)),
        rdocs.circuit_from_doc(store.get_document(rdocs.CIRCUIT_PATH)),
    )


def _change_settings(
    store: StateStore, change: Callable[[AutomationSettings], AutomationSettings]
) -> AutomationSettings:
    def run(tx: StateTransaction) -> AutomationSettings:
        current = rdocs.settings_from_doc(tx.get_document(rdocs.SETTINGS_PATH))
        changed = change(current)
        tx.put_document(rdocs.SETTINGS_PATH, rdocs.settings_to_doc(changed))
        return changed

    return store.transact(run)


def pause(store: StateStore, who: str) -> AutomationSettings:
    """Stop every automatic remediation and maintenance until `resume`."""
    return _change_settings(store, lambda s: replace(s, paused=True, paused_by=who))


def resume(store: StateStore, who: str, now: datetime) -> AutomationStatus:
    """Lift the kill switch and close the circuit breaker."""

    def run(tx: StateTransaction) -> AutomationStatus:
        settings = rdocs.settings_from_doc(tx.get_document(rdocs.SETTINGS_PATH))
        resumed = replace(settings, paused=False, paused_by=None)
        circuit = Circuit(False, None, f"closed by {who} at {now.isoformat()}", closed_at=now)
        tx.put_document(rdocs.SETTINGS_PATH, rdocs.settings_to_doc(resumed))
        tx.put_document(rdocs.CIRCUIT_PATH, rdocs.circuit_to_doc(circuit))
        return AutomationStatus(resumed, circuit)

    return store.transact(run)


def set_dry_run(store: StateStore, on: bool) -> AutomationSettings:
    return _change_settings(store, lambda s: replace(s, dry_run=on))


def set_limit(store: StateStore, name: str, value: str) -> AutomationSettings:
    """`cooldown_seconds 300`, `max_remediations 3`, ... (see `SETTING_NAMES`)."""
    if name not in rdocs.SETTING_NAMES:
        raise DecisionError(f"{name} is not a limit; one of: {', '.join(rdocs.SETTING_NAMES)}")
    try:
        number = float(value)
    except ValueError as exc:
        raise DecisionError(f"{name} takes a number, not {value!r}") from exc
    if number < 0:
        raise DecisionError(f"{name} cannot be negative")

    def change(settings: AutomationSettings) -> AutomationSettings:
        changes: dict[str, Any] = {}
        if name.endswith("_seconds"):
            changes[name.removesuffix("_seconds")] = timedelta(seconds=number)
        else:
            changes[name] = type(getattr(settings.limits, name))(number)
        limits: Limits = replace(settings.limits, **changes)
        return replace(settings, limits=limits)

    return _change_settings(store, change)


def reset_instance(store: StateStore, instance: str, who: str, now: datetime) -> None:
    """A person has looked: automation may act on this instance again."""

    def run(tx: StateTransaction) -> None:
        found = tx.get_instance(instance)
        if found is None:
            raise DecisionError(f"instance {instance} does not exist")
        state = rdocs.state_from_doc(instance, tx.get_document(rdocs.state_path(instance)))
        tx.put_document(rdocs.state_path(instance), rdocs.state_to_doc(reset(state)))
        tx.add_document(
            f"instances/{instance}/decisions",
            {
                "at": now,
                "incident": state.open_incident,
                "verdict": "reset",
                "reason": f"remediation reset by {who}",
                "operation": None,
                "action": None,
                "dry_run": False,
            },
        )
        tx.add_instance_history(
            instance, HistoryEntry(now, who, "remediation reset", "automation may act again")
        )

    store.transact(run)
