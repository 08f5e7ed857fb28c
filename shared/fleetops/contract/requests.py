"""`fleetops.instance.requested`: the typed request of contract section 3."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from fleetops.contract.errors import InvalidRequest, MalformedEvent
from fleetops.contract.names import EVENT_INSTANCE_REQUESTED
from fleetops.contract.pubsub import CloudEvent
from fleetops.domain.model import Action, MaintenanceWindow, OperationParams, Size, frozen_map

INSTANCE_ID_PATTERN = r"^[a-z][a-z0-9-]*[a-z0-9]$"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")
_CLOCK = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")

InstanceId = Annotated[
    str, StringConstraints(min_length=3, max_length=40, pattern=INSTANCE_ID_PATTERN)
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=63)]


def duration_minutes(text: str) -> int:
    """`4h`, `90m`, `1h30m` to minutes."""
    match = _DURATION.match(text.strip())
    if not match or not (match.group("h") or match.group("m")):
        raise ValueError(f"duration {text!r} must look like 4h, 90m or 1h30m")
    return int(match.group("h") or 0) * 60 + int(match.group("m") or 0)


class MaintenanceWindowModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str
    duration: str
    timezone: str

    @field_validator("start")
    @classmethod
    def _start_is_a_clock_time(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"start {value!r} must be HH:MM in 24-hour time")
        return value

    @field_validator("duration")
    @classmethod
    def _duration_is_readable(cls, value: str) -> str:
        minutes = duration_minutes(value)
        if not 0 < minutes <= 7 * 24 * 60:
            raise ValueError(f"duration {value!r} must be more than 0 and at most 7 days")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_is_iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone {value!r} is not an IANA time zone") from exc
        return value

    def to_domain(self) -> MaintenanceWindow:
        return MaintenanceWindow(
            days=tuple(self.days), start=self.start, duration=self.duration, timezone=self.timezone
        )


class InstanceRequested(BaseModel):
    """The data of a `fleetops.instance.requested` CloudEvent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance: InstanceId
    action: Action
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    size: Size | None = None
    region: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    customer: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    labels: dict[Label, Label] = Field(default_factory=dict)
    maintenance_window: MaintenanceWindowModel | None = None
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None
    dry_run: bool = False

    @field_validator("labels")
    @classmethod
    def _labels_firestore_can_store(cls, value: dict[str, str]) -> dict[str, str]:
        # Firestore reserves field names like `__name__`: such a label could never be saved.
        reserved = [k for k in value if k.startswith("__") and k.endswith("__")]
        if reserved:
            raise ValueError(f"the key {reserved[0]!r} is reserved")
        return value

    @model_validator(mode="after")
    def _fields_the_action_needs(self) -> InstanceRequested:
        if self.action in (Action.PROVISION, Action.UPGRADE) and not self.version:
            raise ValueError(f"field 'version' is required for action {self.action.value}")
        if self.action is Action.RESIZE and self.size is None:
            raise ValueError("field 'size' is required for action resize")
        return self

    def params(self) -> OperationParams:
        size = self.size
        if self.action is Action.PROVISION and size is None:
            size = Size.SMALL
        return OperationParams(
            version=self.version,
            size=size,
            region=self.region,
            customer=self.customer,
            labels=frozen_map(self.labels),
            maintenance_window=(
                self.maintenance_window.to_domain() if self.maintenance_window else None
            ),
        )


def parse_request(event: CloudEvent) -> InstanceRequested:
    """Validate a request event; raises a PermanentError that names the field."""
    if event.type != EVENT_INSTANCE_REQUESTED:
        raise MalformedEvent(
            "unknown-type",
            f"event type {event.type!r} is not handled here (expected {EVENT_INSTANCE_REQUESTED})",
        )
    if not isinstance(event.data, dict):
        raise InvalidRequest("invalid-request", "the request data must be a JSON object")
    action = event.data.get("action")
    if action is not None and (
        not isinstance(action, str) or action not in {a.value for a in Action}
    ):
        known = ", ".join(a.value for a in Action)
        raise InvalidRequest("unknown-action", f"action {action!r} is not one of: {known}")
    try:
        return InstanceRequested.model_validate(event.data)
    except ValidationError as exc:
        raise InvalidRequest("invalid-request", describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence per problem, each naming its field."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"field '{where}' is required")
        elif error["type"] == "extra_forbidden":
            parts.append(f"field '{where}' is not part of the request")
        elif where and f"'{where.split('.')[-1]}'" not in message:
            parts.append(f"field '{where}': {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def new_request_event(
    data: Any,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Build a request event (used by the CLI, the API and tests)."""
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=EVENT_INSTANCE_REQUESTED,
        data=data,
        time=time,
        subject=str(data["instance"]) if isinstance(data, dict) and data.get("instance") else None,
    )
