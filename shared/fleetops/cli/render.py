"""Tables and JSON for the command line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from fleetops import documents
from fleetops.domain.model import (
    Health,
    HistoryEntry,
    Instance,
    Operation,
    OperationStatus,
    StepStatus,
)

if TYPE_CHECKING:
    from fleetops.cli.backend import InstanceView
    from fleetops.domain.rollouts import Rollout
    from fleetops.domain.windows import Freeze
    from fleetops.ports import ScheduledJob
    from fleetops.services.dead_letter_store import DeadLetter
    from fleetops.services.maintenance import MaintenanceSettings
    from fleetops.services.rollouts import WaveProgress

console = Console()
err_console = Console(stderr=True)

# Rows of history and decisions `instances show` prints (and puts in its JSON).
SHOWN_HISTORY = 25

STATUS_STYLE = {
    OperationStatus.SUCCEEDED: "green",
    OperationStatus.RUNNING: "cyan",
    OperationStatus.QUEUED: "yellow",
    OperationStatus.AWAITING_APPROVAL: "yellow",
    OperationStatus.FAILED: "red",
    OperationStatus.REJECTED: "red",
    OperationStatus.CANCELLED: "magenta",
}
HEALTH_STYLE = {Health.HEALTHY: "green", Health.UNHEALTHY: "red", Health.UNKNOWN: "dim"}


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def seconds_between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.1f}s"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=_json_default, sort_keys=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def history_json(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    return [documents.history_to_doc(e) for e in entries]


def instance_json(instance: Instance) -> dict[str, Any]:
    return {"id": instance.id, **documents.instance_to_doc(instance)}


def operation_json(op: Operation) -> dict[str, Any]:
    return {"id": op.id, **documents.operation_to_doc(op)}


def instance_view_json(view: InstanceView) -> dict[str, Any]:
    return {
        **instance_json(view.instance),
        "operations": [operation_json(o) for o in view.operations],
        "decisions": view.decisions,
        "remediation": view.remediation,
        "history": history_json(view.history[:SHOWN_HISTORY]),
    }


def rollout_json(rollout: Rollout, waves: list[WaveProgress] | None = None) -> dict[str, Any]:
    from fleetops.services.rollouts import rollout_to_doc

    doc: dict[str, Any] = {"id": rollout.id, **rollout_to_doc(rollout)}
    if waves is not None:
        doc["progress"] = [{"wave": w.wave.name, **w.counts} for w in waves]
    return doc


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "error": letter.error_code,
        "reason": letter.reason,
        "topic": letter.original_topic,
        "received_at": letter.received_at,
        "data": letter.data.decode(errors="replace"),
        "attributes": dict(letter.attributes),
    }


def instances_table(instances: list[Instance]) -> Table:
    table = Table(title=f"{len(instances)} instance(s)")
    for column in ("instance", "state", "health", "version", "size", "endpoint", "operation"):
        table.add_column(column)
    for i in instances:
        table.add_row(
            i.id,
            i.state.value,
            f"[{HEALTH_STYLE[i.health]}]{i.health.value}[/]",
            i.version or "-",
            i.size.value,
            i.endpoint or "-",
            i.active_operation or "-",
        )
    return table


def operations_table(ops: list[Operation]) -> Table:
    table = Table(title=f"{len(ops)} operation(s)")
    for column in (
        "operation",
        "instance",
        "action",
        "status",
        "step",
        "origin",
        "created",
        "error",
    ):
        table.add_column(column)
    for op in ops:
        done = sum(1 for s in op.steps if s.status is StepStatus.SUCCEEDED)
        table.add_row(
            op.id,
            op.instance,
            op.action.value + (" (dry run)" if op.dry_run else ""),
            f"[{STATUS_STYLE[op.status]}]{op.status.value}[/]",
            f"{done}/{len(op.steps)}",
            op.origin.value,
            when(op.created_at),
            op.error or "",
        )
    return table


def operation_detail(op: Operation) -> Table:
    table = Table(
        title=(
            f"{op.id}: {op.action.value} {op.instance} - "
            f"[{STATUS_STYLE[op.status]}]{op.status.value}[/]"
        ),
        caption=_caption(op),
    )
    for column in ("#", "step", "status", "attempts", "started", "finished", "took", "error"):
        table.add_column(column)
    for index, step in enumerate(op.steps):
        marker = ">" if index == op.current_step and not op.finished else str(index + 1)
        table.add_row(
            marker,
            step.name + (" (rollback)" if step.compensation else ""),
            step.status.value,
            str(step.attempts),
            when(step.started_at),
            when(step.finished_at),
            seconds_between(step.started_at, step.finished_at),
            step.error or "",
        )
    return table


def history_table(entries: list[HistoryEntry], title: str) -> Table:
    table = Table(title=title)
    for column in ("when", "who", "what", "why"):
        table.add_column(column)
    for entry in entries:
        table.add_row(when(entry.at), entry.actor, entry.event, entry.detail)
    return table


def decisions_table(decisions: list[dict[str, Any]]) -> Table:
    table = Table(title="why it did or didn't heal (remediation decisions, newest first)")
    for column in ("when", "incident", "verdict", "operation", "reason"):
        table.add_column(column)
    for d in decisions:
        at = d.get("at")
        table.add_row(
            when(at if isinstance(at, datetime) else None),
            str(d.get("incident") or "-"),
            str(d.get("verdict")),
            str(d.get("operation") or "-"),
            str(d.get("reason") or ""),
        )
    return table


def automation_table(status: dict[str, Any]) -> Table:
    table = Table(title="automation")
    table.add_column("setting")
    table.add_column("value")
    paused = "[red]paused[/]" if status["paused"] else "[green]running[/]"
    if status.get("paused_by"):
        paused += f" (by {status['paused_by']})"
    table.add_row("remediation and maintenance", paused)
    table.add_row("dry run", "yes" if status["dry_run"] else "no")
    circuit = status["circuit"]
    table.add_row(
        "circuit breaker",
        f"[red]open[/] since {circuit.get('opened_at')}: {circuit.get('reason')}"
        if circuit.get("open")
        else "[green]closed[/]",
    )
    for name, value in status["limits"].items():
        table.add_row(name, str(value))
    return table


def rollout_panel(rollout: Any, waves: list[Any]) -> Table:
    from rich.progress_bar import ProgressBar

    title = (
        f"{rollout.id}: {rollout.action.value}"
        + (f" to {rollout.target_version}" if rollout.target_version else "")
        + f" - {rollout.status.value}"
    )
    caption = (
        f"max concurrency {rollout.max_concurrency} ({rollout.max_concurrency_spec}), "
        f"max errors {rollout.max_errors} ({rollout.max_errors_spec}), bake {rollout.bake}, "
        + ("windows respected" if rollout.respect_windows else "windows ignored (--now)")
        + (f"; halted: {rollout.halted_reason}" if rollout.halted_reason else "")
    )
    table = Table(title=title, caption=caption)
    for column in ("wave", "progress", "done", "running", "failed", "pending", "skipped"):
        table.add_column(column)
    for w in waves:
        total = max(sum(w.counts.values()), 1)
        done = w.counts["succeeded"] + w.counts["failed"] + w.counts["skipped"]
        marker = (
            " <" if w.wave.index == rollout.current_wave and not rollout.status.terminal else ""
        )
        table.add_row(
            w.wave.name + marker,
            ProgressBar(total=total, completed=done, width=30),
            f"{w.counts['succeeded']}/{total}",
            str(w.counts["started"]),
            str(w.counts["failed"]),
            str(w.counts["pending"]),
            str(w.counts["skipped"]),
        )
    return table


def windows_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="maintenance windows: next openings")
    for column in ("instance", "window", "opens (customer time)", "closes", "opens (UTC)"):
        table.add_column(column)
    for row in rows:
        window = row["window"]
        if window is None:
            table.add_row(row["instance"], "none (only freezes apply)", "-", "-", "-")
            continue
        days = ",".join(window["days"])
        text = f"{days} {window['start']} {window['duration']} {window['timezone']}"
        if row.get("default"):
            text += " (fleet default)"
        for n, opening in enumerate(row["openings"]):
            table.add_row(
                row["instance"] if n == 0 else "",
                text if n == 0 else "",
                opening["local_start"],
                opening["local_end"],
                opening["start"],
            )
    return table


def _caption(op: Operation) -> str:
    parts = [
        f"origin {op.origin.value}",
        f"request {op.request_id}",
        f"created {when(op.created_at)}",
    ]
    if op.requested_by:
        parts.append(f"by {op.requested_by}")
    if op.approved_by:
        parts.append(f"approved by {op.approved_by}")
    if op.lease_token is not None:
        parts.append(f"lease token {op.lease_token}")
    if op.finished_at:
        parts.append(f"finished {when(op.finished_at)}")
    if op.error:
        parts.append(f"error: {op.error}")
    return " | ".join(parts)


def rollouts_table(rollouts: list[Rollout]) -> Table:
    table = Table(title="rollouts")
    for column in ("rollout", "action", "version", "status", "targets", "created by", "created"):
        table.add_column(column)
    for r in rollouts:
        table.add_row(
            r.id,
            r.action.value,
            r.target_version or "-",
            r.status.value,
            str(r.total),
            r.created_by,
            when(r.created_at),
        )
    return table


def jobs_table(jobs: list[ScheduledJob]) -> Table:
    table = Table(title="maintenance jobs")
    for column in ("job", "schedule", "time zone", "state", "topic", "next run", "last error"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job.id,
            job.schedule,
            job.time_zone,
            job.state,
            job.topic or "-",
            when(job.next_run),
            job.last_error or "",
        )
    return table


def window_text(window: dict[str, Any]) -> str:
    return (
        f"{','.join(window['days'])} {window['start']} for {window['duration']} "
        f"({window['timezone']})"
    )


def freeze_json(freeze: Freeze) -> dict[str, Any]:
    return {"start": freeze.start, "end": freeze.end, "reason": freeze.reason}


def freeze_text(freeze: Freeze) -> str:
    return f"freeze '{freeze.reason}' from {when(freeze.start)} to {when(freeze.end)} UTC"


def maintenance_settings(settings: MaintenanceSettings) -> str:
    default = settings.default_window
    lines = [f"fleet default window: {window_text(default.to_dict()) if default else 'none'}"]
    lines += [freeze_text(f) for f in settings.freezes]
    return "\n".join(lines)


def letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("id", "received", "topic", "error", "reason"):
        table.add_column(column)
    for item in letters:
        table.add_row(
            item.id,
            when(item.received_at),
            item.original_topic or "-",
            item.error_code,
            item.reason,
        )
    return table
