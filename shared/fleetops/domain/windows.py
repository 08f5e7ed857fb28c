"""Maintenance windows and freeze periods: when maintenance may start.

A window (`MaintenanceWindow`, contract section 3) such as
`{"days": ["sun"], "start": "02:00", "duration": "4h", "timezone": "America/New_York"}`
reads as follows.

- It opens at the local wall-clock time `start` on each listed local day, in
  `timezone`, and stays open for `duration` of real elapsed time. On the day the
  clocks go back a 4h window from 00:00 therefore closes at 03:00 local; on the
  day they go forward it closes at 05:00. By the same rule a daily 24h window
  closes for an hour on the night the clocks go back; 25h keeps it open.
- A window belongs to the day it starts on: `sat 23:00 for 4h` runs into Sunday
  03:00, and `sat 23:00 for 26h` runs across the week boundary into Monday.
- Spring forward: when `start` does not exist that day (02:30 in New York on
  2026-03-08), the window opens at the instant the clocks jump, which reads as
  the first wall time after the gap (03:00 EDT), and still lasts `duration` from
  there. It is not dropped, and not moved to "02:30 in the old offset" (03:30).
- Fall back: when `start` occurs twice (01:30 in New York on 2026-11-01), the
  window opens at the first occurrence (01:30 EDT, fold=0) and only then; it does
  not open again at the repeated 01:30 EST.
- Overlaps: when a window lasts longer than the gap to its next start (every day
  for 25h, or a 24h daily window on the day the clocks go forward), the
  overlapping or touching openings are reported as one continuous opening. A
  window that never closes is reported in consecutive touching pieces of about
  `MERGE_LIMIT` (28 days) each, so every answer takes bounded work; `time_left`
  is exact whenever the window closes within 14 days of the instant asked about,
  and at least 14 days otherwise.

Freeze periods are UTC instants `[start, end)`. Maintenance that needs `needed`
may start at `at` when no freeze covers `at`, none starts before `at + needed`,
and the window is open with at least `needed` left. An instance without a
window uses the fleet default; with neither, only freezes restrict it.

Every instant is a parameter: nothing here reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetops.domain.model import MaintenanceWindow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DURATION = timedelta(days=7)
MERGE_LIMIT = timedelta(days=28)

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")
_CLOCK = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")
_WINDOW_FIELDS = frozenset({"days", "start", "duration", "timezone"})
_FREEZE_FIELDS = frozenset({"start", "end", "reason"})
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Opening:
    """One period during which a window is open: `[start, end)` in UTC.

    `local_start` and `local_end` are the same instants in the window's zone, for display.
    """

    start: datetime
    end: datetime
    local_start: datetime
    local_end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Freeze:
    """No maintenance may start or run in `[start, end)`; both are stored in UTC."""

    start: datetime
    end: datetime
    reason: str

    def __post_init__(self) -> None:
        start = _utc(self.start, "freeze start")
        end = _utc(self.end, "freeze end")
        if end <= start:
            raise ValueError(f"freeze {self.reason!r} must end after it starts")
        if not self.reason.strip():
            raise ValueError("a freeze needs a reason")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class MaintenanceVerdict:
    """Whether maintenance may start now, and a sentence saying why or why not."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class _Spec:
    weekdays: frozenset[int]
    clock: time
    length: timedelta
    zone: ZoneInfo


def parse_duration(text: str) -> timedelta:
    """`4h`, `90m`, `1h30m` to a timedelta."""
    match = _DURATION.match(text.strip())
    if not match or not (match.group("h") or match.group("m")):
        raise ValueError(f"duration {text!r} must look like 4h, 90m or 1h30m")
    return timedelta(hours=int(match.group("h") or 0), minutes=int(match.group("m") or 0))


def validate_window(window: MaintenanceWindow) -> None:
    """Raise ValueError naming the first field of `window` that is not usable."""
    _spec(window)


