"""Rollouts on fakes: waves, windows, rate control, error budgets, health gates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetops.contract.names import TOPIC_EVENTS
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import Origin
from fleetops.domain.rollouts import Limit, RolloutStatus
from fleetops.services.rollouts import StartRollout, plan_rollout, progress, set_status
from tests.helpers import FakeFleet

SUNDAY_3AM_NEW_YORK = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # 03:00 EST
NY_SUNDAYS = {"days": ["sun"], "start": "02:00", "duration": "4h", "timezone": "America/New_York"}
TOKYO_WEDNESDAYS = {"days": ["wed"], "start": "01:00", "duration": "2h", "timezone": "Asia/Tokyo"}


def fleet_with(specs: list[dict[str, Any]]) -> FakeFleet:
    fleet = FakeFleet()
    for spec in specs:
        fleet.request({"action": "provision", "version": "1.0.0", **spec})
    fleet.drain(limit=5000)
    fleet.publisher.take(TOPIC_EVENTS)
    return fleet


def ten(**extra: Any) -> FakeFleet:
    specs = [{"instance": f"inst-{n:02d}", "labels": {"group": "g"}} for n in range(10)]
    specs[0]["labels"] = {"group": "g", "ring": "canary"}
    for spec in specs:
        spec.update(extra)
    return fleet_with(specs)


def start(fleet: FakeFleet, **options: Any) -> Any:
    command = StartRollout(version="2.0.0", requested_by="alice", bake=timedelta(0), **options)
    return plan_rollout(command, fleet.rollout_deps)


def upgraded(fleet: FakeFleet) -> list[str]:
    return sorted(
        o.instance
        for o in fleet.store.list_operations(limit=10**6)
        if o.origin is Origin.MAINTENANCE and o.status.value == "succeeded"
    )


def run_to_end(fleet: FakeFleet, rollout_id: str, *, at: datetime | None = None) -> Any:
    for _ in range(100):
        fleet.tick(at)
        found, _ = progress(rollout_id, fleet.store)
        if found.status.terminal:
            return found
        if at is not None:
            at += timedelta(minutes=5)
        fleet.clock.advance(timedelta(minutes=5))
    raise AssertionError("the rollout never ended")


def test_waves_put_the_canary_first_then_up_to_four_batches() -> None:
    rollout = start(ten(), respect_windows=False)
    assert [w.name for w in rollout.waves] == ["canary", "batch 1", "batch 2", "batch 3", "batch 4"]
    assert rollout.waves[0].instances == ("inst-00",)
    assert sum(len(w.instances) for w in rollout.waves) == 10
    assert rollout.max_concurrency == 1  # 10% of 10


def test_now_upgrades_everything_in_waves_within_max_concurrency() -> None:
    fleet = ten()
    rollout = start(fleet, respect_windows=False, max_concurrency=Limit(2, percent=False))
    peak = 0
    for _ in range(100):
        from fleetops.services.rollouts import advance_all

        advance_all(fleet.clock.now(), fleet.rollout_deps)
        running = [
            o for o in fleet.store.list_operations(limit=1000) if o.status.value == "running"
        ]
        peak = max(peak, len(running))
        fleet.drain(limit=5000)
        found, _ = progress(rollout.id, fleet.store)
        if found.status.terminal:
            break
    assert found.status is RolloutStatus.SUCCEEDED
    assert peak <= 2
    assert upgraded(fleet) == [f"inst-{n:02d}" for n in range(10)]
    ops = [o for o in fleet.store.list_operations(limit=100) if o.origin is Origin.MAINTENANCE]
    assert {o.request_id for o in ops} == {rollout.id}
    assert all(fleet.store.get_instance(f"inst-{n:02d}").version == "2.0.0" for n in range(10))  # type: ignore[union-attr]


def test_only_instances_whose_window_is_open_get_upgraded() -> None:
    fleet = fleet_with(
        [
            {"instance": "ny-1", "maintenance_window": NY_SUNDAYS},
            {"instance": "ny-2", "maintenance_window": NY_SUNDAYS},
            {"instance": "tokyo-1", "maintenance_window": TOKYO_WEDNESDAYS},
        ]
    )
    rollout = start(fleet, canary=None, max_concurrency=Limit(100, percent=True))
    for minutes in range(0, 60, 5):
        fleet.tick(SUNDAY_3AM_NEW_YORK + timedelta(minutes=minutes))
    assert upgraded(fleet) == ["ny-1", "ny-2"]
    _, waves = progress(rollout.id, fleet.store)
    assert sum(w.counts["pending"] for w in waves) == 1
    reason = fleet.store.get_document(f"rollouts/{rollout.id}/targets/tokyo-1")["reason"]  # type: ignore[index]
    assert reason.startswith("window closed, next opening at Wed")


def test_the_cutoff_keeps_an_upgrade_out_of_a_closing_window() -> None:
    fleet = fleet_with([{"instance": "ny-1", "maintenance_window": NY_SUNDAYS}])
    start(fleet, canary=None)
    fleet.tick(SUNDAY_3AM_NEW_YORK + timedelta(hours=2, minutes=31))  # 05:31, 29 minutes left
    assert upgraded(fleet) == []
    fleet.tick(SUNDAY_3AM_NEW_YORK + timedelta(days=7))
    assert upgraded(fleet) == ["ny-1"]


def test_a_freeze_stops_maintenance() -> None:
    fleet = fleet_with([{"instance": "ny-1", "maintenance_window": NY_SUNDAYS}])
    freeze = {
        "start": "2026-02-25T00:00:00Z",
        "end": "2026-03-02T00:00:00Z",
        "reason": "quarter end",
    }
    fleet.store.transact(lambda tx: tx.put_document("maintenance/settings", {"freezes": [freeze]}))
    rollout = start(fleet, canary=None)
    fleet.tick(SUNDAY_3AM_NEW_YORK)
    assert upgraded(fleet) == []
    reason = fleet.store.get_document(f"rollouts/{rollout.id}/targets/ny-1")["reason"]  # type: ignore[index]
    assert "quarter end" in reason


def test_a_canary_failure_halts_before_any_other_instance_is_touched() -> None:
    fleet = ten()
    fleet.actuator.broken["inst-00"] = {"2.0.0"}
    rollout = run_to_end(fleet, start(fleet, respect_windows=False).id)
    assert rollout.status is RolloutStatus.HALTED
    assert "canary" in rollout.halted_reason
    touched = {
        o.instance for o in fleet.store.list_operations(limit=100) if o.origin is Origin.MAINTENANCE
    }
    assert touched == {"inst-00"}
    halted = [
        json.loads(m.data)
        for m in fleet.publisher.on(TOPIC_EVENTS)
        if m.attributes["ce-type"] == "fleetops.rollout.halted"
    ]
    assert [h["rollout"] for h in halted] == [rollout.id]


def test_max_errors_one_with_three_broken_instances_fails_exactly_two() -> None:
    fleet = ten()
    for name in ("inst-01", "inst-02", "inst-03"):
        fleet.actuator.broken[name] = {"2.0.0"}
    rollout = run_to_end(
        fleet,
        start(fleet, respect_windows=False, canary=None, max_errors=Limit(1, percent=False)).id,
    )
    assert rollout.status is RolloutStatus.HALTED
    failed = [
        o.instance
        for o in fleet.store.list_operations(limit=100)
        if o.origin is Origin.MAINTENANCE and o.status.value == "failed"
    ]
    assert sorted(failed) == ["inst-01", "inst-02"]
    started = {
        o.instance for o in fleet.store.list_operations(limit=100) if o.origin is Origin.MAINTENANCE
    }
    assert started == {"inst-00", "inst-01", "inst-02"}


def test_pause_and_resume() -> None:
    fleet = ten()
    rollout = start(fleet, respect_windows=False, canary=None)
    set_status(rollout.id, RolloutStatus.PAUSED, "bob", fleet.rollout_deps)
    fleet.tick()
    assert upgraded(fleet) == []
    with pytest.raises(DecisionError, match="is paused"):
        set_status(rollout.id, RolloutStatus.PAUSED, "bob", fleet.rollout_deps)
    set_status(rollout.id, RolloutStatus.RUNNING, "bob", fleet.rollout_deps)
    fleet.tick()
    assert upgraded(fleet) == ["inst-00"]


def test_the_kill_switch_stops_maintenance_too() -> None:
    from fleetops.services import automation

    fleet = ten()
    start(fleet, respect_windows=False, canary=None)
    automation.pause(fleet.store, "oncall")
    fleet.tick()
    assert upgraded(fleet) == []


def test_a_rollout_of_another_action_over_a_selector() -> None:
    fleet = fleet_with(
        [
            {"instance": "ent-1", "labels": {"plan": "enterprise"}},
            {"instance": "std-1", "labels": {"plan": "standard"}},
        ]
    )
    command = StartRollout(
        action=__import__("fleetops.domain.model", fromlist=["Action"]).Action.SNAPSHOT,
        selector={"plan": "enterprise"},
        canary=None,
        respect_windows=False,
        bake=timedelta(0),
        requested_by="alice",
    )
    rollout = run_to_end(fleet, plan_rollout(command, fleet.rollout_deps).id)
    assert rollout.status is RolloutStatus.SUCCEEDED
    snapped = [
        o.instance for o in fleet.store.list_operations(limit=10) if o.origin is Origin.MAINTENANCE
    ]
    assert snapped == ["ent-1"]


def test_an_unhealthy_instance_during_the_bake_halts_the_wave() -> None:
    fleet = ten()
    rollout = start(fleet, respect_windows=False, canary=None)
    rollout_id = plan_rollout(
        StartRollout(version="2.0.0", requested_by="a", canary="1", bake=timedelta(minutes=10)),
        fleet.rollout_deps,
    ).id
    set_status(rollout.id, RolloutStatus.ABORTED, "a", fleet.rollout_deps)
    fleet.store.transact(lambda tx: tx.put_document("automation/settings", {"dry_run": False}))
    fleet.tick()  # the canary upgrades
    instance = fleet.store.get_instance("inst-00")
    assert instance is not None
    fleet.store.transact(
        lambda tx: tx.put_instance(
            instance.evolve(
                health=__import__("fleetops.domain.model", fromlist=["Health"]).Health.UNHEALTHY
            )
        )
    )
    found = run_to_end(fleet, rollout_id)
    assert found.status is RolloutStatus.HALTED
    assert "unhealthy during the bake" in found.halted_reason


def test_selectors_match_labels_and_fields_and_negate() -> None:
    from fleetops.domain.rollouts import matches, parse_selector

    fleet = ten()
    canary = fleet.store.get_instance("inst-00")
    other = fleet.store.get_instance("inst-01")
    assert canary is not None
    assert other is not None
    assert matches(canary, parse_selector("ring=canary,group=g"))
    assert not matches(other, parse_selector("ring=canary"))
    assert matches(other, parse_selector("ring!=canary"))
    assert not matches(canary, parse_selector("ring!=canary"))
    assert matches(other, parse_selector("version=1.0.0,size=small"))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_selector("nonsense")


class _ProjectionOnly:
    """The fleet's store, but listing instances only as a projection; notes what it read."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.fields: list[Any] = []

    def list_instances(self, **options: Any) -> Any:
        self.fields.append(options.get("fields"))
        assert options.get("fields"), "planning must list a projection, not whole instances"
        return self._store.list_instances(**options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.mark.parametrize(
    "selector",
    [
        {},
        {"region": "europe-west1"},
        {"customer": "beta"},
        {"size": "large"},
        {"version": "1.0.0"},
        {"id": "inst-03"},
        {"tier": "gold"},
        {"!tier": "gold"},
    ],
)
def test_planning_reads_a_projection_and_chooses_as_from_whole_instances(
    selector: dict[str, str],
) -> None:
    from dataclasses import replace

    from fleetops.domain.model import Action, InstanceState
    from fleetops.domain.rollouts import eligible, matches

    fleet = fleet_with(
        [
            {
                "instance": f"inst-{n:02d}",
                "region": ["europe-west1", "us-central1"][n % 2],
                "customer": ["acme", "beta", "gamma"][n % 3],
                "size": ["small", "large"][n // 4 % 2],
                "labels": {"tier": "gold"} if n % 3 == 0 else {"ring": "canary"},
            }
            for n in range(8)
        ]
    )
    suspended = fleet.store.get_instance("inst-05")
    assert suspended is not None
    fleet.store.transact(
        lambda tx: tx.put_instance(suspended.evolve(state=InstanceState.SUSPENDED))
    )
    whole = [
        i.id
        for i in fleet.store.list_instances()
        if matches(i, selector) and eligible(i, Action.UPGRADE)
    ]
    projected = _ProjectionOnly(fleet.store)
    deps = replace(fleet.rollout_deps, store=projected)
    rollout = plan_rollout(
        StartRollout(version="2.0.0", selector=selector, canary="ring=canary"), deps
    )
    assert sorted(i for w in rollout.waves for i in w.instances) == whole
    canaries = [i.id for i in fleet.store.list_instances() if i.labels.get("ring") == "canary"]
    canary_wave = [w.instances for w in rollout.waves if w.name == "canary"]
    assert set(*canary_wave) == set(canaries) & set(whole)
    assert projected.fields
    assert all(projected.fields)


def test_planning_leaves_out_instances_already_at_the_version() -> None:
    fleet = fleet_with(
        [{"instance": f"inst-{n:02d}", "version": "2.0.0" if n < 6 else "1.0.0"} for n in range(10)]
    )
    rollout = start(fleet, canary=None)
    assert sorted(i for w in rollout.waves for i in w.instances) == [
        "inst-06",
        "inst-07",
        "inst-08",
        "inst-09",
    ]
    assert "6 already at 2.0.0" in rollout.history[0]["detail"]
