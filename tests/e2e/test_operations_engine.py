"""The operations engine end to end: every action on real processes, rollback, approvals,
a function killed mid-step, duplicates, and a queue of ten."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from fleetops.contract.names import TOPIC_REQUESTS
from fleetops.contract.pubsub import encode_binary
from fleetops.contract.requests import new_request_event
from tests.e2e.stack import ADMIN, ADMIN2, OPERATOR, RunningStack


def request(stack: RunningStack, *args: str) -> dict[str, Any]:
    result = stack.cli("request", *args, "--wait", "--output", "json")
    assert result.stdout, result.stderr
    return dict(json.loads(result.stdout))


def agent_view(stack: RunningStack, instance: str) -> dict[str, Any]:
    view = stack.agent(f"/v1/instances/{instance}")
    assert view is not None
    return dict(view)


def starts(stack: RunningStack, instance: str) -> int:
    app = stack.state_dir / "instances" / instance / "data" / "app.json"
    return int(json.loads(app.read_text())["starts"])


def serving(endpoint: str) -> tuple[int, str | None]:
    health = requests.get(f"{endpoint}/healthz", timeout=5).status_code
    version = requests.get(f"{endpoint}/version", timeout=5).json().get("version")
    return health, version


def instance_doc(stack: RunningStack, instance: str) -> dict[str, Any]:
    shown = stack.cli("instances", "show", instance, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def operations_pids(stack: RunningStack) -> set[int]:
    return {
        p.pid
        for p in stack.descendants()
        if "run_step" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    }


def publish_twice(stack: RunningStack, data: dict[str, Any]) -> str:
    from tests.e2e.test_local_stack import PubsubClient

    client = PubsubClient(stack)
    try:
        event = new_request_event(data, source="//tests/e2e", event_id=str(uuid.uuid4()))
        body, attributes = encode_binary(event)
        client.publisher.publish(TOPIC_REQUESTS, body, attributes)
        client.publisher.publish(TOPIC_REQUESTS, body, attributes)
    finally:
        client.close()
    from fleetops.services.requests import operation_id_for

    return operation_id_for(event.source, event.id)


def test_every_action_from_request_to_final_state(stack: RunningStack) -> None:
    assert request(stack, "eng-1", "provision", "--version", "1.0.0")["status"] == "succeeded"
    endpoint = instance_doc(stack, "eng-1")["endpoint"]

    upgraded = request(stack, "eng-1", "upgrade", "--version", "2.0.0")
    assert upgraded["status"] == "succeeded"
    assert serving(endpoint) == (200, "2.0.0")
    assert instance_doc(stack, "eng-1")["version"] == "2.0.0"
    assert instance_doc(stack, "eng-1")["latest_snapshot"]

    resized = request(stack, "eng-1", "resize", "--size", "large")
    assert resized["status"] == "succeeded"
    assert agent_view(stack, "eng-1")["size"] == "large"

    before = agent_view(stack, "eng-1")["pid"]
    assert request(stack, "eng-1", "restart")["status"] == "succeeded"
    assert agent_view(stack, "eng-1")["pid"] != before
    assert serving(endpoint) == (200, "2.0.0")

    assert request(stack, "eng-1", "suspend")["status"] == "succeeded"
    assert agent_view(stack, "eng-1")["running"] is False
    assert instance_doc(stack, "eng-1")["state"] == "suspended"

    assert request(stack, "eng-1", "resume")["status"] == "succeeded"
    assert serving(endpoint) == (200, "2.0.0")
    assert instance_doc(stack, "eng-1")["state"] == "running"

    snap = request(stack, "eng-1", "snapshot")
    assert snap["status"] == "succeeded"
    snapshot = Path(snap["outputs"]["snapshot"])
    assert (snapshot / "app.json").is_file()

    pid = agent_view(stack, "eng-1")["pid"]
    deleted = stack.approved("eng-1", "delete")
    assert deleted["status"] == "succeeded"
    assert deleted["requested_by"] == OPERATOR
    assert deleted["approved_by"] == ADMIN
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (stack.state_dir / "instances" / "eng-1").exists()


def test_an_upgrade_that_never_turns_healthy_is_rolled_back(stack: RunningStack) -> None:
    assert request(stack, "eng-2", "provision", "--version", "1.0.0")["status"] == "succeeded"
    faults = requests.put(
        f"{stack.env['FLEETOPS_AGENT_URL']}/v1/instances/eng-2/faults",
        json={"unhealthy_versions": ["6.6.6"], "fail_start_versions": []},
        timeout=5,
    )
    assert faults.status_code == 200, faults.text
    op = request(stack, "eng-2", "upgrade", "--version", "6.6.6")
    assert op["status"] == "failed"
    assert op["error"].endswith("rolled back to version 1.0.0")
    assert [s["name"] for s in op["steps"] if s["compensation"]] == [
        "stop_instance",
        "restore_version",
        "start_instance",
        "wait_healthy",
    ]
    doc = instance_doc(stack, "eng-2")
    assert (doc["state"], doc["version"], doc["health"]) == ("running", "1.0.0", "healthy")
    assert serving(doc["endpoint"]) == (200, "1.0.0")
    shown = stack.cli("ops", "show", op["id"])
    assert "restore_version (rollback)" in shown.stdout
    assert "compensating" in shown.stdout


def test_a_delete_waits_for_a_second_person(stack: RunningStack) -> None:
    assert request(stack, "eng-3", "provision", "--version", "1.0.0")["status"] == "succeeded"
    asked = stack.cli("request", "eng-3", "delete", "--output", "json", principal=ADMIN)
    op_id = json.loads(asked.stdout)["operation"]
    time.sleep(2)
    waiting = json.loads(stack.cli("ops", "show", op_id, "--output", "json").stdout)
    assert waiting["status"] == "awaiting_approval"
    assert waiting["requested_by"] == ADMIN
    operator = stack.cli("ops", "approve", op_id)
    assert operator.returncode == 1
    assert operator.stderr.strip() == (
        f"error: approving an operation needs the admin role; you are {OPERATOR} (operator)"
    )
    own = stack.cli("ops", "approve", op_id, principal=ADMIN)  # approving one's own request
    assert own.returncode == 1
    assert "a second person must" in own.stderr
    assert "Traceback" not in own.stderr
    assert agent_view(stack, "eng-3")["running"] is True
    second = stack.cli("--as", "admin2", "ops", "approve", op_id, "--output", "json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["approved_by"] == ADMIN2
    done = json.loads(stack.cli("ops", "wait", op_id, "--output", "json").stdout)
    assert done["status"] == "succeeded"
    assert stack.agent("/v1/instances/eng-3") is None


def test_the_same_request_delivered_twice_restarts_once(stack: RunningStack) -> None:
    assert request(stack, "eng-4", "provision", "--version", "1.0.0")["status"] == "succeeded"
    before = starts(stack, "eng-4")
    op_id = publish_twice(stack, {"instance": "eng-4", "action": "restart"})
    waited = json.loads(stack.cli("ops", "wait", op_id, "--output", "json").stdout)
    assert waited["status"] == "succeeded"
    time.sleep(2)
    assert starts(stack, "eng-4") == before + 1
    ops = json.loads(stack.cli("ops", "list", "--instance", "eng-4", "--output", "json").stdout)
    assert [o["action"] for o in ops] == ["restart", "provision"]


def test_a_function_killed_after_the_effect_and_before_the_record_restarts_once(
    stack: RunningStack,
) -> None:
    assert request(stack, "eng-5", "provision", "--version", "1.0.0")["status"] == "succeeded"
    before = starts(stack, "eng-5")
    before_pids = operations_pids(stack)
    assert before_pids
    crash = stack.state_dir / "faults" / "crash-after-effect" / "eng-5"
    crash.parent.mkdir(parents=True, exist_ok=True)
    crash.touch()
    op = request(stack, "eng-5", "restart")
    assert op["status"] == "succeeded"
    assert not crash.exists(), "the operations function never reached the crash point"
    # functions-framework serves from a worker process that its master replaces.
    assert before_pids - operations_pids(stack), "no operations process was killed"
    assert starts(stack, "eng-5") == before + 1
    assert op["steps"][0]["attempts"] == 1


def test_ten_requests_for_one_instance_run_one_at_a_time_in_order(stack: RunningStack) -> None:
    assert request(stack, "eng-6", "provision", "--version", "1.0.0")["status"] == "succeeded"
    ids = []
    for n in range(10):
        published = stack.cli(
            "request", "eng-6", "snapshot", "--reason", f"n{n}", "--output", "json"
        )
        ids.append(json.loads(published.stdout)["operation"])
    ops = [json.loads(stack.cli("ops", "wait", i, "--output", "json").stdout) for i in ids]
    assert [o["status"] for o in ops] == ["succeeded"] * 10
    assert [o["reason"] for o in ops] == [f"n{n}" for n in range(10)]
    spans = sorted((o["started_at"], o["finished_at"]) for o in ops)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    by_start = [o["reason"] for o in sorted(ops, key=lambda o: o["started_at"])]
    by_request = [o["reason"] for o in sorted(ops, key=lambda o: o["created_at"])]
    assert by_start == by_request


@pytest.fixture(scope="module")
def stack(emulator_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = RunningStack(tmp_path_factory.mktemp("engine"), instances=0)
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill_everything()
