"""The local Cloud Scheduler: fires the jobs of the job file on their cron schedules.

    python -m fleetops.local.scheduler --host 127.0.0.1 --port PORT \\
        --project P --location L --jobs shared/fleetops/data/scheduler_jobs.json \\
        [--clock-rate R]

Cloud Scheduler has no Google emulator. This one reads the job file Terraform reads
(a JSON list of `{name, schedule, time_zone, topic, description, data, attributes}`),
keeps its state in memory, and publishes each firing to the job's topic on the Pub/Sub
emulator named by PUBSUB_EMULATOR_HOST (it refuses to start without one).

A firing is a maintenance tick, a CloudEvent in binary mode:

    ce-specversion  1.0
    ce-id           <job>-<scheduled time, RFC 3339 UTC>   (the same for the same firing)
    ce-source       //cloudscheduler.googleapis.com/projects/P/locations/L/jobs/<job>
    ce-type         fleetops.maintenance.tick
    ce-time         the scheduled time, RFC 3339 UTC
    content-type    application/json
    data            {"job": <job>, "scheduled_time": <ce-time>} over the job's `data` object

plus the job's `attributes`. (Cloud Scheduler itself publishes the job's `data` and
`attributes` only; consumers take the tick's time from `ce-time`, else the publish time.)

It serves the part of the Cloud Scheduler v1 REST API that `scheduler_v1.CloudSchedulerClient`
with `transport="rest"` uses to inspect and steer jobs:

    GET  /v1/projects/P/locations/L/jobs               list (pageSize, pageToken)
    GET  /v1/projects/P/locations/L/jobs/JOB           get
    POST /v1/projects/P/locations/L/jobs/JOB:pause     ENABLED -> PAUSED
    POST /v1/projects/P/locations/L/jobs/JOB:resume    PAUSED -> ENABLED
    POST /v1/projects/P/locations/L/jobs/JOB:run       fire now (paused or not), as RunJob does
    GET  /healthz                                      readiness

Jobs answer in the v1 Job JSON shape; errors in Google's shape
`{"error": {"code": 404, "message": ..., "status": "NOT_FOUND"}}`. Creating, updating and
deleting jobs answer 501 UNIMPLEMENTED: the job file is the only source of jobs.

Schedules are unix-cron (five fields, as Cloud Scheduler takes them) read in the job's IANA
time zone, on wall-clock time. Across daylight saving changes (see `next_fire_times`):
a wall time the clocks skip fires as if they had not moved yet (02:30 on the
spring-forward day in New York fires at 03:30 EDT, as RFC 5545 reads such times); a wall
time that occurs twice fires once, at its first occurrence, except for jobs whose hour
field covers every hour (`*/5 * * * *`, `0 * * * *`), which fire in both passes of the
repeated hour so that they keep their cadence.

A paused job never fires on its schedule; resuming does not catch up on what it missed.
A firing missed while the process was not running (or the machine slept) fires once, late.

`--clock-rate R` runs the scheduler's clock R times faster than real time from the moment
it starts (scheduled times, `ce-time` and the job's timestamps all follow that clock), so
tests and demos can watch `* * * * *` jobs fire every 1/R minutes.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import heapq
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from fleetops.contract.names import EVENT_MAINTENANCE_TICK
from fleetops.contract.pubsub import CloudEvent, encode_binary, format_time

log = logging.getLogger("fleetops.scheduler")

DEFAULT_TIME_ZONE = "Etc/UTC"
SOURCE_PREFIX = "//cloudscheduler.googleapis.com"

# Cloud Scheduler's job id rule (also checked by tests/terraform).
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_MONTH_AND_DAY_NAMES = re.compile(
    r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat",
    re.IGNORECASE,
)
_CRON_FIELD = re.compile(r"^[0-9*/,-]+$")
# Any one zone's UTC offset changes at most once within this span (the largest change
# known, Samoa's skipped day in 2011, is 24 hours).
_TRANSITION_REACH = timedelta(hours=26)
_MAX_WAIT_SECONDS = 1.0
_MAX_BODY = 64 * 1024


# --- cron math -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CronSchedule:
    """A validated five-field unix-cron expression."""

    expression: str
    # True when the hour field covers all 24 hours: such a job fires in both passes of a
    # repeated (fall-back) hour.
    every_hour: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"schedule {expression!r} is not a five-field unix-cron expression "
                "(minute hour day-of-month month day-of-week)"
            )
        for value in fields:
            if not _CRON_FIELD.match(_MONTH_AND_DAY_NAMES.sub("0", value)):
                raise ValueError(
                    f"schedule {expression!r}: field {value!r} uses syntax Cloud Scheduler "
                    "does not take (only numbers, names, '*', '/', ',' and '-')"
                )
        try:
            normalized = " ".join(
                _normalize_ranges(value, _FIELD_NAMES.get(index, {}))
                for index, value in enumerate(fields)
            )
        except ValueError as exc:
            raise ValueError(f"schedule {expression!r}: {exc}") from exc
        if not croniter.is_valid(normalized):
            raise ValueError(f"schedule {expression!r} is not a valid cron expression")
        try:
            parsed = croniter(normalized, datetime(2000, 1, 1))
            parsed.get_next(datetime)
        except Exception as exc:
            raise ValueError(f"schedule {expression!r} never fires: {exc}") from exc
        hours = {str(hour) for hour in parsed.expanded[1]}
        every_hour = hours in ({"*"}, {str(hour) for hour in range(24)})
        return cls(normalized, every_hour)

    def wall_times(self, after: datetime) -> Iterator[datetime]:
        """Matching naive wall-clock times strictly after the naive `after`, in order."""
        walls = croniter(self.expression, after)
        while True:
            yield walls.get_next(datetime)

    def instants(self, wall: datetime, zone: ZoneInfo) -> list[datetime]:
        """The UTC instants at which the matching wall time `wall` fires in `zone`."""
        earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        later = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if earlier == later:
            return [earlier]
        if earlier.astimezone(zone).replace(tzinfo=None) != wall:
            # Skipped by the clocks: fold=0 reads it with the offset from before the jump,
            # which lands the same distance past the jump as the wall time was past it.
            return [earlier]
        return [earlier, later] if self.every_hour else [earlier]


_FIELD_NAMES: dict[int, dict[str, int]] = {
    3: {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name},
    4: {
        name: number
        for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
    },
}


def _normalize_ranges(value: str, names: Mapping[str, int]) -> str:
    """Rewrite one-value ranges `a-a` (and `a-a/k`) as `a`; refuse backward ranges.

    croniter reads `5-5` as every value and `22-2` as a wrap-around; unix cron reads the
    first as 5 and does not take the second.
    """
    parts = []
    for part in value.split(","):
        span, _, _step = part.partition("/")
        low, dash, high = span.partition("-")
        single = False
        if dash and low and high:
            first, last = _field_number(low, names), _field_number(high, names)
            if first > last:
                raise ValueError(f"range {span!r} runs backwards")
            single = first == last
        parts.append(low if single else part)
    return ",".join(parts)


def _field_number(text: str, names: Mapping[str, int]) -> int:
    number = names.get(text.lower())
    if number is not None:
        return number
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def resolve_time_zone(name: str | None) -> ZoneInfo:
    """The IANA zone a job names; empty means UTC and "utc" is accepted, as Cloud Scheduler."""
    if not name or name.strip().lower() == "utc":
        return ZoneInfo(DEFAULT_TIME_ZONE)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"time zone {name!r} is not an IANA time zone name") from exc


def next_fire_times(
    schedule: str | CronSchedule, tz: str | ZoneInfo, after: datetime, count: int
) -> list[datetime]:
    """The next `count` fire times strictly after `after`, as aware datetimes in `tz`.

    They are distinct and increasing. Each is a wall time the schedule matches in `tz`,
    mapped to an instant: a wall time the clocks skip fires as though they had not moved
    yet; a wall time that occurs twice fires at its first occurrence only, or at both
    when the schedule's hour field covers every hour.

    Python compares and subtracts aware datetimes that share a tzinfo as wall times,
    ignoring `fold`: convert them to UTC before comparing across a repeated hour.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("`after` must be an aware datetime")
    cron = schedule if isinstance(schedule, CronSchedule) else CronSchedule.parse(schedule)
    zone = tz if isinstance(tz, ZoneInfo) else resolve_time_zone(tz)
    if count <= 0:
        return []
    start = after.astimezone(UTC)
    # Wall times a little before `after`'s own can fire after it: skipped ones (moved
    # forward) and the second pass of a repeated hour. Start that much earlier.
    first_wall = _naive(start) + min(_offsets_near(zone, start))
    pending: list[datetime] = []
    found: list[datetime] = []
    for wall in cron.wall_times(first_wall):
        for instant in cron.instants(wall, zone):
            if instant > start:
                heapq.heappush(pending, instant)
        # The earliest pending instant is final once no later wall time can map before it.
        while pending and _naive(pending[0]) + max(_offsets_near(zone, pending[0])) <= wall:
            instant = heapq.heappop(pending)
            if not found or instant > found[-1]:
                found.append(instant)
                if len(found) == count:
                    return [moment.astimezone(zone) for moment in found]
    raise AssertionError("unreachable: croniter yields wall times forever")


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _offsets_near(zone: ZoneInfo, instant: datetime) -> tuple[timedelta, ...]:
    moments = (instant - _TRANSITION_REACH, instant, instant + _TRANSITION_REACH)
    return tuple(moment.astimezone(zone).utcoffset() or timedelta(0) for moment in moments)


