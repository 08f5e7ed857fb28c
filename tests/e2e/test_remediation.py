"""Remediation end to end: real kills, the local prober, the alerts function, real restarts."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from fleetops.contract.names import TOPIC_EVENTS
from tests.e2e.stack import ADMIN, RunningStack


@pytest.fixture(scope="module")
def stack(emulator_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = RunningStack(tmp_path_factory.mktemp("remediation"), instances=10)
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill_everything()


@pytest.fixture
def fresh(stack: RunningStack) -> RunningStack:
    """Each test starts with automation running and the circuit breaker's count at zero."""
    assert stack.cli("automation", "resume", principal=ADMIN).returncode == 0
    assert stack.cli("automation", "dry-run", "false", principal=ADMIN).returncode == 0
    return stack


class Events:
    """A pull subscription on fleetops-events made before the test acts."""

    def __init__(self, stack: RunningStack) -> None:
        os.environ.update(stack.env)
        from fleetops.adapters.pubsub_admin import PubsubAdmin

        self.admin = PubsubAdmin(stack.env["GOOGLE_CLOUD_PROJECT"])
        self.name = f"test-events-{uuid.uuid4().hex[:8]}"
        self.admin.ensure_pull_subscription(self.name, TOPIC_EVENTS)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def collect(self) -> list[tuple[str, dict[str, Any]]]:
        received = self.admin.pull(self.name, timeout=1)
        self.admin.ack(self.name, [r.ack_id for r in received])
        for r in received:
            self.seen.append((r.message.attributes["ce-type"], json.loads(r.message.data)))
        return self.seen

    def escalations(self) -> list[dict[str, Any]]:
        return [d for t, d in self.collect() if t == "fleetops.remediation.escalated"]


def show(stack: RunningStack, instance: str, *, direct: bool = False) -> dict[str, Any]:
    result = stack.cli("instances", "show", instance, "--output", "json", direct=direct)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def decisions(stack: RunningStack, instance: str) -> list[dict[str, Any]]:
    """Remediation decisions, through the API when it serves them (null when it does not),
    else straight from Firestore: they are what these tests are about."""
    found = show(stack, instance)["decisions"]
    if found is None:
        found = show(stack, instance, direct=True)["decisions"]
    return list(found)


def decisions_served(stack: RunningStack) -> bool:
    return show(stack, "demo-1")["decisions"] is not None


def remediation_ops(stack: RunningStack, instance: str) -> list[dict[str, Any]]:
    return [o for o in show(stack, instance)["operations"] if o["origin"] == "remediation"]


def pid_of(stack: RunningStack, instance: str) -> int:
    view = stack.agent(f"/v1/instances/{instance}")
    assert view is not None
    return int(view["pid"])


def healthy(endpoint: str) -> bool:
    try:
        return requests.get(f"{endpoint}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout}s: {what}")


