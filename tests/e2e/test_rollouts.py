"""Rollouts end to end: ticks replayed at chosen times on a stack of real instances."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from fleetops.contract.names import EVENT_MAINTENANCE_TICK, TOPIC_MAINTENANCE, TOPIC_REQUESTS
from fleetops.contract.pubsub import CloudEvent, encode_binary
from fleetops.contract.requests import new_request_event
from tests.e2e.stack import ADMIN, OPERATOR, RunningStack

SUNDAY_3AM_NEW_YORK = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NY_SUNDAYS = {"days": ["sun"], "start": "02:00", "duration": "4h", "timezone": "America/New_York"}
TOKYO_WEDNESDAYS = {"days": ["wed"], "start": "01:00", "duration": "2h", "timezone": "Asia/Tokyo"}


@pytest.fixture(scope="module")
def stack(emulator_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = RunningStack(tmp_path_factory.mktemp("rollouts"), instances=10)
    try:
        running.wait_ready()
        paused = running.cli("maintenance", "pause", "--output", "json", principal=ADMIN)
        assert paused.returncode == 0, paused.stderr
        yield running
    finally:
        running.kill_everything()


class Publisher:
    def __init__(self, stack: RunningStack) -> None:
        os.environ.update(stack.env)
        from fleetops.adapters.pubsub_publisher import PubsubPublisher

        self.publisher = PubsubPublisher(stack.env["GOOGLE_CLOUD_PROJECT"])

    def tick(self, at: datetime) -> None:
        event = CloudEvent(
            id=f"test-{uuid.uuid4().hex[:8]}",
            source="//tests/e2e/ticks",
            type=EVENT_MAINTENANCE_TICK,
            data={"job": "replayed"},
            time=at,
        )
        data, attributes = encode_binary(event)
        self.publisher.publish(TOPIC_MAINTENANCE, data, attributes)

    def provision(self, instance: str, **extra: Any) -> None:
        event = new_request_event(
            {"instance": instance, "action": "provision", "version": "1.0.0", **extra},
            source="//tests/e2e",
        )
        data, attributes = encode_binary(event)
        self.publisher.publish(TOPIC_REQUESTS, data, attributes)


@pytest.fixture(scope="module")
def ticks(stack: RunningStack) -> Publisher:
    return Publisher(stack)


def rollout(stack: RunningStack, *args: str, version: str = "2.0.0") -> str:
    result = stack.cli(
        "rollout", "start", "--version", version, "--bake", "0", *args, "--output", "json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout)["id"])


def shown(stack: RunningStack, rollout_id: str) -> dict[str, Any]:
    result = stack.cli("rollout", "show", rollout_id, "--output", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def maintenance_ops(stack: RunningStack, rollout_id: str) -> list[dict[str, Any]]:
    ops = json.loads(stack.cli("ops", "list", "--limit", "500", "--output", "json").stdout)
    return [o for o in ops if o["origin"] == "maintenance" and o["request_id"] == rollout_id]


def drive(
    stack: RunningStack,
    ticks: Publisher,
    rollout_id: str,
    at: datetime,
    timeout: float = 240,
    watch: Any = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks.tick(at)
        time.sleep(1.5)
        if watch is not None:
            watch()
        found = shown(stack, rollout_id)
        if found["status"] in ("succeeded", "halted", "aborted"):
            return found
    raise AssertionError(f"rollout {rollout_id} did not end: {shown(stack, rollout_id)}")


def faulty(stack: RunningStack, instance: str, version: str) -> None:
    response = requests.put(
        f"{stack.env['FLEETOPS_AGENT_URL']}/v1/instances/{instance}/faults",
        json={"unhealthy_versions": [version], "fail_start_versions": []},
        timeout=5,
    )
    assert response.status_code == 200


def test_maintenance_pause_goes_through_the_scheduler_client(stack: RunningStack) -> None:
    status = json.loads(stack.cli("maintenance", "status", "--output", "json").stdout)
    assert status
    assert {job["state"] for job in status} == {"PAUSED"}
    refused = stack.cli("maintenance", "resume")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: resuming maintenance needs the admin role; you are {OPERATOR} (operator)"
    )
    resumed = stack.cli("maintenance", "resume", "--output", "json", principal=ADMIN)
    assert {job["state"] for job in json.loads(resumed.stdout)} == {"ENABLED"}
    paused = stack.cli("maintenance", "pause", "--output", "json", principal=ADMIN)
    assert {job["state"] for job in json.loads(paused.stdout)} == {"PAUSED"}


def test_only_instances_whose_window_is_open_get_upgraded(
    stack: RunningStack, ticks: Publisher
) -> None:
    for name, window in (
        ("win-ny-1", NY_SUNDAYS),
        ("win-ny-2", NY_SUNDAYS),
        ("win-tokyo", TOKYO_WEDNESDAYS),
    ):
        ticks.provision(name, labels={"group": "windows"}, maintenance_window=window)
    time.sleep(5)
    rollout_id = rollout(
        stack, "--selector", "group=windows", "--canary", "", "--max-concurrency", "100%"
    )
    for minutes in range(0, 40, 2):
        ticks.tick(SUNDAY_3AM_NEW_YORK + timedelta(minutes=minutes))
        time.sleep(1)
    time.sleep(5)
    done = sorted(
        o["instance"] for o in maintenance_ops(stack, rollout_id) if o["status"] == "succeeded"
    )
    assert done == ["win-ny-1", "win-ny-2"]
    assert shown(stack, rollout_id)["status"] == "running"  # tokyo still waits for Wednesday


def test_pause_resume_and_now_upgrade_everything_within_max_concurrency(
    stack: RunningStack, ticks: Publisher
) -> None:
    rollout_id = rollout(
        stack, "--selector", "ring!=canary", "--now", "--canary", "", "--max-concurrency", "2"
    )
    assert stack.cli("rollout", "pause", rollout_id).returncode == 0
    for _ in range(3):
        ticks.tick(datetime.now(UTC))
    time.sleep(3)
    assert maintenance_ops(stack, rollout_id) == []
    assert stack.cli("rollout", "resume", rollout_id).returncode == 0
    peak = 0

    def watch() -> None:
        nonlocal peak
        running = [o for o in maintenance_ops(stack, rollout_id) if o["status"] == "running"]
        peak = max(peak, len(running))

    found = drive(stack, ticks, rollout_id, datetime.now(UTC), watch=watch)
    assert found["status"] == "succeeded"
    assert peak <= 2
    assert len(found["waves"]) == 4
    assert [p["succeeded"] + p["skipped"] for p in found["progress"]] == [
        len(w["instances"]) for w in found["waves"]
    ]
    assert "batch 4" in stack.cli("rollout", "show", rollout_id).stdout


def test_a_canary_failure_halts_before_any_other_instance_is_touched(
    stack: RunningStack, ticks: Publisher
) -> None:
    faulty(stack, "demo-1", "3.0.0")
    wide = rollout(
        stack, "--now", "--canary", "ring=canary", "--max-concurrency", "1", version="3.0.0"
    )
    found = drive(stack, ticks, wide, datetime.now(UTC))
    assert found["status"] == "halted"
    assert "canary" in found["halted_reason"]
    touched = {o["instance"] for o in maintenance_ops(stack, wide)}
    assert touched == {"demo-1"}


def test_max_errors_one_with_three_broken_instances_fails_exactly_two(
    stack: RunningStack, ticks: Publisher
) -> None:
    for name in ("demo-2", "demo-3", "demo-4"):
        faulty(stack, name, "4.0.0")
    rollout_id = rollout(
        stack,
        "--selector",
        "ring!=canary",
        "--now",
        "--canary",
        "",
        "--max-concurrency",
        "1",
        "--max-errors",
        "1",
        version="4.0.0",
    )
    found = drive(stack, ticks, rollout_id, datetime.now(UTC), timeout=300)
    assert found["status"] == "halted"
    ops = maintenance_ops(stack, rollout_id)
    assert sorted(o["instance"] for o in ops if o["status"] == "failed") == ["demo-2", "demo-3"]
    assert "demo-4" not in {o["instance"] for o in ops}