# --- the job file --------------------------------------------------------------------------


class JobFileError(ValueError):
    """The job file cannot be used; the message names the job and the field."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    schedule: CronSchedule
    time_zone: str
    zone: ZoneInfo
    topic: str
    description: str
    data: Any
    attributes: Mapping[str, str]

    def data_bytes(self) -> bytes:
        """The Pub/Sub target's data as Terraform configures it on GCP."""
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()


def load_jobs(path: Path) -> list[JobSpec]:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobFileError(f"cannot read the job file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise JobFileError(f"the job file {path} is not JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise JobFileError(f"the job file {path} must hold a JSON list of jobs")
    jobs = [_job_from_json(entry, index) for index, entry in enumerate(raw)]
    names = [job.name for job in jobs]
    for name in names:
        if names.count(name) > 1:
            raise JobFileError(f"job {name} appears more than once in {path}")
    return jobs


def _job_from_json(entry: Any, index: int) -> JobSpec:
    if not isinstance(entry, dict):
        raise JobFileError(f"job #{index + 1} is not a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not _JOB_ID.match(name):
        raise JobFileError(
            f"job #{index + 1}: name {name!r} is not a job id (letters, digits, '-', '_')"
        )
    schedule = entry.get("schedule")
    topic = entry.get("topic")
    time_zone = entry.get("time_zone") or DEFAULT_TIME_ZONE
    description = entry.get("description", "")
    attributes = entry.get("attributes", {})
    if not isinstance(schedule, str):
        raise JobFileError(f"job {name}: schedule must be a cron string")
    if not isinstance(topic, str) or not topic or "/" in topic:
        raise JobFileError(f"job {name}: topic must be a topic name such as fleetops-maintenance")
    if not isinstance(time_zone, str) or not isinstance(description, str):
        raise JobFileError(f"job {name}: time_zone and description must be strings")
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise JobFileError(f"job {name}: attributes must map strings to strings")
    try:
        cron = CronSchedule.parse(schedule)
        zone = resolve_time_zone(time_zone)
    except ValueError as exc:
        raise JobFileError(f"job {name}: {exc}") from exc
    return JobSpec(
        name=name,
        schedule=cron,
        time_zone=time_zone,
        zone=zone,
        topic=topic,
        description=description,
        # Terraform's default for a job without data.
        data=entry.get("data", {"job": name}),
        attributes=dict(attributes),
    )


# --- ticks ---------------------------------------------------------------------------------


def job_source(project: str, location: str, job: str) -> str:
    return f"{SOURCE_PREFIX}/projects/{project}/locations/{location}/jobs/{job}"


def tick_event(job: JobSpec, project: str, location: str, scheduled: datetime) -> CloudEvent:
    stamp = format_time(scheduled)
    base = dict(job.data) if isinstance(job.data, dict) else {}
    return CloudEvent(
        id=f"{job.name}-{stamp}",
        source=job_source(project, location, job.name),
        type=EVENT_MAINTENANCE_TICK,
        time=scheduled,
        data={**base, "job": job.name, "scheduled_time": stamp},
    )


def tick_message(
    job: JobSpec, project: str, location: str, scheduled: datetime
) -> tuple[bytes, dict[str, str]]:
    """Pub/Sub data and attributes of one firing: the job's attributes, then the event's."""
    data, attributes = encode_binary(tick_event(job, project, location, scheduled))
    return data, {**job.attributes, **attributes}


# --- the scheduler -------------------------------------------------------------------------

Publish = Callable[[str, bytes, Mapping[str, str]], str]

ENABLED = "ENABLED"
PAUSED = "PAUSED"

# google.rpc.Code values reported in a job's `status`.
_CODE_OK = 0
_CODE_UNKNOWN = 2
_CODE_NOT_FOUND = 5


class Clock:
    """Wall-clock time, optionally running `rate` times faster from its creation."""

    def __init__(self, rate: float = 1.0) -> None:
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"the clock rate must be a positive number, not {rate}")
        self.rate = rate
        self._origin = time.time()

    def now(self) -> datetime:
        real = time.time()
        return datetime.fromtimestamp(self._origin + (real - self._origin) * self.rate, UTC)


class ApiError(Exception):
    def __init__(self, http_status: HTTPStatus, status: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message


def _not_found(job: str) -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"Job not found: {job}")


@dataclass
class _Job:
    spec: JobSpec
    state: str
    user_update_time: datetime
    next_fire: datetime | None
    last_attempt: datetime | None = None
    status: tuple[int, str] | None = None
    in_flight: int = 0


class LocalScheduler:
    """The jobs, their states, and the thread that fires them. Thread-safe."""

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        project: str,
        location: str,
        publish: Publish,
        clock: Clock | None = None,
    ) -> None:
        self.project = project
        self.location = location
        self._publish = publish
        self._clock = clock or Clock()
        self._cond = threading.Condition(threading.Lock())
        now = self._clock.now()
        self._jobs = {
            spec.name: _Job(spec, ENABLED, now, self._next_fire(spec, now)) for spec in jobs
        }
        self._stopping = False
        self._thread: threading.Thread | None = None

    # The API. Each answers the job's v1 JSON, or raises ApiError.

    def list_jobs(self, project: str, location: str) -> list[dict[str, Any]]:
        with self._cond:
            if (project, location) != (self.project, self.location):
                return []
            return [self._resource(job) for job in self._jobs.values()]

    def get_job(self, project: str, location: str, name: str) -> dict[str, Any]:
        with self._cond:
            return self._resource(self._find(project, location, name))

    def pause_job(self, project: str, location: str, name: str) -> dict[str, Any]:
        with self._cond:
            job = self._find(project, location, name)
            if job.state != ENABLED:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    f"Job {name} is {job.state}: only an ENABLED job can be paused",
                )
            job.state = PAUSED
            job.next_fire = None
            job.user_update_time = self._clock.now()
            # Once pause answers, nothing more of this job reaches Pub/Sub.
            while job.in_flight:
                self._cond.wait()
            return self._resource(job)

    def resume_job(self, project: str, location: str, name: str) -> dict[str, Any]:
        with self._cond:
            job = self._find(project, location, name)
            if job.state != PAUSED:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    f"Job {name} is {job.state}: only a PAUSED job can be resumed",
                )
            now = self._clock.now()
            job.state = ENABLED
            job.user_update_time = now
            job.next_fire = self._next_fire(job.spec, now)
            self._cond.notify_all()
            return self._resource(job)

    def run_job(self, project: str, location: str, name: str) -> dict[str, Any]:
        """Fire now and answer once the tick is published (or failed to be)."""
        with self._cond:
            job = self._find(project, location, name)
            self._fire(job, self._clock.now())
            return self._resource(job)

    # The firing thread.

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = self._clock.now()
                due = [
                    job
                    for job in self._jobs.values()
                    if job.state == ENABLED and job.next_fire is not None and job.next_fire <= now
                ]
                if due:
                    job = min(due, key=lambda j: j.next_fire or now)
                    scheduled = job.next_fire or now
                    job.next_fire = self._next_fire(job.spec, max(scheduled, now))
                    self._fire(job, scheduled)
                    continue
                self._cond.wait(self._wait_seconds(now))

    def _wait_seconds(self, now: datetime) -> float:
        upcoming = [
            job.next_fire
            for job in self._jobs.values()
            if job.state == ENABLED and job.next_fire is not None
        ]
        if not upcoming:
            return _MAX_WAIT_SECONDS
        seconds = (min(upcoming) - now).total_seconds() / self._clock.rate
        # Capped, so a wall-clock jump is noticed within a second.
        return max(0.0, min(seconds, _MAX_WAIT_SECONDS))

    def _fire(self, job: _Job, scheduled: datetime) -> None:
        """Publish one tick; called and returns with the lock held, released meanwhile."""
        job.in_flight += 1
        job.last_attempt = self._clock.now()
        data, attributes = tick_message(job.spec, self.project, self.location, scheduled)
        status = (_CODE_UNKNOWN, "the firing was interrupted")
        self._cond.release()
        try:
            status = self._send(job.spec, scheduled, data, attributes)
        finally:
            self._cond.acquire()
            job.status = status
            job.in_flight -= 1
            self._cond.notify_all()

    def _send(
        self, spec: JobSpec, scheduled: datetime, data: bytes, attributes: Mapping[str, str]
    ) -> tuple[int, str]:
        try:
            message_id = self._publish(spec.topic, data, attributes)
        except Exception as exc:
            log.warning("firing %s for %s failed: %s", spec.name, format_time(scheduled), exc)
            return _status_code(exc), f"publishing to {spec.topic} failed: {exc}"
        log.info(
            "fired %s for %s: message %s on %s",
            spec.name,
            format_time(scheduled),
            message_id,
            spec.topic,
        )
        return _CODE_OK, ""

    def _next_fire(self, spec: JobSpec, after: datetime) -> datetime:
        return next_fire_times(spec.schedule, spec.zone, after, 1)[0].astimezone(UTC)

    def _find(self, project: str, location: str, name: str) -> _Job:
        job = self._jobs.get(name)
        if job is None or (project, location) != (self.project, self.location):
            raise _not_found(f"projects/{project}/locations/{location}/jobs/{name}")
        return job

    def _resource(self, job: _Job) -> dict[str, Any]:
        spec = job.spec
        target: dict[str, Any] = {
            "topicName": f"projects/{self.project}/topics/{spec.topic}",
            "data": base64.b64encode(spec.data_bytes()).decode("ascii"),
        }
        if spec.attributes:
            target["attributes"] = dict(spec.attributes)
        resource: dict[str, Any] = {
            "name": f"projects/{self.project}/locations/{self.location}/jobs/{spec.name}",
            "description": spec.description,
            "pubsubTarget": target,
            "schedule": spec.schedule.expression,
            "timeZone": spec.time_zone,
            "userUpdateTime": format_time(job.user_update_time),
            "state": job.state,
        }
        if job.next_fire is not None:
            resource["scheduleTime"] = format_time(job.next_fire)
        if job.last_attempt is not None:
            resource["lastAttemptTime"] = format_time(job.last_attempt)
        if job.status is not None:
            code, message = job.status
            resource["status"] = {"code": code, "message": message} if code else {}
        return resource


