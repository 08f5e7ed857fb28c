"""How the command line reaches fleetops: through the API, or straight to Pub/Sub and Firestore.

`backend_from_env()` picks the API whenever FLEETOPS_API_URL is set (always
with the local stack), so the API's roles and rules apply to the CLI too; the
bearer token is FLEETOPS_API_TOKEN, or, with `--as PRINCIPAL` (FLEETOPS_AS),
that principal's token from FLEETOPS_API_TOKENS_FILE. Without FLEETOPS_API_URL
it is the direct backend, which needs the emulators or Google credentials and
calls the same services the API calls. Both give the same domain values back,
so the CLI renders them the same way; every failure a user can act on is a
`BackendError` with one sentence.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from fleetops.domain.model import HistoryEntry, Instance, Operation, OperationStatus
from fleetops.services.dead_letter_store import DeadLetter

if TYPE_CHECKING:
    from fleetops.api.control_models import RolloutOut
    from fleetops.api.models import MaintenanceWindowOut
    from fleetops.domain.model import MaintenanceWindow
    from fleetops.domain.rollouts import Rollout, RolloutStatus
    from fleetops.domain.windows import Freeze
    from fleetops.ports import ScheduledJob, StateStore
    from fleetops.services.automation import AutomationStatus
    from fleetops.services.control import ControlDeps
    from fleetops.services.maintenance import InstanceWindows, MaintenanceSettings
    from fleetops.services.rollouts import RolloutDeps, StartRollout, WaveProgress

RECENT_OPERATIONS = 10
RECENT_HISTORY = 50
RECENT_DECISIONS = 25


class BackendError(Exception):
    """One sentence a user can act on."""


@dataclass(frozen=True)
class InstanceView:
    instance: Instance
    operations: list[Operation]
    history: list[HistoryEntry]
    # Remediation decisions, newest first, and the remediation state document;
    # decisions are None where the backend cannot read them (an API that does not serve them).
    decisions: list[dict[str, Any]] | None = None
    remediation: dict[str, Any] | None = None


@dataclass(frozen=True)
class RolloutView:
    rollout: Rollout
    waves: list[WaveProgress]


@dataclass(frozen=True)
class RolloutPlan:
    """`fleetops rollout start` as typed: parsed by whoever plans it (the API, or here)."""

    action: str = "upgrade"
    version: str | None = None
    size: str | None = None
    selector: str | None = None
    max_concurrency: str = "10%"
    max_errors: str = "0"
    canary: str = "ring=canary"
    bake: str = "10m"
    cutoff: str = "30m"
    now: bool = False


@dataclass(frozen=True)
class MaintenanceView:
    jobs: list[ScheduledJob]
    settings: MaintenanceSettings
    # Why `jobs` is empty: the scheduler is out of the API's reach.
    scheduler_error: str | None = None


class Backend(Protocol):
    @property
    def principal(self) -> str:
        """Who the requests, approvals and other changes are recorded as."""
        ...

    # instances
    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]: ...

    def get_instance(self, instance_id: str) -> InstanceView | None:
        """The instance, its recent operations, decisions and history; None if it does not exist."""
        ...

    def instance_windows(self, instance_id: str | None, count: int) -> list[InstanceWindows]:
        """The next `count` maintenance openings of one instance, or of every instance."""
        ...

    def reset_remediation(self, instance_id: str) -> str:
        """Let automation act on the instance again; who did it."""
        ...

    # requests and operations
    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 50,
    ) -> list[Operation]: ...

    def get_operation(self, operation_id: str) -> Operation | None: ...

    def submit_request(self, data: Mapping[str, Any]) -> str:
        """Publish a fleetops.instance.requested event; the id its operation will have."""
        ...

    def approve(self, operation_id: str) -> Operation: ...

    def cancel(self, operation_id: str) -> Operation: ...

    # rollouts
    def start_rollout(self, plan: RolloutPlan) -> RolloutView: ...

    def list_rollouts(self, *, limit: int = 50) -> list[Rollout]: ...

    def get_rollout(self, rollout_id: str) -> RolloutView: ...

    def change_rollout(self, rollout_id: str, status: RolloutStatus) -> RolloutView:
        """Pause (`paused`), resume (`running`) or abort (`aborted`) a rollout."""
        ...

    # automation
    def automation_status(self) -> AutomationStatus: ...

    def pause_automation(self) -> AutomationStatus: ...

    def resume_automation(self) -> AutomationStatus: ...

    def change_automation(
        self, *, dry_run: bool | None = None, limits: Mapping[str, str] | None = None
    ) -> AutomationStatus: ...

    # maintenance
    def maintenance_status(self) -> MaintenanceView: ...

    def change_maintenance_jobs(self, action: str) -> MaintenanceView:
        """`pause`, `resume` or `run-now` every maintenance job."""
        ...

    def set_default_window(self, window: Mapping[str, Any]) -> MaintenanceWindow:
        """Set the fleet's default window; the window as stored."""
        ...

    def add_freeze(self, freeze: Mapping[str, Any]) -> Freeze:
        """Add a fleet-wide freeze (once); the freeze as stored."""
        ...

    # dead letters
    def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]: ...

    def replay_dead_letter(self, letter_id: str) -> DeadLetter: ...


