"""Planning a rollout over a large fleet: `fleetops.services.rollouts.plan_rollout`.

The fleet is written into the emulator with the batched writer first (timed apart); then
one upgrade rollout over every instance is planned, with the store's counters on.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import env
from bench.report import Row

TARGET_SECONDS = 10.0
TARGET_WRITES_PER_INSTANCE = 2.0


def _service() -> object | None:
    try:
        module = importlib.import_module("fleetops.services.rollouts")
    except ImportError:
        return None
    return module if hasattr(module, "plan_rollout") else None


def run(bench: env.Bench, *, instances: int, say: Callable[[str], None] = print) -> list[Row]:
    service = _service()
    name = f"plan {instances:,} instances"
    if service is None:
        return [
            Row(
                "rollout",
                name,
                "not available: fleetops.services.rollouts.plan_rollout does not exist",
                f"< {TARGET_SECONDS:g} s, <= {TARGET_WRITES_PER_INSTANCE:g} writes/instance",
                None,
            )
        ]
    from fleetops.domain.model import Action
    from fleetops.services.rollouts import RolloutDeps, StartRollout, plan_rollout

    project = env.new_project("bench-rollout")
    store = env.state_store(project)
    ids = [f"fleet-{i:05d}" for i in range(instances)]
    seeded_in = env.seed_instances(store, ids)
    say(f"  rollout: {instances} instances written in {seeded_in:.1f}s")
    before = store.counters.snapshot()
    timed = _TimedStore(store)
    deps = RolloutDeps(timed, _NoPublisher(), lambda: datetime.now(UTC))  # type: ignore[arg-type]
    began = time.perf_counter()
    rollout = plan_rollout(StartRollout(action=Action.UPGRADE, version="2.0.0"), deps)
    seconds = time.perf_counter() - began
    after = store.counters.snapshot()
    reads = after["reads"] - before["reads"]
    writes = after["writes"] - before["writes"]
    per_instance = writes / instances
    targets = sum(len(w.instances) for w in rollout.waves)
    say(f"  rollout: planned {targets} targets in {len(rollout.waves)} waves in {seconds:.1f}s")
    bench.reset_firestore(project)
    return [
        Row(
            "rollout",
            name,
            f"{seconds:.1f} s (listing {timed.seconds['list_instances']:.1f} s, writing "
            f"{timed.seconds['write_documents']:.1f} s), {reads:,} reads, {writes:,} writes "
            f"({per_instance:.2f}/instance)",
            f"< {TARGET_SECONDS:g} s, <= {TARGET_WRITES_PER_INSTANCE:g} writes/instance",
            seconds < TARGET_SECONDS and per_instance <= TARGET_WRITES_PER_INSTANCE,
            data={
                "instances": instances,
                "seconds": round(seconds, 2),
                "reads": reads,
                "writes": writes,
                "transactions": after["transactions"] - before["transactions"],
                "waves": [len(w.instances) for w in rollout.waves],
                "seeded_in": round(seeded_in, 2),
                "phases": {k: round(v, 2) for k, v in timed.seconds.items()},
            },
        ),
        Row(
            "rollout",
            f"write {instances:,} instances (batched writer)",
            f"{seeded_in:.1f} s ({instances / seeded_in:,.0f} docs/s)",
            data={"seconds": round(seeded_in, 2)},
        ),
    ]


class _TimedStore:
    """Delegates to the real store, timing the two calls planning is made of."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.seconds = {"list_instances": 0.0, "write_documents": 0.0}

    def list_instances(self, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return self._store.list_instances(**kwargs)
        finally:
            self.seconds["list_instances"] += time.perf_counter() - began

    def write_documents(self, items: Any) -> None:
        began = time.perf_counter()
        try:
            self._store.write_documents(items)
        finally:
            self.seconds["write_documents"] += time.perf_counter() - began

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _NoPublisher:
    """Planning publishes nothing; anything published would be a finding."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, topic: str, data: bytes, attributes: object) -> str:
        self.published.append(topic)
        return str(len(self.published))
