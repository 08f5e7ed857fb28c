"""Maintenance windows and freezes across DST changes, midnight and the week boundary."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetops.domain.model import MaintenanceWindow
from fleetops.domain.windows import (
    DAYS,
    Freeze,
    Opening,
    can_start,
    current_opening,
    freeze_from_dict,
    frozen,
    is_open,
    maintenance_allowed,
    openings,
    parse_duration,
    time_left,
    window_from_dict,
)

US = timedelta(microseconds=1)
NY = "America/New_York"
EVERY_DAY = DAYS


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


def window(days: tuple[str, ...] | str, start: str, duration: str, zone: str) -> MaintenanceWindow:
    return MaintenanceWindow(
        days=(days,) if isinstance(days, str) else days,
        start=start,
        duration=duration,
        timezone=zone,
    )


def first(w: MaintenanceWindow, after: datetime) -> Opening:
    (opening,) = openings(w, after, 1)
    return opening


# America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).


def test_a_start_in_the_spring_forward_gap_opens_when_the_clocks_jump() -> None:
    w = window("sun", "02:30", "4h", NY)
    opening = first(w, utc(2026, 3, 2))
    assert opening.start == utc(2026, 3, 8, 7)
    assert opening.end == utc(2026, 3, 8, 11)
    assert opening.local_start == local(NY, 2026, 3, 8, 3)
    assert opening.local_start.utcoffset() == timedelta(hours=-4)
    assert not is_open(w, utc(2026, 3, 8, 7) - US)
    assert is_open(w, utc(2026, 3, 8, 7))


def test_a_start_at_the_very_beginning_of_the_gap_opens_at_its_end() -> None:
    w = window("sun", "02:00", "1h", NY)
    assert first(w, utc(2026, 3, 2)).local_start.time() == time(3, 0)


def test_a_window_running_across_the_jump_lasts_its_real_duration() -> None:
    opening = first(window("sun", "01:30", "2h", NY), utc(2026, 3, 2))
    assert opening.start == utc(2026, 3, 8, 6, 30)
    assert opening.end == utc(2026, 3, 8, 8, 30)
    assert opening.local_end == local(NY, 2026, 3, 8, 4, 30)


def test_weeks_around_spring_forward_keep_their_wall_time() -> None:
    starts = [o.local_start for o in openings(window("sun", "02:30", "4h", NY), utc(2026, 3, 1), 3)]
    assert [(s.date(), s.time()) for s in starts] == [
        (date(2026, 3, 1), time(2, 30)),
        (date(2026, 3, 8), time(3, 0)),
        (date(2026, 3, 15), time(2, 30)),
    ]


# America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00-02:00 happens twice.


def test_an_ambiguous_start_opens_once_at_the_first_occurrence() -> None:
    w = window("sun", "01:30", "30m", NY)
    that_day = [
        o for o in openings(w, utc(2026, 10, 31), 3) if o.local_start.date() == date(2026, 11, 1)
    ]
    assert len(that_day) == 1
    (opening,) = that_day
    assert opening.start == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert opening.local_start.utcoffset() == timedelta(hours=-4)
    assert opening.end == utc(2026, 11, 1, 6)  # 01:00 EST
    second_one_thirty = local(NY, 2026, 11, 1, 1, 30, fold=1)
    assert second_one_thirty.astimezone(UTC) == utc(2026, 11, 1, 6, 30)
    assert not is_open(w, second_one_thirty)
    assert not is_open(w, second_one_thirty.astimezone(UTC) + timedelta(minutes=29))


def test_a_window_across_fall_back_is_real_time_so_shorter_on_the_wall() -> None:
    opening = first(window("sun", "00:00", "4h", NY), utc(2026, 10, 31))
    assert opening.start == utc(2026, 11, 1, 4)
    assert opening.end == utc(2026, 11, 1, 8)
    assert opening.local_end.time() == time(3, 0)
    assert opening.local_end.utcoffset() == timedelta(hours=-5)


def test_a_daily_24h_window_closes_for_the_repeated_hour() -> None:
    w = window(EVERY_DAY, "00:00", "24h", NY)
    assert is_open(w, local(NY, 2026, 11, 1, 22, 59))
    assert not is_open(w, local(NY, 2026, 11, 1, 23, 0))
    assert is_open(w, local(NY, 2026, 11, 2, 0, 0))
    # On spring-forward day the 24h overlaps the next day's start and the two join.
    assert is_open(w, local(NY, 2026, 3, 8, 23, 30))


# Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.


def test_london_gap_and_repeat() -> None:
    spring = first(window("sun", "01:30", "1h", "Europe/London"), utc(2026, 3, 28))
    assert spring.start == utc(2026, 3, 29, 1)
    assert spring.local_start.time() == time(2, 0)
    w = window("sun", "01:15", "30m", "Europe/London")
    autumn = first(w, utc(2026, 10, 24))
    assert autumn.start == utc(2026, 10, 25, 0, 15)
    assert not is_open(w, utc(2026, 10, 25, 1, 15))  # 01:15 GMT, the second one


# Australia/Lord_Howe shifts by 30 minutes: 2026-10-04 02:00 -> 02:30 (+11:00);
# 2026-04-05 02:00 (+11:00) -> 01:30 (+10:30).


def test_lord_howe_half_hour_gap() -> None:
    opening = first(window("sun", "02:15", "1h", "Australia/Lord_Howe"), utc(2026, 10, 1))
    assert opening.local_start.time() == time(2, 30)
    assert opening.local_start.utcoffset() == timedelta(hours=11)
    assert opening.start == utc(2026, 10, 3, 15, 30)


def test_lord_howe_half_hour_repeat() -> None:
    w = window("sun", "01:45", "1h", "Australia/Lord_Howe")
    found = openings(w, utc(2026, 4, 3), 2)
    assert found[0].start == utc(2026, 4, 4, 14, 45)  # the first 01:45, +11:00
    assert found[0].end == utc(2026, 4, 4, 15, 45)
    assert found[1].local_start.date() == date(2026, 4, 12)


def test_kolkata_has_no_dst_and_a_window_crossing_midnight() -> None:
    w = window(EVERY_DAY, "23:30", "1h", "Asia/Kolkata")
    found = openings(w, utc(2026, 1, 5), 200)
    assert all(o.start.time() == time(18, 0) and o.duration == timedelta(hours=1) for o in found)
    after_midnight = local("Asia/Kolkata", 2026, 1, 6, 0, 15)
    opening = current_opening(w, after_midnight)
    assert opening is not None
    assert opening.local_start == local("Asia/Kolkata", 2026, 1, 5, 23, 30)
    assert opening.local_end == local("Asia/Kolkata", 2026, 1, 6, 0, 30)
    assert time_left(w, after_midnight) == timedelta(minutes=15)


def test_utc_window_crossing_the_week_boundary() -> None:
    w = window("sat", "23:00", "26h", "UTC")  # 2026-01-03 is a Saturday
    opening = first(w, utc(2026, 1, 1))
    assert (opening.start, opening.end) == (utc(2026, 1, 3, 23), utc(2026, 1, 5, 1))
    assert is_open(w, utc(2026, 1, 4, 12))
    assert is_open(w, utc(2026, 1, 5, 1) - US)
    assert not is_open(w, utc(2026, 1, 5, 1))
    assert first(w, utc(2026, 1, 5, 1)).start == utc(2026, 1, 10, 23)


def test_friday_night_window_belongs_to_friday() -> None:
    w = window("fri", "23:00", "4h", NY)
    saturday_1am = local(NY, 2026, 1, 10, 1, 0)
    found = openings(w, saturday_1am, 2)
    assert found[0].local_start == local(NY, 2026, 1, 9, 23, 0)
    assert found[0].start < saturday_1am < found[0].end
    assert found[1].local_start == local(NY, 2026, 1, 16, 23, 0)
    assert not is_open(window("sat", "23:00", "4h", NY), saturday_1am)


def test_openings_include_one_in_progress_but_not_one_that_just_ended() -> None:
    w = window("sun", "02:00", "4h", "UTC")
    assert first(w, utc(2026, 3, 8, 2)).start == utc(2026, 3, 8, 2)
    assert first(w, utc(2026, 3, 8, 5, 59)).start == utc(2026, 3, 8, 2)
    assert first(w, utc(2026, 3, 8, 6)).start == utc(2026, 3, 15, 2)
    assert openings(w, utc(2026, 3, 8), 0) == []


def test_overlapping_openings_join_into_one() -> None:
    w = window(("sat", "sun"), "22:00", "26h", "UTC")
    found = openings(w, utc(2026, 1, 1), 2)
    assert (found[0].start, found[0].end) == (utc(2026, 1, 3, 22), utc(2026, 1, 6))
    assert found[1].start == utc(2026, 1, 10, 22)


def test_a_window_that_never_closes_is_always_open_with_plenty_left() -> None:
    w = window(EVERY_DAY, "00:00", "24h", "UTC")
    for at in (utc(2026, 1, 1), utc(2026, 2, 28, 23, 59), utc(2031, 7, 4, 12)):
        assert is_open(w, at)
        left = time_left(w, at)
        assert left is not None
        assert left >= timedelta(days=14)
    found = openings(w, utc(2026, 1, 1), 4)
    assert all(a.end == b.start for a, b in pairwise(found))


# The cutoff: a window closing at 06:00 UTC and an upgrade needing 45 minutes.

SUNDAY_2AM = window("sun", "02:00", "4h", "UTC")
NEEDS = timedelta(minutes=45)


def test_exactly_enough_time_left_is_allowed() -> None:
    at = utc(2026, 3, 8, 5, 15)
    assert time_left(SUNDAY_2AM, at) == NEEDS
    assert can_start(SUNDAY_2AM, at, NEEDS)
    verdict = maintenance_allowed(SUNDAY_2AM, [], at, NEEDS, None, task="upgrade")
    assert verdict.allowed
    assert verdict.reason == (
        "window open until Sun 2026-03-08 06:00 UTC, 45m left, upgrade needs 45m"
    )


def test_one_second_less_is_not() -> None:
    at = utc(2026, 3, 8, 5, 15, 1)
    assert not can_start(SUNDAY_2AM, at, NEEDS)
    verdict = maintenance_allowed(SUNDAY_2AM, [], at, NEEDS, None, task="upgrade")
    assert not verdict.allowed
    assert verdict.reason == "only 44m59s left in the window, upgrade needs 45m"


def test_closed_window_names_the_next_opening_in_local_time() -> None:
    w = window("sun", "02:30", "4h", NY)
    verdict = maintenance_allowed(w, [], utc(2026, 3, 5), NEEDS, None)
    assert not verdict.allowed
    assert verdict.reason == "window closed, next opening at Sun 2026-03-08 03:00 EDT"
    assert time_left(w, utc(2026, 3, 5)) is None
    assert current_opening(w, utc(2026, 3, 5)) is None
    assert not can_start(w, utc(2026, 3, 5), timedelta(0))


def test_the_fleet_default_applies_only_without_a_window_of_its_own() -> None:
    at = utc(2026, 3, 8, 5, 40)
    verdict = maintenance_allowed(None, [], at, NEEDS, SUNDAY_2AM, task="upgrade")
    assert verdict == maintenance_allowed(None, [], at, NEEDS, SUNDAY_2AM, task="upgrade")
    assert not verdict.allowed
    assert verdict.reason == (
        "only 20m left in the window, upgrade needs 45m (fleet default window)"
    )
    always = window(EVERY_DAY, "00:00", "25h", "UTC")
    assert maintenance_allowed(always, [], at, NEEDS, SUNDAY_2AM).allowed
    assert maintenance_allowed(None, [], at, NEEDS, None).allowed


# Freezes: start inclusive, end exclusive.

YEAR_END = Freeze(utc(2026, 12, 20), utc(2027, 1, 4), "year-end")
ALWAYS = window(EVERY_DAY, "00:00", "25h", "UTC")


def test_freeze_covers_its_start_but_not_its_end() -> None:
    assert frozen([YEAR_END], utc(2026, 12, 20) - US) is None
    assert frozen([YEAR_END], utc(2026, 12, 20)) == YEAR_END
    assert frozen([YEAR_END], utc(2027, 1, 4) - US) == YEAR_END
    assert frozen([YEAR_END], utc(2027, 1, 4)) is None


def test_the_longest_covering_freeze_is_reported() -> None:
    audit = Freeze(utc(2026, 12, 1), utc(2027, 2, 1), "audit")
    assert frozen([YEAR_END, audit], utc(2026, 12, 24)) == audit


def test_a_freeze_blocks_maintenance_and_says_until_when() -> None:
    verdict = maintenance_allowed(ALWAYS, [YEAR_END], utc(2026, 12, 24), NEEDS, None)
    assert not verdict.allowed
    assert verdict.reason == "freeze 'year-end' until Mon 2027-01-04 00:00 UTC"
    assert maintenance_allowed(ALWAYS, [YEAR_END], utc(2027, 1, 4), NEEDS, None).allowed


def test_work_may_not_run_into_a_freeze() -> None:
    just_fits = utc(2026, 12, 20) - NEEDS
    assert maintenance_allowed(ALWAYS, [YEAR_END], just_fits, NEEDS, None).allowed
    verdict = maintenance_allowed(ALWAYS, [YEAR_END], just_fits + US, NEEDS, None, task="upgrade")
    assert not verdict.allowed
    assert verdict.reason == (
        "freeze 'year-end' starts at Sun 2026-12-20 00:00 UTC, within the 45m upgrade needs"
    )


def test_freeze_times_are_shown_in_the_window_zone() -> None:
    w = window(EVERY_DAY, "00:00", "25h", NY)
    verdict = maintenance_allowed(w, [YEAR_END], utc(2026, 12, 24), NEEDS, None)
    assert verdict.reason == "freeze 'year-end' until Sun 2027-01-03 19:00 EST"


def test_freeze_is_stored_in_utc_and_rejects_bad_ranges() -> None:
    freeze = Freeze(local(NY, 2026, 12, 20), local(NY, 2026, 12, 21), "launch")
    assert freeze.start == utc(2026, 12, 20, 5)
    assert freeze.start.tzinfo is UTC
    with pytest.raises(ValueError, match="must end after it starts"):
        Freeze(utc(2026, 1, 2), utc(2026, 1, 1), "backwards")
    with pytest.raises(ValueError, match="timezone-aware"):
        Freeze(datetime(2026, 1, 1), utc(2026, 1, 2), "naive")


def test_naive_instants_and_negative_needs_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(SUNDAY_2AM, datetime(2026, 3, 8, 3))
    with pytest.raises(ValueError, match="must not be negative"):
        can_start(SUNDAY_2AM, utc(2026, 3, 8, 3), -NEEDS)
    with pytest.raises(ValueError, match="count"):
        openings(SUNDAY_2AM, utc(2026, 3, 8), -1)


# Config documents.


def test_window_from_dict_reads_the_contract_shape() -> None:
    doc = {"days": ["Sun", "sat", "sun"], "start": "02:00", "duration": "1h30m", "timezone": NY}
    w = window_from_dict(doc)
    assert w == MaintenanceWindow(("sat", "sun"), "02:00", "1h30m", NY)
    assert parse_duration(w.duration) == timedelta(minutes=90)


GOOD: dict[str, Any] = {"days": ["sun"], "start": "02:00", "duration": "4h", "timezone": NY}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"days": None}, "field 'days' must be a list"),
        ({"days": "sun"}, "field 'days' must be a list"),
        ({"days": []}, "field 'days' must list at least one day"),
        ({"days": ["sunday"]}, "field 'days': 'sunday' is not one of mon, tue"),
        ({"start": "2:00"}, "field 'start': '2:00' must be HH:MM"),
        ({"start": "24:00"}, "field 'start': '24:00' must be HH:MM"),
        ({"start": 200}, "field 'start' must be a string"),
        ({"duration": "4 hours"}, "field 'duration': duration '4 hours' must look like 4h"),
        ({"duration": "0m"}, "field 'duration': '0m' must be more than 0 and at most 7 days"),
        ({"duration": "169h"}, "at most 7 days"),
        ({"timezone": "Mars/Olympus"}, "field 'timezone': 'Mars/Olympus' is not an IANA"),
        ({"colour": "blue"}, "field 'colour' is not known"),
    ],
)
def test_window_from_dict_names_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        window_from_dict({**GOOD, **change})


def test_window_from_dict_names_a_missing_field() -> None:
    with pytest.raises(ValueError, match="field 'timezone' is required"):
        window_from_dict({k: v for k, v in GOOD.items() if k != "timezone"})


def test_a_window_built_directly_is_checked_when_used() -> None:
    with pytest.raises(ValueError, match="field 'start'"):
        is_open(MaintenanceWindow(("sun",), "2am", "4h", NY), utc(2026, 1, 1))


def test_freeze_from_dict() -> None:
    freeze = freeze_from_dict(
        {"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00+01:00", "reason": "year-end"}
    )
    assert freeze == Freeze(utc(2026, 12, 20), utc(2027, 1, 3, 23), "year-end")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"start": "2026-12-20T00:00:00", "end": "2027-01-04T00:00:00Z", "reason": "x"},
         "field 'start': 2026-12-20T00:00:00 needs a UTC offset"),
        ({"start": "next tuesday", "end": "2027-01-04T00:00:00Z", "reason": "x"},
         "field 'start': 'next tuesday' is not an ISO 8601 time"),
        ({"start": "2027-01-04T00:00:00Z", "end": "2026-12-20T00:00:00Z", "reason": "x"},
         "field 'end' must be after 'start'"),
        ({"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z", "reason": " "},
         "field 'reason' must be a non-empty string"),
        ({"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z"},
         "field 'reason' is required"),
        ({"start": 1, "end": "2027-01-04T00:00:00Z", "reason": "x"},
         "field 'start' must be an ISO 8601 time"),
    ],
)  # fmt: skip
def test_freeze_from_dict_names_what_is_wrong(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        freeze_from_dict(doc)


# Properties over real zones, 2020-2035.

ZONES = (
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",  # -03:30 with DST
    "America/Havana",  # changes at midnight
    "America/Santiago",  # southern DST, changes at midnight
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",  # "negative" DST in tzdata
    "Africa/Casablanca",  # four changes a year around Ramadan
    "Asia/Tehran",  # DST until 2022
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Asia/Tokyo",
    "Australia/Adelaide",  # +09:30 with DST
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Auckland",
    "Pacific/Chatham",  # +12:45 with DST
)
FIRST_YEAR, LAST_YEAR = 2020, 2035
# Consecutive starts are at least 23h apart in these zones (no change exceeds an hour),
# so shorter windows never join.
NEVER_JOINS = timedelta(hours=22)


@cache
def changes(zone_name: str, year: int) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """Each instant in `year` the zone's UTC offset changes, with the offsets before and after."""
    zone = ZoneInfo(zone_name)

    def offset(t: datetime) -> timedelta:
        result = t.astimezone(zone).utcoffset()
        assert result is not None
        return result

    found = []
    t = utc(year, 1, 1)
    while t.year == year:
        later = t + timedelta(days=1)
        if offset(t) != offset(later):
            low, high = t, later
            while high - low > timedelta(seconds=1):
                middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
                low, high = (low, middle) if offset(middle) != offset(t) else (middle, high)
            found.append((high, offset(low), offset(high)))
        t = later
    return tuple(found)