# ------------------------------------------------------------------ shared by both


def start_command(plan: RolloutPlan, requested_by: str) -> StartRollout:
    """The rollout a `RolloutPlan` asks for; ValueError names the option that is wrong."""
    from fleetops.domain.model import Action, Size
    from fleetops.domain.rollouts import Limit, parse_selector
    from fleetops.domain.windows import parse_duration
    from fleetops.services.rollouts import StartRollout

    def duration(text: str, option: str) -> timedelta:
        if text.strip() in ("0", "0m", "0h"):
            return timedelta(0)
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"--{option}: {exc}") from exc

    def limit(text: str, option: str) -> Limit:
        try:
            return Limit.parse(text)
        except ValueError as exc:
            raise ValueError(f"--{option}: {exc}") from exc

    return StartRollout(
        action=Action(plan.action),
        version=plan.version,
        size=Size(plan.size) if plan.size else None,
        selector=parse_selector(plan.selector),
        max_concurrency=limit(plan.max_concurrency, "max-concurrency"),
        max_errors=limit(plan.max_errors, "max-errors"),
        canary=plan.canary or None,
        bake=duration(plan.bake, "bake"),
        cutoff=duration(plan.cutoff, "cutoff"),
        respect_windows=not plan.now,
        requested_by=requested_by,
    )


@contextmanager
def _one_sentence() -> Iterator[None]:
    """The domain's refusals (DecisionError, ValueError) as a BackendError."""
    from fleetops.domain.decisions import DecisionError

    try:
        yield
    except (DecisionError, ValueError) as exc:
        raise BackendError(str(exc)) from exc


# ------------------------------------------------------------------ direct


