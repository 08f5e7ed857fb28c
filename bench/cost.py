"""Firestore reads, writes and transactions per handled request, per step and per alert.

The services run in this process against the Firestore emulator through the real
`FirestoreStateStore`, whose counters count every document read (each query result
counts one; Firestore bills at least one read for a query that returns nothing, which the
counters do not see), every document written and every transaction. Publishing and the
actuator are in-memory: they cost no Firestore operation.

The same requests are timed with the real Pub/Sub publisher, split into the decoding, the
transaction and the publish, since the push subscription's two deliveries in flight make a
function's throughput two divided by that time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench import env
from bench.report import Row

# What the design needs at the least, and why (docs/performance.md explains each).
MINIMUM = {
    "request": {
        "transactions": 1,
        "reads": 2,
        "writes": 4,
        "why": "one transaction: read the idempotency key and the instance (its lease); write "
        "the operation, the instance (the lease), the key, and one history entry",
    },
    "step": {
        "transactions": 1,
        "reads": 3,
        "writes": 2,
        "why": "read the operation before the effect; in one transaction re-read it and the "
        "instance (fencing token), write the operation and the instance (lease renewal)",
    },
    "alert": {
        "transactions": 1,
        "reads": 6,
        "writes": 3,
        "why": "one transaction: the incident key, the instance, its remediation state, the "
        "settings, the circuit and one slot; write the key, the state and the decision",
    },
}


@dataclass
class Tally:
    units: int = 0
    reads: int = 0
    writes: int = 0
    transactions: int = 0
    samples: list[dict[str, int]] = field(default_factory=list)

    def add(self, before: Mapping[str, int], after: Mapping[str, int]) -> None:
        delta = {k: after[k] - before[k] for k in ("reads", "writes", "transactions")}
        self.units += 1
        self.reads += delta["reads"]
        self.writes += delta["writes"]
        self.transactions += delta["transactions"]
        self.samples.append(delta)

    def per_unit(self) -> dict[str, float]:
        n = max(self.units, 1)
        return {
            "reads": round(self.reads / n, 2),
            "writes": round(self.writes / n, 2),
            "transactions": round(self.transactions / n, 2),
        }


def measured(store: Any, tally: Tally, call: Callable[[], Any]) -> Any:
    before = store.counters.snapshot()
    result = call()
    tally.add(before, store.counters.snapshot())
    return result


class _TimedStore:
    """Delegates to the real store, adding up the time spent in transactions."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.seconds = 0.0

    def transact(self, fn: Callable[[Any], Any]) -> Any:
        began = time.perf_counter()
        try:
            return self._store.transact(fn)
        finally:
            self.seconds += time.perf_counter() - began

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _TimedPublisher:
    def __init__(self, publisher: Any) -> None:
        self._publisher = publisher
        self.seconds = 0.0

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        began = time.perf_counter()
        try:
            return str(self._publisher.publish(topic, data, attributes))
        finally:
            self.seconds += time.perf_counter() - began


def _alert_message(instance: str, incident: str, now: Any) -> Any:
    import json

    from fleetops.contract.incidents import notification
    from fleetops.contract.names import TOPIC_ALERTS
    from fleetops.contract.pubsub import PubsubMessage

    body = notification(incident, instance, "open", started_at=now)
    return PubsubMessage(json.dumps(body).encode(), {}, str(uuid.uuid4()), topic=TOPIC_ALERTS)


