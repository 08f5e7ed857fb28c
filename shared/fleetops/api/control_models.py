"""Bodies and answers of rollouts, automation and maintenance, as pydantic models.

Answers mirror the service's own shapes (`rollout_to_doc`, `AutomationStatus.to_json()`,
`MaintenanceSettings.to_json()`, `InstanceWindows.to_json()`). Bodies are strict and say
in their schema everything they check, so that every body the document calls valid is
accepted; the one exception is a freeze whose end is not after its start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

from fleetops.api.models import CLOCK_PATTERN, DURATION_PATTERN, MaintenanceWindowOut, time_zones
from fleetops.domain.model import Action, Size
from fleetops.domain.rollouts import Rollout, RolloutStatus
from fleetops.ports import ScheduledJob
from fleetops.services.automation import AutomationStatus
from fleetops.services.maintenance import InstanceWindows, MaintenanceSettings
from fleetops.services.rollouts import WaveProgress, rollout_to_doc


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _whole(value: Any) -> Any:
    # JSON Schema counts 145.0 as an integer; so does this API (strict mode would not).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Whole numbers are `Annotated[int, Field(bounds), BeforeValidator(_whole)]`: with the
# bounds after the validator, pydantic writes them into the JSON Schema as "ge"/"le",
# which no client understands, instead of "minimum"/"maximum".


# ------------------------------------------------------------------ rollouts

# A selector key: a label, or region, customer, size, version or id; `!key` means "is not".
SELECTOR_KEY_PATTERN = r"^!?[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$"
_SELECTOR_PART = r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}!?=[^,=]{0,63}"
# N instances, or a selector such as `ring=canary` or `ring=canary,region!=us`; "" for none.
CANARY_PATTERN = rf"^(?:[0-9]{{1,4}}|{_SELECTOR_PART}(?:,{_SELECTOR_PART})*)?$"
# N targets, or P% of them (at most 100%).
LIMIT_PATTERN = (
    r"^(?:[0-9]{1,6}(?:\.[0-9]{1,3})?|(?:100(?:\.0{1,3})?|[0-9]{1,2}(?:\.[0-9]{1,3})?)%)$"
)
# 0, or hours and minutes: 10m, 2h, 1h30m.
SPAN_PATTERN = r"^(?:0|[0-9]{1,4}h|[0-9]{1,6}m|[0-9]{1,4}h[0-9]{1,6}m)$"
ROLLOUT_ACTIONS = ("upgrade", "resize", "restart", "suspend", "resume", "snapshot", "replace")
RolloutAction = Literal["upgrade", "resize", "restart", "suspend", "resume", "snapshot", "replace"]

LimitSpec = (
    Annotated[int, Field(ge=0, le=999_999), BeforeValidator(_whole)]
    | Annotated[str, StringConstraints(pattern=LIMIT_PATTERN)]
)
Span = Annotated[str, StringConstraints(pattern=SPAN_PATTERN)]
SelectorKey = Annotated[str, StringConstraints(pattern=SELECTOR_KEY_PATTERN)]
SelectorValue = Annotated[str, StringConstraints(max_length=63)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64)]

_NEEDS: list[JsonValue] = [
    {
        # `action` left out means upgrade, which needs a version.
        "if": {"properties": {"action": {"const": "upgrade"}}},
        "then": {
            "required": ["version"],
            "properties": {"version": {"type": "string", "minLength": 1, "maxLength": 64}},
        },
    },
    {
        "if": {"required": ["action"], "properties": {"action": {"const": "resize"}}},
        "then": {"required": ["size"], "properties": {"size": {"enum": [s.value for s in Size]}}},
    },
]


class RolloutStart(_Body):
    """What `fleetops rollout start` takes. The caller is recorded as the rollout's creator."""

    model_config = ConfigDict(json_schema_extra={"allOf": _NEEDS})

    action: RolloutAction = Field("upgrade", description="the action to roll out")
    version: Version | None = Field(None, description="the version to upgrade to (upgrade)")
    size: Size | None = Field(None, description="the size (resize)")
    selector: dict[SelectorKey, SelectorValue] = Field(
        default_factory=dict,
        description=(
            "which instances: label, region, customer, size, version or id to a value; "
            "a key starting with ! means not equal; empty: every instance"
        ),
        json_schema_extra={"propertyNames": {"pattern": SELECTOR_KEY_PATTERN}},
    )
    max_concurrency: LimitSpec = Field("10%", description="N or P% of the targets at once")
    max_errors: LimitSpec = Field("0", description="N or P%: halt once more have failed")
    canary: Annotated[str, StringConstraints(pattern=CANARY_PATTERN)] | None = Field(
        "ring=canary",
        description=(
            "the first wave: N instances, or a selector like ring=canary; null or '' for none"
        ),
    )
    bake: Span = Field("10m", description="how long a wave must stay healthy, e.g. 10m; 0 for none")
    cutoff: Span = Field("30m", description="window time an operation needs left to start")
    now: bool = Field(False, description="ignore maintenance windows (freezes still apply)")

    @model_validator(mode="after")
    def _fields_the_action_needs(self) -> RolloutStart:
        if self.action == "upgrade" and not self.version:
            raise ValueError("field 'version' is required for an upgrade rollout")
        if self.action == "resize" and self.size is None:
            raise ValueError("field 'size' is required for a resize rollout")
        return self


