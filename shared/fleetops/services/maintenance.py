"""Maintenance settings, the maintenance tick's scheduler jobs, and instances' next windows.

`maintenance/settings` holds the fleet's default window and its freezes (read by
every rollout tick) and a short history of who changed what. The scheduler jobs
that fire the tick live in Cloud Scheduler (or the local scheduler, which serves
the same API); `SchedulerJobs` is what this module needs of either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fleetops.contract.names import TOPIC_MAINTENANCE
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import MaintenanceWindow
from fleetops.domain.windows import Freeze, Opening, freeze_from_dict, openings, window_from_dict
from fleetops.ports import ScheduledJob, SchedulerJobs, StateStore, StateTransaction

SETTINGS_PATH = "maintenance/settings"
HISTORY_KEPT = 50

logger = logging.getLogger("fleetops.maintenance")


class InstanceNotFound(DecisionError):
    """The instance asked about does not exist."""


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class SettingsChange:
    """One entry of the settings' history: who changed what, and when."""

    at: datetime
    actor: str
    event: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "actor": self.actor, "event": self.event, "detail": self.detail}


@dataclass(frozen=True)
class MaintenanceSettings:
    default_window: MaintenanceWindow | None = None
    freezes: tuple[Freeze, ...] = ()
    history: tuple[SettingsChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "default_window": self.default_window.to_dict() if self.default_window else None,
            "freezes": [freeze_to_json(f) for f in self.freezes],
            "history": [h.to_json() for h in reversed(self.history)],
        }


def freeze_to_json(freeze: Freeze) -> dict[str, Any]:
    return {"start": freeze.start, "end": freeze.end, "reason": freeze.reason}


def _freeze_doc(freeze: Freeze) -> dict[str, str]:
    # Strings, as `fleetops maintenance freeze` has always stored them.
    return {"start": _rfc3339(freeze.start), "end": _rfc3339(freeze.end), "reason": freeze.reason}


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def settings_from_doc(doc: Mapping[str, Any] | None) -> MaintenanceSettings:
    """The settings; a freeze or window written by hand that cannot be read is left out."""
    doc = doc or {}
    window = None
    if doc.get("default_window"):
        try:
            window = window_from_dict(doc["default_window"])
        except ValueError as exc:
            logger.warning("the fleet's default window cannot be read: %s", exc)
    freezes = []
    for raw in doc.get("freezes") or ():
        try:
            freezes.append(freeze_from_dict(raw))
        except ValueError as exc:
            logger.warning("a freeze cannot be read: %s", exc)
    history = tuple(
        SettingsChange(h["at"], str(h.get("actor")), str(h.get("event")), str(h.get("detail", "")))
        for h in doc.get("history") or ()
        if isinstance(h, Mapping) and isinstance(h.get("at"), datetime)
    )
    return MaintenanceSettings(window, tuple(freezes), history)


def load_settings(store: StateStore) -> MaintenanceSettings:
    return settings_from_doc(store.get_document(SETTINGS_PATH))


def _change(
    store: StateStore,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    entry: SettingsChange,
) -> MaintenanceSettings:
    def run(tx: StateTransaction) -> MaintenanceSettings:
        current = tx.get_document(SETTINGS_PATH) or {}
        changed = change(dict(current))
        history = [*(current.get("history") or ()), entry.to_json()][-HISTORY_KEPT:]
        changed["history"] = history
        tx.put_document(SETTINGS_PATH, changed)
        return settings_from_doc(changed)

    return store.transact(run)


def set_default_window(
    store: StateStore, window: MaintenanceWindow, who: str, now: datetime
) -> MaintenanceSettings:
    """The window of every instance that has none of its own."""
    doc = window.to_dict()
    window_from_dict(doc)
    detail = f"{','.join(window.days)} {window.start} for {window.duration} ({window.timezone})"
    return _change(
        store,
        lambda s: {**s, "default_window": doc},
        SettingsChange(now, who, "default window set", detail),
    )


def add_freeze(store: StateStore, freeze: Freeze, who: str, now: datetime) -> MaintenanceSettings:
    """No maintenance in `[start, end)`, fleet-wide; adding the same freeze twice adds it once."""
    doc = _freeze_doc(freeze)

    def change(settings: dict[str, Any]) -> dict[str, Any]:
        freezes = list(settings.get("freezes") or ())
        known = []
        for raw in freezes:
            try:
                known.append(freeze_from_dict(raw))
            except ValueError:
                continue
        if freeze not in known:
            freezes.append(doc)
        return {**settings, "freezes": freezes}

    detail = f"'{freeze.reason}' from {doc['start']} to {doc['end']}"
    return _change(store, change, SettingsChange(now, who, "freeze added", detail))


# ------------------------------------------------------------------ instances' windows


@dataclass(frozen=True)
class InstanceWindows:
    """An instance's effective window (its own, or the fleet default) and its next openings."""

    instance: str
    window: MaintenanceWindow | None
    default: bool
    openings: tuple[Opening, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "window": self.window.to_dict() if self.window else None,
            "default": self.default,
            "openings": [
                {
                    "local_start": o.local_start.isoformat(),
                    "local_end": o.local_end.isoformat(),
                    "start": o.start.isoformat(),
                    "end": o.end.isoformat(),
                }
                for o in self.openings
            ],
        }


def instance_windows(
    store: StateStore, now: datetime, count: int, instance: str | None = None
) -> list[InstanceWindows]:
    """The next `count` openings of one instance, or of every instance; `InstanceNotFound`."""
    default = load_settings(store).default_window
    if instance is not None:
        found = store.get_instance(instance)
        if found is None:
            raise InstanceNotFound(f"instance {instance} does not exist")
        chosen = [found]
    else:
        chosen = store.list_instances()
    rows = []
    for each in chosen:
        window = each.maintenance_window or default
        if window is None:
            rows.append(InstanceWindows(each.id, None, False))
            continue
        rows.append(
            InstanceWindows(
                each.id,
                window,
                each.maintenance_window is None,
                tuple(openings(window, now, count)),
            )
        )
    return rows


# ------------------------------------------------------------------ the scheduler jobs


class JobChange(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    RUN_NOW = "run-now"


_CHANGED = {JobChange.PAUSE: "paused", JobChange.RESUME: "resumed", JobChange.RUN_NOW: "fired"}


def maintenance_jobs(jobs: SchedulerJobs) -> list[ScheduledJob]:
    """The jobs that publish to fleetops-maintenance; other jobs of the location are not ours."""
    return [job for job in jobs.list_jobs() if job.topic == TOPIC_MAINTENANCE]


def change_jobs(
    jobs: SchedulerJobs, change: JobChange, store: StateStore, who: str, now: datetime
) -> list[ScheduledJob]:
    """Pause, resume or fire every maintenance job, and record who did it in the settings."""
    found = maintenance_jobs(jobs)
    act = {
        JobChange.PAUSE: jobs.pause_job,
        JobChange.RESUME: jobs.resume_job,
        JobChange.RUN_NOW: jobs.run_job,
    }[change]
    for job in found:
        act(job.id)
    names = ", ".join(job.id for job in found) or "no job"
    _change(store, lambda s: s, SettingsChange(now, who, f"jobs {_CHANGED[change]}", names))
    return maintenance_jobs(jobs)
