"""Driving a running `fleetops up` from a test: publish, read Firestore, find and hurt processes."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from fleetops.contract.names import (
    EVENT_MAINTENANCE_TICK,
    TOPIC_MAINTENANCE,
    TOPIC_REQUESTS,
)
from fleetops.contract.pubsub import CloudEvent, encode_binary
from fleetops.contract.requests import new_request_event
from fleetops.services.requests import operation_id_for

FULL = os.environ.get("FLEETOPS_RELIABILITY_FULL", "") not in ("", "0")
TERMINAL = frozenset({"succeeded", "failed", "rejected", "cancelled"})


@dataclass(frozen=True)
class Sizes:
    burst_instances: int
    burst_requests: int
    kills: int
    pause_instances: int
    pause_requests: int
    one_instance_requests: int = 50

    @property
    def instances(self) -> int:
        return self.burst_instances + 1 + self.pause_instances


SIZES = (
    Sizes(burst_instances=100, burst_requests=1000, kills=5, pause_instances=20, pause_requests=200)
    if FULL
    else Sizes(
        burst_instances=30, burst_requests=150, kills=3, pause_instances=10, pause_requests=60
    )
)


def demo(n: int) -> str:
    """`fleetops up --instances N` provisions demo-1 ... demo-N."""
    return f"demo-{n}"


@contextlib.contextmanager
def pointed_at(values: Mapping[str, str]) -> Iterator[None]:
    """Google's clients read the emulator hosts when built: build them inside this block."""
    keys = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: values[k] for k in keys if k in values})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class Sent:
    source: str
    event_id: str
    instance: str
    action: str
    published: bool
    error: str | None = None

    @property
    def operation(self) -> str:
        return operation_id_for(self.source, self.event_id)


