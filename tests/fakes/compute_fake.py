"""A local HTTP fake of the few Compute Engine REST calls `GceActuator` makes.

It serves `/compute/v1/...` for one project and zone, keeps instances, disks, snapshots and
operations in memory, and behaves like Compute Engine where the actuator depends on it:

- A mutating call answers an operation. The operation stays RUNNING for `polls_until_done`
  looks (`zoneOperations.get` or `.wait`) and takes its effect when it turns DONE; meanwhile
  the instance shows the passing status (STOPPING, STAGING, ...).
- `requestId`: a call repeating an earlier call's id answers that call's operation and has no
  second effect.
- `fail_next(call, ...)` makes the next operation of that call end DONE with an error, and
  without its effect.
- Preconditions the API enforces answer HTTP errors in its JSON shape: 404 for a missing
  resource, 409 `alreadyExists`, 412 `conditionNotMet` for a stale metadata fingerprint, 400
  for a machine type change of an instance not TERMINATED or a suspend/resume/reset in the
  wrong state.

Every mutating request is recorded in `calls` (replays too, flagged), so tests count effects;
requests no route knows are answered 404 and recorded in `unknown`.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

SELF_LINK_BASE = "https://www.googleapis.com/compute/v1"

_PREFIX = "/compute/v1/projects/<project>"
_ZONE = f"{_PREFIX}/zones/<zone>"
_ROUTES = Map(
    [
        Rule(f"{_ZONE}/instances", methods=["POST"], endpoint="insert"),
        Rule(f"{_ZONE}/instances/<name>", methods=["GET"], endpoint="get_instance"),
        Rule(f"{_ZONE}/instances/<name>", methods=["DELETE"], endpoint="delete"),
        Rule(f"{_ZONE}/instances/<name>/<call>", methods=["POST"], endpoint="instance_call"),
        Rule(f"{_ZONE}/disks/<disk>/createSnapshot", methods=["POST"], endpoint="snapshot"),
        Rule(f"{_ZONE}/operations/<operation>", methods=["GET"], endpoint="get_operation"),
        Rule(f"{_ZONE}/operations/<operation>/wait", methods=["POST"], endpoint="wait"),
        Rule(f"{_PREFIX}/global/snapshots/<name>", methods=["GET"], endpoint="get_snapshot"),
        Rule(
            f"{_PREFIX}/global/instanceTemplates/<name>", methods=["GET"], endpoint="get_template"
        ),
    ]
)
_INSTANCE_CALLS = ("start", "stop", "reset", "suspend", "resume", "setMetadata", "setMachineType")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class ApiError(Exception):
    """An HTTP error answer in the Compute API's JSON shape."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Call:
    """One mutating request as the fake received it."""

    call: str
    target: str
    request_id: str | None
    operation: str
    # True when the request id was seen before: answered the old operation, no effect.
    replayed: bool
    body: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    http_status: int


@dataclass
class FakeOperation:
    name: str
    call: str
    target_link: str
    polls_left: int
    finish: Callable[[], None]
    undo: Callable[[], None]
    failure: Failure | None = None
    done: bool = False
    insert_time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def resource(self, project: str, zone: str) -> dict[str, Any]:
        zone_link = f"{SELF_LINK_BASE}/projects/{project}/zones/{zone}"
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(abs(hash(self.name)) % 10**18),
            "name": self.name,
            "zone": zone_link,
            "operationType": self.call,
            "targetLink": self.target_link,
            "status": "DONE" if self.done else "RUNNING",
            "progress": 100 if self.done else 0,
            "insertTime": self.insert_time,
            "selfLink": f"{zone_link}/operations/{self.name}",
        }
        if self.done and self.failure is not None:
            body["error"] = {
                "errors": [{"code": self.failure.code, "message": self.failure.message}]
            }
            body["httpErrorStatusCode"] = self.failure.http_status
            body["httpErrorMessage"] = self.failure.code
        return body


