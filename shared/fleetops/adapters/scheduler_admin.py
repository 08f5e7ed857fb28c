"""Cloud Scheduler jobs for `fleetops maintenance`: on GCP, or on the local scheduler alike.

The local scheduler (`fleetops.local.scheduler`) serves the same v1 REST API, so one client
works for both: `FLEETOPS_SCHEDULER_URL` (set by the local stack) names the local endpoint;
without it the client talks to Cloud Scheduler with the application default credentials.
The location comes from `FLEETOPS_LOCATION`, else `us-central1`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import BadRequest
from google.auth.credentials import AnonymousCredentials
from google.cloud import scheduler_v1

from fleetops.ports import ScheduledJob

SCHEDULER_URL_ENV = "FLEETOPS_SCHEDULER_URL"
LOCATION_ENV = "FLEETOPS_LOCATION"
DEFAULT_LOCATION = "us-central1"


def scheduled_job(job: scheduler_v1.Job) -> ScheduledJob:
    topic_name = job.pubsub_target.topic_name if "pubsub_target" in job else ""
    failed = "status" in job and job.status.code != 0
    return ScheduledJob(
        id=job.name.rsplit("/", 1)[-1],
        name=job.name,
        description=job.description,
        schedule=job.schedule,
        time_zone=job.time_zone or "Etc/UTC",
        state=job.state.name,
        topic=topic_name.rsplit("/topics/", 1)[-1] if topic_name else None,
        next_run=_moment(job.schedule_time),
        last_attempt=_moment(job.last_attempt_time),
        last_error=(job.status.message or f"code {job.status.code}") if failed else None,
    )


def _moment(value: object) -> datetime | None:
    # proto-plus hands timestamps out as datetimes (None when unset), not as the
    # Timestamp messages its annotations name.
    return value if isinstance(value, datetime) else None


def local_endpoint() -> str | None:
    """The local scheduler's URL when the local stack runs, else None (GCP)."""
    return os.environ.get(SCHEDULER_URL_ENV) or None


def default_location() -> str:
    return os.environ.get(LOCATION_ENV) or DEFAULT_LOCATION


def scheduler_client(api_endpoint: str | None = None) -> scheduler_v1.CloudSchedulerClient:
    """A Cloud Scheduler client for GCP (None), or for the local scheduler at `api_endpoint`."""
    if api_endpoint is None:
        return scheduler_v1.CloudSchedulerClient()
    return scheduler_v1.CloudSchedulerClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
        client_options=ClientOptions(api_endpoint=api_endpoint),
    )


def location_path(project: str, location: str | None = None) -> str:
    return f"projects/{project}/locations/{location or default_location()}"


def job_path(project: str, job: str, location: str | None = None) -> str:
    """The job's full name; a full name passes through unchanged."""
    if job.startswith("projects/"):
        return job
    return f"{location_path(project, location)}/jobs/{job}"


def list_jobs(
    project: str,
    location: str | None = None,
    client: scheduler_v1.CloudSchedulerClient | None = None,
) -> list[ScheduledJob]:
    with _client(client) as scheduler:
        pages = scheduler.list_jobs(parent=location_path(project, location))
        return [scheduled_job(job) for job in pages]


def get_job(
    project: str,
    job: str,
    location: str | None = None,
    client: scheduler_v1.CloudSchedulerClient | None = None,
) -> ScheduledJob:
    with _client(client) as scheduler:
        return scheduled_job(scheduler.get_job(name=job_path(project, job, location)))


def pause_job(
    project: str,
    job: str,
    location: str | None = None,
    client: scheduler_v1.CloudSchedulerClient | None = None,
) -> ScheduledJob:
    """Pause the job; pausing a paused job is not an error."""
    with _client(client) as scheduler:
        return _change_state(
            scheduler, job_path(project, job, location), scheduler.pause_job, "PAUSED"
        )


def resume_job(
    project: str,
    job: str,
    location: str | None = None,
    client: scheduler_v1.CloudSchedulerClient | None = None,
) -> ScheduledJob:
    """Resume the job; resuming an enabled job is not an error."""
    with _client(client) as scheduler:
        return _change_state(
            scheduler, job_path(project, job, location), scheduler.resume_job, "ENABLED"
        )


def run_job(
    project: str,
    job: str,
    location: str | None = None,
    client: scheduler_v1.CloudSchedulerClient | None = None,
) -> ScheduledJob:
    """Fire the job now, whatever its state; `last_error` tells whether it worked locally."""
    with _client(client) as scheduler:
        return scheduled_job(scheduler.run_job(name=job_path(project, job, location)))


def _change_state(
    scheduler: scheduler_v1.CloudSchedulerClient,
    name: str,
    change: Callable[..., scheduler_v1.Job],
    wanted: str,
) -> ScheduledJob:
    try:
        return scheduled_job(change(name=name))
    except BadRequest:
        # Cloud Scheduler refuses to pause a paused job (FAILED_PRECONDITION, HTTP 400);
        # the caller asked for a state, which it already has.
        current = scheduler.get_job(name=name)
        if current.state.name == wanted:
            return scheduled_job(current)
        raise


@contextmanager
def _client(
    client: scheduler_v1.CloudSchedulerClient | None,
) -> Iterator[scheduler_v1.CloudSchedulerClient]:
    if client is not None:
        yield client
        return
    with scheduler_client(local_endpoint()) as owned:
        yield owned


class CloudSchedulerJobs:
    """`SchedulerJobs` through the Cloud Scheduler client: on GCP, or at the local scheduler.

    `endpoint` is the local scheduler's URL (FLEETOPS_SCHEDULER_URL), None on GCP. The
    client is made on first use and then shared.
    """

    def __init__(
        self, project: str, endpoint: str | None = None, location: str | None = None
    ) -> None:
        self.project = project
        self.endpoint = endpoint
        self.location = location
        self._lock = threading.Lock()
        self._client: scheduler_v1.CloudSchedulerClient | None = None

    def _scheduler(self) -> scheduler_v1.CloudSchedulerClient:
        with self._lock:
            if self._client is None:
                self._client = scheduler_client(self.endpoint)
            return self._client

    def list_jobs(self) -> list[ScheduledJob]:
        return list_jobs(self.project, self.location, client=self._scheduler())

    def pause_job(self, job: str) -> ScheduledJob:
        return pause_job(self.project, job, self.location, client=self._scheduler())

    def resume_job(self, job: str) -> ScheduledJob:
        return resume_job(self.project, job, self.location, client=self._scheduler())

    def run_job(self, job: str) -> ScheduledJob:
        return run_job(self.project, job, self.location, client=self._scheduler())