class DirectBackend:
    """Pub/Sub, Firestore and Cloud Scheduler with this process's credentials."""

    def __init__(self, principal: str | None = None) -> None:
        from fleetops import runtime

        self._principal = principal or runtime.principal()

    @property
    def principal(self) -> str:
        return self._principal

    def _store(self) -> StateStore:
        from fleetops import runtime

        return runtime.state_store()

    def _now(self) -> datetime:
        from fleetops import runtime

        return runtime.utc_now()

    def _control(self) -> ControlDeps:
        from fleetops import runtime
        from fleetops.services.control import ControlDeps

        return ControlDeps(runtime.state_store(), runtime.publisher(), runtime.utc_now)

    def _rollouts(self) -> RolloutDeps:
        from fleetops import runtime
        from fleetops.services.rollouts import RolloutDeps

        return RolloutDeps(
            runtime.state_store(), runtime.publisher(), runtime.utc_now, runtime.approval_policy()
        )

    # instances

    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]:
        return self._store().list_instances(include_deleted=include_deleted)

    def get_instance(self, instance_id: str) -> InstanceView | None:
        store = self._store()
        found = store.get_instance(instance_id)
        if found is None:
            return None
        decisions = store.list_documents(
            f"instances/{instance_id}/decisions", order_by="at", limit=RECENT_DECISIONS
        )
        return InstanceView(
            found,
            store.list_operations(instance=instance_id, limit=RECENT_OPERATIONS),
            store.instance_history(instance_id, limit=RECENT_HISTORY),
            [d for _, d in decisions],
            store.get_document(f"remediation/{instance_id}"),
        )

    def instance_windows(self, instance_id: str | None, count: int) -> list[InstanceWindows]:
        from fleetops.services import maintenance

        with _one_sentence():
            return maintenance.instance_windows(self._store(), self._now(), count, instance_id)

    def reset_remediation(self, instance_id: str) -> str:
        from fleetops.services import automation

        with _one_sentence():
            automation.reset_instance(self._store(), instance_id, self.principal, self._now())
        return self.principal

    # requests and operations

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 50,
    ) -> list[Operation]:
        return self._store().list_operations(instance=instance, status=status, limit=limit)

    def get_operation(self, operation_id: str) -> Operation | None:
        return self._store().get_operation(operation_id)

    def submit_request(self, data: Mapping[str, Any]) -> str:
        from fleetops import runtime
        from fleetops.contract.names import TOPIC_REQUESTS
        from fleetops.contract.pubsub import encode_binary
        from fleetops.contract.requests import new_request_event
        from fleetops.services.requests import operation_id_for

        body = dict(data)
        body.setdefault("requested_by", self.principal)
        event = new_request_event(
            body, source=f"//fleetops/cli/{self.principal}", event_id=str(uuid.uuid4())
        )
        payload, attributes = encode_binary(event)
        runtime.publisher().publish(TOPIC_REQUESTS, payload, attributes)
        return operation_id_for(event.source, event.id)

    def approve(self, operation_id: str) -> Operation:
        from fleetops.services.control import approve_operation

        with _one_sentence():
            return approve_operation(operation_id, self.principal, self._control())

    def cancel(self, operation_id: str) -> Operation:
        from fleetops.services.control import cancel_operation

        with _one_sentence():
            return cancel_operation(operation_id, self.principal, self._control())

    # rollouts

    def start_rollout(self, plan: RolloutPlan) -> RolloutView:
        from fleetops.services.rollouts import plan_rollout

        with _one_sentence():
            rollout = plan_rollout(start_command(plan, self.principal), self._rollouts())
        return self.get_rollout(rollout.id)

    def list_rollouts(self, *, limit: int = 50) -> list[Rollout]:
        from fleetops.services.rollouts import rollout_from_doc

        found = self._store().list_documents("rollouts", order_by="created_at", limit=limit)
        return [rollout_from_doc(rollout_id, doc) for rollout_id, doc in found]

    def get_rollout(self, rollout_id: str) -> RolloutView:
        from fleetops.services.rollouts import progress

        with _one_sentence():
            rollout, waves = progress(rollout_id, self._store())
        return RolloutView(rollout, waves)

    def change_rollout(self, rollout_id: str, status: RolloutStatus) -> RolloutView:
        from fleetops.services.rollouts import set_status

        with _one_sentence():
            set_status(rollout_id, status, self.principal, self._rollouts())
        return self.get_rollout(rollout_id)

    # automation

    def automation_status(self) -> AutomationStatus:
        from fleetops.services import automation

        return automation.status(self._store())

    def pause_automation(self) -> AutomationStatus:
        from fleetops.services import automation

        automation.pause(self._store(), self.principal)
        return self.automation_status()

    def resume_automation(self) -> AutomationStatus:
        from fleetops.services import automation

        return automation.resume(self._store(), self.principal, self._now())

    def change_automation(
        self, *, dry_run: bool | None = None, limits: Mapping[str, str] | None = None
    ) -> AutomationStatus:
        from fleetops.services.automation_changes import change_settings

        numbers = {name: _number(name, value) for name, value in (limits or {}).items()}
        with _one_sentence():
            return change_settings(
                self._store(), self.principal, self._now(), dry_run=dry_run, limits=numbers
            )

    # maintenance

    def maintenance_status(self) -> MaintenanceView:
        from fleetops import runtime
        from fleetops.services import maintenance

        jobs = maintenance.maintenance_jobs(runtime.scheduler_jobs())
        return MaintenanceView(jobs, maintenance.load_settings(self._store()))

    def change_maintenance_jobs(self, action: str) -> MaintenanceView:
        from fleetops import runtime
        from fleetops.services import maintenance

        jobs = maintenance.change_jobs(
            runtime.scheduler_jobs(),
            maintenance.JobChange(action),
            self._store(),
            self.principal,
            self._now(),
        )
        return MaintenanceView(jobs, maintenance.load_settings(self._store()))

    def set_default_window(self, window: Mapping[str, Any]) -> MaintenanceWindow:
        from fleetops.domain.windows import window_from_dict
        from fleetops.services import maintenance

        with _one_sentence():
            settings = maintenance.set_default_window(
                self._store(), window_from_dict(window), self.principal, self._now()
            )
        assert settings.default_window is not None
        return settings.default_window

    def add_freeze(self, freeze: Mapping[str, Any]) -> Freeze:
        from fleetops.domain.windows import freeze_from_dict
        from fleetops.services import maintenance

        with _one_sentence():
            added = freeze_from_dict(freeze)
            maintenance.add_freeze(self._store(), added, self.principal, self._now())
        return added

    # dead letters

    def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]:
        from fleetops.adapters.firestore_dead_letters import default_store

        return default_store().list(limit=limit)

    def replay_dead_letter(self, letter_id: str) -> DeadLetter:
        from fleetops import runtime
        from fleetops.adapters.firestore_dead_letters import default_store
        from fleetops.services.dead_letter_store import (
            DeadLetterNotFound,
            ReplayRefused,
            replay_dead_letter,
        )

        try:
            return replay_dead_letter(
                letter_id, self.principal, default_store(), runtime.publisher(), runtime.utc_now
            )
        except (DeadLetterNotFound, ReplayRefused) as exc:
            raise BackendError(str(exc)) from exc


