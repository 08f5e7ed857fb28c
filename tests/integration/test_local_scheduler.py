"""The local Cloud Scheduler as a process, on the Pub/Sub emulator, through the real client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, scheduler_v1
from google.cloud.scheduler_v1 import Job

from fleetops.adapters import scheduler_admin
from fleetops.contract.names import EVENT_MAINTENANCE_TICK, TOPIC_MAINTENANCE
from fleetops.contract.pubsub import PubsubMessage, parse_time
from fleetops.contract.ticks import decode_tick
from fleetops.local.processes import free_port
from fleetops.local.scheduler import next_fire_times
from tests.conftest import GcpEnv

LOCATION = "europe-west1"
EVERY_MINUTE = "every-minute"
# Fires on 29 February only: never on its own during a test.
LEAP_DAY = "leap-day-report"
JOBS = [
    {
        "name": EVERY_MINUTE,
        "schedule": "* * * * *",
        "time_zone": "Etc/UTC",
        "topic": TOPIC_MAINTENANCE,
        "description": "A tick every minute.",
        "data": {"job": EVERY_MINUTE},
        "attributes": {"fleetops-job": EVERY_MINUTE},
    },
    {
        "name": LEAP_DAY,
        "schedule": "0 3 29 2 *",
        "time_zone": "America/New_York",
        "topic": TOPIC_MAINTENANCE,
        "description": "A leap-day report.",
        "data": {"job": LEAP_DAY, "report": "leap"},
        "attributes": {"fleetops-job": LEAP_DAY},
    },
]


@dataclass
class Tick:
    attributes: dict[str, str]
    data: dict[str, Any]
    message: PubsubMessage

    @property
    def job(self) -> str:
        return str(self.data["job"])

    @property
    def time(self) -> datetime:
        parsed = parse_time(self.attributes["ce-time"])
        assert parsed is not None
        return parsed


class Inbox:
    """A pull subscription on the maintenance topic of the test's project."""

    def __init__(self, project: str) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        topic = self.publisher.topic_path(project, TOPIC_MAINTENANCE)
        self.subscription = self.subscriber.subscription_path(project, "maintenance-inbox")
        self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(
            name=self.subscription, topic=topic, ack_deadline_seconds=60
        )

    def pull(self, timeout: float = 0.5) -> list[Tick]:
        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 100},
                timeout=timeout,
                retry=None,
            )
        except exceptions.DeadlineExceeded:
            return []
        received = list(response.received_messages)
        if received:
            self.subscriber.acknowledge(
                subscription=self.subscription, ack_ids=[r.ack_id for r in received]
            )
        ticks = []
        for item in received:
            message = PubsubMessage(
                data=item.message.data,
                attributes=dict(item.message.attributes),
                message_id=item.message.message_id,
                publish_time=item.message.publish_time,
                topic=TOPIC_MAINTENANCE,
            )
            ticks.append(Tick(dict(message.attributes), json.loads(message.data), message))
        return ticks

    def collect(self, seconds: float, job: str) -> list[Tick]:
        """Every tick of `job` that arrives within `seconds`."""
        found: list[Tick] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found += [t for t in self.pull() if t.job == job]
        return found

    def wait_for(self, job: str, accept: Callable[[Tick], bool], seconds: float = 5) -> Tick:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for tick in self.pull():
                if tick.job == job and accept(tick):
                    return tick
        pytest.fail(f"no tick of {job} within {seconds} s")

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.stop()


@dataclass
class Scheduler:
    proc: subprocess.Popen[bytes]
    url: str
    project: str
    log: Path

    def parent(self, location: str = LOCATION) -> str:
        return f"projects/{self.project}/locations/{location}"

    def job(self, name: str) -> str:
        return f"{self.parent()}/jobs/{name}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


StartScheduler = Callable[..., Scheduler]