class WaveOut(_Out):
    index: int
    name: str
    instances: list[str]


class WaveProgressOut(_Out):
    index: int
    wave: str = Field(description="the wave's name: canary, batch 1, ...")
    total: int
    pending: int
    started: int = Field(description="running now")
    succeeded: int
    failed: int
    skipped: int


class RolloutHistoryOut(_Out):
    at: datetime
    actor: str
    event: str
    detail: str


class RolloutOut(_Out):
    id: str
    action: Action
    status: RolloutStatus
    target_version: str | None
    size: Size | None
    selector: dict[str, str]
    waves: list[WaveOut]
    max_concurrency: int
    max_errors: int
    max_concurrency_spec: str
    max_errors_spec: str
    respect_windows: bool
    bake_seconds: float
    cutoff_seconds: float
    current_wave: int
    wave_done_at: datetime | None
    halted_reason: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    created_by: str = Field(description="who started it")
    history: list[RolloutHistoryOut] = Field(description="oldest first: who did what")
    total: int
    progress: list[WaveProgressOut] | None = Field(
        description="per wave, in order; in the answers about one rollout, null in lists"
    )

    @classmethod
    def from_domain(cls, rollout: Rollout, waves: list[WaveProgress] | None = None) -> RolloutOut:
        doc = rollout_to_doc(rollout)
        doc["history"] = [
            {
                "at": h.get("at"),
                "actor": str(h.get("actor", "")),
                "event": str(h.get("event", "")),
                "detail": str(h.get("detail", "")),
            }
            for h in rollout.history
        ]
        progress = None
        if waves is not None:
            progress = [
                {
                    "index": w.wave.index,
                    "wave": w.wave.name,
                    "total": sum(w.counts.values()),
                    **w.counts,
                }
                for w in waves
            ]
        return cls.model_validate({"id": rollout.id, **doc, "progress": progress})


class RolloutList(_Out):
    rollouts: list[RolloutOut] = Field(description="newest first, without progress")


# ------------------------------------------------------------------ automation


class CircuitOut(_Out):
    open: bool
    opened_at: datetime | None
    reason: str | None
    closed_at: datetime | None


class LimitsOut(_Out):
    max_remediations: int
    flap_cycles: int
    concurrency_percent: float
    circuit_percent: float
    circuit_minimum: int
    cap_window_seconds: float
    cooldown_seconds: float
    flap_window_seconds: float
    circuit_window_seconds: float


class AutomationOut(_Out):
    paused: bool = Field(description="the kill switch: no remediation and no maintenance")
    paused_by: str | None
    dry_run: bool = Field(description="remediation records what it would do and does nothing")
    circuit: CircuitOut = Field(description="open: too many incidents at once, remediation stops")
    limits: LimitsOut

    @classmethod
    def from_status(cls, status: AutomationStatus) -> AutomationOut:
        return cls.model_validate(status.to_json())


Count = Annotated[int, Field(ge=0, le=1_000_000), BeforeValidator(_whole)]
Percent = Annotated[float, Field(ge=0, le=100)]
# At most a year: any limit longer than that is a mistake.
Seconds = Annotated[float, Field(ge=0, le=31_536_000)]


