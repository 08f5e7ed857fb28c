"""Fleet rollouts: waves, rate control, error budgets and health gates, as pure functions.

A rollout carries one action (an upgrade by default) over the instances a
selector picks. It is planned once into waves: a canary wave first (instances
labelled, or the first N), then up to four batches of the rest. Each
maintenance tick advances it with the tick's own time:

- it starts targets of the current wave while fewer than `max_concurrency` run,
  each only inside its instance's maintenance window with enough time left
  (unless the rollout ignores windows), never during a freeze;
- errors count as Systems Manager counts them: with `max_errors` N no new
  target starts once N+1 have failed; those in flight finish, and the rollout
  halts;
- a failure in the canary wave halts the rollout before any other wave starts;
- a wave passes its health gate when all its targets are done and every
  succeeded instance has stayed healthy for the bake time; an unhealthy one
  halts the rollout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from fleetops.domain.model import Action, Health, Instance, InstanceState

MAX_BATCHES = 4


class RolloutStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    SUCCEEDED = "succeeded"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        return self in (RolloutStatus.SUCCEEDED, RolloutStatus.ABORTED, RolloutStatus.HALTED)


class TargetStatus(StrEnum):
    PENDING = "pending"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        return self in (TargetStatus.SUCCEEDED, TargetStatus.FAILED, TargetStatus.SKIPPED)


@dataclass(frozen=True)
class Limit:
    """`N` or `P%` of the rollout's targets."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> Limit:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
        if not match:
            raise ValueError(f"{text!r} is neither a number N nor a percentage P%")
        value, percent = float(match.group(1)), bool(match.group(2))
        if percent and value > 100:
            raise ValueError(f"{text!r}: a percentage is at most 100%")
        return cls(value, percent)

    def resolve(self, total: int, *, at_least: int) -> int:
        count = math.floor(total * self.value / 100) if self.percent else int(self.value)
        return max(at_least, count)

    def __str__(self) -> str:
        number = f"{self.value:g}"
        return f"{number}%" if self.percent else number


@dataclass(frozen=True)
class Wave:
    index: int
    name: str
    instances: tuple[str, ...]


@dataclass(frozen=True)
class Rollout:
    id: str
    action: Action
    status: RolloutStatus
    waves: tuple[Wave, ...]
    max_concurrency: int
    max_errors: int
    respect_windows: bool
    bake: timedelta
    cutoff: timedelta
    created_at: datetime
    updated_at: datetime
    created_by: str
    target_version: str | None = None
    size: str | None = None
    selector: Mapping[str, str] = field(default_factory=dict)
    max_concurrency_spec: str = "1"
    max_errors_spec: str = "0"
    current_wave: int = 0
    wave_done_at: datetime | None = None
    halted_reason: str | None = None
    finished_at: datetime | None = None
    history: tuple[dict[str, Any], ...] = ()

    @property
    def total(self) -> int:
        return sum(len(w.instances) for w in self.waves)

    def evolve(self, **changes: Any) -> Rollout:
        return replace(self, **changes)

    def noted(self, at: datetime, actor: str, event: str, detail: str = "") -> Rollout:
        entry = {"at": at, "actor": actor, "event": event, "detail": detail}
        return replace(self, history=(*self.history, entry), updated_at=at)


def matches(instance: Instance, selector: Mapping[str, str]) -> bool:
    """`tier=enterprise`, `region=europe-west1`: a label, or region, customer, size, version."""
    for raw_key, value in selector.items():
        negate = raw_key.startswith("!")
        key = raw_key.removeprefix("!")
        fields = {
            "region": instance.region,
            "customer": instance.customer,
            "size": instance.size.value,
            "version": instance.version,
            "id": instance.id,
        }
        actual = instance.labels.get(key, fields.get(key))
        if (actual == value) is negate:
            return False
    return True


