"""Dry-run mode and safety limits changed together, in one transaction, naming who did it.

`fleetops.services.automation` changes one setting at a time and does not say
who; this is what the API's `PATCH /v1/automation` does: every change also
adds an entry to `automation/settings/history`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from fleetops import remediation_documents as rdocs
from fleetops.domain.decisions import DecisionError
from fleetops.domain.remediation import AutomationSettings, Limits
from fleetops.ports import StateStore, StateTransaction
from fleetops.services.automation import AutomationStatus

HISTORY_PATH = f"{rdocs.SETTINGS_PATH}/history"


def _limits(current: Limits, values: Mapping[str, float]) -> Limits:
    changes: dict[str, Any] = {}
    for name, number in values.items():
        if name not in rdocs.SETTING_NAMES:
            known = ", ".join(rdocs.SETTING_NAMES)
            raise DecisionError(f"{name} is not a limit; one of: {known}")
        if number < 0:
            raise DecisionError(f"{name} cannot be negative")
        if name.endswith("_seconds"):
            changes[name.removesuffix("_seconds")] = timedelta(seconds=number)
        else:
            changes[name] = type(getattr(current, name))(number)
    return replace(current, **changes)


def change_settings(
    store: StateStore,
    who: str,
    now: datetime,
    *,
    dry_run: bool | None = None,
    limits: Mapping[str, float] | None = None,
) -> AutomationStatus:
    """Set dry-run mode and any of `rdocs.SETTING_NAMES`; `DecisionError` names a bad one."""
    values = dict(limits or {})
    # Checked before the transaction, so that a bad name changes nothing.
    _limits(Limits(), values)
    said = [f"dry_run={'true' if dry_run else 'false'}"] if dry_run is not None else []
    said += [f"{name}={value:g}" for name, value in sorted(values.items())]

    def run(tx: StateTransaction) -> AutomationStatus:
        settings: AutomationSettings = rdocs.settings_from_doc(tx.get_document(rdocs.SETTINGS_PATH))
        # Firestore transactions read everything before they write.
        circuit = rdocs.circuit_from_doc(tx.get_document(rdocs.CIRCUIT_PATH))
        changed = replace(
            settings,
            dry_run=settings.dry_run if dry_run is None else dry_run,
            limits=_limits(settings.limits, values),
        )
        tx.put_document(rdocs.SETTINGS_PATH, rdocs.settings_to_doc(changed))
        if said:
            tx.add_document(
                HISTORY_PATH,
                {"at": now, "actor": who, "event": "settings changed", "detail": ", ".join(said)},
            )
        return AutomationStatus(changed, circuit)

    return store.transact(run)
