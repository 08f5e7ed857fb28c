"""Building adapters from the environment, on first use and once per process.

Nothing here runs at import: a function's cold start pays only for the
clients it actually uses, and tests import without credentials.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetops.contract.names import DEFAULT_LOCAL_PROJECT

if TYPE_CHECKING:
    from fleetops.domain.model import Operation
    from fleetops.domain.policy import ApprovalPolicy
    from fleetops.ports import Actuator, Publisher, SchedulerJobs, StateStore


class ConfigurationError(Exception):
    """The environment does not say enough to build an adapter."""


def project() -> str:
    return (
        os.environ.get("GOOGLE_CLOUD_PROJECT")
        or os.environ.get("GCP_PROJECT")
        or DEFAULT_LOCAL_PROJECT
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def approval_policy() -> ApprovalPolicy:
    """From FLEETOPS_APPROVAL_ACTIONS (comma list, or `none`), FLEETOPS_APPROVAL_LABELS
    (`key=value,...`, or `none`) and FLEETOPS_APPROVAL_TIMEOUT_HOURS; defaults otherwise."""
    from fleetops.domain.model import Action, frozen_map
    from fleetops.domain.policy import ApprovalPolicy

    default = ApprovalPolicy()
    actions_text = os.environ.get("FLEETOPS_APPROVAL_ACTIONS")
    labels_text = os.environ.get("FLEETOPS_APPROVAL_LABELS")
    hours = os.environ.get("FLEETOPS_APPROVAL_TIMEOUT_HOURS")
    try:
        actions = (
            default.actions
            if actions_text is None
            else frozenset(
                Action(a.strip()) for a in actions_text.split(",") if a.strip() not in ("", "none")
            )
        )
        labels = (
            default.labels
            if labels_text is None
            else frozen_map(
                dict(
                    p.strip().split("=", 1)
                    for p in labels_text.split(",")
                    if p.strip() not in ("", "none")
                )
            )
        )
        timeout = default.timeout if hours is None else timedelta(hours=float(hours))
    except ValueError as exc:
        raise ConfigurationError(
            f"the approval policy in the environment is invalid: {exc}"
        ) from exc
    return ApprovalPolicy(actions=actions, labels=labels, timeout=timeout)


def wait_timeout() -> timedelta | None:
    """FLEETOPS_WAIT_TIMEOUT_SECONDS: how long a step may wait for health (plans' default: 90 s)."""
    value = os.environ.get("FLEETOPS_WAIT_TIMEOUT_SECONDS")
    if not value:
        return None
    try:
        return timedelta(seconds=float(value))
    except ValueError as exc:
        raise ConfigurationError(
            f"FLEETOPS_WAIT_TIMEOUT_SECONDS={value!r} is not a number"
        ) from exc


def principal() -> str:
    """Who this process acts for: FLEETOPS_PRINCIPAL, else user@host."""
    named = os.environ.get("FLEETOPS_PRINCIPAL")
    if named:
        return named
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def after_effect_hook() -> Callable[[Operation, int], None]:
    """Local fault injection: with FLEETOPS_FAULTS_DIR set, a file
    `crash-after-effect/<instance>` there makes the process die once, hard, right
    after a step's effect on that instance and before its outcome is recorded."""
    faults_dir = os.environ.get("FLEETOPS_FAULTS_DIR")
    if not faults_dir:
        return lambda op, index: None
    folder = Path(faults_dir) / "crash-after-effect"

    def crash_once(op: Operation, index: int) -> None:
        try:
            (folder / op.instance).unlink()
        except FileNotFoundError:
            return
        os._exit(137)

    return crash_once


def escalation_webhook() -> Callable[[dict[str, Any]], None] | None:
    """FLEETOPS_ESCALATION_WEBHOOK_URL with FLEETOPS_ESCALATION_WEBHOOK_KIND (slack, the
    default, or pagerduty, which also needs FLEETOPS_PAGERDUTY_ROUTING_KEY)."""
    url = os.environ.get("FLEETOPS_ESCALATION_WEBHOOK_URL")
    if not url:
        return None
    from fleetops.adapters.webhooks import webhook

    kind = os.environ.get("FLEETOPS_ESCALATION_WEBHOOK_KIND", "slack")
    if kind not in ("slack", "pagerduty"):
        raise ConfigurationError(f"FLEETOPS_ESCALATION_WEBHOOK_KIND={kind!r}: slack or pagerduty")
    return webhook(url, kind, os.environ.get("FLEETOPS_PAGERDUTY_ROUTING_KEY"))


@cache
def state_store() -> StateStore:
    from google.cloud import firestore

    from fleetops.adapters.firestore_store import FirestoreStateStore

    database = os.environ.get("FLEETOPS_FIRESTORE_DATABASE", "(default)")
    return FirestoreStateStore(firestore.Client(project=project(), database=database))


class LazyPublisher:
    """A Publisher that builds the real one on its first publish.

    Most events publish nothing (a tick with nothing to do, a step of a finished
    operation, a read through the API): they should not pay for importing the
    Pub/Sub client and opening its channel.
    """

    def __init__(self, build: Callable[[], Publisher]) -> None:
        self._build = build
        self._built: Publisher | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._built is not None

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        built = self._built
        if built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
                built = self._built
        return built.publish(topic, data, attributes)


def _pubsub_publisher() -> Publisher:
    from fleetops.adapters.pubsub_publisher import PubsubPublisher

    return PubsubPublisher(project())


@cache
def publisher() -> Publisher:
    return LazyPublisher(_pubsub_publisher)


@cache
def actuator() -> Actuator:
    kind = os.environ.get("FLEETOPS_ACTUATOR", "local")
    if kind == "local":
        from fleetops.adapters.local_actuator import LocalProcessActuator

        agent_url = os.environ.get("FLEETOPS_AGENT_URL")
        if not agent_url:
            raise ConfigurationError(
                "FLEETOPS_AGENT_URL is not set: the local actuator needs the host agent "
                "that `fleetops up` starts"
            )
        return LocalProcessActuator(agent_url)
    if kind == "gce":
        from fleetops.adapters.gce_actuator import GceActuator

        zone = os.environ.get("FLEETOPS_GCE_ZONE")
        template = os.environ.get("FLEETOPS_GCE_INSTANCE_TEMPLATE")
        if not zone or not template:
            raise ConfigurationError(
                "FLEETOPS_ACTUATOR=gce needs FLEETOPS_GCE_ZONE and FLEETOPS_GCE_INSTANCE_TEMPLATE"
            )
        return GceActuator(project(), zone, template)
    raise ConfigurationError(f"FLEETOPS_ACTUATOR={kind!r} is not a known actuator (local, gce)")


def reset_clients() -> None:
    """Forget the cached clients (tests that change project or emulator between cases)."""
    state_store.cache_clear()
    publisher.cache_clear()
    actuator.cache_clear()


def scheduler_jobs() -> SchedulerJobs:
    """The maintenance tick's jobs: at the local scheduler (FLEETOPS_SCHEDULER_URL), else
    in Cloud Scheduler. The client is built on first use."""
    from fleetops.adapters.scheduler_admin import CloudSchedulerJobs

    return CloudSchedulerJobs(
        project=project(),
        endpoint=os.environ.get("FLEETOPS_SCHEDULER_URL") or None,
        location=os.environ.get("FLEETOPS_LOCATION") or None,
    )