# Strategies are built once: building them inside every draw dominated the run time.
YEARS = st.integers(FIRST_YEAR, LAST_YEAR)
WITHIN_A_YEAR = st.integers(0, 365 * 86400)
WITHIN_FOUR_DAYS = st.integers(-4 * 86400, 4 * 86400)
DAY_SETS = st.sets(st.sampled_from(DAYS), min_size=1)
# Small hours are where clocks change; draw them often.
HOURS = st.integers(0, 3) | st.integers(0, 23)
MINUTES = st.sampled_from((0, 15, 30, 45)) | st.integers(0, 59)
DURATIONS = st.integers(1, 7 * 24 * 60) | st.integers(1, int(NEVER_JOINS.total_seconds() // 60))


@cache
def nearby_change(zone: str, year: int) -> st.SearchStrategy[datetime] | None:
    found = changes(zone, year)
    return st.sampled_from([at for at, _, _ in found]) if found else None


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """Any time 2020-2035, often within a few days of one of the zone's clock changes."""
    year = draw(YEARS)
    near = nearby_change(zone, year)
    use_a_change = draw(st.booleans())
    if near is not None and use_a_change:
        return draw(near) + timedelta(seconds=draw(WITHIN_FOUR_DAYS))
    return utc(year, 1, 1) + timedelta(seconds=draw(WITHIN_A_YEAR))


windows = st.builds(
    lambda days, hour, minute, minutes, zone: MaintenanceWindow(
        days=tuple(d for d in DAYS if d in days),
        start=f"{hour:02d}:{minute:02d}",
        duration=f"{minutes}m",
        timezone=zone,
    ),
    DAY_SETS,
    HOURS,
    MINUTES,
    DURATIONS,
    st.sampled_from(ZONES),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[MaintenanceWindow, datetime]:
    w = draw(windows)
    return w, draw(instants(w.timezone))


def length(w: MaintenanceWindow) -> timedelta:
    return parse_duration(w.duration)


def clock(w: MaintenanceWindow) -> time:
    return time.fromisoformat(w.start)


def wall(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(cases())
def test_openings_are_ordered_disjoint_and_last_the_window_duration(
    case: tuple[MaintenanceWindow, datetime],
) -> None:
    w, after = case
    found = openings(w, after, 8)
    assert len(found) == 8
    assert found[0].end > after
    zone = ZoneInfo(w.timezone)
    for opening in found:
        assert opening.start < opening.end
        assert opening.start.tzinfo is UTC
        # Compared in UTC: PEP 495 makes a fold=1 time unequal to every other zone's.
        assert opening.local_start.astimezone(UTC) == opening.start
        assert opening.local_start.tzinfo == zone
        assert opening.local_end.astimezone(UTC) == opening.end
    for earlier, later in pairwise(found):
        assert earlier.end <= later.start
    if length(w) <= NEVER_JOINS:
        assert all(o.duration == length(w) for o in found)
        assert all(a.end < b.start for a, b in pairwise(found))
    else:
        # Joined openings last longer; only a piece of a never-closing window may be shorter.
        for previous, opening in zip([None, *found], found, strict=False):
            assert opening.duration >= length(w) or (previous and previous.end == opening.start)


@PROPERTY
@given(cases(), st.data())
def test_is_open_exactly_inside_an_opening(
    case: tuple[MaintenanceWindow, datetime], data: st.DataObject
) -> None:
    w, after = case
    found = openings(w, after, 5)
    for i, opening in enumerate(found[:-1]):
        touches_previous = i > 0 and found[i - 1].end == opening.start
        touches_next = found[i + 1].start == opening.end
        assert is_open(w, opening.start)
        assert is_open(w, opening.end - US)
        if i > 0 or opening.start > after:
            assert is_open(w, opening.start - US) == touches_previous
        assert is_open(w, opening.end) == touches_next
        if length(w) <= NEVER_JOINS:
            assert current_opening(w, opening.start) == opening
            assert time_left(w, opening.start) == length(w)
            assert can_start(w, opening.end - length(w) / 2, length(w) / 2)
            assert not can_start(w, opening.end - length(w) / 2 + US, length(w) / 2)
    t = after + data.draw(st.integers(0, (found[-1].end - after) // US - 1)) * US
    assert is_open(w, t) == any(o.start <= t < o.end for o in found)


@PROPERTY
@given(cases())
def test_openings_start_at_the_wall_time_on_a_listed_day(
    case: tuple[MaintenanceWindow, datetime],
) -> None:
    w, after = case
    zone = ZoneInfo(w.timezone)
    found = openings(w, after, 8)
    starts = [o for p, o in zip([None, *found], found, strict=False) if not p or p.end != o.start]
    for opening in starts:
        day = opening.local_start.date()
        assert DAYS[day.weekday()] in w.days
        nominal = datetime.combine(day, clock(w))
        first_occurrence = nominal.replace(tzinfo=zone).astimezone(UTC)
        if wall(first_occurrence, zone) == nominal:
            assert opening.start == first_occurrence
        else:
            # The start fell in a gap: the clock jumps over it exactly at the opening.
            assert wall(opening.start - US, zone) < nominal < wall(opening.start, zone)
    # One opening per local day, however often its start time occurs.
    days = [o.local_start.date() for o in starts]
    assert len(days) == len(set(days))


def clock_changes(forward: bool) -> st.SearchStrategy[tuple[str, datetime, timedelta, timedelta]]:
    """(zone, change instant, offset before, offset after) for changes in the given direction."""
    wanted = [
        (zone, at, before, after)
        for zone in ZONES
        for year in (2020, 2026, 2031, 2035)
        for at, before, after in changes(zone, year)
        if (after > before) == forward
    ]
    return st.sampled_from(wanted)


@settings(max_examples=100, deadline=None)
@given(clock_changes(forward=False), st.data())
def test_fall_back_opens_once_at_the_first_occurrence(
    change: tuple[str, datetime, timedelta, timedelta], data: st.DataObject
) -> None:
    zone_name, at, before, after = change
    zone = ZoneInfo(zone_name)
    repeated = before - after
    # Local wall times in [at + after, at + before) happen twice.
    start_wall = (at + after).replace(tzinfo=None) + timedelta(
        minutes=data.draw(st.integers(0, int(repeated.total_seconds() // 60) - 1))
    )
    minutes = data.draw(st.integers(1, 300))
    w = MaintenanceWindow(
        days=(DAYS[start_wall.weekday()],),
        start=start_wall.strftime("%H:%M"),
        duration=f"{minutes}m",
        timezone=zone_name,
    )
    first_time = start_wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second_time = start_wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    assert second_time - first_time == repeated
    found = openings(w, at - timedelta(days=1), 3)
    that_day = [o for o in found if o.local_start.date() == start_wall.date()]
    assert [o.start for o in that_day] == [first_time]
    assert that_day[0].end == first_time + timedelta(minutes=minutes)
    assert is_open(w, second_time) == (repeated < timedelta(minutes=minutes))
    # No second run starting at the repeated wall time.
    assert not is_open(w, second_time + timedelta(minutes=minutes) - US)


@settings(max_examples=100, deadline=None)
@given(clock_changes(forward=True), st.data())
def test_spring_forward_opens_when_the_clocks_jump(
    change: tuple[str, datetime, timedelta, timedelta], data: st.DataObject
) -> None:
    zone_name, at, before, after = change
    skipped = after - before
    # Local wall times in [at + before, at + after) never happen.
    start_wall = (at + before).replace(tzinfo=None) + timedelta(
        minutes=data.draw(st.integers(0, int(skipped.total_seconds() // 60) - 1))
    )
    w = MaintenanceWindow(
        days=(DAYS[start_wall.weekday()],),
        start=start_wall.strftime("%H:%M"),
        duration="1h",
        timezone=zone_name,
    )
    opening = first(w, at - timedelta(days=1))
    assert opening.start == at
    assert opening.local_start.replace(tzinfo=None) == (at + after).replace(tzinfo=None)
    assert not is_open(w, at - US)