def parse_selector(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        negate = key.endswith("!")
        key = key.removesuffix("!").strip()
        if not sep or not key:
            raise ValueError(f"selector {text!r}: each part must be KEY=VALUE or KEY!=VALUE")
        out[f"!{key}" if negate else key] = value.strip()
    return out


def plan_waves(instances: Sequence[Instance], canary: str | None) -> tuple[Wave, ...]:
    """Canary first (`N`: the first N, preferring `ring: canary`; or a selector), then batches."""
    ordered = sorted(instances, key=lambda i: (i.labels.get("ring") != "canary", i.id))
    canaries: list[Instance] = []
    if canary:
        if canary.strip().isdigit():
            canaries = ordered[: int(canary)]
        else:
            chosen = parse_selector(canary)
            canaries = [i for i in ordered if matches(i, chosen)]
    chosen_ids = {i.id for i in canaries}
    rest = [i.id for i in sorted(instances, key=lambda i: i.id) if i.id not in chosen_ids]
    waves: list[Wave] = []
    if canaries:
        waves.append(Wave(0, "canary", tuple(i.id for i in canaries)))
    if rest:
        # Sizes differ by at most one: 9 instances make batches of 3, 2, 2 and 2.
        batches = min(MAX_BATCHES, len(rest))
        base, extra = divmod(len(rest), batches)
        start = 0
        for n in range(batches):
            size = base + (1 if n < extra else 0)
            waves.append(Wave(len(waves), f"batch {n + 1}", tuple(rest[start : start + size])))
            start += size
    return tuple(waves)


def eligible(instance: Instance, action: Action) -> bool:
    if not instance.exists or instance.state is InstanceState.FAILED:
        return False
    return not (action is not Action.RESUME and instance.state is InstanceState.SUSPENDED)


@dataclass(frozen=True)
class WaveCounts:
    pending: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> bool:
        return self.pending == 0 and self.started == 0


@dataclass(frozen=True)
class TickFacts:
    now: datetime
    rollout: Rollout
    wave: WaveCounts
    total_failed: int
    total_started: int
    unhealthy_in_wave: tuple[str, ...]
    paused_by_automation: bool


@dataclass(frozen=True)
class TickPlan:
    """What a tick does: the rollout's new version, how many targets may start now."""

    rollout: Rollout
    may_start: int
    halted: str | None = None
    advanced: bool = False


def plan_tick(facts: TickFacts) -> TickPlan:
    r, now = facts.rollout, facts.now
    if r.status is not RolloutStatus.RUNNING or facts.paused_by_automation:
        return TickPlan(r, 0)
    wave = r.waves[r.current_wave]
    over_budget = facts.total_failed >= r.max_errors + 1
    canary_failed = wave.name == "canary" and facts.wave.failed > 0
    if (over_budget or canary_failed) and facts.wave.started == 0:
        why = (
            f"the canary wave had {facts.wave.failed} failure(s)"
            if canary_failed
            else f"{facts.total_failed} target(s) failed, more than max errors {r.max_errors}"
        )
        halted = r.evolve(status=RolloutStatus.HALTED, halted_reason=why, finished_at=now)
        return TickPlan(halted.noted(now, "fleetops/maintenance", "halted", why), 0, halted=why)
    if over_budget or canary_failed:
        return TickPlan(r, 0)  # those in flight finish first
    if facts.wave.done:
        if facts.unhealthy_in_wave:
            why = f"{', '.join(facts.unhealthy_in_wave)} unhealthy during the bake of {wave.name}"
            halted = r.evolve(status=RolloutStatus.HALTED, halted_reason=why, finished_at=now)
            return TickPlan(halted.noted(now, "fleetops/maintenance", "halted", why), 0, halted=why)
        done_at = r.wave_done_at or now
        if r.wave_done_at is None:
            r = r.evolve(wave_done_at=now).noted(
                now, "fleetops/maintenance", "wave done", f"{wave.name}: baking for {r.bake}"
            )
        if now - done_at < r.bake:
            return TickPlan(r, 0)
        if r.current_wave + 1 >= len(r.waves):
            done = r.evolve(status=RolloutStatus.SUCCEEDED, finished_at=now)
            return TickPlan(
                done.noted(now, "fleetops/maintenance", "succeeded", f"{r.total} target(s)"),
                0,
                advanced=True,
            )
        following = r.evolve(current_wave=r.current_wave + 1, wave_done_at=None)
        following = following.noted(
            now, "fleetops/maintenance", "wave passed", f"{wave.name} passed its health gate"
        )
        return TickPlan(following, 0, advanced=True)
    room = max(0, r.max_concurrency - facts.total_started)
    return TickPlan(r, min(room, facts.wave.pending))


def healthy_after(instance: Instance | None) -> bool:
    return (
        instance is not None
        and instance.health is Health.HEALTHY
        and instance.active_operation is None
    )