def run(bench: env.Bench, *, units: int, say: Callable[[str], None] = print) -> list[Row]:
    from fleetops.adapters.memory import FakeClock, InMemoryActuator, InMemoryPublisher
    from fleetops.contract.names import TOPIC_STEPS
    from fleetops.contract.pubsub import PubsubMessage
    from fleetops.services import automation
    from fleetops.services.alerts import AlertDeps, handle_alert_message
    from fleetops.services.requests import RequestDeps, handle_request_message
    from fleetops.services.steps import StepDeps, handle_step_message

    project = env.new_project("bench-cost")
    store = env.state_store(project)
    clock = FakeClock()
    ids = [f"cost-{i:04d}" for i in range(units)]
    env.seed_instances(store, ids, clock.now())
    publisher = InMemoryPublisher()
    actuator = InMemoryActuator()
    for i in ids:
        actuator.instances[i] = _fake_instance(i)

    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    request_deps = RequestDeps(store, publisher, clock.now)
    step_deps = StepDeps(store, publisher, actuator, clock.now, sleep=sleep, jitter=lambda: 0.5)

    started, queued, duplicate, dry_run = Tally(), Tally(), Tally(), Tally()
    for i in ids:
        message = env.request_message(i)
        measured(store, started, lambda m=message: handle_request_message(m, request_deps))
        measured(store, duplicate, lambda m=message: handle_request_message(m, request_deps))
        measured(
            store,
            queued,
            lambda i=i: handle_request_message(env.request_message(i), request_deps),
        )
        measured(
            store,
            dry_run,
            lambda i=i: handle_request_message(
                env.request_message(i, "snapshot", dry_run=True), request_deps
            ),
        )

    steps = Tally()
    rounds = 0
    while rounds < 100:
        pending = [
            PubsubMessage(m.data, m.attributes, m.message_id, topic=TOPIC_STEPS)
            for m in publisher.take(TOPIC_STEPS)
        ]
        if not pending:
            break
        for message in pending:
            measured(store, steps, lambda m=message: handle_step_message(m, step_deps))
        rounds += 1
    from fleetops.domain.model import Action
    from fleetops.domain.plans import plan_for

    operations = 2 * units  # each instance: the started restart and the one queued behind it
    plan = plan_for(Action.RESTART)
    assert plan is not None
    step_count = operations * len(plan.steps)
    say(f"  cost: {steps.units} step messages for {step_count} steps of {operations} restarts")

    alert_project = env.new_project("bench-cost-alerts")
    alert_store = env.state_store(alert_project)
    env.seed_instances(alert_store, ids, clock.now())
    automation.set_dry_run(alert_store, True)
    automation.set_limit(alert_store, "circuit_minimum", str(units * 10 + 10))
    alert_deps = AlertDeps(alert_store, InMemoryPublisher(), clock.now, sleep=sleep)
    alerts = Tally()
    for n, i in enumerate(ids):
        message = _alert_message(i, f"inc-{n}", clock.now())
        measured(alert_store, alerts, lambda m=message: handle_alert_message(m, alert_deps))

    timing = _time_requests(bench, units, say)
    return _rows(started, queued, duplicate, dry_run, steps, step_count, alerts, timing)


def _fake_instance(instance_id: str) -> Any:
    from fleetops.adapters.memory import FakeInstance
    from fleetops.domain.model import Size
    from fleetops.ports import InstanceSpec

    spec = InstanceSpec(id=instance_id, version="1.0.0", size=Size.SMALL, region=None, labels={})
    return FakeInstance(spec, version="1.0.0", size=Size.SMALL)


def _time_requests(bench: env.Bench, units: int, say: Callable[[str], None]) -> dict[str, float]:
    """Sequential requests with the real publisher: where one request's time goes."""
    from fleetops.adapters.pubsub_publisher import PubsubPublisher
    from fleetops.contract.names import ALL_TOPICS
    from fleetops.contract.pubsub import decode_cloudevent
    from fleetops.contract.requests import parse_request
    from fleetops.runtime import utc_now
    from fleetops.services.requests import RequestDeps, handle_request_message

    project = env.new_project("bench-time")
    env.create_topics(project, ALL_TOPICS)
    count = max(units * 4, 40)
    ids = [f"time-{i:04d}" for i in range(count * 2)]
    store = env.state_store(project)
    env.seed_instances(store, ids)
    timed_store = _TimedStore(store)
    timed_publisher = _TimedPublisher(PubsubPublisher(project))
    deps = RequestDeps(timed_store, timed_publisher, utc_now)  # type: ignore[arg-type]
    # The first half warms the clients and the emulator's code paths up.
    for i in ids[:count]:
        handle_request_message(env.request_message(i), deps)
    timed_store.seconds = timed_publisher.seconds = 0.0
    messages = [env.request_message(i) for i in ids[count:]]
    began = time.perf_counter()
    for message in messages:
        handle_request_message(message, deps)
    total = time.perf_counter() - began
    decode_began = time.perf_counter()
    for message in messages:
        parse_request(decode_cloudevent(message))
    decode = time.perf_counter() - decode_began
    result = {
        "requests": count,
        "total_ms": round(total / count * 1000, 2),
        "transaction_ms": round(timed_store.seconds / count * 1000, 2),
        "publish_ms": round(timed_publisher.seconds / count * 1000, 2),
        "decode_ms": round(decode / count * 1000, 3),
        "baseline_ms": round(_baseline_transaction(store.client, count) * 1000, 2),
        **_publish_latency(project, count),
    }
    say(f"  cost: request timing {result}")
    return result


def _baseline_transaction(db: Any, count: int) -> float:
    """Seconds per transaction of the baseline function's kind: one read, one write."""
    from google.cloud import firestore

    def one(ref: Any) -> None:
        @firestore.transactional
        def record(transaction: Any) -> None:
            if not ref.get(transaction=transaction).exists:
                transaction.set(ref, {"handled_at": firestore.SERVER_TIMESTAMP})

        record(db.transaction())

    collection = db.collection("bench_baseline")
    for n in range(count):
        one(collection.document(f"warm-{n}"))
    began = time.perf_counter()
    for n in range(count):
        one(collection.document(f"timed-{n}"))
    return (time.perf_counter() - began) / count