def run_scheduler(
    jobs_file: Path, log: Path, project: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetops.local.scheduler",
                "--host",
                "127.0.0.1",
                "--project",
                project,
                "--location",
                LOCATION,
                "--jobs",
                str(jobs_file),
                *args,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env if env is not None else dict(os.environ),
        )


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(JOBS))
    return path


@pytest.fixture
def start_scheduler(gcp_env: GcpEnv, jobs_file: Path, tmp_path: Path) -> Iterator[StartScheduler]:
    started: list[Scheduler] = []

    def start(clock_rate: float = 1.0) -> Scheduler:
        port = free_port()
        log = tmp_path / f"scheduler-{port}.log"
        proc = run_scheduler(
            jobs_file,
            log,
            gcp_env.project,
            "--port",
            str(port),
            "--clock-rate",
            str(clock_rate),
        )
        scheduler = Scheduler(proc, f"http://127.0.0.1:{port}", gcp_env.project, log)
        started.append(scheduler)
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the scheduler exited: {log.read_text()}")
            try:
                if requests.get(f"{scheduler.url}/healthz", timeout=0.5).status_code == 200:
                    return scheduler
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the scheduler did not answer within 15 s: {log.read_text()}")
            time.sleep(0.05)

    yield start
    for scheduler in started:
        scheduler.stop()


@pytest.fixture
def inbox(gcp_env: GcpEnv) -> Iterator[Inbox]:
    box = Inbox(gcp_env.project)
    yield box
    box.close()


@pytest.fixture
def client() -> Iterator[Callable[[Scheduler], scheduler_v1.CloudSchedulerClient]]:
    made: list[scheduler_v1.CloudSchedulerClient] = []

    def make(scheduler: Scheduler) -> scheduler_v1.CloudSchedulerClient:
        # Exactly how one points the released client at any REST endpoint.
        real = scheduler_v1.CloudSchedulerClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options={"api_endpoint": scheduler.url},
        )
        made.append(real)
        return real

    yield make
    for real in made:
        real.transport.close()


def test_list_and_get_show_the_jobs_of_the_file(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
) -> None:
    before = datetime.now(UTC)
    scheduler = start_scheduler()
    api = client(scheduler)

    jobs = {job.name: job for job in api.list_jobs(parent=scheduler.parent())}

    assert sorted(jobs) == sorted(scheduler.job(j["name"]) for j in JOBS)
    leap = api.get_job(name=scheduler.job(LEAP_DAY))
    assert leap == jobs[scheduler.job(LEAP_DAY)]
    assert leap.description == "A leap-day report."
    assert leap.schedule == "0 3 29 2 *"
    assert leap.time_zone == "America/New_York"
    assert leap.state == Job.State.ENABLED
    assert (
        leap.pubsub_target.topic_name == f"projects/{scheduler.project}/topics/fleetops-maintenance"
    )
    assert json.loads(leap.pubsub_target.data) == {"job": LEAP_DAY, "report": "leap"}
    assert dict(leap.pubsub_target.attributes) == {"fleetops-job": LEAP_DAY}
    assert leap.schedule_time == next_fire_times("0 3 29 2 *", "America/New_York", before, 1)[0]
    assert leap.schedule_time.astimezone(ZoneInfo("America/New_York")).hour == 3
    assert not leap.last_attempt_time
    assert "status" not in leap
    assert api.list_jobs(parent=scheduler.parent("us-east1")).jobs == []


def test_pages_through_the_jobs(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
) -> None:
    scheduler = start_scheduler()
    pager = client(scheduler).list_jobs(request={"parent": scheduler.parent(), "page_size": 1})
    pages = list(pager.pages)
    assert [len(page.jobs) for page in pages] == [1, 1]
    assert [page.jobs[0].name.rsplit("/", 1)[1] for page in pages] == [EVERY_MINUTE, LEAP_DAY]


