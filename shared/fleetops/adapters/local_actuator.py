"""The `Actuator` of the local stack: asks the host agent to run instances as OS processes.

Errors from the agent become `ActuatorError`:

- 400, 404 (unknown instance), 409 (conflict, e.g. "already exists" under another token),
  and other 4xx a retry cannot fix: `permanent=True`.
- The agent unreachable, a timeout, 5xx: `permanent=False`.
- A failed start (502 `start_failed`: the instance process exited at start, or never
  answered /healthz): `permanent=False`, with the agent's message, which names the instance,
  the version, the exit code and the last lines of its log. Not permanent because a start can
  fail for passing reasons (a port taken in a race, a slow machine); the control plane's
  bounded retries then fail the step, and a rollback follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import requests

from fleetops.domain.model import Size
from fleetops.ports import ActuationResult, ActuatorError, InstanceSpec, Probe

CONNECT_TIMEOUT_SECONDS: Final = 2.0
# A change may stop an instance (grace period) and start it (start deadline) in one call.
CHANGE_TIMEOUT_SECONDS: Final = 30.0
QUERY_TIMEOUT_SECONDS: Final = 5.0
PROBE_TIMEOUT_SECONDS: Final = 2.0

_RETRYABLE_4XX: Final = frozenset({408, 425, 429})


@dataclass(frozen=True)
class LocalInstance:
    """What the agent knows of one instance process."""

    id: str
    version: str
    size: str
    port: int
    endpoint: str
    running: bool
    suspended: bool
    pid: int | None = None
    exit_code: int | None = None


class LocalProcessActuator:
    """Talks to `fleetops.local.agent` over HTTP; one `requests.Session`, timeouts always."""

    def __init__(self, agent_url: str, *, session: requests.Session | None = None) -> None:
        self.agent_url = agent_url.rstrip("/")
        self._session = session if session is not None else requests.Session()

    # --- the Actuator protocol ------------------------------------------------------

    def provision(self, spec: InstanceSpec, token: str) -> ActuationResult:
        # Region and labels mean nothing on one host: the agent is not told.
        body = {"version": spec.version, "size": Size(spec.size).value, "token": token}
        if spec.restore_snapshot:
            body["restore_from"] = spec.restore_snapshot
        return _result(self._change("PUT", self._path(spec.id), body))

    def restart(self, instance_id: str, token: str) -> ActuationResult:
        return self._action(instance_id, "restart", {"token": token})

    def delete(self, instance_id: str, token: str) -> ActuationResult:
        return _result(self._change("DELETE", self._path(instance_id), None, {"token": token}))

    def probe(self, instance_id: str) -> Probe:
        """One health check. An unknown, stopped or unreachable instance is unhealthy;
        only an agent that cannot answer raises `ActuatorError`."""
        status, body = self._request("GET", self._path(instance_id), timeout=QUERY_TIMEOUT_SECONDS)
        if status == 404:
            return Probe(healthy=False, detail=f"instance {instance_id} is not provisioned")
        _raise_for(status, body, f"GET {self._path(instance_id)}")
        instance = _local_instance(body)
        if instance.suspended and not instance.running:
            return Probe(healthy=False, detail="suspended")
        if not instance.running:
            return Probe(
                healthy=False, detail=f"process not running (exit code {instance.exit_code})"
            )
        timeout = (CONNECT_TIMEOUT_SECONDS, PROBE_TIMEOUT_SECONDS)
        try:
            health = self._session.get(f"{instance.endpoint}/healthz", timeout=timeout)
        except requests.RequestException as error:
            return Probe(healthy=False, detail=f"{instance.endpoint} unreachable: {error}")
        version: str | None = None
        try:
            answer = self._session.get(f"{instance.endpoint}/version", timeout=timeout)
            if answer.ok:
                version = _opt_str(_json(answer).get("version"))
        except requests.RequestException:
            version = None
        healthy = health.status_code == 200
        detail = "ok" if healthy else f"/healthz answered {health.status_code}"
        return Probe(healthy=healthy, version=version, detail=detail)

    def stop(self, instance_id: str, token: str) -> ActuationResult:
        """Stop the process keeping its data (the agent calls it suspending)."""
        return self.suspend(instance_id, token)

    def start(self, instance_id: str, token: str) -> ActuationResult:
        return self.resume(instance_id, token)

    def set_version(self, instance_id: str, version: str, token: str) -> ActuationResult:
        """On a stopped instance the agent only records the version for the next start."""
        return self.upgrade(instance_id, version, token)

    def set_size(self, instance_id: str, size: Size, token: str) -> ActuationResult:
        return self.resize(instance_id, size, token)

    # --- beyond the protocol ----------------------------------------------------------

    def upgrade(self, instance_id: str, version: str, token: str) -> ActuationResult:
        """Restart at `version` (a suspended instance keeps stopped and resumes at it)."""
        return self._action(instance_id, "upgrade", {"version": version, "token": token})

    def resize(self, instance_id: str, size: Size, token: str) -> ActuationResult:
        return self._action(instance_id, "resize", {"size": Size(size).value, "token": token})

    def suspend(self, instance_id: str, token: str) -> ActuationResult:
        """Stop the process, keep its data."""
        return self._action(instance_id, "suspend", {"token": token})

    def resume(self, instance_id: str, token: str) -> ActuationResult:
        return self._action(instance_id, "resume", {"token": token})

    def snapshot(self, instance_id: str, token: str) -> ActuationResult:
        """Copy the data folder to `ROOT/{id}.snapshots/<token>/` on the agent's host."""
        return self._action(instance_id, "snapshot", {"token": token})

    def set_faults(
        self,
        instance_id: str,
        *,
        fail_start_versions: tuple[str, ...] = (),
        unhealthy_versions: tuple[str, ...] = (),
    ) -> None:
        """Make versions fail to start or run unhealthy, from the instance's next start."""
        body = {
            "fail_start_versions": list(fail_start_versions),
            "unhealthy_versions": list(unhealthy_versions),
        }
        self._change("PUT", f"{self._path(instance_id)}/faults", body)

    def describe(self, instance_id: str) -> LocalInstance | None:
        status, body = self._request("GET", self._path(instance_id), timeout=QUERY_TIMEOUT_SECONDS)
        if status == 404:
            return None
        _raise_for(status, body, f"GET {self._path(instance_id)}")
        return _local_instance(body)

    def list_instances(self) -> list[LocalInstance]:
        status, body = self._request("GET", "/v1/instances", timeout=QUERY_TIMEOUT_SECONDS)
        _raise_for(status, body, "GET /v1/instances")
        items = body.get("instances")
        if not isinstance(items, list):
            raise ActuatorError("agent answered GET /v1/instances without a list")
        return [_local_instance(item) for item in items if isinstance(item, dict)]

    def healthy(self) -> bool:
        """Whether the agent itself answers."""
        try:
            status, _ = self._request("GET", "/v1/healthz", timeout=QUERY_TIMEOUT_SECONDS)
        except ActuatorError:
            return False
        return status == 200

    def close(self) -> None:
        self._session.close()

    # --- internals ---------------------------------------------------------------------

    @staticmethod
    def _path(instance_id: str) -> str:
        return f"/v1/instances/{quote(instance_id, safe='')}"

    def _action(self, instance_id: str, action: str, body: dict[str, Any]) -> ActuationResult:
        return _result(self._change("POST", f"{self._path(instance_id)}/{action}", body))

    def _change(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        status, answer = self._request(
            method, path, body=body, params=params, timeout=CHANGE_TIMEOUT_SECONDS
        )
        _raise_for(status, answer, f"{method} {path}")
        return answer

    def _request(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = self._session.request(
                method,
                f"{self.agent_url}{path}",
                json=body,
                params=params,
                timeout=(CONNECT_TIMEOUT_SECONDS, timeout),
            )
        except requests.RequestException as error:
            raise ActuatorError(
                f"local agent {self.agent_url} did not answer {method} {path}: {error}",
                permanent=False,
            ) from error
        return response.status_code, _json(response)


def _raise_for(status: int, body: dict[str, Any], what: str) -> None:
    if status < 400:
        return
    error = body.get("error")
    code = _opt_str(error.get("code")) if isinstance(error, dict) else None
    message = _opt_str(error.get("message")) if isinstance(error, dict) else None
    if code == "start_failed":
        raise ActuatorError(message or f"{what}: the instance failed to start", permanent=False)
    permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
    label = f"{status} {code}" if code else str(status)
    raise ActuatorError(
        f"local agent: {what} answered {label}: {message or body}", permanent=permanent
    )


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _result(body: dict[str, Any]) -> ActuationResult:
    return ActuationResult(
        endpoint=_opt_str(body.get("endpoint")),
        applied=body.get("applied") is True,
        snapshot=_opt_str(body.get("snapshot")),
    )


def _local_instance(body: dict[str, Any]) -> LocalInstance:
    port = _opt_int(body.get("port"))
    instance_id = _opt_str(body.get("id"))
    endpoint = _opt_str(body.get("endpoint"))
    if port is None or instance_id is None or endpoint is None:
        raise ActuatorError(f"local agent answered an instance without id/port/endpoint: {body}")
    return LocalInstance(
        id=instance_id,
        version=_opt_str(body.get("version")) or "",
        size=_opt_str(body.get("size")) or "",
        port=port,
        endpoint=endpoint,
        running=body.get("running") is True,
        suspended=body.get("suspended") is True,
        pid=_opt_int(body.get("pid")),
        exit_code=_opt_int(body.get("exit_code")),
    )