class LimitsPatch(_Body):
    """Any of the limits; those left out keep their value."""

    max_remediations: Count | None = None
    flap_cycles: Count | None = None
    concurrency_percent: Percent | None = None
    circuit_percent: Percent | None = None
    circuit_minimum: Count | None = None
    cap_window_seconds: Seconds | None = None
    cooldown_seconds: Seconds | None = None
    flap_window_seconds: Seconds | None = None
    circuit_window_seconds: Seconds | None = None

    def given(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class AutomationPatch(_Body):
    """What `fleetops automation dry-run` and `automation set` change; left out: unchanged."""

    dry_run: bool | None = None
    limits: LimitsPatch | None = None


# ------------------------------------------------------------------ maintenance


class MaintenanceJobOut(_Out):
    id: str
    name: str
    description: str
    schedule: str
    time_zone: str
    state: str = Field(description="ENABLED or PAUSED")
    topic: str | None
    next_run: datetime | None
    last_attempt: datetime | None
    last_error: str | None = Field(
        description="null when the last attempt worked, or none was made"
    )

    @classmethod
    def from_domain(cls, job: ScheduledJob) -> MaintenanceJobOut:
        return cls.model_validate(job.to_json())


class FreezeOut(_Out):
    start: datetime
    end: datetime
    reason: str


class SettingsChangeOut(_Out):
    at: datetime
    actor: str
    event: str
    detail: str


class MaintenanceOut(_Out):
    jobs: list[MaintenanceJobOut] = Field(description="the scheduler jobs that fire the tick")
    scheduler_error: str | None = Field(
        description="why `jobs` is empty although there are jobs: the scheduler is out of reach"
    )
    default_window: MaintenanceWindowOut | None = Field(
        description="the window of instances that have none of their own"
    )
    freezes: list[FreezeOut] = Field(description="no maintenance starts or runs during these")
    history: list[SettingsChangeOut] = Field(description="who changed what, newest first")

    @classmethod
    def from_domain(
        cls,
        settings: MaintenanceSettings,
        jobs: list[ScheduledJob],
        scheduler_error: str | None,
    ) -> MaintenanceOut:
        return cls.model_validate(
            {
                **settings.to_json(),
                "jobs": [j.to_json() for j in jobs],
                "scheduler_error": scheduler_error,
            }
        )


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class DefaultWindowBody(_Body):
    """A maintenance window, as in a request's `maintenance_window`."""

    days: list[Day] = Field(min_length=1, max_length=7)
    start: Annotated[str, StringConstraints(pattern=CLOCK_PATTERN)] = Field(
        description="local start time, HH:MM"
    )
    duration: Annotated[str, StringConstraints(pattern=DURATION_PATTERN)] = Field(
        description="like 4h, 90m or 1h30m, at most 168h"
    )
    timezone: str = Field(
        description="an IANA time zone", json_schema_extra={"enum": list(time_zones())}
    )

    @field_validator("timezone")
    @classmethod
    def _a_zone_the_document_lists(cls, value: str) -> str:
        if value not in time_zones():
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Paris")
        return value


# Years a freeze may name: far enough from the ends of the calendar that any UTC offset works.
FREEZE_TIME_PATTERN = r"^(?:19[7-9][0-9]|2[0-9]{3})-"


def _in_range(value: datetime, name: str) -> datetime:
    if not 1970 <= value.year <= 2999:
        raise ValueError(f"field '{name}': the year must be between 1970 and 2999")
    return value


class FreezeBody(_Body):
    """No maintenance in [start, end), fleet-wide (e.g. year-end)."""

    start: AwareDatetime = Field(
        description="RFC 3339, with an offset", json_schema_extra={"pattern": FREEZE_TIME_PATTERN}
    )
    end: AwareDatetime = Field(
        description="RFC 3339, with an offset; excluded; must be after start",
        json_schema_extra={"pattern": FREEZE_TIME_PATTERN},
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"\S")] = Field(
        description="why, shown to everyone whose maintenance waits"
    )

    @field_validator("start", "end")
    @classmethod
    def _years(cls, value: datetime, info: Any) -> datetime:
        return _in_range(value, str(info.field_name))


# ------------------------------------------------------------------ one instance


class OpeningOut(_Out):
    local_start: datetime = Field(description="in the window's time zone")
    local_end: datetime
    start: datetime = Field(description="in UTC")
    end: datetime


class InstanceWindowsOut(_Out):
    instance: str
    window: MaintenanceWindowOut | None = Field(description="null: no window, only freezes apply")
    default: bool = Field(description="the window is the fleet default, not the instance's own")
    openings: list[OpeningOut] = Field(description="the next openings; one in progress first")

    @classmethod
    def from_domain(cls, windows: InstanceWindows) -> InstanceWindowsOut:
        return cls.model_validate(windows.to_json())


class RemediationResetOut(_Out):
    instance: str
    reset_by: str
    reset_at: datetime