def test_run_publishes_one_tick_cloudevent(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
    inbox: Inbox,
) -> None:
    scheduler = start_scheduler()
    api = client(scheduler)
    asked = datetime.now(UTC)

    ran = api.run_job(name=scheduler.job(LEAP_DAY))

    answered = datetime.now(UTC)
    assert asked <= ran.last_attempt_time <= answered
    assert ran.status.code == 0
    ticks = inbox.collect(2.0, LEAP_DAY)
    assert len(ticks) == 1
    [tick] = ticks
    stamp = tick.attributes["ce-time"]
    assert tick.attributes == {
        "ce-specversion": "1.0",
        "ce-id": f"{LEAP_DAY}-{stamp}",
        "ce-source": (
            f"//cloudscheduler.googleapis.com/projects/{scheduler.project}"
            f"/locations/{LOCATION}/jobs/{LEAP_DAY}"
        ),
        "ce-type": "fleetops.maintenance.tick",
        "ce-time": stamp,
        "content-type": "application/json",
        "fleetops-job": LEAP_DAY,
    }
    assert stamp.endswith("Z")
    assert asked <= tick.time <= answered
    assert tick.data == {"job": LEAP_DAY, "report": "leap", "scheduled_time": stamp}
    # What the sweeper reads of it.
    decoded = decode_tick(tick.message)
    assert (decoded.at, decoded.id, decoded.source) == (
        tick.time,
        tick.attributes["ce-id"],
        tick.attributes["ce-source"],
    )
    assert tick.attributes["ce-type"] == EVENT_MAINTENANCE_TICK
    # A run does not move the schedule.
    assert ran.schedule_time == api.get_job(name=scheduler.job(LEAP_DAY)).schedule_time


def test_pause_stops_the_schedule_and_resume_restarts_it(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
    inbox: Inbox,
) -> None:
    # One scheduler minute per real second: `* * * * *` fires every second.
    scheduler = start_scheduler(clock_rate=60)
    api = client(scheduler)
    name = scheduler.job(EVERY_MINUTE)

    first = inbox.wait_for(EVERY_MINUTE, lambda tick: True)
    assert (first.time.second, first.time.microsecond) == (0, 0)
    assert first.attributes["ce-id"] == f"{EVERY_MINUTE}-{first.attributes['ce-time']}"

    paused = api.pause_job(name=name)
    assert paused.state == Job.State.PAUSED
    assert not paused.schedule_time
    # Three scheduler minutes pass: at least two fire times go by.
    late = inbox.collect(3.0, EVERY_MINUTE)
    assert all(tick.time <= paused.last_attempt_time for tick in late)
    still = api.get_job(name=name)
    assert still.state == Job.State.PAUSED
    assert still.last_attempt_time == paused.last_attempt_time
    with pytest.raises(exceptions.BadRequest, match="ENABLED"):
        api.pause_job(name=name)

    resumed = api.resume_job(name=name)
    assert resumed.state == Job.State.ENABLED
    assert resumed.user_update_time - paused.user_update_time >= timedelta(minutes=2)
    assert resumed.schedule_time > resumed.user_update_time
    again = inbox.wait_for(EVERY_MINUTE, lambda tick: tick.time > paused.last_attempt_time)
    # Resuming does not catch up on the fire times it missed.
    assert again.time > resumed.user_update_time
    assert again.time >= resumed.schedule_time
    with pytest.raises(exceptions.BadRequest, match="PAUSED"):
        api.resume_job(name=name)


def test_unknown_job_is_not_found(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
) -> None:
    scheduler = start_scheduler()
    api = client(scheduler)
    missing = scheduler.job("no-such-job")
    for call in (api.get_job, api.pause_job, api.resume_job, api.run_job):
        with pytest.raises(exceptions.NotFound, match="no-such-job"):
            call(name=missing)
    elsewhere = f"{scheduler.parent('us-east1')}/jobs/{LEAP_DAY}"
    with pytest.raises(exceptions.NotFound):
        api.get_job(name=elsewhere)

    answer = requests.get(f"{scheduler.url}/v1/{missing}", timeout=5)
    assert answer.status_code == 404
    assert answer.json() == {
        "error": {
            "code": 404,
            "message": f"Job not found: {missing}",
            "status": "NOT_FOUND",
        }
    }


