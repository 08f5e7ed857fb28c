"""`fleetops`: start the local stack, request operations, and watch them."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fleetops import runtime
from fleetops.cli import render
from fleetops.cli.render import console, err_console
from fleetops.contract.names import DEFAULT_LOCAL_PROJECT, TOPIC_ALERTS, TOPIC_REQUESTS
from fleetops.contract.pubsub import encode_binary
from fleetops.contract.requests import new_request_event
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import Action, Operation, OperationStatus, Size, StepStatus
from fleetops.local import config
from fleetops.services.control import ControlDeps, approve_operation, cancel_operation
from fleetops.services.requests import operation_id_for

app = typer.Typer(
    name="fleetops",
    help="Run and watch a fleet of single-tenant instances.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ops_app = typer.Typer(help="List, show and wait for operations.", no_args_is_help=True)
instances_app = typer.Typer(help="The fleet's instances.", invoke_without_command=True)
automation_app = typer.Typer(
    help="The fleet-wide kill switch, the circuit breaker and the safety limits.",
    no_args_is_help=True,
)
remediation_app = typer.Typer(help="Automatic remediation of one instance.", no_args_is_help=True)
app.add_typer(ops_app, name="ops")
app.add_typer(instances_app, name="instances")
maintenance_app = typer.Typer(
    help="The maintenance tick's Cloud Scheduler jobs (on GCP, or the local scheduler).",
    no_args_is_help=True,
)
rollout_app = typer.Typer(help="Roll an action across the fleet in waves.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
dlq_app = typer.Typer(
    help="Messages that could never succeed, and their replay.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(automation_app, name="automation")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(remediation_app, name="remediation")


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts")
]


class CliError(Exception):
    """An error to show as one sentence."""


def _requester() -> str:
    return runtime.principal()


def _check_reachable() -> None:
    """Fail fast, with a sentence, when the emulators named in the environment are down."""
    for variable in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
        host = os.environ.get(variable)
        if not host:
            continue
        name, _, port = host.rpartition(":")
        try:
            with socket.create_connection((name or "127.0.0.1", int(port)), timeout=2):
                pass
        except (OSError, ValueError) as exc:
            raise CliError(
                f"nothing answers at {variable}={host}: is `fleetops up` running?"
            ) from exc
    if not os.environ.get("FIRESTORE_EMULATOR_HOST") and not os.environ.get("GOOGLE_CLOUD_PROJECT"):
        raise CliError(
            "no local stack found (.fleetops/local.env) and GOOGLE_CLOUD_PROJECT is not set: "
            "run `fleetops up`, or set GOOGLE_CLOUD_PROJECT for a deployed fleetops"
        )


def _connect() -> None:
    config.load_into_environ()
    _check_reachable()


@app.command()
def up(
    instances: Annotated[int, typer.Option(min=0, max=200, help="demo instances to provision")] = 3,
    project: Annotated[str, typer.Option(help="project id inside the emulators")] = (
        DEFAULT_LOCAL_PROJECT
    ),
    port_base: Annotated[
        int,
        typer.Option(
            help="first of consecutive ports (emulators, agent, functions); 0: free ports"
        ),
    ] = 8085,
    state_dir: Annotated[Path, typer.Option(help="where logs, instances and local.env go")] = Path(
        ".fleetops"
    ),
    version: Annotated[str, typer.Option(help="version of the demo instances")] = "1.0.0",
) -> None:
    """Start the whole local stack in the foreground; Ctrl-C stops everything it started."""
    from fleetops.local.stack import LocalStack, run_until_interrupted

    began = time.monotonic()
    stack = LocalStack(state_dir=state_dir, project=project, port_base=port_base, say=console.print)

    def provision_demo(stack: LocalStack) -> None:
        if instances:
            ids = [f"demo-{n}" for n in range(1, instances + 1)]
            console.print(f"provisioning {instances} demo instance(s) through fleetops-requests...")
            op_ids = [
                _publish_request(
                    {
                        "instance": i,
                        "action": Action.PROVISION.value,
                        "version": version,
                        "customer": f"customer-{i}",
                        "labels": {"ring": "canary"} if i == "demo-1" else {},
                        "reason": "demo fleet of fleetops up",
                    }
                )
                for i in ids
            ]
            finished = _wait_all(op_ids, timeout=120)
            failed = [op for op in finished if op.status is not OperationStatus.SUCCEEDED]
            for op in failed:
                err_console.print(f"[red]{op.instance}: {op.status.value}: {op.error}[/]")
        store = runtime.state_store()
        console.print(render.instances_table(store.list_instances()))
        console.print(f"pubsub emulator    {stack.env['PUBSUB_EMULATOR_HOST']}")
        console.print(f"firestore emulator {stack.env['FIRESTORE_EMULATOR_HOST']}")
        console.print(f"host agent         {stack.env['FLEETOPS_AGENT_URL']}")
        for name, child in stack.functions.items():
            console.print(f"function {name:<12}{child.ready_url}")
        console.print(f"environment        {stack.env_file}  (logs in {stack.state_dir / 'logs'})")
        console.print(
            f"[bold green]fleetops is up[/] in {time.monotonic() - began:.1f}s "
            "- press Ctrl-C to stop"
        )

    code = run_until_interrupted(stack, provision_demo)
    console.print("stopped")
    raise typer.Exit(code)


def _publish_request(data: dict[str, Any]) -> str:
    source = f"//fleetops/cli/{_requester()}"
    data.setdefault("requested_by", _requester())
    event = new_request_event(data, source=source, event_id=str(uuid.uuid4()))
    body, attributes = encode_binary(event)
    runtime.publisher().publish(TOPIC_REQUESTS, body, attributes)
    return operation_id_for(event.source, event.id)


def _wait_all(op_ids: list[str], timeout: float) -> list[Operation]:
    store = runtime.state_store()
    deadline = time.monotonic() + timeout
    pending = set(op_ids)
    found: dict[str, Operation] = {}
    while pending and time.monotonic() < deadline:
        for op_id in list(pending):
            op = store.get_operation(op_id)
            if op is not None and op.finished:
                found[op_id] = op
                pending.discard(op_id)
        if pending:
            time.sleep(0.2)
    if pending:
        raise CliError(f"{len(pending)} operation(s) did not finish within {timeout:.0f}s")
    return [found[i] for i in op_ids]


def wait_for(op_id: str, timeout: float, *, show_progress: bool) -> Operation:
    store = runtime.state_store()
    deadline = time.monotonic() + timeout
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show_progress,
    )
    with progress:
        task = progress.add_task(f"waiting for {op_id}", total=None)
        while True:
            op = store.get_operation(op_id)
            if op is not None:
                done = sum(
                    1 for s in op.steps if s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
                )
                step = op.step.name if op.step and not op.finished else op.status.value
                progress.update(
                    task,
                    total=max(len(op.steps), 1),
                    completed=done,
                    description=f"{op.action.value} {op.instance}: {step}",
                )
                if op.finished:
                    return op
            if time.monotonic() >= deadline:
                state = op.status.value if op else "not recorded yet"
                raise CliError(f"operation {op_id} did not finish within {timeout:.0f}s ({state})")
            time.sleep(0.2)


def _exit_for(op: Operation) -> None:
    if op.status is not OperationStatus.SUCCEEDED:
        raise typer.Exit(1)


@app.command()
def request(
    instance: Annotated[str, typer.Argument(help="instance id, e.g. acme-prod")],
    action: Annotated[Action, typer.Argument(help="what to do")],
    version: Annotated[str | None, typer.Option(help="version (provision, upgrade)")] = None,
    size: Annotated[Size | None, typer.Option(help="size (resize, provision)")] = None,
    region: Annotated[str | None, typer.Option(help="region (provision)")] = None,
    customer: Annotated[str | None, typer.Option(help="customer (provision)")] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="label KEY=VALUE (provision); repeatable")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="why, kept on the operation")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only, touch nothing")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the operation finishes")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 180,
    output: OutputOption = Output.TABLE,
) -> None:
    """Publish a fleetops.instance.requested event; print (or wait for) its operation."""
    _connect()
    data: dict[str, Any] = {"instance": instance, "action": action.value}
    for key, value in (
        ("version", version),
        ("size", size.value if size else None),
        ("region", region),
        ("customer", customer),
        ("reason", reason),
    ):
        if value is not None:
            data[key] = value
    if label:
        pairs = [item.partition("=") for item in label]
        bad = [k for k, sep, _ in pairs if not sep or not k]
        if bad:
            raise CliError(f"--label takes KEY=VALUE, got {label[0]!r}")
        data["labels"] = {k: v for k, _, v in pairs}
    if dry_run:
        data["dry_run"] = True
    op_id = _publish_request(data)
    if not wait:
        if output is Output.JSON:
            console.print_json(render.to_json({"operation": op_id, "status": "published"}))
        else:
            console.print(f"published: operation {op_id} (fleetops ops wait {op_id})")
        return
    op = wait_for(op_id, timeout, show_progress=output is Output.TABLE)
    _show_operation(op, output)
    _exit_for(op)


def _show_operation(op: Operation, output: Output, *, history: bool = False) -> None:
    if output is Output.JSON:
        console.print_json(render.to_json(render.operation_json(op)))
        return
    console.print(render.operation_detail(op))
    if history:
        console.print(render.history_table(list(op.history), f"history of {op.id}"))
    if op.status is OperationStatus.AWAITING_APPROVAL:
        console.print(
            f"[yellow]awaiting approval[/] until {render.when(op.approval_expires_at)}: "
            f"someone other than {op.requested_by or 'the requester'} runs "
            f"`fleetops ops approve {op.id}`"
        )


@instances_app.callback()
def instances(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="include deleted instances")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """List the fleet's instances (or `instances show INSTANCE`)."""
    if ctx.invoked_subcommand is not None:
        return
    _connect()
    found = runtime.state_store().list_instances(include_deleted=all_)
    if output is Output.JSON:
        console.print_json(render.to_json([render.instance_json(i) for i in found]))
    else:
        console.print(render.instances_table(found))