def _publish_latency(project: str, count: int) -> dict[str, float]:
    """Milliseconds per publish-and-wait: the client's batching with a 5 ms delay (what
    fleetops used to configure), a batch of one, and fleetops' publisher (one API call)."""
    from google.cloud import pubsub_v1

    from fleetops.adapters.pubsub_publisher import PubsubPublisher
    from fleetops.contract.names import TOPIC_EVENTS

    topic = f"projects/{project}/topics/{TOPIC_EVENTS}"
    settings = {
        "publish_batched_ms": pubsub_v1.types.BatchSettings(max_latency=0.005),
        "publish_unbatched_ms": pubsub_v1.types.BatchSettings(max_messages=1),
    }
    result = {}
    for name, batch in settings.items():
        client = pubsub_v1.PublisherClient(batch_settings=batch)
        for _ in range(count // 4):
            client.publish(topic, b"{}").result(timeout=30)
        began = time.perf_counter()
        for _ in range(count):
            client.publish(topic, b"{}").result(timeout=30)
        result[name] = round((time.perf_counter() - began) / count * 1000, 2)
        client.stop()
    publisher = PubsubPublisher(project)
    for _ in range(count // 4):
        publisher.publish(TOPIC_EVENTS, b"{}", {})
    began = time.perf_counter()
    for _ in range(count):
        publisher.publish(TOPIC_EVENTS, b"{}", {})
    result["publish_fleetops_ms"] = round((time.perf_counter() - began) / count * 1000, 2)
    return result


def _value(per: Mapping[str, float]) -> str:
    return f"{per['transactions']:g} tx, {per['reads']:g} reads, {per['writes']:g} writes"


def _rows(
    started: Tally,
    queued: Tally,
    duplicate: Tally,
    dry_run: Tally,
    steps: Tally,
    step_count: int,
    alerts: Tally,
    timing: Mapping[str, float],
) -> list[Row]:
    def minimum(kind: str) -> str:
        m = MINIMUM[kind]
        return f"min {m['transactions']} tx, {m['reads']} reads, {m['writes']} writes"

    per_request = started.per_unit()
    # Per step, not per message: a waiting step takes more than one message.
    per_step = {
        k: round(getattr(steps, k) / max(step_count, 1), 2)
        for k in ("reads", "writes", "transactions")
    }
    per_alert = alerts.per_unit()
    first, last = alerts.samples[0], alerts.samples[-1]
    return [
        Row(
            "firestore cost",
            "per request (started)",
            _value(per_request),
            f"<= 1 tx; {minimum('request')}",
            per_request["transactions"] <= 1,
            data={"per_unit": per_request, "minimum": MINIMUM["request"]},
        ),
        Row(
            "firestore cost",
            "per request: queued / duplicate / dry run",
            " / ".join(_value(t.per_unit()) for t in (queued, duplicate, dry_run)),
            "<= 1 tx",
            all(t.per_unit()["transactions"] <= 1 for t in (queued, duplicate, dry_run)),
            data={
                "queued": queued.per_unit(),
                "duplicate": duplicate.per_unit(),
                "dry_run": dry_run.per_unit(),
            },
        ),
        Row(
            "firestore cost",
            f"per step ({steps.units / max(step_count, 1):.2f} messages per step)",
            _value(per_step),
            f"<= 1 tx; {minimum('step')}",
            per_step["transactions"] <= 1,
            data={
                "per_step": per_step,
                "per_message": steps.per_unit(),
                "minimum": MINIMUM["step"],
                "messages": steps.units,
                "steps": step_count,
                "max_per_message": {
                    k: max(s[k] for s in steps.samples) for k in ("reads", "writes", "transactions")
                },
            },
        ),
        Row(
            "firestore cost",
            "per alert (dry run)",
            _value(per_alert) + f"; reads {first['reads']} for the 1st, {last['reads']} for the "
            f"{alerts.units}th",
            minimum("alert"),
            None,
            data={
                "per_unit": per_alert,
                "minimum": MINIMUM["alert"],
                "reads_by_alert": [s["reads"] for s in alerts.samples],
            },
        ),
        Row(
            "firestore cost",
            "one request, sequential: total / tx / publish / decode (baseline tx)",
            f"{timing['total_ms']:.1f} / {timing['transaction_ms']:.1f} / "
            f"{timing['publish_ms']:.1f} / {timing['decode_ms']:.2f} ms "
            f"({timing['baseline_ms']:.1f} ms)",
            data=dict(timing),
        ),
        Row(
            "firestore cost",
            "one publish-and-wait: batched (5 ms delay) / batch of one / fleetops' publisher",
            f"{timing['publish_batched_ms']:.1f} / {timing['publish_unbatched_ms']:.1f} / "
            f"{timing['publish_fleetops_ms']:.1f} ms",
            data=dict(timing),
        ),
    ]
