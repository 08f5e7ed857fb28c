"""What the benchmarks run on: the emulators, function processes, topics and seeded state.

Everything listens on 127.0.0.1. The benchmark process itself talks to the emulators
through the usual environment variables, set once by `Bench.start`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from fleetops.local.processes import ChildProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
BASELINE = Path(__file__).resolve().parent / "baseline" / "main.py"
BASELINE_TARGET = "handle"
BASELINE_TOPIC = "bench-raw"
BASELINE_COLLECTION = "bench_raw"


@dataclass(frozen=True)
class Manifest:
    name: str
    source: Path
    entry_point: str
    signature: str
    trigger_topic: str | None
    requirements: tuple[str, ...]

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        data: dict[str, Any] = json.loads((folder / "function.json").read_text())
        return cls(
            name=folder.name,
            source=folder / "main.py",
            entry_point=str(data["entry_point"]),
            signature=str(data.get("signature", "cloudevent")),
            trigger_topic=data.get("trigger_topic"),
            requirements=tuple(str(r) for r in data.get("requirements", ())),
        )


def manifests() -> list[Manifest]:
    return [Manifest.load(p.parent) for p in sorted(FUNCTIONS.glob("*/function.json"))]


def baseline_manifest() -> Manifest:
    return Manifest(
        "baseline",
        BASELINE,
        BASELINE_TARGET,
        "cloudevent",
        BASELINE_TOPIC,
        ("functions-framework", "google-cloud-firestore"),
    )


def function_argv(manifest: Manifest, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "functions_framework",
        "--target",
        manifest.entry_point,
        "--source",
        str(manifest.source),
        "--signature-type",
        manifest.signature,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@dataclass
class Function:
    manifest: Manifest
    port: int
    child: ChildProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push_endpoint(self, project: str, topic: str) -> str:
        # functions-framework takes the CloudEvent source from this path.
        return f"{self.url}/projects/{project}/topics/{topic}"


@dataclass
class Bench:
    """The emulators, shared by every benchmark of one run, and the processes started on them."""

    log_dir: Path
    pubsub_host: str = ""
    firestore_host: str = ""
    children: list[ChildProcess] = field(default_factory=list)
    _pair: Any = None

    def start(self) -> None:
        from fleetops.local import emulators

        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The default JIT: benchmarks want the emulators' peak throughput, not a fast start.
        self._pair = emulators.start_emulators(self.log_dir)
        self.pubsub_host = self._pair.pubsub_host
        self.firestore_host = self._pair.firestore_host
        os.environ.update(self._pair.env())
        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self._pair is not None:
            self._pair.stop()
            self._pair = None

    @property
    def pids(self) -> dict[str, int]:
        if self._pair is None:
            return {}
        return {"pubsub": self._pair.pubsub.pid, "firestore": self._pair.firestore.pid}

    def env(self, project: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
        env.update(
            {
                "GOOGLE_CLOUD_PROJECT": project,
                "PUBSUB_EMULATOR_HOST": self.pubsub_host,
                "FIRESTORE_EMULATOR_HOST": self.firestore_host,
                "PYTHONUNBUFFERED": "1",
                # Steps and probes are never run by these processes, but the runtime wants one.
                "FLEETOPS_ACTUATOR": "local",
                "FLEETOPS_AGENT_URL": "http://127.0.0.1:9",
            }
        )
        env.update(extra or {})
        return env

    def spawn_function(
        self,
        manifest: Manifest,
        project: str,
        extra_env: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
    ) -> Function:
        port = free_port()
        child = ChildProcess(
            f"function {manifest.name}",
            function_argv(manifest, port),
            self.env(project, extra_env),
            self.log_dir / f"function-{manifest.name}-{port}.log",
            ready_url=f"http://127.0.0.1:{port}/",
        )
        child.start()
        self.children.append(child)
        if wait:
            child.wait_ready(timeout=60)
        return Function(manifest, port, child)

    def stop_function(self, function: Function, *, graceful: bool = True) -> None:
        popen = function.child.popen
        if graceful or popen is None:
            function.child.stop()
        else:
            # A process measured only for its start: no need to wait for gunicorn's shutdown.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=30)
        if function.child in self.children:
            self.children.remove(function.child)

    def reset_firestore(self, project: str, attempts: int = 15) -> None:
        from fleetops.local import emulators

        for attempt in range(attempts):
            try:
                emulators.reset_firestore(self.firestore_host, project, timeout=120)
                return
            except emulators.EmulatorError:
                # Handlers still in flight hold locks; the emulator refuses with a lock timeout.
                if attempt == attempts - 1:
                    raise
                time.sleep(1)


def new_project(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def firestore_client(project: str) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=project)


def state_store(project: str) -> Any:
    from fleetops.adapters.firestore_store import FirestoreStateStore

    return FirestoreStateStore(firestore_client(project))


def admin(project: str) -> Any:
    from fleetops.adapters.pubsub_admin import PubsubAdmin

    return PubsubAdmin(project)


def create_topics(project: str, topics: Iterable[str]) -> None:
    a = admin(project)
    try:
        for topic in topics:
            a.ensure_topic(topic)
    finally:
        a.close()


def subscribe(project: str, topic: str, function: Function, name: str | None = None) -> None:
    """A push subscription configured as `fleetops up` and Terraform configure theirs."""
    from fleetops.local.stack import local_push_subscription

    a = admin(project)
    try:
        a.ensure_push_subscription(
            local_push_subscription(
                name or f"{topic}-to-{function.manifest.name}",
                topic,
                function.push_endpoint(project, topic),
            )
        )
    finally:
        a.close()


class Publisher:
    """Publishes from the benchmark process; `latency` is the batching delay it allows."""

    def __init__(self, project: str, *, latency: float = 0.01, max_messages: int = 100) -> None:
        from google.cloud import pubsub_v1

        self.project = project
        self._client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(
                max_latency=latency, max_messages=max_messages
            )
        )

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> Any:
        return self._client.publish(f"projects/{self.project}/topics/{topic}", data, **attributes)

    def close(self) -> None:
        self._client.stop()


def running_instance(instance_id: str, now: datetime) -> Any:
    from fleetops.domain.model import Health, Instance, InstanceState, Size

    return Instance(
        id=instance_id,
        state=InstanceState.RUNNING,
        created_at=now,
        updated_at=now,
        customer=f"customer-{instance_id}",
        region="us-central1",
        size=Size.SMALL,
        version="1.0.0",
        endpoint=f"http://127.0.0.1:9/{instance_id}",
        health=Health.HEALTHY,
    )


def seed_instances(store: Any, ids: Sequence[str], now: datetime | None = None) -> float:
    """Write running instances with the batched writer; returns the seconds it took."""
    from fleetops.contract.names import COLLECTION_INSTANCES
    from fleetops.documents import instance_to_doc

    at = now or datetime.now(UTC)
    items = [(f"{COLLECTION_INSTANCES}/{i}", instance_to_doc(running_instance(i, at))) for i in ids]
    began = time.perf_counter()
    store.write_documents(items)
    return time.perf_counter() - began


def count(db: Any, collection: str) -> int:
    result = db.collection(collection).count().get()
    return int(result[0][0].value)


def wait_for_count(db: Any, collection: str, wanted: int, deadline: float) -> int:
    """Poll a count aggregation until it reaches `wanted` or time.monotonic() passes deadline."""
    seen = 0
    while time.monotonic() < deadline:
        seen = count(db, collection)
        if seen >= wanted:
            return seen
        time.sleep(0.2)
    return seen


def commit_times(db: Any, collection: str) -> dict[str, float]:
    """Each document's last commit time (seconds since the epoch), by id."""
    return {snap.id: snap.update_time.timestamp() for snap in db.collection(collection).stream()}


def push_body(data: bytes, attributes: Mapping[str, str], message_id: str) -> dict[str, Any]:
    """What the Pub/Sub emulator POSTs to a push endpoint."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": dict(attributes),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": now,
            "publish_time": now,
        },
        "subscription": "projects/bench/subscriptions/bench",
    }


def post(url: str, body: Any, timeout: float = 30.0) -> requests.Response:
    return requests.post(url, json=body, timeout=timeout)


def request_message(
    instance: str, action: str = "restart", source: str = "//bench", **extra: Any
) -> Any:
    """A `fleetops.instance.requested` message as the requests function receives it."""
    from fleetops.contract.names import TOPIC_REQUESTS
    from fleetops.contract.pubsub import PubsubMessage, encode_binary
    from fleetops.contract.requests import new_request_event

    event = new_request_event(
        {"instance": instance, "action": action, "requested_by": "bench@local", **extra},
        source=source,
        event_id=str(uuid.uuid4()),
    )
    data, attributes = encode_binary(event)
    return PubsubMessage(data, attributes, str(uuid.uuid4()), topic=TOPIC_REQUESTS)