# ------------------------------------------------------------------ API


class ApiBackend:
    """The REST API at FLEETOPS_API_URL, as the holder of one bearer token."""

    TIMEOUT_SECONDS = 30.0

    def __init__(
        self,
        url: str,
        token: str,
        session: requests.Session | None = None,
        *,
        found_in: str = "FLEETOPS_API_TOKEN",
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._session = session or requests.Session()
        self._principal: str | None = None
        self.found_in = found_in

    def __repr__(self) -> str:
        return f"ApiBackend({self.url!r})"

    def _call(
        self,
        method: str,
        path: str,
        *,
        doing: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        attempts: int = 1,
    ) -> Any:
        """`doing` names the call in a 403 sentence: "approving an operation needs ..."."""
        for attempt in range(1, attempts + 1):
            try:
                response = self._session.request(
                    method,
                    self.url + path,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    json=json,
                    headers={"Authorization": f"Bearer {self._token}", **(headers or {})},
                    timeout=self.TIMEOUT_SECONDS,
                )
                break
            except requests.ConnectionError as exc:
                if attempt < attempts:
                    continue
                raise BackendError(
                    f"cannot reach the fleetops API at {self.url}: is `fleetops up` running?"
                ) from exc
            except requests.Timeout as exc:
                if attempt < attempts:
                    continue
                raise BackendError(
                    f"the fleetops API at {self.url} did not answer within "
                    f"{self.TIMEOUT_SECONDS:.0f}s; try again"
                ) from exc
            except requests.RequestException as exc:
                raise BackendError(
                    f"the fleetops API at {self.url} did not answer: {type(exc).__name__}"
                ) from exc
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise BackendError(self._sentence(response, doing))
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(
                f"the fleetops API at {self.url} answered {method} {path} with something "
                "other than JSON"
            ) from exc

    def _sentence(self, response: requests.Response, doing: str) -> str:
        status = response.status_code
        try:
            message = str(response.json()["error"]["message"]).strip()
        except (ValueError, KeyError, TypeError):
            return f"the fleetops API at {self.url} answered {status} {response.reason}"
        if status == 401:
            return f"the API refused the token in {self.found_in}: {message}"
        if status == 403:
            denied = _DENIED.fullmatch(message)
            if denied is not None:
                return (
                    f"{doing} needs the {denied['needed']} role; "
                    f"you are {denied['who']} ({denied['role']})"
                )
        return message

    @property
    def principal(self) -> str:
        if self._principal is None:
            found = self._call("GET", "/v1/me", doing="asking who you are")
            self._principal = str(found["principal"])
        return self._principal

    # instances

    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]:
        from fleetops.api.models import InstanceList

        doing = "listing instances"
        found = InstanceList.model_validate(self._call("GET", "/v1/instances", doing=doing))
        instances = [i.to_domain() for i in found.instances]
        if include_deleted:
            deleted = InstanceList.model_validate(
                self._call("GET", "/v1/instances", params={"state": "deleted"}, doing=doing)
            ).instances
            instances = sorted([*instances, *(i.to_domain() for i in deleted)], key=lambda i: i.id)
        return instances

    def get_instance(self, instance_id: str) -> InstanceView | None:
        from fleetops.api.models import InstanceDetail

        raw = self._call(
            "GET",
            f"/v1/instances/{_path(instance_id)}",
            doing="reading an instance",
            missing_ok=True,
        )
        if raw is None:
            return None
        # Decisions and remediation are read only if the API serves them.
        detail = InstanceDetail.model_validate(
            {k: v for k, v in raw.items() if k not in ("decisions", "remediation")}
        )
        decisions = raw.get("decisions")
        remediation = raw.get("remediation")
        return InstanceView(
            detail.instance.to_domain(),
            [o.to_domain() for o in detail.operations],
            [h.to_domain() for h in detail.history],
            [_times(d) for d in decisions] if isinstance(decisions, list) else None,
            _times(remediation) if isinstance(remediation, dict) else None,
        )

    def instance_windows(self, instance_id: str | None, count: int) -> list[InstanceWindows]:
        ids = [instance_id] if instance_id else [i.id for i in self.list_instances()]
        return [
            _windows(
                self._call(
                    "GET",
                    f"/v1/instances/{_path(one)}/windows",
                    params={"count": count},
                    doing="reading maintenance windows",
                )
            )
            for one in ids
        ]

    def reset_remediation(self, instance_id: str) -> str:
        raw = self._call(
            "POST",
            f"/v1/instances/{_path(instance_id)}/remediation:reset",
            doing="resetting remediation",
        )
        return str(raw["reset_by"])

    # requests and operations

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 50,
    ) -> list[Operation]:
        from fleetops.api.models import OperationList

        params = {"instance": instance, "status": status.value if status else None, "limit": limit}
        raw = self._call("GET", "/v1/operations", params=params, doing="listing operations")
        return [o.to_domain() for o in OperationList.model_validate(raw).operations]

    def get_operation(self, operation_id: str) -> Operation | None:
        from fleetops.api.models import OperationOut

        raw = self._call(
            "GET",
            f"/v1/operations/{_path(operation_id)}",
            doing="reading an operation",
            missing_ok=True,
        )
        return OperationOut.model_validate(raw).to_domain() if raw is not None else None

    def submit_request(self, data: Mapping[str, Any]) -> str:
        # The API records the caller as the requester; it refuses to be told another.
        body = {k: v for k, v in data.items() if k != "requested_by"}
        # One key for every attempt: a retry after a lost answer names the same operation.
        key = str(uuid.uuid4())
        raw = self._call(
            "POST",
            "/v1/requests",
            json=body,
            headers={"Idempotency-Key": key},
            attempts=3,
            doing="requesting an operation",
        )
        return str(raw["operation"])

    def approve(self, operation_id: str) -> Operation:
        from fleetops.api.models import OperationOut

        raw = self._call(
            "POST",
            f"/v1/operations/{_path(operation_id)}:approve",
            doing="approving an operation",
        )
        return OperationOut.model_validate(raw).to_domain()

    def cancel(self, operation_id: str) -> Operation:
        from fleetops.api.models import OperationOut

        raw = self._call(
            "POST",
            f"/v1/operations/{_path(operation_id)}:cancel",
            doing="cancelling an operation",
        )
        return OperationOut.model_validate(raw).to_domain()

    # rollouts

    def start_rollout(self, plan: RolloutPlan) -> RolloutView:
        # One key for every attempt: a retry after a lost answer names the same rollout.
        raw = self._call(
            "POST",
            "/v1/rollouts",
            json=_rollout_body(plan),
            headers={"Idempotency-Key": str(uuid.uuid4())},
            attempts=3,
            doing="starting a rollout",
        )
        return _rollout_view(raw)

    def list_rollouts(self, *, limit: int = 50) -> list[Rollout]:
        from fleetops.api.control_models import RolloutList

        raw = self._call("GET", "/v1/rollouts", params={"limit": limit}, doing="listing rollouts")
        return [_rollout(r) for r in RolloutList.model_validate(raw).rollouts]

    def get_rollout(self, rollout_id: str) -> RolloutView:
        raw = self._call("GET", f"/v1/rollouts/{_path(rollout_id)}", doing="reading a rollout")
        return _rollout_view(raw)

    def change_rollout(self, rollout_id: str, status: RolloutStatus) -> RolloutView:
        verb, doing = _ROLLOUT_VERBS[status.value]
        raw = self._call("POST", f"/v1/rollouts/{_path(rollout_id)}:{verb}", doing=doing)
        return _rollout_view(raw)

    # automation

    def automation_status(self) -> AutomationStatus:
        return _automation(self._call("GET", "/v1/automation", doing="reading automation"))

    def pause_automation(self) -> AutomationStatus:
        return _automation(self._call("POST", "/v1/automation:pause", doing="pausing automation"))

    def resume_automation(self) -> AutomationStatus:
        return _automation(self._call("POST", "/v1/automation:resume", doing="resuming automation"))

    def change_automation(
        self, *, dry_run: bool | None = None, limits: Mapping[str, str] | None = None
    ) -> AutomationStatus:
        body: dict[str, Any] = {}
        if dry_run is not None:
            body["dry_run"] = dry_run
        if limits:
            body["limits"] = {name: _number(name, value) for name, value in limits.items()}
        raw = self._call("PATCH", "/v1/automation", json=body, doing="changing automation")
        return _automation(raw)

    # maintenance

    def maintenance_status(self) -> MaintenanceView:
        return _maintenance(self._call("GET", "/v1/maintenance", doing="reading maintenance"))

    def change_maintenance_jobs(self, action: str) -> MaintenanceView:
        doing = {
            "pause": "pausing maintenance",
            "resume": "resuming maintenance",
            "run-now": "running maintenance now",
        }[action]
        return _maintenance(self._call("POST", f"/v1/maintenance:{action}", doing=doing))

    def set_default_window(self, window: Mapping[str, Any]) -> MaintenanceWindow:
        from fleetops.api.models import MaintenanceWindowOut

        raw = self._call(
            "PUT",
            "/v1/maintenance/default-window",
            json=dict(window),
            doing="setting the default maintenance window",
        )
        return _window(MaintenanceWindowOut.model_validate(raw))

    def add_freeze(self, freeze: Mapping[str, Any]) -> Freeze:
        from fleetops.api.control_models import FreezeOut
        from fleetops.domain.windows import Freeze

        raw = self._call(
            "POST", "/v1/maintenance/freezes", json=dict(freeze), doing="adding a freeze"
        )
        out = FreezeOut.model_validate(raw)
        return Freeze(out.start, out.end, out.reason)

    # dead letters

    def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]:
        from fleetops.api.models import DeadLetterList

        raw = self._call(
            "GET", "/v1/dead-letters", params={"limit": limit}, doing="listing dead letters"
        )
        return [d.to_domain() for d in DeadLetterList.model_validate(raw).dead_letters]

    def replay_dead_letter(self, letter_id: str) -> DeadLetter:
        from fleetops.api.models import DeadLetterOut

        raw = self._call(
            "POST",
            f"/v1/dead-letters/{_path(letter_id)}:replay",
            doing="replaying a dead letter",
        )
        return DeadLetterOut.model_validate(raw).to_domain()


