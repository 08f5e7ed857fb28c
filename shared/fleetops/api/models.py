"""The API's bodies as pydantic models: what it validates, answers and documents.

Response models mirror the Firestore documents (`fleetops.documents`), so a
client can turn an answer back into the domain values (`to_domain`), and the
OpenAPI document is generated from these same classes.
"""

from __future__ import annotations

import base64
import json
import re
import zoneinfo
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleetops import documents
from fleetops.api.auth import Role
from fleetops.contract.requests import InstanceRequested
from fleetops.domain.model import (
    Action,
    Health,
    HistoryEntry,
    Instance,
    InstanceState,
    Operation,
    OperationStatus,
    Origin,
    Size,
    StepStatus,
)
from fleetops.services.dead_letter_store import DeadLetter


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaintenanceWindowOut(_Out):
    days: list[str]
    start: str
    duration: str
    timezone: str


class InstanceOut(_Out):
    id: str
    state: InstanceState
    health: Health
    customer: str | None
    region: str | None
    size: Size
    version: str | None
    labels: dict[str, str]
    maintenance_window: MaintenanceWindowOut | None
    endpoint: str | None
    active_operation: str | None
    lease_token: int
    lease_expires_at: datetime | None
    latest_snapshot: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, instance: Instance) -> InstanceOut:
        return cls.model_validate({"id": instance.id, **documents.instance_to_doc(instance)})

    def to_domain(self) -> Instance:
        return documents.instance_from_doc(self.id, self.model_dump(exclude={"id"}))


class StepOut(_Out):
    name: str
    status: StepStatus
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    not_before: datetime | None
    checks: int
    compensation: bool


class ParamsOut(_Out):
    version: str | None
    size: Size | None
    region: str | None
    customer: str | None
    labels: dict[str, str]
    maintenance_window: MaintenanceWindowOut | None


class HistoryOut(_Out):
    at: datetime
    actor: str
    event: str
    detail: str
    operation: str | None

    @classmethod
    def from_domain(cls, entry: HistoryEntry) -> HistoryOut:
        return cls.model_validate(documents.history_to_doc(entry))

    def to_domain(self) -> HistoryEntry:
        return documents.history_from_doc(self.model_dump())


class OperationOut(_Out):
    id: str
    instance: str
    action: Action
    origin: Origin
    status: OperationStatus
    request_id: str
    params: ParamsOut
    steps: list[StepOut]
    current_step: int
    requested_by: str | None
    reason: str | None
    error: str | None
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_token: int | None
    deadline_at: datetime | None
    approval_expires_at: datetime | None
    approved_by: str | None
    cancel_requested_by: str | None
    prior_state: InstanceState | None
    prior_version: str | None
    prior_size: Size | None
    compensating: bool
    failure: str | None
    outputs: dict[str, str]
    history: list[HistoryOut]

    @classmethod
    def from_domain(cls, op: Operation) -> OperationOut:
        return cls.model_validate({"id": op.id, **documents.operation_to_doc(op)})

    def to_domain(self) -> Operation:
        return documents.operation_from_doc(self.id, self.model_dump(exclude={"id"}))


class InstanceList(_Out):
    instances: list[InstanceOut]


class InstanceDetail(_Out):
    instance: InstanceOut
    operations: list[OperationOut] = Field(description="its most recent operations, newest first")
    history: list[HistoryOut] = Field(description="its recent changes, newest first")


class OperationList(_Out):
    operations: list[OperationOut]


class Accepted(_Out):
    operation: str = Field(description="the id the operation will have once recorded")
    href: str = Field(description="where to follow it")


class DeadLetterOut(_Out):
    id: str
    message_id: str
    data_base64: str
    data_text: str | None = Field(description="the data as text, when it is UTF-8")
    attributes: dict[str, str]
    error_code: str
    reason: str
    original_topic: str | None
    original_message_id: str | None
    source_subscription: str | None
    delivery_count: int | None
    published_at: datetime | None
    received_at: datetime
    data_truncated: bool
    note: str | None
    duplicates: int
    replayed_at: datetime | None
    replayed_by: str | None
    replay_message_id: str | None
    replayable: bool

    @classmethod
    def from_domain(cls, letter: DeadLetter) -> DeadLetterOut:
        try:
            text: str | None = letter.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return cls(
            id=letter.id,
            message_id=letter.message_id,
            data_base64=base64.b64encode(letter.data).decode(),
            data_text=text,
            attributes=dict(letter.attributes),
            error_code=letter.error_code,
            reason=letter.reason,
            original_topic=letter.original_topic,
            original_message_id=letter.original_message_id,
            source_subscription=letter.source_subscription,
            delivery_count=letter.delivery_count,
            published_at=letter.published_at,
            received_at=letter.received_at,
            data_truncated=letter.data_truncated,
            note=letter.note,
            duplicates=letter.duplicates,
            replayed_at=letter.replayed_at,
            replayed_by=letter.replayed_by,
            replay_message_id=letter.replay_message_id,
            replayable=letter.replay_blocker() is None,
        )

    def to_domain(self) -> DeadLetter:
        return DeadLetter(
            id=self.id,
            message_id=self.message_id,
            data=base64.b64decode(self.data_base64),
            attributes=dict(self.attributes),
            error_code=self.error_code,
            reason=self.reason,
            received_at=self.received_at,
            original_topic=self.original_topic,
            original_message_id=self.original_message_id,
            source_subscription=self.source_subscription,
            delivery_count=self.delivery_count,
            published_at=self.published_at,
            data_truncated=self.data_truncated,
            note=self.note,
            duplicates=self.duplicates,
            replayed_at=self.replayed_at,
            replayed_by=self.replayed_by,
            replay_message_id=self.replay_message_id,
        )