@dataclass
class StackClient:
    """Clients pointed at one running stack's emulators."""

    env: Mapping[str, str]
    state_dir: Path
    stack_pid: int
    publisher: Any = field(init=False)
    db: Any = field(init=False)
    store: Any = field(init=False)

    def __post_init__(self) -> None:
        from google.cloud import firestore, pubsub_v1

        from fleetops.adapters.firestore_store import FirestoreStateStore

        with pointed_at(self.env):
            self.publisher = pubsub_v1.PublisherClient(
                batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.01)
            )
            self.db = firestore.Client(project=self.project)
        self.store = FirestoreStateStore(self.db)

    @property
    def project(self) -> str:
        return self.env["GOOGLE_CLOUD_PROJECT"]

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    # --- publishing -----------------------------------------------------------------------

    def publish_requests(
        self, asks: Sequence[tuple[str, str]], source: str, timeout: float = 90
    ) -> list[Sent]:
        """Publish (instance, action) requests at once; each result says if Pub/Sub took it."""
        pending = []
        for instance, action in asks:
            event = new_request_event(
                {"instance": instance, "action": action, "requested_by": "reliability@tests"},
                source=source,
                event_id=str(uuid.uuid4()),
            )
            data, attributes = encode_binary(event)
            future = self.publisher.publish(self.topic(TOPIC_REQUESTS), data, **attributes)
            pending.append((event, instance, action, future))
        sent = []
        for event, instance, action, future in pending:
            try:
                future.result(timeout=timeout)
                sent.append(Sent(event.source, event.id, instance, action, True))
            except Exception as exc:
                sent.append(Sent(event.source, event.id, instance, action, False, repr(exc)))
        return sent

    def tick(self) -> None:
        """A maintenance tick at the current time: the sweeper re-drives what nobody drives."""
        event = CloudEvent(
            id=str(uuid.uuid4()),
            source="//tests/reliability",
            type=EVENT_MAINTENANCE_TICK,
            time=datetime.now(UTC),
        )
        data, attributes = encode_binary(event)
        self.publisher.publish(self.topic(TOPIC_MAINTENANCE), data, **attributes).result(60)

    # --- reading --------------------------------------------------------------------------

    def operations(self) -> list[dict[str, Any]]:
        return [
            {"id": s.id, **(s.to_dict() or {})} for s in self.db.collection("operations").stream()
        ]

    def operations_of(self, sent: Sequence[Sent]) -> dict[str, list[dict[str, Any]]]:
        """By request id: every operation recorded for it."""
        wanted = {s.event_id for s in sent}
        found: dict[str, list[dict[str, Any]]] = {}
        for op in self.operations():
            if op.get("request_id") in wanted:
                found.setdefault(str(op["request_id"]), []).append(op)
        return found

    def dead_letters_of(self, sent: Sequence[Sent]) -> dict[str, int]:
        wanted = {s.event_id for s in sent}
        found: dict[str, int] = {}
        for snap in self.db.collection("dead_letters").stream():
            event_id = ((snap.to_dict() or {}).get("attributes") or {}).get("ce-id")
            if event_id in wanted:
                found[event_id] = found.get(event_id, 0) + 1
        return found

    def wait_finished(
        self,
        sent: Sequence[Sent],
        deadline: float,
        *,
        tick_every: float | None = 30.0,
        during: Callable[[], None] | None = None,
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
        """Until every request has a finished operation or a dead letter, or the deadline.

        With `tick_every`, maintenance ticks go out meanwhile, more often than Cloud
        Scheduler sends them (every 5 minutes), so the sweeper re-drives lost work sooner.
        """
        last_tick = time.monotonic()
        while True:
            ops = self.operations_of(sent)
            letters = self.dead_letters_of(sent)
            open_ = [
                s
                for s in sent
                if not letters.get(s.event_id)
                and not any(o.get("status") in TERMINAL for o in ops.get(s.event_id, []))
            ]
            if not open_ or time.monotonic() > deadline:
                return ops, letters
            if during is not None:
                during()
            if tick_every is not None and time.monotonic() - last_tick > tick_every:
                self.tick()
                last_tick = time.monotonic()
            time.sleep(1.0)

    def app_state(self, instance: str) -> dict[str, Any]:
        path = self.state_dir / "instances" / instance / "data" / "app.json"
        return dict(json.loads(path.read_text()))

    def starts(self, instance: str) -> int:
        return int(self.app_state(instance).get("starts", 0))

    # --- processes ------------------------------------------------------------------------

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.stack_pid).children(recursive=True)

    def function_processes(self, folder: str) -> tuple[psutil.Process | None, list[psutil.Process]]:
        """The process serving `functions/<folder>`, and the workers it forked if any.

        `fleetops up` serves each function from one process (`fleetops.local.function_host`),
        so the list is empty; under gunicorn (`functions_framework`) it holds the worker.
        """
        ours = []
        for process in self.descendants():
            with contextlib.suppress(psutil.Error):
                cmdline = process.cmdline()
                served = {"fleetops.local.function_host", "functions_framework"} & set(cmdline)
                if served and any(a.endswith(f"/functions/{folder}/main.py") for a in cmdline):
                    ours.append(process)
        pids = {p.pid for p in ours}
        masters = [p for p in ours if p.ppid() not in pids]
        workers = [p for p in ours if p.ppid() in pids]
        return (masters[0] if masters else None), workers

    def pubsub_emulator(self) -> psutil.Process:
        for process in self.descendants():
            with contextlib.suppress(psutil.Error):
                if "java" in process.name() and any(
                    "pubsub-emulator" in a for a in process.cmdline()
                ):
                    return process
        raise AssertionError("no Pub/Sub emulator process under the stack")


def function_answers(client: StackClient, folder: str) -> bool:
    """A function is back once it answers HTTP on its port again."""
    process, _ = client.function_processes(folder)
    if process is None:
        return False
    try:
        cmdline = process.cmdline()
        port = int(cmdline[cmdline.index("--port") + 1])
    except (psutil.Error, ValueError, IndexError):
        return False
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.RequestException:
        return False
    return True


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def intervals_overlap(ops: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of operations whose [started_at, finished_at] intersect (sorted by start)."""
    ordered = sorted(ops, key=lambda o: o["started_at"])
    return [
        (a["id"], b["id"])
        for a, b in itertools.pairwise(ordered)
        if b["started_at"] < a["finished_at"]
    ]


def describe(ops: Sequence[Mapping[str, Any]]) -> str:
    """How many in each status, then the first few."""
    statuses: dict[str, int] = {}
    for o in ops:
        statuses[str(o.get("status"))] = statuses.get(str(o.get("status")), 0) + 1
    first = "; ".join(
        f"{o['id']} {o.get('status')} {o.get('error') or ''}".strip() for o in ops[:5]
    )
    return f"{statuses}: {first}"
