"""Cron math of the local scheduler: wall-clock schedules in IANA zones, across DST."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fleetops
from fleetops.local.scheduler import CronSchedule, load_jobs, next_fire_times

NEW_YORK = ZoneInfo("America/New_York")
JOB_FILE = Path(fleetops.__file__).parent / "data" / "scheduler_jobs.json"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(schedule: str, tz: str, after: datetime, count: int) -> list[datetime]:
    return [t.astimezone(UTC) for t in next_fire_times(schedule, tz, after, count)]


# --- spring forward: New York 2024-03-10, 02:00 EST -> 03:00 EDT ---------------------------


def test_daily_job_in_the_skipped_hour_fires_once_as_if_the_clocks_had_not_moved() -> None:
    times = next_fire_times(
        "30 2 * * *", "America/New_York", datetime(2024, 3, 9, 12, tzinfo=NEW_YORK), 3
    )
    assert [t.isoformat() for t in times] == [
        "2024-03-10T03:30:00-04:00",  # 02:30 EST would have been 07:30Z
        "2024-03-11T02:30:00-04:00",
        "2024-03-12T02:30:00-04:00",
    ]
    assert all(t.tzinfo == NEW_YORK for t in times)


def test_skipped_wall_time_still_fires_when_asked_from_after_the_jump() -> None:
    # 03:10 EDT is later on the wall than 02:30, yet the shifted 02:30 (03:30 EDT) is due.
    after = datetime(2024, 3, 10, 3, 10, tzinfo=NEW_YORK)
    assert fires("30 2 * * *", "America/New_York", after, 2) == [
        utc(2024, 3, 10, 7, 30),
        utc(2024, 3, 11, 6, 30),
    ]


def test_frequent_job_keeps_its_cadence_through_the_skipped_hour() -> None:
    after = datetime(2024, 3, 10, 1, 40, tzinfo=NEW_YORK)
    assert fires("*/15 * * * *", "America/New_York", after, 4) == [
        utc(2024, 3, 10, 6, 45),  # 01:45 EST
        utc(2024, 3, 10, 7, 0),  # 03:00 EDT: the skipped 02:xx times collapse onto it
        utc(2024, 3, 10, 7, 15),
        utc(2024, 3, 10, 7, 30),
    ]


def test_hourly_job_fires_23_times_on_the_short_day() -> None:
    day = [
        t
        for t in next_fire_times(
            "0 * * * *", "America/New_York", datetime(2024, 3, 9, 23, 59, tzinfo=NEW_YORK), 30
        )
        if t.date() == datetime(2024, 3, 10).date()
    ]
    assert len(day) == 23
    # Aware datetimes sharing a tzinfo subtract as wall times: compare in UTC.
    elapsed = [b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(day)]
    assert set(elapsed) == {timedelta(hours=1)}


def test_southern_hemisphere_spring_forward() -> None:
    # Sydney 2024-10-06: 02:00 AEST -> 03:00 AEDT.
    after = datetime(2024, 10, 5, 12, tzinfo=UTC)
    assert [t.isoformat() for t in next_fire_times("30 2 * * *", "Australia/Sydney", after, 2)] == [
        "2024-10-06T03:30:00+11:00",
        "2024-10-07T02:30:00+11:00",
    ]


def test_midnight_skipped_by_a_midnight_transition() -> None:
    # Santiago 2024-09-08: 00:00 -04 -> 01:00 -03, so that day has no midnight.
    after = datetime(2024, 9, 7, 12, tzinfo=UTC)
    assert [t.isoformat() for t in next_fire_times("0 0 * * *", "America/Santiago", after, 3)] == [
        "2024-09-08T01:00:00-03:00",
        "2024-09-09T00:00:00-03:00",
        "2024-09-10T00:00:00-03:00",
    ]


# --- fall back: New York 2024-11-03, 02:00 EDT -> 01:00 EST --------------------------------


def test_hourly_job_fires_every_elapsed_hour_over_the_repeated_hour() -> None:
    after = datetime(2024, 11, 3, 0, 30, tzinfo=NEW_YORK)
    times = next_fire_times("0 * * * *", "America/New_York", after, 4)
    assert [t.isoformat() for t in times] == [
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T01:00:00-05:00",
        "2024-11-03T02:00:00-05:00",
        "2024-11-03T03:00:00-05:00",
    ]
    assert [t.fold for t in times[:2]] == [0, 1]


def test_hourly_job_fires_25_times_on_the_long_day() -> None:
    day = [
        t
        for t in next_fire_times(
            "0 * * * *", "America/New_York", datetime(2024, 11, 2, 23, 59, tzinfo=NEW_YORK), 30
        )
        if t.date() == datetime(2024, 11, 3).date()
    ]
    assert len(day) == 25
    # Aware datetimes sharing a tzinfo subtract as wall times: compare in UTC.
    elapsed = [b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(day)]
    assert set(elapsed) == {timedelta(hours=1)}


def test_second_pass_of_the_repeated_hour_is_due_from_late_in_the_first_pass() -> None:
    # 01:50 EDT: 01:00 EST comes next, though it is earlier on the wall.
    after = datetime(2024, 11, 3, 1, 50, tzinfo=NEW_YORK)
    assert fires("0 * * * *", "America/New_York", after, 2) == [
        utc(2024, 11, 3, 6, 0),
        utc(2024, 11, 3, 7, 0),
    ]


def test_every_fifteen_minutes_is_steady_through_the_repeated_hour() -> None:
    after = utc(2024, 11, 3, 5, 40)  # 01:40 EDT
    times = fires("*/15 * * * *", "America/New_York", after, 8)
    assert times == [utc(2024, 11, 3, 5, 45) + timedelta(minutes=15 * i) for i in range(8)]


def test_from_inside_the_second_pass() -> None:
    after = utc(2024, 11, 3, 6, 10)  # 01:10 EST, the second 01:10
    assert fires("*/15 * * * *", "America/New_York", after, 4) == [
        utc(2024, 11, 3, 6, 15),
        utc(2024, 11, 3, 6, 30),
        utc(2024, 11, 3, 6, 45),
        utc(2024, 11, 3, 7, 0),
    ]


def test_daily_job_in_the_repeated_hour_fires_once_at_the_first_pass() -> None:
    after = datetime(2024, 11, 2, 12, tzinfo=NEW_YORK)
    assert [t.isoformat() for t in next_fire_times("30 1 * * *", "America/New_York", after, 2)] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
    ]


def test_job_bound_to_the_repeated_hour_runs_through_it_once() -> None:
    after = datetime(2024, 11, 2, 12, tzinfo=NEW_YORK)
    assert fires("*/20 1 * * *", "America/New_York", after, 4) == [
        utc(2024, 11, 3, 5, 0),
        utc(2024, 11, 3, 5, 20),
        utc(2024, 11, 3, 5, 40),
        utc(2024, 11, 4, 6, 0),
    ]


# --- day, month, year and week boundaries --------------------------------------------------


def test_midnight_across_the_year_end_in_a_zone_ahead_of_utc() -> None:
    after = datetime(2024, 12, 31, 22, 59, 59, tzinfo=UTC)  # 23:59:59 in Berlin
    assert [t.isoformat() for t in next_fire_times("0 0 * * *", "Europe/Berlin", after, 2)] == [
        "2025-01-01T00:00:00+01:00",
        "2025-01-02T00:00:00+01:00",
    ]


def test_a_time_exactly_on_the_schedule_is_not_after_itself() -> None:
    at = datetime(2025, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    assert next_fire_times("0 0 * * *", "Europe/Berlin", at, 1)[0] == at + timedelta(days=1)


def test_last_minute_of_the_day_then_the_next_day() -> None:
    after = datetime(2024, 2, 28, 23, 59, tzinfo=UTC)
    assert fires("59 23 * * *", "Etc/UTC", after, 2) == [
        utc(2024, 2, 29, 23, 59),  # a leap day
        utc(2024, 3, 1, 23, 59),
    ]


def test_weekly_job_crosses_the_week_boundary_in_its_own_zone() -> None:
    # Monday 08:00 in Tokyo is Sunday 23:00 UTC.
    after = datetime(2026, 11, 28, 12, tzinfo=UTC)  # a Saturday
    times = next_fire_times("0 8 * * 1", "Asia/Tokyo", after, 3)
    assert [t.isoformat() for t in times] == [
        "2026-11-30T08:00:00+09:00",
        "2026-12-07T08:00:00+09:00",
        "2026-12-14T08:00:00+09:00",
    ]
    assert [t.astimezone(UTC).weekday() for t in times] == [6, 6, 6]


def test_sunday_is_0_and_7_and_sun() -> None:
    after = datetime(2026, 11, 28, 12, tzinfo=UTC)
    expected = [utc(2026, 11, 29), utc(2026, 12, 6)]
    for dow in ("0", "7", "SUN"):
        assert fires(f"0 0 * * {dow}", "utc", after, 2) == expected


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    # unix cron: the 1st of the month OR a Friday.
    after = datetime(2026, 11, 25, tzinfo=UTC)  # a Wednesday
    assert fires("0 12 1 * 5", "Etc/UTC", after, 3) == [
        utc(2026, 11, 27, 12),
        utc(2026, 12, 1, 12),
        utc(2026, 12, 4, 12),
    ]


def test_every_five_minutes_in_utc() -> None:
    after = datetime(2026, 11, 28, 23, 57, 30, tzinfo=UTC)
    assert fires("*/5 * * * *", "Etc/UTC", after, 3) == [
        utc(2026, 11, 29, 0, 0),
        utc(2026, 11, 29, 0, 5),
        utc(2026, 11, 29, 0, 10),
    ]


# --- inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * * *",  # seconds: not unix-cron
        "every 5 minutes",  # the legacy App Engine syntax
        "0 0 L * *",  # croniter extensions Cloud Scheduler lacks
        "0 0 * * 5#2",
        "H * * * *",
        "60 * * * *",
        "0 0 30 2 *",  # never
        "",
    ],
)
def test_schedules_cloud_scheduler_would_not_take_are_refused(schedule: str) -> None:
    with pytest.raises(ValueError, match="schedule"):
        CronSchedule.parse(schedule)


def test_a_one_value_range_is_that_value() -> None:
    # croniter alone reads 5-5 as every minute.
    after = utc(2026, 11, 28, 10, 0)
    assert fires("5-5 * * * *", "Etc/UTC", after, 2) == [
        utc(2026, 11, 28, 10, 5),
        utc(2026, 11, 28, 11, 5),
    ]
    assert fires("0 9-9/2 * * *", "Etc/UTC", after, 1) == [utc(2026, 11, 29, 9, 0)]


@pytest.mark.parametrize("schedule", ["0 22-2 * * *", "0 0 * * FRI-MON", "0 0 * DEC-JAN *"])
def test_backward_ranges_are_refused(schedule: str) -> None:
    with pytest.raises(ValueError, match="runs backwards"):
        CronSchedule.parse(schedule)


def test_unknown_time_zone_and_naive_time_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        next_fire_times("* * * * *", "Mars/Olympus_Mons", utc(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="aware"):
        next_fire_times("* * * * *", "Etc/UTC", datetime(2026, 1, 1), 1)
    assert next_fire_times("* * * * *", "Etc/UTC", utc(2026, 1, 1), 0) == []


def test_the_shipped_job_file_loads() -> None:
    raw = json.loads(JOB_FILE.read_text())
    jobs = load_jobs(JOB_FILE)
    assert [job.name for job in jobs] == [entry["name"] for entry in raw]
    tick = next(job for job in jobs if job.name == "fleetops-maintenance-tick")
    assert tick.topic == "fleetops-maintenance"
    after = utc(2026, 11, 28, 10, 2)
    assert fires(tick.schedule.expression, tick.time_zone, after, 2) == [
        utc(2026, 11, 28, 10, 5),
        utc(2026, 11, 28, 10, 10),
    ]


# --- properties ----------------------------------------------------------------------------

ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # a 30-minute shift
    "America/Santiago",  # shifts at midnight
    "America/Havana",  # shifts at midnight, and its fall-back repeats 00:xx
    "Asia/Kolkata",
    "Etc/UTC",
)


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """Instants in 2023-2026 at which the zone's UTC offset changes (to the minute)."""
    zone = ZoneInfo(zone_name)
    found = []
    moment = utc(2023, 1, 1)
    while moment < utc(2027, 1, 1):
        following = moment + timedelta(days=1)
        if moment.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = moment, following
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        moment = following
    return tuple(found)


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    star: bool


