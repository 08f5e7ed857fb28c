"""`fleetops`: start the local stack, request operations, and watch them.

Every command that reads or changes the fleet goes through a `Backend`: the
API when FLEETOPS_API_URL is set (always with the local stack), so its roles
and rules apply, or Pub/Sub, Firestore and Cloud Scheduler directly otherwise.
Only `up` (which starts what the API runs on) and `alert` (which stands in for
Cloud Monitoring publishing an incident) always work directly.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fleetops import runtime
from fleetops.cli import render
from fleetops.cli.render import console, err_console
from fleetops.contract.names import DEFAULT_LOCAL_PROJECT, TOPIC_ALERTS
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import Action, Operation, OperationStatus, Size, StepStatus
from fleetops.local import config

if TYPE_CHECKING:
    from fleetops.cli.backend import Backend, MaintenanceView

app = typer.Typer(
    name="fleetops",
    help=(
        "Run and watch a fleet of single-tenant instances. With FLEETOPS_API_URL set "
        "(always with the local stack) every command goes through the API as the holder of "
        "FLEETOPS_API_TOKEN; otherwise straight to Pub/Sub and Firestore."
    ),
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
    help=(
        "The maintenance tick's Cloud Scheduler jobs (on GCP, or the local scheduler), "
        "the fleet's default window and its freezes."
    ),
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


# `--as`, read by the callback before any command runs.
_acting_as: str | None = None


@app.callback()
def options(
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="PRINCIPAL",
            help=(
                "act as this principal: with the local stack, its token from "
                "FLEETOPS_API_TOKENS_FILE (e.g. --as admin2 to approve what the operator "
                "asked for); directly, the name recorded. Also FLEETOPS_AS."
            ),
        ),
    ] = None,
) -> None:
    global _acting_as
    _acting_as = acting_as


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
            "run `fleetops up`, or set FLEETOPS_API_URL and FLEETOPS_API_TOKEN for a deployed "
            "fleetops"
        )


def _connect_direct() -> None:
    config.load_into_environ()
    if _acting_as:
        os.environ["FLEETOPS_PRINCIPAL"] = _acting_as
    _check_reachable()


def _backend() -> Backend:
    """The API when FLEETOPS_API_URL is set (here or in local.env), else direct."""
    from fleetops.cli.backend import DirectBackend, backend_from_env

    config.load_into_environ()
    chosen = backend_from_env(acting_as=_acting_as)
    if isinstance(chosen, DirectBackend):
        _check_reachable()
    return chosen


def _print_json(value: Any) -> None:
    console.print_json(render.to_json(value))


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
    """Start the whole local stack in the foreground; Ctrl-C stops everything it started.

    It works on the emulators directly (the API is one of the things it starts), and
    writes local.env, with the API's URL and an operator's token, for the other commands.
    """
    from fleetops.cli.backend import DirectBackend
    from fleetops.local.stack import LocalStack, run_until_interrupted

    began = time.monotonic()
    stack = LocalStack(state_dir=state_dir, project=project, port_base=port_base, say=console.print)

    def provision_demo(stack: LocalStack) -> None:
        direct = DirectBackend(_acting_as)
        if instances:
            ids = [f"demo-{n}" for n in range(1, instances + 1)]
            console.print(f"provisioning {instances} demo instance(s) through fleetops-requests...")
            op_ids = [
                direct.submit_request(
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
            finished = _wait_all(direct, op_ids, timeout=120)
            failed = [op for op in finished if op.status is not OperationStatus.SUCCEEDED]
            for op in failed:
                err_console.print(f"[red]{op.instance}: {op.status.value}: {op.error}[/]")
        console.print(render.instances_table(direct.list_instances()))
        console.print(f"pubsub emulator    {stack.env['PUBSUB_EMULATOR_HOST']}")
        console.print(f"firestore emulator {stack.env['FIRESTORE_EMULATOR_HOST']}")
        console.print(f"host agent         {stack.env['FLEETOPS_AGENT_URL']}")
        for name in stack.functions:
            console.print(f"function {name:<12}{stack.function_url(name)}")
        console.print(f"environment        {stack.env_file}  (logs in {stack.state_dir / 'logs'})")
        console.print(
            f"[bold green]fleetops is up[/] in {time.monotonic() - began:.1f}s "
            "- press Ctrl-C to stop"
        )

    code = run_until_interrupted(stack, provision_demo)
    console.print("stopped")
    raise typer.Exit(code)


def _wait_all(backend: Backend, op_ids: list[str], timeout: float) -> list[Operation]:
    deadline = time.monotonic() + timeout
    pending = set(op_ids)
    found: dict[str, Operation] = {}
    while pending and time.monotonic() < deadline:
        for op_id in list(pending):
            op = backend.get_operation(op_id)
            if op is not None and op.finished:
                found[op_id] = op
                pending.discard(op_id)
        if pending:
            time.sleep(0.2)
    if pending:
        raise CliError(f"{len(pending)} operation(s) did not finish within {timeout:.0f}s")
    return [found[i] for i in op_ids]


def wait_for(backend: Backend, op_id: str, timeout: float, *, show_progress: bool) -> Operation:
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
            op = backend.get_operation(op_id)
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
            time.sleep(0.25)


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
    wait: Annotated[
        bool, typer.Option("--wait", help="wait until the operation finishes, with a progress bar")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 180,
    output: OutputOption = Output.TABLE,
) -> None:
    """Request an operation (fleetops.instance.requested); print (or wait for) it."""
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
    backend = _backend()
    op_id = backend.submit_request(data)
    if not wait:
        if output is Output.JSON:
            _print_json({"operation": op_id, "status": "published"})
        else:
            console.print(f"published: operation {op_id} (fleetops ops wait {op_id})")
        return
    op = wait_for(backend, op_id, timeout, show_progress=output is Output.TABLE)
    _show_operation(op, output)
    _exit_for(op)


def _show_operation(op: Operation, output: Output, *, history: bool = False) -> None:
    if output is Output.JSON:
        _print_json(render.operation_json(op))
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


# ------------------------------------------------------------------ instances


@instances_app.callback()
def instances(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="include deleted instances")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """List the fleet's instances (or `instances show INSTANCE`)."""
    if ctx.invoked_subcommand is not None:
        return
    found = _backend().list_instances(include_deleted=all_)
    if output is Output.JSON:
        _print_json([render.instance_json(i) for i in found])
    else:
        console.print(render.instances_table(found))


