"""The `Actuator` on Compute Engine: one VM per instance, made from an instance template.

How each change maps to Compute Engine (every mutating call waits on its zone operation):

- provision: `instances.insert` with `sourceInstanceTemplate`, the machine type of the size,
  metadata `fleetops-version` and `fleetops-token`, labels `fleetops-instance` plus the spec's
  labels made valid GCE labels. The template's metadata and labels are read and merged in, so
  its startup script survives however the API merges overrides.
- start, stop, restart (`reset`), suspend, resume: the matching instance call. start and
  resume both bring the VM up: a SUSPENDED VM is resumed, a TERMINATED one started.
- set_version: `instances.setMetadata` with the fingerprint just read.
- set_size: `instances.setMachineType`; Compute Engine allows it on a TERMINATED VM only.
- snapshot: `disks.createSnapshot` of the boot disk, named from the token.
- delete: `instances.delete` (the template decides whether disks go with the VM).

Idempotency. Each mutating call carries a `requestId` derived from the token (uuid5), so a call
repeated with the same token returns the first call's operation instead of acting twice, and a
retry after an operation outlived `operation_timeout` waits on that same operation. Compute
Engine remembers request ids for a limited time (about an hour), so the world is checked first
where that is natural: an instance already made by this token, a VM already stopped or running,
a version or machine type already set, a snapshot already taken, an instance already gone: all
return `applied=False` without calling.

Errors become `ActuatorError`: 4xx answers and operation errors a retry cannot fix (invalid
argument, not found, already exists, quota) are permanent; 5xx, rate limits, "resource not
ready", a fingerprint that changed under us, the API unreachable, and an operation still running
at the deadline are transient.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import Credentials
from google.cloud import compute_v1

from fleetops.domain.model import Size
from fleetops.ports import ActuationResult, ActuatorError, InstanceSpec, Probe

T = TypeVar("T")

VERSION_KEY: Final = "fleetops-version"
MADE_BY_KEY: Final = "fleetops-token"
INSTANCE_LABEL: Final = "fleetops-instance"
REGION_LABEL: Final = "fleetops-region"

DEFAULT_MACHINE_TYPES: Final[Mapping[Size, str]] = MappingProxyType(
    {Size.SMALL: "e2-small", Size.MEDIUM: "e2-medium", Size.LARGE: "e2-standard-4"}
)

RUNNING: Final = "RUNNING"
SUSPENDED: Final = "SUSPENDED"
# STOPPED is a legacy alias of TERMINATED that the API may still report.
STOPPED_STATUSES: Final = frozenset({"TERMINATED", "STOPPED"})

_NAME_RE: Final = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_KEY_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_MAX_NAME: Final = 63
_MAX_LABELS: Final = 64
_REQUEST_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://fleetops/gce-actuator")

# The server holds a `zoneOperations.wait` for up to about two minutes; the client must not
# give up before it answers.
_WAIT_CALL_SECONDS: Final = 130.0

_TRANSIENT_HTTP: Final = frozenset({408, 409, 412, 429})
_TRANSIENT_REASONS: Final = frozenset(
    {
        "resourceNotReady",
        "resourceInUseByAnotherResource",
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "backendError",
        "internalError",
        "conditionNotMet",
    }
)
_TRANSIENT_OPERATION_CODES: Final = frozenset(
    {
        "RESOURCE_NOT_READY",
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
        "RESOURCE_OPERATION_RATE_EXCEEDED",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "INTERNAL_ERROR",
        "SERVICE_UNAVAILABLE",
        "CONDITION_NOT_MET",
    }
)
_PERMANENT_OPERATION_CODES: Final = frozenset(
    {
        "INVALID_ARGUMENT",
        "INVALID_FIELD_VALUE",
        "INVALID_USAGE",
        "BAD_REQUEST",
        "NOT_FOUND",
        "RESOURCE_NOT_FOUND",
        "ALREADY_EXISTS",
        "RESOURCE_ALREADY_EXISTS",
        "UNSUPPORTED_OPERATION",
        "PERMISSION_DENIED",
        "FORBIDDEN",
        "QUOTA_EXCEEDED",
    }
)
_WAIT_PASSING_ERRORS: Final = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.DeadlineExceeded,
    requests.Timeout,
    requests.ConnectionError,
)
_RETRYABLE: Final = api_retry.if_exception_type(
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.DeadlineExceeded,
)


class _NotFoundError(ActuatorError):
    """The API answered 404 for the resource a call named."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class _AlreadyExistsError(ActuatorError):
    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class GceActuator:
    """Compute Engine instances in one project and zone, through `google-cloud-compute`.

    `client_options`, `credentials` and `transport` go to every client (tests point them at a
    local fake with `{"api_endpoint": "http://127.0.0.1:PORT"}` and anonymous credentials).
    """

    def __init__(
        self,
        project: str,
        zone: str,
        instance_template: str,
        machine_types: Mapping[Size, str] = DEFAULT_MACHINE_TYPES,
        *,
        name_prefix: str = "",
        client_options: ClientOptions | dict[str, Any] | None = None,
        credentials: Credentials | None = None,
        transport: str = "rest",
        operation_timeout: float = 90.0,
        call_timeout: float = 30.0,
        poll_interval: float = 1.0,
        probe_port: int = 8080,
        probe_path: str = "/healthz",
        version_path: str = "/version",
        probe_timeout: float = 2.0,
        use_internal_ip: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        self.project = project
        self.zone = zone
        self.instance_template = _template_ref(instance_template, project)
        self.machine_types: Mapping[Size, str] = MappingProxyType(
            {**DEFAULT_MACHINE_TYPES, **{Size(k): v for k, v in machine_types.items()}}
        )
        if name_prefix and not re.fullmatch(r"[a-z][-a-z0-9]*", name_prefix):
            raise ValueError(f"name_prefix {name_prefix!r} cannot begin a Compute Engine name")
        self.name_prefix = name_prefix
        self.operation_timeout = operation_timeout
        self.call_timeout = call_timeout
        self.poll_interval = poll_interval
        self.probe_port = probe_port
        self.probe_path = probe_path
        self.version_path = version_path
        self.probe_timeout = probe_timeout
        self.use_internal_ip = use_internal_ip
        options: dict[str, Any] = {
            "client_options": client_options,
            "credentials": credentials,
            "transport": transport,
        }
        self._closing = contextlib.ExitStack()
        self._instances = self._closing.enter_context(compute_v1.InstancesClient(**options))
        self._operations = self._closing.enter_context(compute_v1.ZoneOperationsClient(**options))
        self._disks = self._closing.enter_context(compute_v1.DisksClient(**options))
        self._snapshots = self._closing.enter_context(compute_v1.SnapshotsClient(**options))
        self._templates = self._closing.enter_context(compute_v1.InstanceTemplatesClient(**options))
        self._region_templates = self._closing.enter_context(
            compute_v1.RegionInstanceTemplatesClient(**options)
        )
        self._retry = api_retry.Retry(
            predicate=_RETRYABLE,
            initial=0.5,
            maximum=8.0,
            multiplier=2.0,
            timeout=call_timeout,
        )
        self._session = session if session is not None else requests.Session()
        # Instance templates are immutable in Compute Engine: one read serves every insert.
        self._template_cache: tuple[list[tuple[str, str]], dict[str, str]] | None = None

    # --- the Actuator protocol ------------------------------------------------------

    def provision(self, spec: InstanceSpec, token: str) -> ActuationResult:
        name = self.gce_name(spec.id)
        existing = self._find(name)
        if existing is not None:
            return self._provisioned_before(existing, spec.id, token)
        resource = self._instance_resource(name, spec, token)
        request = compute_v1.InsertInstanceRequest(
            project=self.project,
            zone=self.zone,
            instance_resource=resource,
            source_instance_template=self.instance_template,
            request_id=self._request_id(name, "insert", token),
        )
        what = f"insert instance {name}"
        try:
            operation = self._call(
                what,
                lambda: self._instances.insert_unary(
                    request=request, retry=self._retry, timeout=self.call_timeout
                ),
            )
        except _AlreadyExistsError:
            # Made between our look and our insert (a concurrent attempt, or by hand).
            raced = self._find(name)
            if raced is None:
                raise
            return self._provisioned_before(raced, spec.id, token)
        self._wait(operation, what)
        return ActuationResult(endpoint=self._endpoint(self._require(name)), applied=True)

    def start(self, instance_id: str, token: str) -> ActuationResult:
        return self._bring_up(instance_id, token)

    def resume(self, instance_id: str, token: str) -> ActuationResult:
        return self._bring_up(instance_id, token)

    def stop(self, instance_id: str, token: str) -> ActuationResult:
        """Stop the VM (a SUSPENDED one too: set_size and a new version need a cold boot)."""
        name = self.gce_name(instance_id)
        instance = self._require(name)
        if instance.status in STOPPED_STATUSES:
            return ActuationResult(applied=False)
        self._change(name, "stop", token)
        return ActuationResult(applied=True)

    def suspend(self, instance_id: str, token: str) -> ActuationResult:
        """Suspend the VM; one already suspended or stopped is at rest and left as it is."""
        name = self.gce_name(instance_id)
        instance = self._require(name)
        if instance.status == SUSPENDED or instance.status in STOPPED_STATUSES:
            return ActuationResult(applied=False)
        self._change(name, "suspend", token)
        return ActuationResult(applied=True)

    def restart(self, instance_id: str, token: str) -> ActuationResult:
        """`reset` a RUNNING VM; `start` a stopped one (a reset needs a running VM)."""
        name = self.gce_name(instance_id)
        instance = self._require(name)
        if instance.status in STOPPED_STATUSES:
            self._change(name, "start", token)
        elif instance.status == RUNNING:
            self._change(name, "reset", token)
        else:
            raise ActuatorError(
                f"cannot restart instance {name} while it is {instance.status}: "
                "a restart needs it RUNNING or TERMINATED",
                permanent=instance.status == SUSPENDED,
            )
        return ActuationResult(endpoint=self._endpoint(self._require(name)), applied=True)

    def set_version(self, instance_id: str, version: str, token: str) -> ActuationResult:
        """Write metadata `fleetops-version`; the VM's startup reads it at its next boot."""
        name = self.gce_name(instance_id)
        instance = self._require(name)
        current = instance.metadata
        items = [item for item in current.items if item.key != VERSION_KEY]
        if any(item.key == VERSION_KEY and item.value == version for item in current.items):
            return ActuationResult(applied=False)
        items.append(compute_v1.Items(key=VERSION_KEY, value=version))
        metadata = compute_v1.Metadata(fingerprint=current.fingerprint, items=items)
        # The fingerprint is part of the id: a retry after someone else changed the metadata is a
        # new request against the new fingerprint, not a replay of the one that lost the race.
        request = compute_v1.SetMetadataInstanceRequest(
            project=self.project,
            zone=self.zone,
            instance=name,
            metadata_resource=metadata,
            request_id=self._request_id(name, "setMetadata", token, current.fingerprint, version),
        )
        what = f"set metadata {VERSION_KEY}={version} on instance {name}"
        operation = self._call(
            what,
            lambda: self._instances.set_metadata_unary(
                request=request, retry=self._retry, timeout=self.call_timeout
            ),
        )
        self._wait(operation, what)
        return ActuationResult(applied=True)

    def set_size(self, instance_id: str, size: Size, token: str) -> ActuationResult:
        name = self.gce_name(instance_id)
        machine_type = self.machine_types[Size(size)]
        instance = self._require(name)
        if _last_segment(instance.machine_type) == machine_type:
            return ActuationResult(applied=False)
        if instance.status not in STOPPED_STATUSES:
            raise ActuatorError(
                f"cannot set the machine type of instance {name} to {machine_type} while it is "
                f"{instance.status}: Compute Engine changes it only on a TERMINATED instance; "
                "stop it first",
                permanent=False,
            )
        request = compute_v1.SetMachineTypeInstanceRequest(
            project=self.project,
            zone=self.zone,
            instance=name,
            instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
                machine_type=f"zones/{self.zone}/machineTypes/{machine_type}"
            ),
            request_id=self._request_id(name, "setMachineType", token, machine_type),
        )
        what = f"set machine type {machine_type} on instance {name}"
        operation = self._call(
            what,
            lambda: self._instances.set_machine_type_unary(
                request=request, retry=self._retry, timeout=self.call_timeout
            ),
        )
        self._wait(operation, what)
        return ActuationResult(applied=True)

    def snapshot(self, instance_id: str, token: str) -> ActuationResult:
        """Snapshot the boot disk as `snapshot_name(...)`; a snapshot of that name is reused."""
        name = self.gce_name(instance_id)
        snapshot = snapshot_name(name, token)
        existing = self._find_snapshot(snapshot)
        if existing is not None and existing.status == "FAILED":
            raise ActuatorError(
                f"snapshot {snapshot} of instance {name} exists but FAILED; delete it to retry",
                permanent=True,
            )
        if existing is not None and existing.status == "READY":
            return ActuationResult(snapshot=snapshot, applied=False)
        disk_zone, disk = _boot_disk(self._require(name))
        request = compute_v1.CreateSnapshotDiskRequest(
            project=self.project,
            zone=disk_zone,
            disk=disk,
            snapshot_resource=compute_v1.Snapshot(
                name=snapshot,
                description=f"fleetops: instance {instance_id}, step {token}",
                labels={INSTANCE_LABEL: instance_id},
            ),
            request_id=self._request_id(name, "createSnapshot", token),
        )
        what = f"create snapshot {snapshot} of disk {disk}"
        try:
            operation = self._call(
                what,
                lambda: self._disks.create_snapshot_unary(
                    request=request, retry=self._retry, timeout=self.call_timeout
                ),
            )
        except _AlreadyExistsError:
            return ActuationResult(snapshot=snapshot, applied=False)
        self._wait(operation, what)
        # A snapshot still being made when we first looked was this token's: replayed, not new.
        return ActuationResult(snapshot=snapshot, applied=existing is None)

    def delete(self, instance_id: str, token: str) -> ActuationResult:
        name = self.gce_name(instance_id)
        if self._find(name) is None:
            return ActuationResult(applied=False)
        request = compute_v1.DeleteInstanceRequest(
            project=self.project,
            zone=self.zone,
            instance=name,
            request_id=self._request_id(name, "delete", token),
        )
        what = f"delete instance {name}"
        try:
            operation = self._call(
                what,
                lambda: self._instances.delete_unary(
                    request=request, retry=self._retry, timeout=self.call_timeout
                ),
            )
            self._wait(operation, what)
        except _NotFoundError:
            return ActuationResult(applied=False)
        return ActuationResult(applied=True)

    def probe(self, instance_id: str) -> Probe:
        """One health check. Missing, not RUNNING or unreachable: unhealthy. Only a Compute API
        that cannot answer raises `ActuatorError`."""
        name = self.gce_name(instance_id)
        instance = self._find(name)
        if instance is None:
            return Probe(healthy=False, detail="not found")
        if instance.status != RUNNING:
            return Probe(healthy=False, detail=instance.status or "no status")
        endpoint = self._endpoint(instance)
        if endpoint is None:
            return Probe(healthy=False, detail=f"instance {name} has no IP address")
        try:
            health = self._session.get(f"{endpoint}{self.probe_path}", timeout=self.probe_timeout)
        except requests.RequestException as error:
            return Probe(healthy=False, detail=f"{endpoint} unreachable: {error}")
        version: str | None = None
        try:
            answer = self._session.get(f"{endpoint}{self.version_path}", timeout=self.probe_timeout)
            if answer.ok:
                body = answer.json()
                found = body.get("version") if isinstance(body, dict) else None
                version = found if isinstance(found, str) else None
        except (requests.RequestException, ValueError):
            version = None
        healthy = health.status_code == 200
        detail = "ok" if healthy else f"{self.probe_path} answered {health.status_code}"
        return Probe(healthy=healthy, version=version, detail=detail)

    # --- beyond the protocol ----------------------------------------------------------

    def gce_name(self, instance_id: str) -> str:
        """The VM name of a fleetops instance id (already a valid GCE name, plus the prefix)."""
        name = f"{self.name_prefix}{instance_id}"
        if not _NAME_RE.fullmatch(name):
            raise ActuatorError(
                f"{name!r} is not a valid Compute Engine instance name "
                "(lowercase letters, digits and hyphens, starting with a letter, at most 63)",
                permanent=True,
            )
        return name

    def describe(self, instance_id: str) -> compute_v1.Instance | None:
        return self._find(self.gce_name(instance_id))

    def close(self) -> None:
        self._session.close()
        self._closing.close()

    # --- internals ---------------------------------------------------------------------

    def _bring_up(self, instance_id: str, token: str) -> ActuationResult:
        name = self.gce_name(instance_id)
        instance = self._require(name)
        if instance.status == RUNNING:
            return ActuationResult(endpoint=self._endpoint(instance), applied=False)
        self._change(name, "resume" if instance.status == SUSPENDED else "start", token)
        return ActuationResult(endpoint=self._endpoint(self._require(name)), applied=True)

    def _change(self, name: str, call: str, token: str) -> compute_v1.Operation:
        """One of the instance calls that take only the instance and a request id."""
        calls: dict[str, tuple[Callable[..., Any], Callable[..., compute_v1.Operation]]] = {
            "start": (compute_v1.StartInstanceRequest, self._instances.start_unary),
            "stop": (compute_v1.StopInstanceRequest, self._instances.stop_unary),
            "reset": (compute_v1.ResetInstanceRequest, self._instances.reset_unary),
            "suspend": (compute_v1.SuspendInstanceRequest, self._instances.suspend_unary),
            "resume": (compute_v1.ResumeInstanceRequest, self._instances.resume_unary),
        }
        make_request, method = calls[call]
        request = make_request(
            project=self.project,
            zone=self.zone,
            instance=name,
            request_id=self._request_id(name, call, token),
        )
        what = f"{call} instance {name}"
        operation = self._call(
            what, lambda: method(request=request, retry=self._retry, timeout=self.call_timeout)
        )
        return self._wait(operation, what)

    def _provisioned_before(
        self, instance: compute_v1.Instance, instance_id: str, token: str
    ) -> ActuationResult:
        items = {item.key: item.value for item in instance.metadata.items}
        made_by = items.get(MADE_BY_KEY)
        if made_by != token:
            raise ActuatorError(
                f"instance {instance.name} already exists, made by another request "
                f"({MADE_BY_KEY}={made_by!r}, not {token!r})",
                permanent=True,
            )
        if instance.status in ("PROVISIONING", "STAGING"):
            # Our insert may still be running (its wait ran out): replaying it with the same
            # request id hands back that operation, and we wait for its outcome.
            self._replay_insert(instance, instance_id, token)
            instance = self._require(instance.name)
        return ActuationResult(endpoint=self._endpoint(instance), applied=False)

    def _replay_insert(self, instance: compute_v1.Instance, instance_id: str, token: str) -> None:
        name = instance.name
        request = compute_v1.InsertInstanceRequest(
            project=self.project,
            zone=self.zone,
            instance_resource=compute_v1.Instance(name=name),
            source_instance_template=self.instance_template,
            request_id=self._request_id(name, "insert", token),
        )
        what = f"insert instance {name} (replayed for {instance_id})"
        try:
            operation = self._call(
                what,
                lambda: self._instances.insert_unary(
                    request=request, retry=self._retry, timeout=self.call_timeout
                ),
            )
        except _AlreadyExistsError:
            # The request id was forgotten: the insert is long done and the VM is on its way.
            return
        self._wait(operation, what)

    def _instance_resource(self, name: str, spec: InstanceSpec, token: str) -> compute_v1.Instance:
        template_items, template_labels = self._template_defaults()
        ours = {VERSION_KEY: spec.version, MADE_BY_KEY: token}
        items = [
            compute_v1.Items(key=key, value=value)
            for key, value in template_items
            if key not in ours
        ]
        items.extend(compute_v1.Items(key=key, value=value) for key, value in ours.items())
        labels = dict(template_labels)
        labels.update(gce_labels(spec.labels))
        if spec.region:
            labels[REGION_LABEL] = _label_value(spec.region)
        labels[INSTANCE_LABEL] = _label_value(spec.id)
        if len(labels) > _MAX_LABELS:
            raise ActuatorError(
                f"instance {name} would carry {len(labels)} labels; Compute Engine allows "
                f"{_MAX_LABELS}",
                permanent=True,
            )
        machine_type = self.machine_types[Size(spec.size)]
        return compute_v1.Instance(
            name=name,
            machine_type=f"zones/{self.zone}/machineTypes/{machine_type}",
            metadata=compute_v1.Metadata(items=items),
            labels=labels,
        )

    def _template_defaults(self) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The template's metadata items and labels (an override may replace, not merge)."""
        if self._template_cache is None:
            self._template_cache = self._read_template()
        return self._template_cache

    def _read_template(self) -> tuple[list[tuple[str, str]], dict[str, str]]:
        match = re.fullmatch(
            r"projects/([^/]+)/(?:global|regions/([^/]+))/instanceTemplates/([^/]+)",
            self.instance_template,
        )
        if match is None:
            raise ActuatorError(
                f"instance template {self.instance_template!r} is not a template reference",
                permanent=True,
            )
        project, region, template = match.groups()
        what = f"get instance template {self.instance_template}"
        if region is None:
            found = self._call(
                what,
                lambda: self._templates.get(
                    project=project,
                    instance_template=template,
                    retry=self._retry,
                    timeout=self.call_timeout,
                ),
            )
        else:
            found = self._call(
                what,
                lambda: self._region_templates.get(
                    project=project,
                    region=region,
                    instance_template=template,
                    retry=self._retry,
                    timeout=self.call_timeout,
                ),
            )
        properties = found.properties
        items = [(item.key, item.value) for item in properties.metadata.items]
        return items, dict(properties.labels)

    def _find(self, name: str) -> compute_v1.Instance | None:
        try:
            return self._require(name)
        except _NotFoundError:
            return None

    def _require(self, name: str) -> compute_v1.Instance:
        return self._call(
            f"get instance {name}",
            lambda: self._instances.get(
                project=self.project,
                zone=self.zone,
                instance=name,
                retry=self._retry,
                timeout=self.call_timeout,
            ),
        )

    def _find_snapshot(self, name: str) -> compute_v1.Snapshot | None:
        try:
            return self._call(
                f"get snapshot {name}",
                lambda: self._snapshots.get(
                    project=self.project,
                    snapshot=name,
                    retry=self._retry,
                    timeout=self.call_timeout,
                ),
            )
        except _NotFoundError:
            return None

    def _endpoint(self, instance: compute_v1.Instance) -> str | None:
        for interface in instance.network_interfaces:
            external = [config.nat_i_p for config in interface.access_configs if config.nat_i_p]
            if external and not self.use_internal_ip:
                return f"http://{external[0]}:{self.probe_port}"
            if interface.network_i_p:
                return f"http://{interface.network_i_p}:{self.probe_port}"
        return None

    def _request_id(self, name: str, call: str, token: str, *extra: str) -> str:
        key = "/".join((self.project, self.zone, name, call, token, *extra))
        return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, key))

    def _wait(self, operation: compute_v1.Operation, what: str) -> compute_v1.Operation:
        """Wait until the operation is DONE (`zoneOperations.wait`, then again) or the deadline."""
        deadline = time.monotonic() + self.operation_timeout
        zone = _last_segment(operation.zone) or self.zone
        done = compute_v1.Operation.Status.DONE
        while operation.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ActuatorError(
                    f"compute: {what}: operation {operation.name} still "
                    f"{operation.status.name} after {self.operation_timeout:g} s; "
                    "a retry with the same token waits on it again",
                    permanent=False,
                )
            # A wait that fails in passing is only a missed look: the deadline still bounds it.
            with contextlib.suppress(*_WAIT_PASSING_ERRORS):
                operation = self._operations.wait(
                    project=self.project,
                    zone=zone,
                    operation=operation.name,
                    retry=None,
                    timeout=min(remaining, _WAIT_CALL_SECONDS),
                )
            if operation.status != done:
                time.sleep(max(min(self.poll_interval, deadline - time.monotonic()), 0))
        if operation.error.errors:
            raise _operation_error(what, operation)
        return operation

    @staticmethod
    def _call(what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except api_exceptions.NotFound as exc:
            raise _NotFoundError(f"compute: {what}: not found ({exc.message})") from exc
        except api_exceptions.Conflict as exc:
            if "alreadyExists" in _reasons(exc):
                raise _AlreadyExistsError(f"compute: {what}: already exists") from exc
            raise _api_error(what, exc) from exc
        except api_exceptions.GoogleAPICallError as exc:
            raise _api_error(what, exc) from exc
        except (
            api_exceptions.GoogleAPIError,
            auth_exceptions.GoogleAuthError,
            requests.RequestException,
        ) as exc:
            raise ActuatorError(f"compute: {what} failed: {exc}", permanent=False) from exc


def snapshot_name(gce_name: str, token: str) -> str:
    """A valid snapshot name that only this instance and token map to.

    `{gce_name}-{token}` when the token is already a valid name piece and it fits; otherwise
    as much of that as fits, cleaned, and a digest of the token (so tokens that clean to the
    same text stay apart).
    """
    piece = _clean(token, allowed="a-z0-9-", replacement="-").strip("-")
    readable = f"{gce_name}-{piece}"
    if piece and piece == token and len(readable) <= _MAX_NAME:
        return readable
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    head = re.sub(r"-+", "-", readable)[: _MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def gce_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels made valid for Compute Engine: lowercase, `[a-z0-9_-]`, at most 63 characters,
    keys starting with a letter. Keys that clean to nothing are dropped."""
    cleaned: dict[str, str] = {}
    for key, value in labels.items():
        label_key = _clean(key, allowed="a-z0-9_-", replacement="_")[:_MAX_NAME]
        if label_key and not _LABEL_KEY_RE.fullmatch(label_key):
            label_key = f"l{label_key}"[:_MAX_NAME]
        if label_key:
            cleaned[label_key] = _label_value(value)
    return cleaned


def _label_value(value: str) -> str:
    return _clean(value, allowed="a-z0-9_-", replacement="_")[:_MAX_NAME]


def _clean(text: str, *, allowed: str, replacement: str) -> str:
    return re.sub(f"[^{allowed}]", replacement, text.lower())


def _last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _template_ref(template: str, project: str) -> str:
    """`projects/P/global/instanceTemplates/T` (or `.../regions/R/...`) from a name or URL."""
    path = template.split("/compute/v1/", 1)[-1].strip("/")
    if "/" not in path:
        return f"projects/{project}/global/instanceTemplates/{path}"
    if not path.startswith("projects/"):
        return f"projects/{project}/{path}"
    return path


def _boot_disk(instance: compute_v1.Instance) -> tuple[str, str]:
    """(zone, name) of the instance's boot disk."""
    for disk in instance.disks:
        if disk.boot:
            match = re.search(r"/zones/([^/]+)/disks/([^/]+)$", disk.source)
            if match is None:
                raise ActuatorError(
                    f"the boot disk of instance {instance.name} is not a zonal disk "
                    f"({disk.source!r}); only zonal boot disks are snapshotted",
                    permanent=True,
                )
            return match.group(1), match.group(2)
    raise ActuatorError(f"instance {instance.name} has no boot disk", permanent=True)


def _reasons(exc: api_exceptions.GoogleAPICallError) -> set[str]:
    reasons = {
        str(error.get("reason"))
        for error in exc.errors
        if isinstance(error, dict) and error.get("reason")
    }
    if exc.reason:
        reasons.add(exc.reason)
    return reasons


def _api_error(what: str, exc: api_exceptions.GoogleAPICallError) -> ActuatorError:
    code = exc.code if isinstance(exc.code, int) else None
    transient_reason = bool(_reasons(exc) & _TRANSIENT_REASONS)
    permanent = (
        code is not None
        and 400 <= code < 500
        and code not in _TRANSIENT_HTTP
        and not transient_reason
    )
    label = f"{code} {type(exc).__name__}" if code is not None else type(exc).__name__
    return ActuatorError(f"compute: {what} answered {label}: {exc.message}", permanent=permanent)


def _operation_error(what: str, operation: compute_v1.Operation) -> ActuatorError:
    codes = {error.code for error in operation.error.errors}
    described = "; ".join(
        f"{error.code}: {error.message}" if error.message else error.code
        for error in operation.error.errors
    )
    status = operation.http_error_status_code
    if codes & _TRANSIENT_OPERATION_CODES:
        permanent = False
    elif codes & _PERMANENT_OPERATION_CODES:
        permanent = True
    else:
        permanent = 400 <= status < 500 and status not in _TRANSIENT_HTTP
    return ActuatorError(
        f"compute: {what}: operation {operation.name} failed: {described}", permanent=permanent
    )