_DENIED = re.compile(r"(?P<who>.+) is (?P<role>\w+); \S+ \S+ needs (?P<needed>\w+)")
_ROLLOUT_VERBS = {
    "paused": ("pause", "pausing a rollout"),
    "running": ("resume", "resuming a rollout"),
    "aborted": ("abort", "aborting a rollout"),
}


_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")


def _times(value: Any) -> Any:
    """Instants in a free-form document as the UTC datetimes the store gives the direct backend."""
    if isinstance(value, dict):
        return {k: _times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    if isinstance(value, str) and _INSTANT.fullmatch(value):
        return datetime.fromisoformat(value).astimezone(UTC)
    return value


def _path(segment: str) -> str:
    return quote(segment, safe="")


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise BackendError(f"{name} takes a number, not {text!r}") from exc


def _rollout_body(plan: RolloutPlan) -> dict[str, Any]:
    from fleetops.domain.rollouts import parse_selector

    try:
        selector = parse_selector(plan.selector)
    except ValueError as exc:
        raise BackendError(str(exc)) from exc
    body: dict[str, Any] = {
        "action": plan.action,
        "selector": selector,
        "max_concurrency": plan.max_concurrency,
        "max_errors": plan.max_errors,
        "canary": plan.canary,
        "bake": plan.bake,
        "cutoff": plan.cutoff,
        "now": plan.now,
    }
    if plan.version is not None:
        body["version"] = plan.version
    if plan.size is not None:
        body["size"] = plan.size
    return body


def _rollout(out: RolloutOut) -> Rollout:
    from fleetops.services.rollouts import rollout_from_doc

    doc = out.model_dump(exclude={"id", "progress"})
    doc["size"] = out.size.value if out.size else None
    return rollout_from_doc(out.id, doc)


def _rollout_view(raw: Any) -> RolloutView:
    from fleetops.api.control_models import RolloutOut
    from fleetops.domain.rollouts import TargetStatus, Wave
    from fleetops.services.rollouts import WaveProgress

    out = RolloutOut.model_validate(raw)
    rollout = _rollout(out)
    waves = {w.index: w for w in rollout.waves}
    progress = [
        WaveProgress(
            waves.get(p.index, Wave(p.index, p.wave, ())),
            {s.value: int(getattr(p, s.value)) for s in TargetStatus},
        )
        for p in out.progress or ()
    ]
    return RolloutView(rollout, progress)


def _automation(raw: Any) -> AutomationStatus:
    from fleetops import remediation_documents as rdocs
    from fleetops.api.control_models import AutomationOut
    from fleetops.services.automation import AutomationStatus

    doc = AutomationOut.model_validate(raw).model_dump()
    circuit = doc.pop("circuit")
    return AutomationStatus(rdocs.settings_from_doc(doc), rdocs.circuit_from_doc(circuit))


def _window(out: MaintenanceWindowOut) -> MaintenanceWindow:
    from fleetops.domain.model import MaintenanceWindow

    return MaintenanceWindow(tuple(out.days), out.start, out.duration, out.timezone)


def _maintenance(raw: Any) -> MaintenanceView:
    from fleetops.api.control_models import MaintenanceOut
    from fleetops.domain.windows import Freeze
    from fleetops.ports import ScheduledJob
    from fleetops.services.maintenance import MaintenanceSettings, SettingsChange

    out = MaintenanceOut.model_validate(raw)
    settings = MaintenanceSettings(
        _window(out.default_window) if out.default_window else None,
        tuple(Freeze(f.start, f.end, f.reason) for f in out.freezes),
        # The API answers newest first; the settings keep them oldest first.
        tuple(SettingsChange(h.at, h.actor, h.event, h.detail) for h in reversed(out.history)),
    )
    jobs = [ScheduledJob(**job.model_dump()) for job in out.jobs]
    return MaintenanceView(jobs, settings, out.scheduler_error)


def _windows(raw: Any) -> InstanceWindows:
    from fleetops.api.control_models import InstanceWindowsOut
    from fleetops.domain.windows import Opening
    from fleetops.services.maintenance import InstanceWindows

    out = InstanceWindowsOut.model_validate(raw)
    return InstanceWindows(
        out.instance,
        _window(out.window) if out.window else None,
        out.default,
        tuple(Opening(o.start, o.end, o.local_start, o.local_end) for o in out.openings),
    )


# ------------------------------------------------------------------ choosing


def token_for(tokens_file: Path, principal: str) -> str:
    """`principal`'s token in a local tokens file; `admin2` is enough for `admin2@local`."""
    from fleetops.api.auth import AuthConfigurationError
    from fleetops.local.api_tokens import read_local_tokens

    try:
        tokens = read_local_tokens(tokens_file)
    except AuthConfigurationError as exc:
        raise BackendError(str(exc)) from exc
    found = tokens.get(principal)
    if found is None:
        near = [t for name, t in tokens.items() if name.partition("@")[0] == principal]
        found = near[0] if len(near) == 1 else None
    if found is None:
        raise BackendError(
            f"FLEETOPS_API_TOKENS_FILE={tokens_file} has no token for {principal}; "
            f"it has {', '.join(sorted(tokens)) or 'none'}"
        )
    return found.token


def backend_from_env(
    environ: Mapping[str, str] | None = None,
    direct: Callable[[str | None], Backend] = DirectBackend,
    *,
    acting_as: str | None = None,
) -> Backend:
    """The API when FLEETOPS_API_URL is set, else direct; `acting_as` is `--as`."""
    env = os.environ if environ is None else environ
    chosen = acting_as or env.get("FLEETOPS_AS") or None
    url = env.get("FLEETOPS_API_URL")
    if not url:
        return direct(chosen)
    if chosen:
        tokens_file = env.get("FLEETOPS_API_TOKENS_FILE")
        if not tokens_file:
            raise BackendError(
                f"--as {chosen} picks a token from FLEETOPS_API_TOKENS_FILE, which is not set: "
                "it exists only with the local stack; elsewhere set FLEETOPS_API_TOKEN"
            )
        return ApiBackend(
            url,
            token_for(Path(tokens_file), chosen),
            found_in=f"FLEETOPS_API_TOKENS_FILE for {chosen}",
        )
    token = env.get("FLEETOPS_API_TOKEN")
    if not token:
        raise BackendError(
            f"FLEETOPS_API_URL={url} is set but FLEETOPS_API_TOKEN is not: set "
            "FLEETOPS_API_TOKEN (locally `fleetops up` writes it to .fleetops/local.env, "
            "and --as PRINCIPAL picks one from FLEETOPS_API_TOKENS_FILE; on Google Cloud "
            "use $(gcloud auth print-identity-token))"
        )
    return ApiBackend(url, token)
