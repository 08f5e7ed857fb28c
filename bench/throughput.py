"""The raw limit of one push-triggered function beside fleetops' request and alert paths.

Three functions run side by side on the same emulators, each behind its own push
subscription (configured as `fleetops up` configures its own):

- raw: `bench/baseline`, one Firestore transaction per message on a distinct document;
- requests: the real `functions/requests`; each message is a `restart` of a distinct,
  idle, running instance, so it is recorded as a running operation that holds the
  instance's lease, and its first step is published to `fleetops-steps`, which nobody
  consumes here: the actuator is left out, the whole request path is measured;
- alerts: the real `functions/alerts`; each message is an `open` incident for a distinct
  existing instance, with automation in dry-run and the circuit breaker's minimum above
  the burst, so every alert is recorded, decided (every limit evaluated) and answered
  with a dry-run operation.

A burst publishes N messages at once and measures messages/s from the first publish to
the last commit (Firestore's own commit time of the last document the path writes). Then
each path is driven at half its own burst rate and its end-to-end latency (publish to
commit) is measured per message. Bursts alternate between the paths, round after round,
so drift on a shared 2-core machine affects all of them alike.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import env
from bench.report import Row, median, percentile

WARMUP_MESSAGES = 6
BURST_DEADLINE = 120.0
MIN_PACED_MESSAGES = 5
MIN_PACED_RATE = 0.5
REQUEST_SOURCE = "//bench/fleetops"


@dataclass
class Message:
    doc_id: str
    data: bytes
    attributes: dict[str, str]


@dataclass
class PathUnderTest:
    name: str
    topic: str
    collection: str
    function: env.Function | None = None
    # Instances the path needs seeded before a burst of n messages.
    needs_instances: bool = False
    alerts: bool = False
    bursts: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[dict[str, Any]] = field(default_factory=list)

    def message(self, index: int, batch: str, published_at: float) -> Message:
        if self.name == "raw":
            doc_id = f"{batch}-{index}"
            body = {"collection": self.collection, "id": doc_id, "published_at": published_at}
            return Message(doc_id, json.dumps(body).encode(), {})
        instance = instance_id(index)
        if self.alerts:
            from fleetops.contract.incidents import notification
            from fleetops.contract.names import SOURCE_REMEDIATION
            from fleetops.services.requests import operation_id_for

            incident = f"{batch}-{index}"
            body = notification(incident, instance, "open", started_at=datetime.now(UTC))
            # The first remediation of an incident is keyed `<incident>/0`.
            doc_id = operation_id_for(SOURCE_REMEDIATION, f"{incident}/0")
            return Message(doc_id, json.dumps(body).encode(), {})
        from fleetops.contract.pubsub import encode_binary
        from fleetops.contract.requests import new_request_event
        from fleetops.services.requests import operation_id_for

        event = new_request_event(
            {"instance": instance, "action": "restart", "requested_by": "bench@local"},
            source=REQUEST_SOURCE,
            event_id=f"{batch}-{index}",
        )
        data, attributes = encode_binary(event)
        return Message(operation_id_for(event.source, event.id), data, attributes)


def instance_id(index: int) -> str:
    return f"bench-{index:05d}"


@dataclass
class Setup:
    bench: env.Bench
    project: str
    paths: list[PathUnderTest]
    publisher: env.Publisher
    paced: env.Publisher
    db: Any
    store: Any


def start(bench: env.Bench) -> Setup:
    from fleetops.contract.names import (
        ALL_TOPICS,
        COLLECTION_OPERATIONS,
        TOPIC_ALERTS,
        TOPIC_REQUESTS,
    )

    project = env.new_project("bench-tp")
    env.create_topics(project, [*ALL_TOPICS, env.BASELINE_TOPIC])
    by_name = {m.name: m for m in env.manifests()}
    paths = [
        PathUnderTest("raw", env.BASELINE_TOPIC, env.BASELINE_COLLECTION),
        PathUnderTest("requests", TOPIC_REQUESTS, COLLECTION_OPERATIONS, needs_instances=True),
        PathUnderTest(
            "alerts", TOPIC_ALERTS, COLLECTION_OPERATIONS, needs_instances=True, alerts=True
        ),
    ]
    manifests = {
        "raw": env.baseline_manifest(),
        "requests": by_name["requests"],
        "alerts": by_name["alerts"],
    }
    for path in paths:
        path.function = bench.spawn_function(manifests[path.name], project, wait=False)
    for path in paths:
        assert path.function is not None
        path.function.child.wait_ready(timeout=60)
        env.subscribe(project, path.topic, path.function)
    return Setup(
        bench,
        project,
        paths,
        env.Publisher(project, latency=0.01),
        # One message per batch, sent at once: pacing, not batching, sets the rate.
        env.Publisher(project, latency=0.0005, max_messages=1),
        env.firestore_client(project),
        env.state_store(project),
    )


def prepare(setup: Setup, path: PathUnderTest, n: int) -> None:
    """A clean database and what the path needs for n messages."""
    from fleetops.services import automation

    setup.bench.reset_firestore(setup.project)
    if not path.needs_instances:
        return
    env.seed_instances(setup.store, [instance_id(i) for i in range(n)])
    if path.alerts:
        automation.set_dry_run(setup.store, True)
        # Above the burst: the breaker would otherwise stop remediation fleet-wide.
        automation.set_limit(setup.store, "circuit_minimum", str(n * 10 + 10))


def _publish_burst(setup: Setup, path: PathUnderTest, n: int, batch: str) -> tuple[float, set[str]]:
    began = time.time()
    messages = [path.message(i, batch, began) for i in range(n)]
    futures = [setup.publisher.publish(path.topic, m.data, m.attributes) for m in messages]
    for future in futures:
        future.result(timeout=60)
    return began, {m.doc_id for m in messages}


def burst(
    setup: Setup, path: PathUnderTest, n: int, batch: str, deadline: float = BURST_DEADLINE
) -> dict[str, Any]:
    prepare(setup, path, n)
    began, ids = _publish_burst(setup, path, n, batch)
    published_in = time.time() - began
    handled = env.wait_for_count(setup.db, path.collection, n, time.monotonic() + deadline)
    if handled < n:
        assert path.function is not None
        # Drop what is left, so it cannot slow the next measurement down.
        env.subscribe(setup.project, path.topic, path.function)
    times = [t for doc, t in env.commit_times(setup.db, path.collection).items() if doc in ids]
    finished = max(times) if len(times) >= n else time.time()
    seconds = max(finished - began, 1e-6)
    result = {
        "n": n,
        "handled": min(handled, len(times)),
        "seconds": round(seconds, 3),
        "rate": round(len(times) / seconds, 1),
        "published_in": round(published_in, 3),
    }
    path.bursts.append(result)
    return result


def paced(setup: Setup, path: PathUnderTest, rate: float, count: int, batch: str) -> dict[str, Any]:
    prepare(setup, path, count)
    published: dict[str, float] = {}
    futures = []
    interval = 1.0 / rate
    began = time.time()
    for i in range(count):
        due = began + i * interval
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        at = time.time()
        message = path.message(i, batch, at)
        published[message.doc_id] = at
        futures.append(setup.paced.publish(path.topic, message.data, message.attributes))
    for future in futures:
        future.result(timeout=60)
    env.wait_for_count(setup.db, path.collection, count, time.monotonic() + BURST_DEADLINE)
    commits = env.commit_times(setup.db, path.collection)
    latencies = [commits[d] - t for d, t in published.items() if d in commits]
    result = {
        "rate": round(rate, 1),
        "count": count,
        "handled": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
    }
    path.latencies.append(result)
    return result


def warm_up(setup: Setup, jit_warmup: int) -> None:
    """Build each function's lazy clients, and warm the emulators up, before anything is timed.

    The emulators' JIT roughly doubles their throughput after a few hundred messages.
    """
    for path in setup.paths:
        size = WARMUP_MESSAGES if path.alerts else max(WARMUP_MESSAGES, jit_warmup)
        burst(setup, path, size, f"warm-{uuid.uuid4().hex[:4]}")
        path.bursts.clear()


def run(
    bench: env.Bench,
    *,
    n: int,
    rounds: int,
    latency_seconds: float,
    alert_deadline: float = BURST_DEADLINE,
    jit_warmup: int = 300,
    say: Callable[[str], None] = print,
) -> list[Row]:
    setup = start(bench)
    try:
        warm_up(setup, jit_warmup)
        for r in range(rounds):
            for path in setup.paths:
                deadline = alert_deadline if path.alerts else BURST_DEADLINE
                result = burst(setup, path, n, f"b{r}-{uuid.uuid4().hex[:4]}", deadline)
                say(f"  burst {path.name:<8} round {r + 1}: {result}")
        rates = {p.name: median([b["rate"] for b in p.bursts]) for p in setup.paths}
        for r in range(rounds):
            for path in setup.paths:
                half = max(rates[path.name] / 2, MIN_PACED_RATE)
                count = max(MIN_PACED_MESSAGES, min(n, int(half * latency_seconds)))
                result = paced(setup, path, half, count, f"l{r}-{uuid.uuid4().hex[:4]}")
                say(f"  paced {path.name:<8} round {r + 1}: {result}")
        return rows(setup.paths, rates)
    finally:
        setup.publisher.close()
        setup.paced.close()
        for path in setup.paths:
            if path.function is not None:
                bench.stop_function(path.function)


def rows(paths: list[PathUnderTest], rates: dict[str, float]) -> list[Row]:
    out: list[Row] = []
    p50 = {p.name: median([x["p50_ms"] for x in p.latencies]) for p in paths}
    p99 = {p.name: median([x["p99_ms"] for x in p.latencies]) for p in paths}
    raw_rate, raw_p50 = rates["raw"], p50["raw"]
    targets = {"requests": 0.60, "alerts": 0.50}
    for path in paths:
        complete = all(b["handled"] >= b["n"] for b in path.bursts)
        rate = rates[path.name]
        label = {"raw": "raw limit (1 tx/msg)", "requests": "request path", "alerts": "alert path"}
        name = label[path.name]
        data = {"bursts": path.bursts, "paced": path.latencies}
        if path.name == "raw":
            out.append(Row("throughput", f"{name}: burst", f"{rate:.0f} msg/s", data=data))
        else:
            ratio = rate / raw_rate if raw_rate else float("nan")
            want = targets[path.name]
            out.append(
                Row(
                    "throughput",
                    f"{name}: burst",
                    f"{rate:.0f} msg/s ({ratio:.0%} of raw)" + ("" if complete else " INCOMPLETE"),
                    f">= {want:.0%} of raw",
                    complete and ratio >= want,
                    data={**data, "ratio": round(ratio, 3)},
                )
            )
        value = f"p50 {p50[path.name]:.0f} ms, p99 {p99[path.name]:.0f} ms"
        if path.name == "raw":
            out.append(Row("latency", f"{name}: at half load", value))
        else:
            factor = p50[path.name] / raw_p50 if raw_p50 else float("nan")
            out.append(
                Row(
                    "latency",
                    f"{name}: at half load",
                    f"{value} (p50 {factor:.1f}x raw)",
                    "p50 <= 2x raw",
                    factor <= 2.0,
                    data={"p50_factor": round(factor, 2)},
                )
            )
    return out
