"""How the command line reaches fleetops: straight to Pub/Sub and Firestore, or through the API.

`backend_from_env()` picks the API when FLEETOPS_API_URL is set (with
FLEETOPS_API_TOKEN as the bearer token), else the direct backend that needs
the emulators or Google credentials. Both give the same domain values back, so
the CLI renders them the same way; every failure a user can act on is a
`BackendError` with one sentence.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from fleetops.domain.model import HistoryEntry, Instance, Operation, OperationStatus
from fleetops.services.dead_letter_store import DeadLetter

if TYPE_CHECKING:
    from fleetops.services.control import ControlDeps


class BackendError(Exception):
    """One sentence a user can act on."""


@dataclass(frozen=True)
class InstanceView:
    instance: Instance
    operations: list[Operation]
    history: list[HistoryEntry]


class Backend(Protocol):
    @property
    def principal(self) -> str:
        """Who the requests, approvals and cancels are recorded as."""
        ...

    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]: ...

    def get_instance(self, instance_id: str) -> InstanceView | None:
        """The instance, its recent operations and its history; None if it does not exist."""
        ...

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

    def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]: ...

    def replay_dead_letter(self, letter_id: str) -> DeadLetter: ...


# ------------------------------------------------------------------ direct


class DirectBackend:
    """What the CLI did before the API: Pub/Sub and Firestore with this process's credentials."""

    RECENT_OPERATIONS = 10
    RECENT_HISTORY = 20

    def __init__(self, principal: str | None = None) -> None:
        from fleetops import runtime

        self._principal = principal or runtime.principal()

    @property
    def principal(self) -> str:
        return self._principal

    def _control(self) -> ControlDeps:
        from fleetops import runtime
        from fleetops.services.control import ControlDeps

        return ControlDeps(runtime.state_store(), runtime.publisher(), runtime.utc_now)

    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]:
        from fleetops import runtime

        return runtime.state_store().list_instances(include_deleted=include_deleted)

    def get_instance(self, instance_id: str) -> InstanceView | None:
        from fleetops import runtime

        store = runtime.state_store()
        found = store.get_instance(instance_id)
        if found is None:
            return None
        return InstanceView(
            found,
            store.list_operations(instance=instance_id, limit=self.RECENT_OPERATIONS),
            store.instance_history(instance_id, limit=self.RECENT_HISTORY),
        )

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 50,
    ) -> list[Operation]:
        from fleetops import runtime

        return runtime.state_store().list_operations(instance=instance, status=status, limit=limit)

    def get_operation(self, operation_id: str) -> Operation | None:
        from fleetops import runtime

        return runtime.state_store().get_operation(operation_id)

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
        from fleetops.domain.decisions import DecisionError
        from fleetops.services.control import approve_operation

        try:
            return approve_operation(operation_id, self.principal, self._control())
        except DecisionError as exc:
            raise BackendError(str(exc)) from exc

    def cancel(self, operation_id: str) -> Operation:
        from fleetops.domain.decisions import DecisionError
        from fleetops.services.control import cancel_operation

        try:
            return cancel_operation(operation_id, self.principal, self._control())
        except DecisionError as exc:
            raise BackendError(str(exc)) from exc

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
    """The REST API at FLEETOPS_API_URL, as the holder of FLEETOPS_API_TOKEN."""

    TIMEOUT_SECONDS = 30.0

    def __init__(self, url: str, token: str, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._session = session or requests.Session()
        self._principal: str | None = None

    def __repr__(self) -> str:
        return f"ApiBackend({self.url!r})"

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        attempts: int = 1,
    ) -> Any:
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
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < attempts:
                    continue
                raise BackendError(
                    f"nothing answers at FLEETOPS_API_URL={self.url}: is the API running?"
                ) from exc
            except requests.RequestException as exc:
                raise BackendError(
                    f"the API at {self.url} did not answer: {type(exc).__name__}"
                ) from exc
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise BackendError(_sentence(response))
        return response.json()

    @property
    def principal(self) -> str:
        if self._principal is None:
            self._principal = str(self._call("GET", "/v1/me")["principal"])
        return self._principal

    def list_instances(self, *, include_deleted: bool = False) -> list[Instance]:
        from fleetops.api.models import InstanceList

        found = InstanceList.model_validate(self._call("GET", "/v1/instances")).instances
        instances = [i.to_domain() for i in found]
        if include_deleted:
            deleted = InstanceList.model_validate(
                self._call("GET", "/v1/instances", params={"state": "deleted"})
            ).instances
            instances = sorted([*instances, *(i.to_domain() for i in deleted)], key=lambda i: i.id)
        return instances

    def get_instance(self, instance_id: str) -> InstanceView | None:
        from fleetops.api.models import InstanceDetail

        raw = self._call("GET", f"/v1/instances/{_path(instance_id)}", missing_ok=True)
        if raw is None:
            return None
        detail = InstanceDetail.model_validate(raw)
        return InstanceView(
            detail.instance.to_domain(),
            [o.to_domain() for o in detail.operations],
            [h.to_domain() for h in detail.history],
        )

    def list_operations(
        self,
        *,
        instance: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 50,
    ) -> list[Operation]:
        from fleetops.api.models import OperationList

        params = {"instance": instance, "status": status.value if status else None, "limit": limit}
        raw = self._call("GET", "/v1/operations", params=params)
        return [o.to_domain() for o in OperationList.model_validate(raw).operations]

    def get_operation(self, operation_id: str) -> Operation | None:
        from fleetops.api.models import OperationOut

        raw = self._call("GET", f"/v1/operations/{_path(operation_id)}", missing_ok=True)
        return OperationOut.model_validate(raw).to_domain() if raw is not None else None

    def submit_request(self, data: Mapping[str, Any]) -> str:
        # The API records the caller as the requester; it refuses to be told another.
        body = {k: v for k, v in data.items() if k != "requested_by"}
        # One key for every attempt: a retry after a lost answer names the same operation.
        key = str(uuid.uuid4())
        raw = self._call(
            "POST", "/v1/requests", json=body, headers={"Idempotency-Key": key}, attempts=3
        )
        return str(raw["operation"])

    def approve(self, operation_id: str) -> Operation:
        from fleetops.api.models import OperationOut

        raw = self._call("POST", f"/v1/operations/{_path(operation_id)}:approve")
        return OperationOut.model_validate(raw).to_domain()

    def cancel(self, operation_id: str) -> Operation:
        from fleetops.api.models import OperationOut

        raw = self._call("POST", f"/v1/operations/{_path(operation_id)}:cancel")
        return OperationOut.model_validate(raw).to_domain()

    def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]:
        from fleetops.api.models import DeadLetterList

        raw = self._call("GET", "/v1/dead-letters", params={"limit": limit})
        return [d.to_domain() for d in DeadLetterList.model_validate(raw).dead_letters]

    def replay_dead_letter(self, letter_id: str) -> DeadLetter:
        from fleetops.api.models import DeadLetterOut

        raw = self._call("POST", f"/v1/dead-letters/{_path(letter_id)}:replay")
        return DeadLetterOut.model_validate(raw).to_domain()


def _path(segment: str) -> str:
    return quote(segment, safe="")


def _sentence(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"the API answered {response.status_code} {response.reason}"
    if response.status_code == 401:
        return f"the API refused the token in FLEETOPS_API_TOKEN: {message}"
    return message


def backend_from_env(
    environ: Mapping[str, str] | None = None,
    direct: Callable[[], Backend] = DirectBackend,
) -> Backend:
    env = os.environ if environ is None else environ
    url = env.get("FLEETOPS_API_URL")
    if not url:
        return direct()
    token = env.get("FLEETOPS_API_TOKEN")
    if not token:
        raise BackendError(
            f"FLEETOPS_API_URL={url} is set but FLEETOPS_API_TOKEN is not: locally it is in "
            ".fleetops/local.env; on Google Cloud use "
            "FLEETOPS_API_TOKEN=$(gcloud auth print-identity-token)"
        )
    return ApiBackend(url, token)