class ComputeFake:
    """Start with `start()` (or as a context manager); `url` is the `api_endpoint`."""

    def __init__(
        self,
        *,
        project: str = "fake-project",
        zone: str = "europe-west1-b",
        polls_until_done: int = 2,
        nat_ip: str | None = "127.0.0.1",
    ) -> None:
        self.project = project
        self.zone = zone
        self.polls_until_done = polls_until_done
        self.nat_ip = nat_ip
        self.templates: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, dict[str, Any]] = {}
        self.disks: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, FakeOperation] = {}
        self.calls: list[Call] = []
        self.unknown: list[str] = []
        self._by_request_id: dict[str, str] = {}
        self._failures: dict[str, list[Failure]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- running ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ComputeFake:
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        server = self._server
        # The default half-second poll would make every shutdown (one per test) that slow.
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.02), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ComputeFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- arranging and inspecting ------------------------------------------------------

    def add_template(
        self,
        name: str,
        *,
        machine_type: str = "e2-small",
        metadata: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            self.templates[name] = {
                "kind": "compute#instanceTemplate",
                "name": name,
                "selfLink": f"{SELF_LINK_BASE}/projects/{self.project}/global/"
                f"instanceTemplates/{name}",
                "properties": {
                    "machineType": machine_type,
                    "metadata": {
                        "items": [{"key": k, "value": v} for k, v in (metadata or {}).items()]
                    },
                    "labels": dict(labels or {}),
                },
            }

    def fail_next(
        self,
        call: str,
        *,
        code: str = "RESOURCE_NOT_FOUND",
        message: str = "injected failure",
        http_status: int = 404,
    ) -> None:
        """The next operation of `call` (insert, stop, createSnapshot, ...) ends in this error."""
        with self._lock:
            self._failures.setdefault(call, []).append(Failure(code, message, http_status))

    def set_status(self, name: str, status: str) -> None:
        with self._lock:
            self.instances[name]["status"] = status

    def set_polls_left(self, polls: int) -> None:
        """Every operation not yet DONE turns DONE after `polls` more looks."""
        with self._lock:
            for operation in self.operations.values():
                if not operation.done:
                    operation.polls_left = polls

    def effects(self, call: str | None = None, target: str | None = None) -> list[Call]:
        """Mutating requests that made a new operation (replays of a request id excluded)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if not c.replayed
                and (call is None or c.call == call)
                and (target is None or c.target == target)
            ]

    def metadata(self, name: str) -> dict[str, str]:
        with self._lock:
            items = self.instances[name]["metadata"].get("items", [])
            return {item["key"]: item["value"] for item in items}

    def machine_type(self, name: str) -> str:
        with self._lock:
            return str(self.instances[name]["machineType"]).rsplit("/", 1)[-1]

    # --- HTTP --------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, args = _ROUTES.bind_to_environ(environ).match()
        except NotFound:
            with self._lock:
                self.unknown.append(f"{request.method} {request.path}")
            response = _error(404, "notFound", f"the fake has no {request.method} {request.path}")
            return response(environ, start_response)
        except HTTPException as exc:
            with self._lock:
                self.unknown.append(f"{request.method} {request.path}")
            return exc(environ, start_response)
        try:
            with self._lock:
                self._check_scope(args)
                body = self._handle(str(endpoint), args, request)
            response = Response(json.dumps(body), status=200, mimetype="application/json")
        except ApiError as exc:
            response = _error(exc.status, exc.reason, exc.message)
        return response(environ, start_response)

    def _check_scope(self, args: Mapping[str, Any]) -> None:
        if args.get("project") != self.project or args.get("zone", self.zone) != self.zone:
            raise ApiError(404, "notFound", f"unknown project/zone {args}")

    def _handle(self, endpoint: str, args: Mapping[str, Any], request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True) or {}
        request_id = request.args.get("requestId") or None
        match endpoint:
            case "get_instance":
                return dict(self._instance(args["name"]))
            case "get_snapshot":
                if args["name"] not in self.snapshots:
                    raise ApiError(404, "notFound", f"snapshot {args['name']} was not found")
                return dict(self.snapshots[args["name"]])
            case "get_template":
                if args["name"] not in self.templates:
                    raise ApiError(404, "notFound", f"template {args['name']} was not found")
                return dict(self.templates[args["name"]])
            case "get_operation" | "wait":
                return self._poll(args["operation"])
            case "insert":
                template = request.args.get("sourceInstanceTemplate", "")
                return self._mutate("insert", body.get("name", ""), request_id, body, template)
            case "delete":
                return self._mutate("delete", args["name"], request_id, body)
            case "instance_call" if args["call"] in _INSTANCE_CALLS:
                return self._mutate(args["call"], args["name"], request_id, body)
            case "snapshot":
                return self._mutate("createSnapshot", args["disk"], request_id, body)
        self.unknown.append(f"{request.method} {request.path}")
        raise ApiError(404, "notFound", f"the fake has no {request.method} {request.path}")

    # --- operations --------------------------------------------------------------------

    def _mutate(
        self,
        call: str,
        target: str,
        request_id: str | None,
        body: dict[str, Any],
        template: str = "",
    ) -> dict[str, Any]:
        if request_id is not None and request_id in self._by_request_id:
            operation = self.operations[self._by_request_id[request_id]]
            self.calls.append(Call(call, target, request_id, operation.name, True, body))
            return operation.resource(self.project, self.zone)
        finish, undo, link = self._plan(call, target, body, template)
        operation = FakeOperation(
            name=f"operation-{next(self._ids)}-{call}",
            call=call,
            target_link=link,
            polls_left=self.polls_until_done,
            finish=finish,
            undo=undo,
        )
        failures = self._failures.get(call)
        if failures:
            operation.failure = failures.pop(0)
        self.operations[operation.name] = operation
        if request_id is not None:
            self._by_request_id[request_id] = operation.name
        self.calls.append(Call(call, target, request_id, operation.name, False, body))
        if operation.polls_left <= 0:
            self._complete(operation)
        return operation.resource(self.project, self.zone)

    def _poll(self, name: str) -> dict[str, Any]:
        operation = self.operations.get(name)
        if operation is None:
            raise ApiError(404, "notFound", f"operation {name} was not found")
        if not operation.done:
            operation.polls_left -= 1
            if operation.polls_left <= 0:
                self._complete(operation)
        return operation.resource(self.project, self.zone)

    @staticmethod
    def _complete(operation: FakeOperation) -> None:
        operation.done = True
        if operation.failure is None:
            operation.finish()
        else:
            operation.undo()

    def _plan(
        self, call: str, target: str, body: dict[str, Any], template: str
    ) -> tuple[Callable[[], None], Callable[[], None], str]:
        """Check the call now; return (effect when DONE, undo when it fails, target link)."""
        if call == "insert":
            return self._plan_insert(target, body, template)
        if call == "createSnapshot":
            return self._plan_snapshot(target, body)
        instance = self._instance(target)
        link = instance["selfLink"]
        before = instance["status"]

        def set_status(status: str) -> Callable[[], None]:
            def apply() -> None:
                instance["status"] = status

            return apply

        restore = set_status(before)
        match call:
            case "delete":
                instance["status"] = "STOPPING"
                return lambda: self._remove(target), restore, link
            case "stop":
                if before not in ("TERMINATED", "STOPPED"):
                    instance["status"] = "STOPPING"
                return set_status("TERMINATED"), restore, link
            case "start":
                _require_status(instance, call, "RUNNING", "TERMINATED", "STOPPED")
                if before != "RUNNING":
                    instance["status"] = "STAGING"
                return set_status("RUNNING"), restore, link
            case "reset":
                _require_status(instance, call, "RUNNING")
                return set_status("RUNNING"), restore, link
            case "suspend":
                _require_status(instance, call, "RUNNING")
                instance["status"] = "SUSPENDING"
                return set_status("SUSPENDED"), restore, link
            case "resume":
                _require_status(instance, call, "SUSPENDED")
                instance["status"] = "STAGING"
                return set_status("RUNNING"), restore, link
            case "setMetadata":
                return self._plan_metadata(instance, body), restore, link
            case "setMachineType":
                if before not in ("TERMINATED", "STOPPED"):
                    raise ApiError(
                        400,
                        "invalid",
                        f"Instance {target} is {before}: the machine type can be changed "
                        "only when it is TERMINATED",
                    )
                machine_type = str(body.get("machineType", "")).rsplit("/", 1)[-1]

                def resize() -> None:
                    instance["machineType"] = self._machine_type_link(machine_type)

                return resize, restore, link
        raise ApiError(400, "invalid", f"the fake does not know {call}")

    def _plan_insert(
        self, name: str, body: dict[str, Any], template: str
    ) -> tuple[Callable[[], None], Callable[[], None], str]:
        if name in self.instances:
            raise ApiError(409, "alreadyExists", f"The resource '{name}' already exists")
        template_name = template.rstrip("/").rsplit("/", 1)[-1]
        if template_name not in self.templates:
            raise ApiError(404, "notFound", f"instance template {template!r} was not found")
        properties = self.templates[template_name]["properties"]
        number = next(self._ids)
        disk_link = f"{SELF_LINK_BASE}/projects/{self.project}/zones/{self.zone}/disks/{name}"
        link = f"{SELF_LINK_BASE}/projects/{self.project}/zones/{self.zone}/instances/{name}"
        access = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT", "natIP": self.nat_ip}]
        machine_type = str(body.get("machineType") or properties["machineType"])
        instance: dict[str, Any] = {
            "kind": "compute#instance",
            "id": str(number),
            "name": name,
            "zone": f"{SELF_LINK_BASE}/projects/{self.project}/zones/{self.zone}",
            "selfLink": link,
            "status": "PROVISIONING",
            "machineType": self._machine_type_link(machine_type.rsplit("/", 1)[-1]),
            "metadata": {
                "kind": "compute#metadata",
                "fingerprint": _fingerprint(),
                "items": list(body.get("metadata", properties["metadata"]).get("items", [])),
            },
            "labels": dict(body.get("labels", properties["labels"])),
            "networkInterfaces": [
                {
                    "name": "nic0",
                    "networkIP": f"10.128.0.{number % 250 + 2}",
                    "accessConfigs": access if self.nat_ip else [],
                }
            ],
            "disks": [
                {
                    "boot": True,
                    "autoDelete": True,
                    "deviceName": "persistent-disk-0",
                    "source": disk_link,
                }
            ],
        }
        self.instances[name] = instance
        self.disks[name] = {"name": name, "selfLink": disk_link}

        def run() -> None:
            instance["status"] = "RUNNING"

        return run, lambda: self._remove(name), link

    def _plan_snapshot(
        self, disk: str, body: dict[str, Any]
    ) -> tuple[Callable[[], None], Callable[[], None], str]:
        if disk not in self.disks:
            raise ApiError(404, "notFound", f"disk {disk} was not found")
        name = str(body.get("name", ""))
        if not name:
            raise ApiError(400, "required", "the snapshot needs a name")
        if name in self.snapshots:
            raise ApiError(409, "alreadyExists", f"The resource '{name}' already exists")
        snapshot = {
            "kind": "compute#snapshot",
            "name": name,
            "status": "CREATING",
            "sourceDisk": self.disks[disk]["selfLink"],
            "labels": dict(body.get("labels", {})),
            "description": body.get("description", ""),
            "selfLink": f"{SELF_LINK_BASE}/projects/{self.project}/global/snapshots/{name}",
        }
        self.snapshots[name] = snapshot

        def ready() -> None:
            snapshot["status"] = "READY"

        def forget() -> None:
            self.snapshots.pop(name, None)

        return ready, forget, str(snapshot["selfLink"])

    def _plan_metadata(self, instance: dict[str, Any], body: dict[str, Any]) -> Callable[[], None]:
        current = instance["metadata"]["fingerprint"]
        if body.get("fingerprint") != current:
            raise ApiError(
                412,
                "conditionNotMet",
                f"Supplied fingerprint {body.get('fingerprint')!r} does not match current "
                f"metadata fingerprint {current!r}.",
            )
        items = list(body.get("items", []))

        def apply() -> None:
            instance["metadata"] = {
                "kind": "compute#metadata",
                "fingerprint": _fingerprint(),
                "items": items,
            }

        return apply

    def _instance(self, name: str) -> dict[str, Any]:
        if name not in self.instances:
            raise ApiError(
                404,
                "notFound",
                f"The resource 'projects/{self.project}/zones/{self.zone}/instances/{name}' "
                "was not found",
            )
        return self.instances[name]

    def _remove(self, name: str) -> None:
        self.instances.pop(name, None)
        self.disks.pop(name, None)

    def _machine_type_link(self, machine_type: str) -> str:
        return (
            f"{SELF_LINK_BASE}/projects/{self.project}/zones/{self.zone}/machineTypes/"
            f"{machine_type}"
        )


def _require_status(instance: dict[str, Any], call: str, *allowed: str) -> None:
    if instance["status"] not in allowed:
        raise ApiError(
            400,
            "resourceNotReady",
            f"Instance {instance['name']} is {instance['status']}; {call} needs "
            f"{' or '.join(allowed)}",
        )


_FINGERPRINTS = itertools.count(1)


def _fingerprint() -> str:
    return base64.b64encode(next(_FINGERPRINTS).to_bytes(8, "big")).decode()


def _error(status: int, reason: str, message: str) -> Response:
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }
    return Response(json.dumps(body), status=status, mimetype="application/json")