@instances_app.command("show")
def instances_show(
    instance: Annotated[str, typer.Argument(help="instance id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """One instance: its operations, its remediation decisions (why it did or didn't
    heal), and its recent changes."""
    view = _backend().get_instance(instance)
    if view is None:
        raise CliError(f"instance {instance} does not exist")
    if output is Output.JSON:
        _print_json(render.instance_view_json(view))
        return
    console.print(render.instances_table([view.instance]))
    console.print(render.operations_table(view.operations))
    if view.decisions is None:
        console.print("remediation decisions: this API does not serve them")
    else:
        console.print(render.decisions_table(view.decisions))
    console.print(render.history_table(view.history[: render.SHOWN_HISTORY], "recent changes"))


@instances_app.command("windows")
def instances_windows(
    instance: Annotated[str | None, typer.Argument(help="instance id (default: all)")] = None,
    count: Annotated[int, typer.Option(min=1, max=20, help="openings to show")] = 3,
    output: OutputOption = Output.TABLE,
) -> None:
    """The next maintenance openings, in the customer's time and in UTC."""
    rows = [found.to_json() for found in _backend().instance_windows(instance, count)]
    if output is Output.JSON:
        _print_json(rows)
        return
    console.print(render.windows_table(rows))


# ------------------------------------------------------------------ operations


@ops_app.command("list")
def ops_list(
    instance: Annotated[str | None, typer.Option(help="only this instance")] = None,
    status: Annotated[OperationStatus | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: OutputOption = Output.TABLE,
) -> None:
    """Operations, newest first."""
    found = _backend().list_operations(instance=instance, status=status, limit=limit)
    if output is Output.JSON:
        _print_json([render.operation_json(o) for o in found])
    else:
        console.print(render.operations_table(found))


@ops_app.command("show")
def ops_show(
    operation: Annotated[str, typer.Argument(help="operation id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """One operation: its steps, attempts and timings."""
    op = _backend().get_operation(operation)
    if op is None:
        raise CliError(f"operation {operation} does not exist")
    _show_operation(op, output, history=True)


@ops_app.command("wait")
def ops_wait(
    operation: Annotated[str, typer.Argument(help="operation id")],
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 180,
    output: OutputOption = Output.TABLE,
) -> None:
    """Wait until the operation finishes, with a progress bar; exit 1 unless it succeeded."""
    op = wait_for(_backend(), operation, timeout, show_progress=output is Output.TABLE)
    _show_operation(op, output)
    _exit_for(op)


@ops_app.command("approve")
def ops_approve(
    operation: Annotated[str, typer.Argument(help="operation id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Approve an operation awaiting approval (someone other than its requester)."""
    backend = _backend()
    op = backend.approve(operation)
    _report_change(op, output, f"approved by {op.approved_by or backend.principal}")


@ops_app.command("cancel")
def ops_cancel(
    operation: Annotated[str, typer.Argument(help="operation id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Cancel: at once if it has not started, else at the next step boundary with rollback."""
    op = _backend().cancel(operation)
    _report_change(op, output, "cancelled" if op.finished else "cancel requested")


def _report_change(op: Operation, output: Output, what: str) -> None:
    if output is Output.JSON:
        _print_json(render.operation_json(op))
    else:
        console.print(f"{op.id}: {what}; now {op.status.value}")


# ------------------------------------------------------------------ alerts and remediation


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
    """Publish a Monitoring-shaped incident for the instance, as Cloud Monitoring would.

    It stands in for Cloud Monitoring, so it always publishes straight to the alerts
    topic (never through the API), with Pub/Sub and Firestore access of its own.
    """
    import json

    from fleetops.contract.incidents import notification

    _connect_direct()
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
        _print_json({"incident": incident_id, "state": state_name})
    else:
        console.print(f"published incident {incident_id} ({state_name}) for {instance}")


@remediation_app.command("reset")
def remediation_reset(
    instance: Annotated[str, typer.Argument(help="instance id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """After an escalation: let automation act on this instance again."""
    who = _backend().reset_remediation(instance)
    if output is Output.JSON:
        _print_json({"instance": instance, "reset_by": who})
        return
    console.print(f"remediation of {instance} reset by {who}")


# ------------------------------------------------------------------ automation


def _show_automation(status: Any, output: Output) -> None:
    if output is Output.JSON:
        _print_json(status.to_json())
        return
    console.print(render.automation_table(status.to_json()))


@automation_app.command("status")
def automation_status(output: OutputOption = Output.TABLE) -> None:
    """Paused or not, dry run or not, the circuit breaker, and every limit."""
    _show_automation(_backend().automation_status(), output)


@automation_app.command("pause")
def automation_pause(output: OutputOption = Output.TABLE) -> None:
    """The kill switch: no automatic remediation and no maintenance until resume."""
    _show_automation(_backend().pause_automation(), output)


@automation_app.command("resume")
def automation_resume(output: OutputOption = Output.TABLE) -> None:
    """Lift the kill switch and close the circuit breaker."""
    _show_automation(_backend().resume_automation(), output)


@automation_app.command("dry-run")
def automation_dry_run(
    on: Annotated[bool, typer.Argument(help="true: record what would be done, act on nothing")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Switch remediation's dry-run mode on or off."""
    _show_automation(_backend().change_automation(dry_run=on), output)


@automation_app.command("set")
def automation_set(
    name: Annotated[str, typer.Argument(help="e.g. cooldown_seconds, max_remediations")],
    value: Annotated[str, typer.Argument(help="a number")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Change one safety limit."""
    _show_automation(_backend().change_automation(limits={name: value}), output)


# ------------------------------------------------------------------ rollouts


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
    from fleetops.cli.backend import RolloutPlan

    plan = RolloutPlan(
        action=action.value,
        version=version,
        size=size.value if size else None,
        selector=selector,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        canary=canary,
        bake=bake,
        cutoff=cutoff,
        now=now,
    )
    _show_rollout(_backend().start_rollout(plan), output)


def _show_rollout(view: Any, output: Output) -> None:
    if output is Output.JSON:
        _print_json(render.rollout_json(view.rollout, view.waves))
    else:
        console.print(render.rollout_panel(view.rollout, view.waves))


@rollout_app.command("show")
def rollout_show(
    rollout: Annotated[str, typer.Argument(help="rollout id")],
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="refresh its progress bars until it ends (with --output json: print it then)",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="seconds between refreshes with --watch")
    ] = 1.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """A rollout with a progress bar per wave."""
    backend = _backend()
    view = backend.get_rollout(rollout)
    if not watch:
        _show_rollout(view, output)
        return
    if output is Output.JSON:
        while not view.rollout.status.terminal:
            time.sleep(interval)
            view = backend.get_rollout(rollout)
        _show_rollout(view, output)
        return
    from rich.live import Live

    with Live(render.rollout_panel(view.rollout, view.waves), console=console) as live:
        while not view.rollout.status.terminal:
            time.sleep(interval)
            view = backend.get_rollout(rollout)
            live.update(render.rollout_panel(view.rollout, view.waves))


def _change_rollout(rollout: str, status: str, output: Output) -> None:
    from fleetops.domain.rollouts import RolloutStatus

    _show_rollout(_backend().change_rollout(rollout, RolloutStatus(status)), output)


@rollout_app.command("pause")
def rollout_pause(
    rollout: Annotated[str, typer.Argument(help="rollout id")], output: OutputOption = Output.TABLE
) -> None:
    """Start nothing new until resumed; what runs finishes."""
    _change_rollout(rollout, "paused", output)


@rollout_app.command("resume")
def rollout_resume(
    rollout: Annotated[str, typer.Argument(help="rollout id")], output: OutputOption = Output.TABLE
) -> None:
    """Carry on from where it paused."""
    _change_rollout(rollout, "running", output)


@rollout_app.command("abort")
def rollout_abort(
    rollout: Annotated[str, typer.Argument(help="rollout id")], output: OutputOption = Output.TABLE
) -> None:
    """Stop for good; what runs finishes."""
    _change_rollout(rollout, "aborted", output)


@rollout_app.command("list")
def rollout_list(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50, output: OutputOption = Output.TABLE
) -> None:
    """Rollouts, newest first."""
    found = _backend().list_rollouts(limit=limit)
    if output is Output.JSON:
        _print_json([render.rollout_json(r) for r in found])
        return
    console.print(render.rollouts_table(found))


# ------------------------------------------------------------------ maintenance


def _show_jobs(view: MaintenanceView, output: Output) -> None:
    if view.scheduler_error:
        err_console.print(f"[yellow]warning:[/] {escape(view.scheduler_error)}", soft_wrap=True)
    if output is Output.JSON:
        _print_json([job.to_json() for job in view.jobs])
        return
    console.print(render.jobs_table(view.jobs))
    console.print(render.maintenance_settings(view.settings))


@maintenance_app.command("status")
def maintenance_status(output: OutputOption = Output.TABLE) -> None:
    """The maintenance jobs and when they fire next."""
    _show_jobs(_backend().maintenance_status(), output)


@maintenance_app.command("pause")
def maintenance_pause(output: OutputOption = Output.TABLE) -> None:
    """Pause every maintenance job: no tick fires until resume."""
    _show_jobs(_backend().change_maintenance_jobs("pause"), output)


@maintenance_app.command("resume")
def maintenance_resume(output: OutputOption = Output.TABLE) -> None:
    """Resume every maintenance job."""
    _show_jobs(_backend().change_maintenance_jobs("resume"), output)


@maintenance_app.command("run-now")
def maintenance_run_now(output: OutputOption = Output.TABLE) -> None:
    """Fire every maintenance job once, now."""
    _show_jobs(_backend().change_maintenance_jobs("run-now"), output)


@maintenance_app.command("default-window")
def maintenance_default_window(
    days: Annotated[str, typer.Option(help="e.g. sat,sun")],
    start: Annotated[str, typer.Option(help="local start, HH:MM")],
    duration: Annotated[str, typer.Option(help="e.g. 4h")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Berlin")],
    output: OutputOption = Output.TABLE,
) -> None:
    """The window of instances that have none of their own."""
    doc = {
        "days": [d.strip().lower() for d in days.split(",") if d.strip()],
        "start": start,
        "duration": duration,
        "timezone": timezone,
    }
    window = _backend().set_default_window(doc)
    if output is Output.JSON:
        _print_json({"default_window": window.to_dict()})
        return
    console.print(f"fleet default window: {render.window_text(window.to_dict())}")


@maintenance_app.command("freeze")
def maintenance_freeze(
    start: Annotated[str, typer.Argument(help="RFC 3339 start, e.g. 2026-12-20T00:00:00Z")],
    end: Annotated[str, typer.Argument(help="RFC 3339 end (excluded)")],
    reason: Annotated[str, typer.Option(help="why, shown to everyone who waits")],
    output: OutputOption = Output.TABLE,
) -> None:
    """No maintenance between two instants (e.g. year-end), fleet-wide."""
    freeze = _backend().add_freeze({"start": start, "end": end, "reason": reason})
    if output is Output.JSON:
        _print_json({"freeze": render.freeze_json(freeze)})
        return
    console.print(render.freeze_text(freeze))


# ------------------------------------------------------------------ dead letters


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50, output: OutputOption = Output.TABLE
) -> None:
    """Dead letters, newest first, with the reason each was refused."""
    letters = _backend().list_dead_letters(limit=limit)
    if output is Output.JSON:
        _print_json([render.letter_json(item) for item in letters])
        return
    console.print(render.letters_table(letters))


@dlq_app.command("replay")
def dlq_replay(
    letter: Annotated[str, typer.Argument(help="dead letter id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Publish a dead letter again to its original topic (once)."""
    replayed = _backend().replay_dead_letter(letter)
    if output is Output.JSON:
        _print_json(render.letter_json(replayed))
        return
    console.print(f"replayed {replayed.id} to {replayed.original_topic}")


# ------------------------------------------------------------------ errors


def _one_sentence(exc: BaseException) -> str | None:
    """The message for errors a user can act on; None for anything else."""
    from fleetops.cli.backend import BackendError
    from fleetops.local.processes import PortTakenError, ProcessStartError
    from fleetops.services.dead_letter_store import DeadLetterNotFound, ReplayRefused

    known: tuple[type[BaseException], ...] = (
        CliError,
        runtime.ConfigurationError,
        PortTakenError,
        ProcessStartError,
        DecisionError,
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
            if os.environ.get("FLEETOPS_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            message = (
                f"fleetops failed unexpectedly ({type(exc).__name__}"
                + (f": {first}" if first else "")
                + "); FLEETOPS_DEBUG=1 shows the traceback"
            )
        err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