@instances_app.command("show")
def instances_show(
    instance: Annotated[str, typer.Argument(help="instance id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """One instance: its operations, its remediation decisions (why it did or didn't
    heal), and its recent changes."""
    _connect()
    store = runtime.state_store()
    found = store.get_instance(instance)
    if found is None:
        raise CliError(f"instance {instance} does not exist")
    ops = store.list_operations(instance=instance, limit=10)
    decisions = [
        d
        for _, d in store.list_documents(f"instances/{instance}/decisions", order_by="at", limit=25)
    ]
    history = store.instance_history(instance, limit=25)
    if output is Output.JSON:
        console.print_json(
            render.to_json(
                {
                    **render.instance_json(found),
                    "operations": [render.operation_json(o) for o in ops],
                    "decisions": decisions,
                    "remediation": store.get_document(f"remediation/{instance}"),
                    "history": render.history_json(history),
                }
            )
        )
        return
    console.print(render.instances_table([found]))
    console.print(render.operations_table(ops))
    console.print(render.decisions_table(decisions))
    console.print(render.history_table(history, "recent changes"))


@ops_app.command("list")
def ops_list(
    instance: Annotated[str | None, typer.Option(help="only this instance")] = None,
    status: Annotated[OperationStatus | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    output: OutputOption = Output.TABLE,
) -> None:
    """Operations, newest first."""
    _connect()
    found = runtime.state_store().list_operations(instance=instance, status=status, limit=limit)
    if output is Output.JSON:
        console.print_json(render.to_json([render.operation_json(o) for o in found]))
    else:
        console.print(render.operations_table(found))


@ops_app.command("show")
def ops_show(
    operation: Annotated[str, typer.Argument(help="operation id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """One operation: its steps, attempts and timings."""
    _connect()
    op = runtime.state_store().get_operation(operation)
    if op is None:
        raise CliError(f"operation {operation} does not exist")
    _show_operation(op, output, history=True)


@ops_app.command("wait")
def ops_wait(
    operation: Annotated[str, typer.Argument(help="operation id")],
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 180,
    output: OutputOption = Output.TABLE,
) -> None:
    """Wait until the operation finishes; exit 1 unless it succeeded."""
    _connect()
    op = wait_for(operation, timeout, show_progress=output is Output.TABLE)
    _show_operation(op, output)
    _exit_for(op)


@app.command()
def alert(
    instance: Annotated[str, typer.Argument(help="instance id")],
    close: Annotated[bool, typer.Option("--close", help="close the open incident")] = False,
    incident: Annotated[
        str | None, typer.Option(help="incident id (default: a new one, or the open one)")
    ] = None,
    playbook: Annotated[str | None, typer.Option(help="the fleetops_playbook policy label")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Publish a Monitoring-shaped incident for the instance, as Cloud Monitoring would."""
    import json

    from fleetops.contract.incidents import notification

    _connect()
    if close and incident is None:
        state = runtime.state_store().get_document(f"remediation/{instance}") or {}
        incident = state.get("open_incident")
        if not incident:
            raise CliError(f"instance {instance} has no open incident to close (pass --incident)")
    incident_id = incident or f"manual-{uuid.uuid4().hex[:8]}"
    now = runtime.utc_now()
    state_name = "closed" if close else "open"
    body = notification(
        incident_id,
        instance,
        state_name,
        started_at=now,
        ended_at=now if close else None,
        summary=f"published by hand by {runtime.principal()}",
        policy="fleetops-cli",
        playbook=playbook,
    )
    runtime.publisher().publish(TOPIC_ALERTS, json.dumps(body).encode(), {})
    if output is Output.JSON:
        console.print_json(render.to_json({"incident": incident_id, "state": state_name}))
    else:
        console.print(f"published incident {incident_id} ({state_name}) for {instance}")


@remediation_app.command("reset")
def remediation_reset(
    instance: Annotated[str, typer.Argument(help="instance id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """After an escalation: let automation act on this instance again."""
    from fleetops.services import automation

    _connect()
    automation.reset_instance(
        runtime.state_store(), instance, runtime.principal(), runtime.utc_now()
    )
    if output is Output.JSON:
        console.print_json(render.to_json({"instance": instance, "reset_by": runtime.principal()}))
        return
    console.print(f"remediation of {instance} reset by {runtime.principal()}")


def _show_automation(output: Output) -> None:
    from fleetops.services import automation

    status = automation.status(runtime.state_store())
    if output is Output.JSON:
        console.print_json(render.to_json(status.to_json()))
        return
    console.print(render.automation_table(status.to_json()))


@automation_app.command("status")
def automation_status(output: OutputOption = Output.TABLE) -> None:
    """Paused or not, dry run or not, the circuit breaker, and every limit."""
    _connect()
    _show_automation(output)


@automation_app.command("pause")
def automation_pause(output: OutputOption = Output.TABLE) -> None:
    """The kill switch: no automatic remediation and no maintenance until resume."""
    from fleetops.services import automation

    _connect()
    automation.pause(runtime.state_store(), runtime.principal())
    _show_automation(output)


@automation_app.command("resume")
def automation_resume(output: OutputOption = Output.TABLE) -> None:
    """Lift the kill switch and close the circuit breaker."""
    from fleetops.services import automation

    _connect()
    automation.resume(runtime.state_store(), runtime.principal(), runtime.utc_now())
    _show_automation(output)


@automation_app.command("dry-run")
def automation_dry_run(
    on: Annotated[bool, typer.Argument(help="true: record what would be done, act on nothing")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Switch remediation's dry-run mode on or off."""
    from fleetops.services import automation

    _connect()
    automation.set_dry_run(runtime.state_store(), on)
    _show_automation(output)


@automation_app.command("set")
def automation_set(
    name: Annotated[str, typer.Argument(help="e.g. cooldown_seconds, max_remediations")],
    value: Annotated[str, typer.Argument(help="a number")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Change one safety limit."""
    from fleetops.services import automation

    _connect()
    automation.set_limit(runtime.state_store(), name, value)
    _show_automation(output)


def _rollout_deps() -> Any:
    from fleetops.services.rollouts import RolloutDeps

    return RolloutDeps(
        runtime.state_store(), runtime.publisher(), runtime.utc_now, runtime.approval_policy()
    )


def _duration(text: str, what: str) -> Any:
    from fleetops.domain.windows import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from exc


@rollout_app.command("start")
def rollout_start(
    version: Annotated[str | None, typer.Option(help="the version to upgrade to")] = None,
    action: Annotated[Action, typer.Option(help="the action to roll out")] = Action.UPGRADE,
    size: Annotated[Size | None, typer.Option(help="the size (resize)")] = None,
    selector: Annotated[
        str | None, typer.Option(help="KEY=VALUE[,KEY=VALUE]: labels, region, customer, size")
    ] = None,
    max_concurrency: Annotated[str, typer.Option(help="N or P% running at once")] = "10%",
    max_errors: Annotated[str, typer.Option(help="N or P%: stop once more have failed")] = "0",
    canary: Annotated[
        str, typer.Option(help="N instances, or a selector such as ring=canary; '' for none")
    ] = "ring=canary",
    bake: Annotated[str, typer.Option(help="how long a wave must stay healthy, e.g. 10m")] = "10m",
    cutoff: Annotated[
        str, typer.Option(help="window time an operation needs left to start, e.g. 30m")
    ] = "30m",
    now: Annotated[bool, typer.Option("--now", help="ignore maintenance windows")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Plan a rollout into waves; maintenance ticks then carry it out."""
    from fleetops.domain.rollouts import Limit, parse_selector
    from fleetops.services.rollouts import StartRollout, plan_rollout

    _connect()
    try:
        command = StartRollout(
            action=action,
            version=version,
            size=size,
            selector=parse_selector(selector),
            max_concurrency=Limit.parse(max_concurrency),
            max_errors=Limit.parse(max_errors),
            canary=canary or None,
            bake=_duration(bake, "--bake") if bake not in ("0", "0m") else _zero(),
            cutoff=_duration(cutoff, "--cutoff"),
            respect_windows=not now,
            requested_by=runtime.principal(),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    rollout = plan_rollout(command, _rollout_deps())
    _show_rollout(rollout.id, output)


def _zero() -> Any:
    from datetime import timedelta

    return timedelta(0)


def _show_rollout(rollout_id: str, output: Output) -> bool:
    """Print the rollout; True when it is over."""
    from fleetops.services.rollouts import progress, rollout_to_doc

    rollout, waves = progress(rollout_id, runtime.state_store())
    if output is Output.JSON:
        doc = {"id": rollout.id, **rollout_to_doc(rollout)}
        doc["progress"] = [{"wave": w.wave.name, **w.counts} for w in waves]
        console.print_json(render.to_json(doc))
    else:
        console.print(render.rollout_panel(rollout, waves))
    return rollout.status.terminal


@rollout_app.command("show")
def rollout_show(
    rollout: Annotated[str, typer.Argument(help="rollout id")],
    watch: Annotated[bool, typer.Option("--watch", help="refresh until it ends")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """A rollout with a progress bar per wave."""
    _connect()
    if not watch or output is Output.JSON:
        _show_rollout(rollout, output)
        return
    from rich.live import Live

    from fleetops.services.rollouts import progress

    with Live(console=console, refresh_per_second=2) as live:
        while True:
            found, waves = progress(rollout, runtime.state_store())
            live.update(render.rollout_panel(found, waves))
            if found.status.terminal:
                return
            time.sleep(1)


def _rollout_status(rollout: str, status: str, output: Output) -> None:
    from fleetops.domain.rollouts import RolloutStatus
    from fleetops.services.rollouts import set_status

    _connect()
    set_status(rollout, RolloutStatus(status), runtime.principal(), _rollout_deps())
    _show_rollout(rollout, output)


@rollout_app.command("pause")
def rollout_pause(
    rollout: Annotated[str, typer.Argument(help="rollout id")], output: OutputOption = Output.TABLE
) -> None:
    """Start nothing new until resumed; what runs finishes."""
    _rollout_status(rollout, "paused", output)


@rollout_app.command("resume")
def rollout_resume(
    rollout: Annotated[str, typer.Argument(help="rollout id")], output: OutputOption = Output.TABLE
) -> None:
    """Carry on from where it paused."""
    _rollout_status(rollout, "running", output)


@rollout_app.command("abort")
def rollout_abort(
    rollout: Annotated[str, typer.Argument(help="rollout id")], output: OutputOption = Output.TABLE
) -> None:
    """Stop for good; what runs finishes."""
    _rollout_status(rollout, "aborted", output)


@rollout_app.command("list")
def rollout_list(output: OutputOption = Output.TABLE) -> None:
    """Rollouts, newest first."""
    _connect()
    found = runtime.state_store().list_documents("rollouts", order_by="created_at", limit=50)
    if output is Output.JSON:
        console.print_json(render.to_json([{"id": i, **d} for i, d in found]))
        return
    from rich.table import Table

    table = Table(title="rollouts")
    for column in ("rollout", "action", "version", "status", "targets", "created by", "created"):
        table.add_column(column)
    for rollout_id, doc in found:
        table.add_row(
            rollout_id,
            str(doc.get("action")),
            str(doc.get("target_version") or "-"),
            str(doc.get("status")),
            str(doc.get("total")),
            str(doc.get("created_by")),
            render.when(doc.get("created_at")),
        )
    console.print(table)


@instances_app.command("windows")
def instances_windows(
    instance: Annotated[str | None, typer.Argument(help="instance id (default: all)")] = None,
    count: Annotated[int, typer.Option(min=1, max=20, help="openings to show")] = 3,
    output: OutputOption = Output.TABLE,
) -> None:
    """The next maintenance openings, in the customer's time and in UTC."""
    from fleetops.domain.windows import openings, window_from_dict

    _connect()
    store = runtime.state_store()
    settings = store.get_document("maintenance/settings") or {}
    default = (
        window_from_dict(settings["default_window"]) if settings.get("default_window") else None
    )
    chosen = [store.get_instance(instance)] if instance else store.list_instances()
    if instance and chosen[0] is None:
        raise CliError(f"instance {instance} does not exist")
    now = runtime.utc_now()
    rows: list[dict[str, Any]] = []
    for found in chosen:
        assert found is not None
        window = found.maintenance_window or default
        if window is None:
            rows.append({"instance": found.id, "window": None, "openings": []})
            continue
        rows.append(
            {
                "instance": found.id,
                "window": window.to_dict(),
                "default": found.maintenance_window is None,
                "openings": [
                    {
                        "local_start": o.local_start.isoformat(),
                        "local_end": o.local_end.isoformat(),
                        "start": o.start.isoformat(),
                        "end": o.end.isoformat(),
                    }
                    for o in openings(window, now, count)
                ],
            }
        )
    if output is Output.JSON:
        console.print_json(render.to_json(rows))
        return
    console.print(render.windows_table(rows))


def _maintenance_jobs(action: str, output: Output) -> None:
    from fleetops.adapters import scheduler_admin as sa

    config.load_into_environ()
    client = sa.scheduler_client(os.environ.get("FLEETOPS_SCHEDULER_URL"))
    project = runtime.project()
    jobs = sa.list_jobs(project, client=client)
    if action != "status":
        change = {"pause": sa.pause_job, "resume": sa.resume_job, "run-now": sa.run_job}[action]
        for job in jobs:
            change(project, job.id, client=client)
        jobs = sa.list_jobs(project, client=client)
    if output is Output.JSON:
        console.print_json(render.to_json([job.__dict__ for job in jobs]))
        return
    from rich.table import Table

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
            str(job.next_run or "-"),
            job.last_error or "",
        )
    console.print(table)


@maintenance_app.command("status")
def maintenance_status(output: OutputOption = Output.TABLE) -> None:
    """The maintenance jobs and when they fire next."""
    _maintenance_jobs("status", output)


@maintenance_app.command("pause")
def maintenance_pause(output: OutputOption = Output.TABLE) -> None:
    """Pause every maintenance job: no tick fires until resume."""
    _maintenance_jobs("pause", output)


@maintenance_app.command("resume")
def maintenance_resume(output: OutputOption = Output.TABLE) -> None:
    """Resume every maintenance job."""
    _maintenance_jobs("resume", output)


@maintenance_app.command("run-now")
def maintenance_run_now(output: OutputOption = Output.TABLE) -> None:
    """Fire every maintenance job once, now."""
    _maintenance_jobs("run-now", output)


@maintenance_app.command("default-window")
def maintenance_default_window(
    days: Annotated[str, typer.Option(help="e.g. sat,sun")],
    start: Annotated[str, typer.Option(help="local start, HH:MM")],
    duration: Annotated[str, typer.Option(help="e.g. 4h")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Berlin")],
    output: OutputOption = Output.TABLE,
) -> None:
    """The window of instances that have none of their own."""
    from fleetops.domain.windows import window_from_dict

    _connect()
    doc = {"days": days.split(","), "start": start, "duration": duration, "timezone": timezone}
    try:
        window_from_dict(doc)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    _change_maintenance_settings(lambda s: {**s, "default_window": doc})
    if output is Output.JSON:
        console.print_json(render.to_json({"default_window": doc}))
        return
    console.print(f"fleet default window: {days} {start} for {duration} ({timezone})")


@maintenance_app.command("freeze")
def maintenance_freeze(
    start: Annotated[str, typer.Argument(help="RFC 3339 start, e.g. 2026-12-20T00:00:00Z")],
    end: Annotated[str, typer.Argument(help="RFC 3339 end (excluded)")],
    reason: Annotated[str, typer.Option(help="why, shown to everyone who waits")],
    output: OutputOption = Output.TABLE,
) -> None:
    """No maintenance between two instants (e.g. year-end), fleet-wide."""
    from fleetops.domain.windows import freeze_from_dict

    _connect()
    doc = {"start": start, "end": end, "reason": reason}
    try:
        freeze_from_dict(doc)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    _change_maintenance_settings(lambda s: {**s, "freezes": [*s.get("freezes", []), doc]})
    if output is Output.JSON:
        console.print_json(render.to_json({"freeze": doc}))
        return
    console.print(f"freeze '{reason}' from {start} to {end}")


def _change_maintenance_settings(change: Any) -> None:
    def run(tx: Any) -> None:
        current = tx.get_document("maintenance/settings") or {}
        tx.put_document("maintenance/settings", change(current))

    runtime.state_store().transact(run)


def _backend() -> Any:
    """Through the API when a token for it is set; straight on Pub/Sub and Firestore otherwise."""
    from fleetops.cli.backend import DirectBackend, backend_from_env

    if os.environ.get("FLEETOPS_API_URL") and os.environ.get("FLEETOPS_API_TOKEN"):
        return backend_from_env()
    return DirectBackend()


def _letter_json(letter: Any) -> dict[str, Any]:
    return {
        "id": letter.id,
        "error": letter.error_code,
        "reason": letter.reason,
        "topic": letter.original_topic,
        "received_at": letter.received_at,
        "data": letter.data.decode(errors="replace"),
        "attributes": dict(letter.attributes),
    }


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50, output: OutputOption = Output.TABLE
) -> None:
    """Dead letters, newest first, with the reason each was refused."""
    _connect()
    letters = _backend().list_dead_letters(limit=limit)
    if output is Output.JSON:
        console.print_json(render.to_json([_letter_json(item) for item in letters]))
        return
    from rich.table import Table

    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("id", "received", "topic", "error", "reason"):
        table.add_column(column)
    for item in letters:
        table.add_row(
            item.id,
            render.when(item.received_at),
            item.original_topic or "-",
            item.error_code,
            item.reason,
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    letter: Annotated[str, typer.Argument(help="dead letter id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Publish a dead letter again to its original topic (once)."""
    _connect()
    replayed = _backend().replay_dead_letter(letter)
    if output is Output.JSON:
        console.print_json(render.to_json(_letter_json(replayed)))
        return
    console.print(f"replayed {replayed.id} to {replayed.original_topic}")


def _control_deps() -> ControlDeps:
    return ControlDeps(runtime.state_store(), runtime.publisher(), runtime.utc_now)


@ops_app.command("approve")
def ops_approve(
    operation: Annotated[str, typer.Argument(help="operation id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Approve an operation awaiting approval (someone other than its requester)."""
    _connect()
    op = approve_operation(operation, runtime.principal(), _control_deps())
    _report_change(op, output, f"approved by {runtime.principal()}")


@ops_app.command("cancel")
def ops_cancel(
    operation: Annotated[str, typer.Argument(help="operation id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Cancel: at once if it has not started, else at the next step boundary with rollback."""
    _connect()
    op = cancel_operation(operation, runtime.principal(), _control_deps())
    _report_change(op, output, "cancelled" if op.finished else "cancel requested")


def _report_change(op: Operation, output: Output, what: str) -> None:
    if output is Output.JSON:
        console.print_json(render.to_json(render.operation_json(op)))
    else:
        console.print(f"{op.id}: {what}; now {op.status.value}")


def _one_sentence(exc: BaseException) -> str | None:
    """The message for errors a user can act on; None for bugs (shown as tracebacks)."""
    from fleetops.local.processes import PortTakenError, ProcessStartError

    known: tuple[type[BaseException], ...] = (
        CliError,
        runtime.ConfigurationError,
        PortTakenError,
        ProcessStartError,
        DecisionError,
    )
    from fleetops.cli.backend import BackendError
    from fleetops.services.dead_letter_store import DeadLetterNotFound, ReplayRefused

    known += (
        BackendError,
        DeadLetterNotFound,
        ReplayRefused,
    )
    try:
        from fleetops.local.emulators import EmulatorError
        from fleetops.local.stack import StackError

        known += (EmulatorError, StackError)
    except ImportError:
        pass
    if isinstance(exc, known):
        return str(exc)
    module = type(exc).__module__
    if module.startswith(("google.api_core", "google.auth")):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"Google Cloud call failed: {first}"
    return None


def main() -> None:
    try:
        app()
    except Exception as exc:
        message = _one_sentence(exc)
        if message is None:
            raise
        err_console.print(f"[red]error:[/] {message}")
        sys.exit(1)


if __name__ == "__main__":
    main()
