"""Rollouts, automation and maintenance: what `fleetops rollout|automation|maintenance` do.

Every change names its caller: a rollout's `created_by` and history, the kill
switch's `paused_by`, the circuit's closing reason, `automation/settings/history`,
the maintenance settings' history, and the instance's history on a remediation reset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fleetops.api import control_models as cm
from fleetops.api.auth import Role
from fleetops.api.handlers import (
    ID_PATTERN,
    IDEMPOTENCY_PATTERN,
    error_answers,
    json_reply,
    path_id,
    read_body,
)
from fleetops.api.models import MaintenanceWindowOut
from fleetops.api.routing import (
    Answer,
    ApiError,
    Call,
    Reply,
    Route,
    bad_request,
    conflict,
    int_param,
    not_found,
    string_param,
)
from fleetops.contract.requests import INSTANCE_ID_PATTERN
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import Action, MaintenanceWindow
from fleetops.domain.rollouts import Limit, Rollout, RolloutStatus
from fleetops.domain.windows import DAYS, Freeze, parse_duration
from fleetops.ports import ScheduledJob
from fleetops.services import automation
from fleetops.services import maintenance as mnt
from fleetops.services.automation_changes import change_settings
from fleetops.services.rollouts import (
    RolloutDeps,
    StartRollout,
    plan_rollout,
    progress,
    rollout_from_doc,
    set_status,
)

logger = logging.getLogger("fleetops.api")


# ------------------------------------------------------------------ rollouts


def _rollout_deps(call: Call) -> RolloutDeps:
    return RolloutDeps(call.deps.store, call.deps.publisher, call.deps.now)


def _span(text: str) -> timedelta:
    return timedelta(0) if text == "0" else parse_duration(text)


def _limit(value: int | str) -> Limit:
    return Limit(float(value), percent=False) if isinstance(value, int) else Limit.parse(value)


def _rollout_id(principal: str, key: str, body: bytes) -> str:
    """A retry with the same Idempotency-Key and body, by the same caller, names one rollout."""
    canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{principal}\n{key}\n{canonical}".encode()).hexdigest()
    return f"ro-{digest[:24]}"


def _with_progress(call: Call, rollout_id: str) -> cm.RolloutOut:
    rollout, waves = progress(rollout_id, call.deps.store)
    return cm.RolloutOut.from_domain(rollout, waves)


def _href(rollout_id: str) -> str:
    return f"/v1/rollouts/{rollout_id}"


def start_rollout(call: Call) -> Reply:
    body = read_body(call, cm.RolloutStart)
    principal = call.principal
    key: str | None = call.params["Idempotency-Key"]
    rollout_id = _rollout_id(principal, key, call.body) if key else None
    if rollout_id is not None and call.deps.store.get_document(f"rollouts/{rollout_id}"):
        href = _href(rollout_id)
        return json_reply(_with_progress(call, rollout_id), 200, {"Location": href})
    command = StartRollout(
        action=Action(body.action),
        version=body.version,
        size=body.size,
        selector=dict(body.selector),
        max_concurrency=_limit(body.max_concurrency),
        max_errors=_limit(body.max_errors),
        canary=body.canary or None,
        bake=_span(body.bake),
        cutoff=_span(body.cutoff),
        respect_windows=not body.now,
        requested_by=principal,
    )
    try:
        rollout = plan_rollout(command, _rollout_deps(call), rollout_id)
    except DecisionError as exc:
        raise conflict(str(exc)) from exc
    logger.info(
        "%s started rollout %s: %s of %d instance(s)",
        principal,
        rollout.id,
        rollout.action.value,
        rollout.total,
        extra={"rollout": rollout.id},
    )
    href = _href(rollout.id)
    return json_reply(_with_progress(call, rollout.id), 201, {"Location": href})


def list_rollouts(call: Call) -> Reply:
    found = call.deps.store.list_documents(
        "rollouts", order_by="created_at", limit=call.params["limit"]
    )
    rollouts = [cm.RolloutOut.from_domain(rollout_from_doc(i, doc)) for i, doc in found]
    return json_reply(cm.RolloutList(rollouts=rollouts))


def _existing(call: Call) -> str:
    rollout_id: str = call.params["id"]
    if call.deps.store.get_document(f"rollouts/{rollout_id}") is None:
        raise not_found(f"rollout {rollout_id} does not exist")
    return rollout_id


def get_rollout(call: Call) -> Reply:
    return json_reply(_with_progress(call, _existing(call)))


def _rollout_change(status: RolloutStatus, verb: str) -> Callable[[Call], Reply]:
    def change(call: Call) -> Reply:
        rollout_id = _existing(call)
        try:
            changed: Rollout = set_status(rollout_id, status, call.principal, _rollout_deps(call))
        except DecisionError as exc:
            raise conflict(str(exc)) from exc
        logger.info(
            "%s %s rollout %s", call.principal, verb, rollout_id, extra={"rollout": rollout_id}
        )
        return json_reply(_with_progress(call, changed.id))

    return change


# ------------------------------------------------------------------ automation


def _automation(status: automation.AutomationStatus) -> Reply:
    return json_reply(cm.AutomationOut.from_status(status))


def get_automation(call: Call) -> Reply:
    return _automation(automation.status(call.deps.store))


def pause_automation(call: Call) -> Reply:
    automation.pause(call.deps.store, call.principal)
    logger.info("%s paused automation", call.principal)
    return _automation(automation.status(call.deps.store))


def resume_automation(call: Call) -> Reply:
    status = automation.resume(call.deps.store, call.principal, call.deps.now())
    logger.info("%s resumed automation and closed the circuit breaker", call.principal)
    return _automation(status)


def patch_automation(call: Call) -> Reply:
    body = read_body(call, cm.AutomationPatch)
    limits = body.limits.given() if body.limits is not None else {}
    try:
        status = change_settings(
            call.deps.store, call.principal, call.deps.now(), dry_run=body.dry_run, limits=limits
        )
    except DecisionError as exc:
        raise bad_request(str(exc), "invalid-request") from exc
    logger.info(
        "%s changed automation: %s",
        call.principal,
        ", ".join([*(["dry_run"] if body.dry_run is not None else []), *sorted(limits)])
        or "nothing",
    )
    return _automation(status)


# ------------------------------------------------------------------ maintenance


def _maintenance(call: Call) -> Reply:
    settings = mnt.load_settings(call.deps.store)
    jobs: list[ScheduledJob] = []
    error = None
    scheduler = call.deps.jobs
    if scheduler is None:
        error = "the API has no scheduler to ask"
    else:
        try:
            jobs = mnt.maintenance_jobs(scheduler)
        except Exception as exc:
            logger.warning("listing the maintenance jobs failed: %s", exc)
            error = "the scheduler could not be reached; try again"
    return json_reply(cm.MaintenanceOut.from_domain(settings, jobs, error))


def get_maintenance(call: Call) -> Reply:
    return _maintenance(call)


def _jobs_change(change: mnt.JobChange) -> Callable[[Call], Reply]:
    def handle(call: Call) -> Reply:
        scheduler = call.deps.jobs
        if scheduler is None:
            raise ApiError(503, "unavailable", "the API has no scheduler to ask")
        try:
            jobs = mnt.change_jobs(
                scheduler, change, call.deps.store, call.principal, call.deps.now()
            )
        except Exception as exc:
            logger.warning("%s of the maintenance jobs failed: %s", change.value, exc)
            raise ApiError(
                503,
                "unavailable",
                f"the maintenance jobs could not {change.value.replace('-', ' ')}: "
                "the scheduler is out of reach; try again",
                {"Retry-After": "5"},
            ) from exc
        logger.info("%s: maintenance jobs %s", call.principal, change.value)
        settings = mnt.load_settings(call.deps.store)
        return json_reply(cm.MaintenanceOut.from_domain(settings, jobs, None))

    return handle


def put_default_window(call: Call) -> Reply:
    body = read_body(call, cm.DefaultWindowBody)
    window = MaintenanceWindow(
        days=tuple(day for day in DAYS if day in body.days),
        start=body.start,
        duration=body.duration,
        timezone=body.timezone,
    )
    try:
        settings = mnt.set_default_window(call.deps.store, window, call.principal, call.deps.now())
    except ValueError as exc:
        raise bad_request(str(exc), "invalid-request") from exc
    logger.info("%s set the fleet's default maintenance window", call.principal)
    assert settings.default_window is not None
    return json_reply(MaintenanceWindowOut.model_validate(settings.default_window.to_dict()))


def add_freeze(call: Call) -> Reply:
    body = read_body(call, cm.FreezeBody)
    if body.end <= body.start:
        raise bad_request("field 'end' must be after 'start'", "invalid-request")
    try:
        freeze = Freeze(body.start, body.end, body.reason.strip())
    except ValueError as exc:
        raise bad_request(str(exc), "invalid-request") from exc
    mnt.add_freeze(call.deps.store, freeze, call.principal, call.deps.now())
    logger.info("%s added a maintenance freeze", call.principal)
    return json_reply(cm.FreezeOut(start=freeze.start, end=freeze.end, reason=freeze.reason), 201)


# ------------------------------------------------------------------ one instance


def instance_windows(call: Call) -> Reply:
    instance_id: str = call.params["id"]
    try:
        [found] = mnt.instance_windows(
            call.deps.store, call.deps.now(), call.params["count"], instance_id
        )
    except mnt.InstanceNotFound as exc:
        raise not_found(str(exc)) from exc
    return json_reply(cm.InstanceWindowsOut.from_domain(found))


def reset_remediation(call: Call) -> Reply:
    instance_id: str = call.params["id"]
    store = call.deps.store
    if store.get_instance(instance_id) is None:
        raise not_found(f"instance {instance_id} does not exist")
    now = call.deps.now()
    try:
        automation.reset_instance(store, instance_id, call.principal, now)
    except DecisionError as exc:
        raise not_found(str(exc)) from exc
    logger.info(
        "%s reset the remediation of %s",
        call.principal,
        instance_id,
        extra={"instance": instance_id},
    )
    return json_reply(
        cm.RemediationResetOut(instance=instance_id, reset_by=call.principal, reset_at=now)
    )


# ------------------------------------------------------------------ the table


def _model_body(model: type[Any]) -> Callable[[str], tuple[dict[str, Any], dict[str, Any]]]:
    def schema(ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
        body: dict[str, Any] = model.model_json_schema(ref_template=ref_template)
        definitions: dict[str, Any] = body.pop("$defs", {})
        return body, definitions

    return schema


def control_routes() -> list[Route]:
    rollout_id = path_id("id", "rollout id", ID_PATTERN)
    instance_id = path_id("id", "instance id", INSTANCE_ID_PATTERN, 40)
    read = error_answers(400, 401, 403)
    change = (*read, *error_answers(404, 409))
    rollout = cm.RolloutOut
    return [
        Route(
            "POST",
            "/v1/rollouts",
            "startRollout",
            "Plan a rollout into waves; maintenance ticks then carry it out",
            start_rollout,
            Role.OPERATOR,
            "rollouts",
            (
                Answer(201, "planned", rollout, headers={"Location": "the rollout's href"}),
                Answer(
                    200,
                    "this caller already started it with this Idempotency-Key and body",
                    rollout,
                    headers={"Location": "the rollout's href"},
                ),
                *read,
                *error_answers(409, 415),
            ),
            (
                string_param(
                    "Idempotency-Key",
                    "header",
                    "retrying with the same key and the same body names the same rollout",
                    pattern=IDEMPOTENCY_PATTERN,
                    max_length=128,
                ),
            ),
            body_schema=_model_body(cm.RolloutStart),
            description=(
                "The caller is recorded as the rollout's created_by. 409 when no instance "
                "matches the selector (or all already run the version)."
            ),
        ),
        Route(
            "GET",
            "/v1/rollouts",
            "listRollouts",
            "Rollouts, newest first",
            list_rollouts,
            Role.VIEWER,
            "rollouts",
            (Answer(200, "the rollouts, without per-wave progress", cm.RolloutList), *read),
            (int_param("limit", "at most this many", minimum=1, maximum=500, default=50),),
        ),
        Route(
            "GET",
            "/v1/rollouts/{id}",
            "getRollout",
            "One rollout, with the count of targets per wave and status",
            get_rollout,
            Role.VIEWER,
            "rollouts",
            (Answer(200, "the rollout", rollout), *read, *error_answers(404)),
            (rollout_id,),
        ),
        *(
            Route(
                "POST",
                f"/v1/rollouts/{{id}}:{verb}",
                f"{verb}Rollout",
                summary,
                _rollout_change(status, done),
                Role.OPERATOR,
                "rollouts",
                (Answer(200, done, rollout), *change),
                (rollout_id,),
            )
            for verb, status, done, summary in (
                (
                    "pause",
                    RolloutStatus.PAUSED,
                    "paused",
                    "Start nothing new until resumed; what runs finishes",
                ),
                ("resume", RolloutStatus.RUNNING, "resumed", "Carry on from where it paused"),
                (
                    "abort",
                    RolloutStatus.ABORTED,
                    "aborted",
                    "Stop for good; what runs finishes",
                ),
            )
        ),
        Route(
            "GET",
            "/v1/automation",
            "getAutomation",
            "The kill switch, dry-run mode, the circuit breaker and every limit",
            get_automation,
            Role.VIEWER,
            "automation",
            (Answer(200, "automation's status", cm.AutomationOut), *read),
        ),
        Route(
            "POST",
            "/v1/automation:pause",
            "pauseAutomation",
            "The kill switch: no automatic remediation and no maintenance until resumed",
            pause_automation,
            Role.OPERATOR,
            "automation",
            (Answer(200, "paused, by the caller", cm.AutomationOut), *read),
        ),
        Route(
            "POST",
            "/v1/automation:resume",
            "resumeAutomation",
            "Lift the kill switch and close the circuit breaker",
            resume_automation,
            Role.ADMIN,
            "automation",
            (Answer(200, "resumed", cm.AutomationOut), *read),
        ),
        Route(
            "PATCH",
            "/v1/automation",
            "changeAutomation",
            "Switch dry-run mode, change safety limits",
            patch_automation,
            Role.ADMIN,
            "automation",
            (Answer(200, "changed", cm.AutomationOut), *read, *error_answers(415)),
            body_schema=_model_body(cm.AutomationPatch),
            description="Fields left out keep their value. The change and its caller are "
            "recorded in automation/settings/history.",
        ),
        Route(
            "GET",
            "/v1/maintenance",
            "getMaintenance",
            "The maintenance tick's scheduler jobs, the default window and the freezes",
            get_maintenance,
            Role.VIEWER,
            "maintenance",
            (Answer(200, "maintenance", cm.MaintenanceOut), *read),
        ),
        *(
            Route(
                "POST",
                f"/v1/maintenance:{verb}",
                operation_id,
                summary,
                _jobs_change(job_change),
                Role.ADMIN,
                "maintenance",
                (
                    Answer(200, "done; the jobs as they are now", cm.MaintenanceOut),
                    *read,
                    *error_answers(503),
                ),
            )
            for verb, operation_id, job_change, summary in (
                (
                    "pause",
                    "pauseMaintenance",
                    mnt.JobChange.PAUSE,
                    "Pause every maintenance job: no tick fires until resumed",
                ),
                (
                    "resume",
                    "resumeMaintenance",
                    mnt.JobChange.RESUME,
                    "Resume every maintenance job",
                ),
                (
                    "run-now",
                    "runMaintenanceNow",
                    mnt.JobChange.RUN_NOW,
                    "Fire every maintenance job once, now",
                ),
            )
        ),
        Route(
            "PUT",
            "/v1/maintenance/default-window",
            "setDefaultWindow",
            "The maintenance window of instances that have none of their own",
            put_default_window,
            Role.ADMIN,
            "maintenance",
            (
                Answer(200, "the window, as stored", MaintenanceWindowOut),
                *read,
                *error_answers(415),
            ),
            body_schema=_model_body(cm.DefaultWindowBody),
        ),
        Route(
            "POST",
            "/v1/maintenance/freezes",
            "addFreeze",
            "No maintenance between two instants (e.g. year-end), fleet-wide",
            add_freeze,
            Role.ADMIN,
            "maintenance",
            (
                Answer(201, "added (once, however often it is sent)", cm.FreezeOut),
                *read,
                *error_answers(415),
            ),
            body_schema=_model_body(cm.FreezeBody),
            description="A freeze whose end is not after its start is refused (400).",
        ),
        Route(
            "GET",
            "/v1/instances/{id}/windows",
            "getInstanceWindows",
            "The instance's next maintenance openings, in its own time and in UTC",
            instance_windows,
            Role.VIEWER,
            "instances",
            (
                Answer(200, "its window and next openings", cm.InstanceWindowsOut),
                *read,
                *error_answers(404),
            ),
            (
                instance_id,
                int_param("count", "openings to show", minimum=1, maximum=20, default=3),
            ),
            description="An instance without a window of its own has the fleet default's.",
        ),
        Route(
            "POST",
            "/v1/instances/{id}/remediation:reset",
            "resetRemediation",
            "After an escalation: let automation act on this instance again",
            reset_remediation,
            Role.OPERATOR,
            "instances",
            (
                Answer(200, "reset, by the caller", cm.RemediationResetOut),
                *read,
                *error_answers(404),
            ),
            (instance_id,),
        ),
    ]