class DeadLetterList(_Out):
    dead_letters: list[DeadLetterOut]


class CallerOut(_Out):
    principal: str
    role: Role | None


class ErrorDetail(_Out):
    code: str = Field(description="a short machine-readable code, e.g. invalid-request")
    message: str = Field(description="one sentence saying what is wrong")


class ErrorBody(_Out):
    error: ErrorDetail


# ------------------------------------------------------------------ the request body

# The body of POST /v1/requests is the data of `fleetops.instance.requested`
# (contract section 3), less `requested_by`, which the API sets to the caller.
# The requests function accepts a few spellings this document cannot describe
# exactly (a duration of `1h90m`, a time with a trailing newline); the API
# accepts what the document says and no more, so a client generated from the
# document never sees a 400 for a body the document calls valid.
SET_BY_THE_API = ("requested_by",)
CLOCK_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
# 1h..168h, 1m..9999m, or 1h0m..167h59m: at most 7 days, more than nothing.
DURATION_PATTERN = (
    r"^(?:(?:[1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h"
    r"|[1-9][0-9]{0,3}m"
    r"|(?:[1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-7])h(?:[0-9]|[1-5][0-9])m)$"
)
# Firestore reserves field names like `__name__`: such a label could never be stored.
RESERVED_KEY_PATTERN = r"^__[\s\S]*__$"
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones() - _NOT_ZONES))


BODY_SCHEMA = "RequestBody"
# The contract's own name for the window; the API's version is stricter (patterns).
_WINDOW_RENAMED = ("MaintenanceWindowModel", "MaintenanceWindowBody")


def request_body_schema(ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema of the request body, and the definitions it refers to."""
    text = json.dumps(InstanceRequested.model_json_schema(ref_template=ref_template))
    old, new = _WINDOW_RENAMED
    schema: dict[str, Any] = json.loads(
        text.replace(ref_template.format(model=old), ref_template.format(model=new))
    )
    definitions: dict[str, Any] = schema.pop("$defs")
    definitions[new] = definitions.pop(old) | {"title": new}
    for name in SET_BY_THE_API:
        schema["properties"].pop(name, None)
    schema["title"] = BODY_SCHEMA
    schema["description"] = (
        "The data of a fleetops.instance.requested event (contract section 3). "
        "`requested_by` is always the authenticated caller and cannot be given."
    )
    schema["properties"]["labels"]["propertyNames"]["not"] = {"pattern": RESERVED_KEY_PATTERN}
    window = definitions[new]["properties"]
    window["start"] |= {"pattern": CLOCK_PATTERN}
    window["duration"] |= {"pattern": DURATION_PATTERN}
    window["timezone"] |= {"enum": list(time_zones())}
    version = schema["properties"]["version"]["anyOf"][0]
    size = ref_template.format(model="Size")
    schema["allOf"] = [
        {
            "if": {"properties": {"action": {"enum": ["provision", "upgrade"]}}},
            "then": {"required": ["version"], "properties": {"version": version}},
        },
        {
            "if": {"properties": {"action": {"const": "resize"}}},
            "then": {"required": ["size"], "properties": {"size": {"$ref": size}}},
        },
    ]
    return schema, definitions


def stricter_than_the_contract(data: dict[str, Any]) -> str | None:
    """What the API refuses beyond the contract's own validation (see above)."""
    labels = data.get("labels")
    for key in labels if isinstance(labels, dict) else ():
        if re.fullmatch(RESERVED_KEY_PATTERN[1:-1], key):
            return f"field 'labels': the key {key!r} is reserved (keys may not be __like_this__)"
    window = data.get("maintenance_window")
    if not isinstance(window, dict):
        return None
    checks = (
        ("start", lambda v: re.fullmatch(CLOCK_PATTERN[1:-1], v), "HH:MM in 24-hour time"),
        (
            "duration",
            lambda v: re.fullmatch(DURATION_PATTERN[1:-1], v),
            "like 4h, 90m or 1h30m, at most 168h",
        ),
        ("timezone", lambda v: v in time_zones(), "an IANA time zone such as Europe/Paris"),
    )
    for name, ok, wanted in checks:
        value = window.get(name)
        if isinstance(value, str) and not ok(value):
            return f"field 'maintenance_window.{name}': {value!r} must be {wanted}"
    return None