def _status_code(exc: Exception) -> int:
    from google.api_core import exceptions

    return _CODE_NOT_FOUND if isinstance(exc, exceptions.NotFound) else _CODE_UNKNOWN


# --- HTTP ----------------------------------------------------------------------------------

_JOBS_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/jobs"
    r"(?:/(?P<job>[^/:]+)(?::(?P<verb>[A-Za-z]+))?)?$"
)
_VERBS = {
    "pause": LocalScheduler.pause_job,
    "resume": LocalScheduler.resume_job,
    "run": LocalScheduler.run_job,
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        try:
            self._drain_body()
            status, body = self._route(method)
        except ApiError as exc:
            status = exc.http_status
            body = {
                "error": {
                    "code": int(exc.http_status),
                    "message": exc.message,
                    "status": exc.status,
                }
            }
        except Exception as exc:
            log.exception("%s %s failed", method, self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            body = {"error": {"code": 500, "message": str(exc), "status": "INTERNAL"}}
        self._send(status, body)

    def _route(self, method: str) -> tuple[HTTPStatus, dict[str, Any]]:
        url = urlsplit(self.path)
        path = unquote(url.path)
        scheduler = self.server.scheduler
        if path == "/healthz" and method == "GET":
            return HTTPStatus.OK, {
                "status": "ok",
                "jobs": len(scheduler.list_jobs(scheduler.project, scheduler.location)),
            }
        match = _JOBS_PATH.match(path)
        if match is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such resource: {path}")
        project, location, job, verb = match.group("project", "location", "job", "verb")
        if job is None and method == "GET":
            return HTTPStatus.OK, _page(scheduler.list_jobs(project, location), url.query)
        if job is not None and verb is None and method == "GET":
            return HTTPStatus.OK, scheduler.get_job(project, location, job)
        if job is not None and verb in _VERBS and method == "POST":
            return HTTPStatus.OK, _VERBS[verb](scheduler, project, location, job)
        if (job is None and method == "POST") or (
            job is not None and verb is None and method in ("PATCH", "DELETE")
        ):
            raise ApiError(
                HTTPStatus.NOT_IMPLEMENTED,
                "UNIMPLEMENTED",
                "the local scheduler takes its jobs from the job file only; "
                "it lists, gets, pauses, resumes and runs them",
            )
        raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such method: {method} {path}")

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "request body too large")
        if length:
            self.rfile.read(length)

    def _send(self, status: HTTPStatus, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _page(jobs: list[dict[str, Any]], query: str) -> dict[str, Any]:
    params = parse_qs(query)
    try:
        size = int(params.get("pageSize", ["0"])[0]) or len(jobs) or 1
        offset = int(params.get("pageToken", ["0"])[0] or 0)
    except ValueError as exc:
        raise ApiError(
            HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", f"bad pageSize or pageToken: {exc}"
        ) from exc
    if size < 0 or offset < 0:
        raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "negative page size or token")
    body: dict[str, Any] = {}
    if jobs[offset : offset + size]:
        body["jobs"] = jobs[offset : offset + size]
    if offset + size < len(jobs):
        body["nextPageToken"] = str(offset + size)
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], scheduler: LocalScheduler) -> None:
        self.scheduler = scheduler
        super().__init__(address, _Handler)