def test_jobs_are_not_created_or_deleted_through_the_api(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
) -> None:
    scheduler = start_scheduler()
    api = client(scheduler)
    with pytest.raises(exceptions.MethodNotImplemented, match="job file"):
        api.delete_job(name=scheduler.job(LEAP_DAY))
    with pytest.raises(exceptions.MethodNotImplemented):
        api.create_job(parent=scheduler.parent(), job=Job(name=scheduler.job("new")))
    assert len(list(api.list_jobs(parent=scheduler.parent()))) == len(JOBS)


def test_admin_helpers_reach_the_local_scheduler_from_the_environment(
    start_scheduler: StartScheduler, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = start_scheduler()
    monkeypatch.setenv(scheduler_admin.SCHEDULER_URL_ENV, scheduler.url)
    monkeypatch.setenv(scheduler_admin.LOCATION_ENV, LOCATION)
    project = scheduler.project

    listed = {job.id: job for job in scheduler_admin.list_jobs(project)}
    assert sorted(listed) == [EVERY_MINUTE, LEAP_DAY]
    leap = listed[LEAP_DAY]
    assert (leap.state, leap.schedule, leap.time_zone, leap.topic) == (
        "ENABLED",
        "0 3 29 2 *",
        "America/New_York",
        TOPIC_MAINTENANCE,
    )
    assert leap.next_run is not None
    assert leap.last_attempt is None
    assert leap.last_error is None

    assert scheduler_admin.pause_job(project, LEAP_DAY).state == "PAUSED"
    # Pausing twice is what the caller asked for, not an error.
    assert scheduler_admin.pause_job(project, LEAP_DAY).state == "PAUSED"
    assert scheduler_admin.get_job(project, LEAP_DAY).next_run is None

    ran = scheduler_admin.run_job(project, LEAP_DAY)
    assert ran.last_attempt is not None
    assert ran.last_error is None
    [tick] = inbox.collect(1.5, LEAP_DAY)
    assert ran.last_attempt - timedelta(seconds=1) <= tick.time <= ran.last_attempt

    assert scheduler_admin.resume_job(project, LEAP_DAY).state == "ENABLED"
    assert scheduler_admin.resume_job(project, LEAP_DAY).state == "ENABLED"
    with pytest.raises(exceptions.NotFound):
        scheduler_admin.run_job(project, "no-such-job")


def test_a_failed_publish_shows_in_the_job_status(
    start_scheduler: StartScheduler,
    client: Callable[[Scheduler], scheduler_v1.CloudSchedulerClient],
) -> None:
    # No topic in this project: the emulator answers NOT_FOUND.
    scheduler = start_scheduler()
    ran = client(scheduler).run_job(name=scheduler.job(LEAP_DAY))
    assert ran.status.code == 5
    assert "fleetops-maintenance" in ran.status.message
    listed = scheduler_admin.list_jobs(scheduler.project, LOCATION, client=client(scheduler))
    assert {job.id: job.last_error for job in listed}[LEAP_DAY] == ran.status.message


def test_stops_on_sigterm(start_scheduler: StartScheduler) -> None:
    scheduler = start_scheduler()
    began = time.monotonic()
    assert scheduler.stop() == 0
    assert time.monotonic() - began < 3


def test_refuses_to_start_without_the_emulator_or_with_a_bad_job_file(
    gcp_env: GcpEnv, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(JOBS))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**JOBS[0], "schedule": "every 5 minutes"}]))
    log = tmp_path / "scheduler.log"
    port = ["--port", str(free_port())]

    no_emulator = {k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"}
    assert run_scheduler(good, log, gcp_env.project, *port, env=no_emulator).wait(10) == 2
    assert "PUBSUB_EMULATOR_HOST" in log.read_text()

    assert run_scheduler(bad, log, gcp_env.project, *port).wait(10) == 2
    assert f"job {EVERY_MINUTE}: schedule 'every 5 minutes'" in log.read_text()