def when(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def test_a_killed_instance_is_restarted_and_healthy_within_30_seconds(fresh: RunningStack) -> None:
    stack = fresh
    endpoint = show(stack, "demo-1")["endpoint"]
    killed_at = time.time()
    os.kill(pid_of(stack, "demo-1"), signal.SIGKILL)
    wait_until(lambda: not healthy(endpoint), 5, "the instance dies")
    wait_until(
        lambda: healthy(endpoint) and remediation_ops(stack, "demo-1"), 30, "healed by remediation"
    )
    healed_at = time.time()
    wait_until(lambda: show(stack, "demo-1")["health"] == "healthy", 10, "marked healthy")
    [op] = remediation_ops(stack, "demo-1")
    assert (op["action"], op["status"]) == ("restart", "succeeded")
    made = decisions(stack, "demo-1")
    [incident_decision] = [d for d in made if d["verdict"] == "acted"]
    incident = stack.cli("instances", "show", "demo-1", direct=not decisions_served(stack)).stdout
    assert "acted" in incident
    opened = incident_decision["at"]
    print(
        f"\nkill -> healthy {healed_at - killed_at:.1f}s: detection "
        f"{when(opened) - killed_at:.1f}s, pipeline "
        f"{when(op['created_at']) - when(opened):.1f}s, restart "
        f"{when(op['finished_at']) - when(op['created_at']):.1f}s"
    )
    assert incident_decision["operation"] == op["id"]


def test_the_same_incident_delivered_three_times_gives_one_remediation(
    fresh: RunningStack,
) -> None:
    stack = fresh
    incident = f"dup-{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        assert stack.cli("alert", "demo-3", "--incident", incident).returncode == 0
    wait_until(lambda: remediation_ops(stack, "demo-3"), 20, "a remediation starts")
    time.sleep(3)
    assert len(remediation_ops(stack, "demo-3")) == 1
    assert stack.cli("alert", "demo-3", "--close").returncode == 0


def test_a_dry_run_records_its_plan_and_touches_nothing(fresh: RunningStack) -> None:
    stack = fresh
    assert stack.cli("automation", "dry-run", "true", principal=ADMIN).returncode == 0
    before = pid_of(stack, "demo-4")
    assert stack.cli("alert", "demo-4").returncode == 0
    wait_until(
        lambda: any(d["verdict"] == "dry_run" for d in decisions(stack, "demo-4")),
        20,
        "a dry-run decision",
    )
    time.sleep(2)
    [op] = remediation_ops(stack, "demo-4")
    assert op["dry_run"] is True
    assert all(s["status"] == "skipped" for s in op["steps"])
    assert pid_of(stack, "demo-4") == before
    assert stack.cli("alert", "demo-4", "--close").returncode == 0


def test_a_crash_looping_instance_gets_three_remediations_then_one_escalation(
    fresh: RunningStack,
) -> None:
    stack = fresh
    events = Events(stack)
    assert stack.cli("automation", "set", "cooldown_seconds", "2", principal=ADMIN).returncode == 0
    faults = requests.put(
        f"{stack.env['FLEETOPS_AGENT_URL']}/v1/instances/demo-2/faults",
        json={"fail_start_versions": ["1.0.0"], "unhealthy_versions": []},
        timeout=5,
    )
    assert faults.status_code == 200
    os.kill(pid_of(stack, "demo-2"), signal.SIGKILL)
    wait_until(events.escalations, 120, "an escalation")
    time.sleep(15)  # anything that would act again has had time to
    ops = remediation_ops(stack, "demo-2")
    assert sorted(o["action"] for o in ops) == ["replace", "restart", "restart"]
    assert all(o["status"] == "failed" for o in ops)
    [escalation] = events.escalations()
    assert escalation["instance"] == "demo-2"
    assert (
        stack.cli("automation", "set", "cooldown_seconds", "300", principal=ADMIN).returncode == 0
    )


def test_killing_half_the_fleet_opens_the_circuit_and_escalates_once(fresh: RunningStack) -> None:
    stack = fresh
    events = Events(stack)
    victims = ["demo-5", "demo-6", "demo-7", "demo-8", "demo-9"]
    started = {v: len(remediation_ops(stack, v)) for v in victims}
    for victim in victims:
        os.kill(pid_of(stack, victim), signal.SIGKILL)
    wait_until(
        lambda: json.loads(stack.cli("automation", "status", "--output", "json").stdout)["circuit"][
            "open"
        ],
        60,
        "the circuit opens",
    )
    time.sleep(15)
    acted = sum(len(remediation_ops(stack, v)) - started[v] for v in victims)
    assert acted <= 1  # the concurrency cap for 10 instances
    fleet_wide = [e for e in events.escalations() if e["fleet_wide"]]
    assert len(fleet_wide) == 1
    verdicts = {d["verdict"] for v in victims for d in decisions(stack, v)}
    assert "circuit_open" in verdicts