def openings(window: MaintenanceWindow, after: datetime, count: int) -> list[Opening]:
    """The next `count` openings that end after `after`, in order; one in progress comes first."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    spec = _spec(window)
    after = _utc(after, "after")
    found: list[Opening] = []
    if count == 0:
        return found
    # Start early enough to see any opening that could still be running at `after`.
    first_day = after.astimezone(spec.zone).date() - timedelta(days=spec.length.days + 2)
    for start, end in _merged(spec, first_day):
        if end <= after:
            continue
        found.append(Opening(start, end, start.astimezone(spec.zone), end.astimezone(spec.zone)))
        if len(found) == count:
            break
    return found


def current_opening(window: MaintenanceWindow, at: datetime) -> Opening | None:
    """The opening `at` falls in, or None when the window is closed then."""
    (upcoming,) = openings(window, at, 1)
    return upcoming if upcoming.start <= at else None


def is_open(window: MaintenanceWindow, at: datetime) -> bool:
    return current_opening(window, at) is not None


def time_left(window: MaintenanceWindow, at: datetime) -> timedelta | None:
    """How long the window stays open after `at`, or None when it is closed."""
    opening = current_opening(window, at)
    return None if opening is None else opening.end - at


def can_start(window: MaintenanceWindow, at: datetime, needed: timedelta) -> bool:
    """Open at `at`, with at least `needed` left before it closes."""
    _check_needed(needed)
    left = time_left(window, at)
    return left is not None and left >= needed


def frozen(freezes: Iterable[Freeze], at: datetime) -> Freeze | None:
    """The freeze covering `at` (the one ending last if several do), or None."""
    at = _utc(at, "at")
    covering = [f for f in freezes if f.covers(at)]
    return max(covering, key=lambda f: f.end) if covering else None


def maintenance_allowed(
    window: MaintenanceWindow | None,
    freezes: Iterable[Freeze],
    at: datetime,
    needed: timedelta,
    default_window: MaintenanceWindow | None,
    *,
    task: str = "maintenance",
) -> MaintenanceVerdict:
    """May `task`, which takes `needed`, start at `at`?

    Uses the instance's `window`, or `default_window` when it has none.
    """
    at = _utc(at, "at")
    _check_needed(needed)
    effective = window if window is not None else default_window
    zone = _spec(effective).zone if effective is not None else ZoneInfo("UTC")
    suffix = " (fleet default window)" if window is None and effective is not None else ""
    freezes = tuple(freezes)

    freeze = frozen(freezes, at)
    if freeze is not None:
        return MaintenanceVerdict(
            False, f"freeze '{freeze.reason}' until {_show(freeze.end, zone)}"
        )
    ahead = [f for f in freezes if at < f.start < at + needed]
    if ahead:
        soon = min(ahead, key=lambda f: f.start)
        return MaintenanceVerdict(
            False,
            f"freeze '{soon.reason}' starts at {_show(soon.start, zone)}, "
            f"within the {_human(needed)} {task} needs",
        )
    if effective is None:
        return MaintenanceVerdict(True, "no maintenance window set; only freezes apply")

    current = current_opening(effective, at)
    if current is None:
        (upcoming,) = openings(effective, at, 1)
        return MaintenanceVerdict(
            False, f"window closed, next opening at {_show(upcoming.start, zone)}{suffix}"
        )
    left = current.end - at
    if left < needed:
        return MaintenanceVerdict(
            False,
            f"only {_human(left)} left in the window, {task} needs {_human(needed)}{suffix}",
        )
    return MaintenanceVerdict(
        True,
        f"window open until {_show(current.end, zone)}, {_human(left)} left, "
        f"{task} needs {_human(needed)}{suffix}",
    )


def window_from_dict(d: Mapping[str, Any]) -> MaintenanceWindow:
    """A window from a config document; ValueError names the field that is wrong."""
    if not isinstance(d, Mapping):
        raise ValueError(f"a maintenance window must be an object, got {type(d).__name__}")
    _check_fields("maintenance window", d, _WINDOW_FIELDS)
    days = d["days"]
    if isinstance(days, str) or not isinstance(days, list | tuple):
        raise ValueError(f"field 'days' must be a list of day names like ['sun'], got {days!r}")
    names: list[str] = []
    for day in days:
        name = day.strip().lower() if isinstance(day, str) else day
        if name not in DAYS:
            raise ValueError(f"field 'days': {day!r} is not one of {', '.join(DAYS)}")
        names.append(name)
    for key in ("start", "duration", "timezone"):
        if not isinstance(d[key], str):
            raise ValueError(f"field '{key}' must be a string, got {d[key]!r}")
    window = MaintenanceWindow(
        days=tuple(day for day in DAYS if day in names),
        start=d["start"].strip(),
        duration=d["duration"].strip(),
        timezone=d["timezone"].strip(),
    )
    validate_window(window)
    return window


def freeze_from_dict(d: Mapping[str, Any]) -> Freeze:
    """A freeze from a config document: ISO 8601 `start` and `end` with an offset, a `reason`."""
    if not isinstance(d, Mapping):
        raise ValueError(f"a freeze must be an object, got {type(d).__name__}")
    _check_fields("freeze", d, _FREEZE_FIELDS)
    reason = d["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("field 'reason' must be a non-empty string")
    start = _instant(d["start"], "start")
    end = _instant(d["end"], "end")
    if end <= start:
        raise ValueError(f"freeze {reason!r}: field 'end' must be after 'start'")
    return Freeze(start, end, reason.strip())


@lru_cache(maxsize=512)
def _spec(window: MaintenanceWindow) -> _Spec:
    if not window.days:
        raise ValueError("field 'days' must list at least one day")
    unknown = [day for day in window.days if day not in DAYS]
    if unknown:
        raise ValueError(f"field 'days': {unknown[0]!r} is not one of {', '.join(DAYS)}")
    clock = _CLOCK.match(window.start)
    if not clock:
        raise ValueError(f"field 'start': {window.start!r} must be HH:MM in 24-hour time")
    try:
        length = parse_duration(window.duration)
    except ValueError as exc:
        raise ValueError(f"field 'duration': {exc}") from exc
    if not timedelta(0) < length <= MAX_DURATION:
        raise ValueError(
            f"field 'duration': {window.duration!r} must be more than 0 and at most 7 days"
        )
    try:
        zone = ZoneInfo(window.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"field 'timezone': {window.timezone!r} is not an IANA time zone") from exc
    return _Spec(
        weekdays=frozenset(DAYS.index(day) for day in window.days),
        clock=time(int(clock.group("h")), int(clock.group("m"))),
        length=length,
        zone=zone,
    )


def _merged(spec: _Spec, first_day: date) -> Iterator[tuple[datetime, datetime]]:
    """Openings from `first_day` on, with overlapping or touching ones joined."""
    current: tuple[datetime, datetime] | None = None
    # End of the last opening given out: nothing after it may reach back before it.
    floor: datetime | None = None
    for raw_start, end in _daily(spec, first_day):
        start = raw_start if floor is None else max(raw_start, floor)
        if end <= start:
            continue
        if current is not None:
            joined_start, joined_end = current
            if start <= joined_end and joined_end - joined_start < MERGE_LIMIT:
                current = (joined_start, max(joined_end, end))
                continue
            yield current
            floor = joined_end
            start = max(start, floor)
            if end <= start:
                current = None
                continue
        current = (start, end)


def _daily(spec: _Spec, first_day: date) -> Iterator[tuple[datetime, datetime]]:
    """One opening per listed local day from `first_day` on, each lasting the full duration."""
    day = first_day
    while True:
        if day.weekday() in spec.weekdays:
            start = _local_start(day, spec.clock, spec.zone)
            yield start, start + spec.length
        day += timedelta(days=1)


def _local_start(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant the wall clock in `zone` reads `clock` on `day`, by the DST rules above."""
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first
    # In a gap fold=0 and fold=1 land on either side of the jump; find the jump itself.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(first, before), max(first, before)
    while high - low > _MICROSECOND:
        middle = low + (high - low) / 2
        if _wall(middle, zone) > wall:
            high = middle
        else:
            low = middle
    return high


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def _check_needed(needed: timedelta) -> None:
    if needed < timedelta(0):
        raise ValueError(f"needed must not be negative, got {needed}")


def _check_fields(what: str, d: Mapping[str, Any], fields: frozenset[str]) -> None:
    missing = sorted(fields - d.keys())
    if missing:
        raise ValueError(f"{what}: field '{missing[0]}' is required")
    extra = sorted(str(key) for key in d.keys() - fields)
    if extra:
        raise ValueError(f"{what}: field '{extra[0]}' is not known (expected {sorted(fields)})")


def _instant(value: Any, name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(
                f"field '{name}': {value!r} is not an ISO 8601 time like 2026-12-20T00:00:00Z"
            ) from exc
    if not isinstance(value, datetime):
        raise ValueError(f"field '{name}' must be an ISO 8601 time, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"field '{name}': {value.isoformat()} needs a UTC offset, e.g. Z or +01:00"
        )
    return value.astimezone(UTC)


def _show(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    clock = "%H:%M:%S" if local.second or local.microsecond else "%H:%M"
    return local.strftime(f"%a %Y-%m-%d {clock} %Z")


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)