def cron_field(low: int, high: int, *, allow_star: bool = True) -> st.SearchStrategy[Field]:
    span = st.integers(low, high)
    every = st.just(Field("*", frozenset(range(low, high + 1)), True))
    step = st.integers(1, high - low).map(
        lambda k: Field(f"*/{k}", frozenset(range(low, high + 1, k)), True)
    )
    single = span.map(lambda v: Field(str(v), frozenset({v}), False))
    ranged = st.tuples(span, span, st.integers(1, 5)).map(
        lambda t: Field(
            f"{min(t[:2])}-{max(t[:2])}/{t[2]}",
            frozenset(range(min(t[:2]), max(t[:2]) + 1, t[2])),
            False,
        )
    )
    listed = st.lists(span, min_size=2, max_size=4, unique=True).map(
        lambda vs: Field(",".join(map(str, vs)), frozenset(vs), False)
    )
    choices = [single, ranged, listed] + ([every, every, step] if allow_star else [])
    return st.one_of(*choices)


@dataclass(frozen=True)
class Cron:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def text(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    def matches(self, wall: datetime) -> bool:
        """unix cron: day-of-month OR day-of-week when both are restricted, else AND."""
        dom_ok = wall.day in self.dom.values
        dow_ok = (wall.isoweekday() % 7) in self.dow.values
        day_ok = (dom_ok and dow_ok) if self.dom.star or self.dow.star else (dom_ok or dow_ok)
        return (
            wall.minute in self.minute.values
            and wall.hour in self.hour.values
            and wall.month in self.month.values
            and day_ok
        )


def star_or_restricted(low: int, high: int, full_high: int) -> st.SearchStrategy[Field]:
    return st.one_of(
        st.just(Field("*", frozenset(range(low, full_high + 1)), True)),
        cron_field(low, high, allow_star=False),
    )


crons = st.builds(
    Cron,
    minute=cron_field(0, 59),
    hour=cron_field(0, 23),
    dom=star_or_restricted(1, 28, 31),
    month=st.just(Field("*", frozenset(range(1, 13)), True)),
    dow=star_or_restricted(0, 6, 6),
)
frequent_crons = st.builds(
    Cron,
    minute=cron_field(0, 59),
    hour=cron_field(0, 23),
    dom=st.just(Field("*", frozenset(range(1, 32)), True)),
    month=st.just(Field("*", frozenset(range(1, 13)), True)),
    dow=st.just(Field("*", frozenset(range(7)), True)),
)
zones = st.sampled_from(ZONES)


@st.composite
def near_a_transition(draw: st.DrawFn, zone_name: str) -> datetime:
    """An instant within six hours of one of the zone's transitions, or anywhere."""
    known = transitions(zone_name)
    if not known or draw(st.integers(0, 4)) == 0:
        return draw(
            st.datetimes(datetime(2023, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
        )
    moment = draw(st.sampled_from(known))
    return moment + timedelta(seconds=draw(st.integers(-6 * 3600, 6 * 3600)))


def offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def wall_of(zone: ZoneInfo, instant: datetime) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def is_skipped(zone: ZoneInfo, wall: datetime) -> bool:
    return all(
        wall_of(zone, wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)) != wall
        for fold in (0, 1)
    )


def every_hour(cron: Cron) -> bool:
    return cron.hour.values == frozenset(range(24))


def fires_at(cron: Cron, zone: ZoneInfo, instant: datetime) -> bool:
    """The rule, restated: a matching wall time fires at its first pass (both passes for
    jobs covering every hour); a skipped one fires at its time under the offset in force
    before the jump."""
    local = instant.astimezone(zone)
    if cron.matches(local.replace(tzinfo=None)) and (local.fold == 0 or every_hour(cron)):
        return True
    before = offset(zone, instant - timedelta(hours=26))
    skipped_wall = (instant.astimezone(UTC) + before).replace(tzinfo=None)
    return is_skipped(zone, skipped_wall) and cron.matches(skipped_wall)


@settings(max_examples=300, deadline=None)
@given(cron=crons, zone_name=zones, data=st.data(), count=st.integers(1, 40))
def test_fire_times_increase_and_each_matches_the_schedule_in_its_zone(
    cron: Cron, zone_name: str, data: st.DataObject, count: int
) -> None:
    zone = ZoneInfo(zone_name)
    after = data.draw(near_a_transition(zone_name))
    times = next_fire_times(cron.text, zone_name, after, count)
    assert len(times) == count
    assert times[0] > after
    instants = [moment.astimezone(UTC) for moment in times]
    assert all(a < b for a, b in itertools.pairwise(instants))
    for moment in times:
        assert moment.tzinfo == zone
        assert fires_at(cron, zone, moment), f"{moment.isoformat()} does not match {cron.text}"


@settings(max_examples=150, deadline=None)
@given(cron=frequent_crons, zone_name=zones, data=st.data())
def test_no_fire_time_is_missed_near_transitions(
    cron: Cron, zone_name: str, data: st.DataObject
) -> None:
    zone = ZoneInfo(zone_name)
    after = data.draw(near_a_transition(zone_name)).replace(second=0, microsecond=0)
    end = after + timedelta(hours=6)
    expected = [
        minute
        for step in range(1, 6 * 60 + 1)
        if fires_at(cron, zone, minute := after + timedelta(minutes=step))
    ]
    times = fires(cron.text, zone_name, after, len(expected) + 1)
    assert times[: len(expected)] == expected
    assert times[len(expected)] > end