def make_server(host: str, port: int, scheduler: LocalScheduler) -> ThreadingHTTPServer:
    return _Server((host, port), scheduler)


# --- main ----------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fleetops.local.scheduler",
        description="The local Cloud Scheduler: fires the job file's jobs on the Pub/Sub emulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", required=True)
    parser.add_argument("--jobs", type=Path, required=True, help="the job file (JSON list)")
    parser.add_argument(
        "--clock-rate",
        type=float,
        default=1.0,
        help="run the scheduler's clock this many times faster than real time (tests, demos)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        print(
            "local scheduler: PUBSUB_EMULATOR_HOST is not set; it publishes to the Pub/Sub "
            "emulator only (start it with `fleetops up`)",
            file=sys.stderr,
        )
        return 2
    try:
        jobs = load_jobs(args.jobs)
        clock = Clock(args.clock_rate)
    except ValueError as exc:
        print(f"local scheduler: {exc}", file=sys.stderr)
        return 2

    from fleetops.adapters.pubsub_publisher import PubsubPublisher

    publisher = PubsubPublisher(args.project)
    scheduler = LocalScheduler(jobs, args.project, args.location, publisher.publish, clock)
    server = make_server(args.host, args.port, scheduler)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, which runs on this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    scheduler.start()
    log.info(
        "local scheduler for projects/%s/locations/%s on http://%s:%d: %s",
        args.project,
        args.location,
        args.host,
        args.port,
        ", ".join(f"{job.name} ({job.schedule.expression} {job.time_zone})" for job in jobs),
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        scheduler.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
