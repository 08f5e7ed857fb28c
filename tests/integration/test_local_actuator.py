"""`LocalProcessActuator` against the real host agent, which runs real instance processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from fleetops.adapters.local_actuator import LocalInstance, LocalProcessActuator
from fleetops.domain.model import Size
from fleetops.ports import ActuatorError, InstanceSpec

INSTANCE_ID = "acme-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_gone(pids: list[int], deadline: float = 10.0) -> list[int]:
    end = time.monotonic() + deadline
    alive = pids
    while alive and time.monotonic() < end:
        time.sleep(0.05)
        alive = [pid for pid in alive if not gone(pid)]
    return alive


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    root: Path
    url: str
    log: Path

    def recorded_pids(self) -> list[int]:
        pids = []
        for record in self.root.glob("*/agent.json"):
            pid = json.loads(record.read_text(encoding="utf-8")).get("pid")
            if isinstance(pid, int):
                pids.append(pid)
        return pids

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    port = free_port()
    root = tmp_path / "instances"
    log = tmp_path / "agent.log"
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetops.local.agent",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--root",
                str(root),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = Agent(proc, root, f"http://127.0.0.1:{port}", log)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"agent exited: {log.read_text(encoding='utf-8')}")
            try:
                if requests.get(f"{running.url}/v1/healthz", timeout=0.5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("agent did not answer within 10 s")
            time.sleep(0.05)
        yield running
    finally:
        seen.update(running.recorded_pids())
        running.stop()
        # A safety net only: the agent is the one that must stop its instances.
        for pid in seen:
            try:
                command = psutil.Process(pid).cmdline()
            except psutil.Error:
                continue
            if "fleetops.local.instance_app" in command:
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def actuator(agent: Agent) -> Iterator[LocalProcessActuator]:
    client = LocalProcessActuator(agent.url)
    yield client
    client.close()


def describe(actuator: LocalProcessActuator, instance_id: str = INSTANCE_ID) -> LocalInstance:
    instance = actuator.describe(instance_id)
    assert instance is not None
    return instance


def spec(version: str = "1.0.0") -> InstanceSpec:
    return InstanceSpec(id=INSTANCE_ID, version=version, size=Size.SMALL)


def test_provision_starts_an_instance_that_answers(
    actuator: LocalProcessActuator, agent: Agent
) -> None:
    started = time.monotonic()
    result = actuator.provision(spec(), "op1:provision:1")
    elapsed = time.monotonic() - started

    assert result.applied is True
    assert result.endpoint is not None
    health = requests.get(f"{result.endpoint}/healthz", timeout=2)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "instance": INSTANCE_ID}
    assert (agent.root / INSTANCE_ID / "data" / "app.json").is_file()
    assert describe(actuator).running is True
    probe = actuator.probe(INSTANCE_ID)
    assert probe.healthy is True
    assert probe.version == "1.0.0"
    assert elapsed < 5


def test_provision_again_with_the_same_token_does_nothing(
    actuator: LocalProcessActuator,
) -> None:
    first = actuator.provision(spec(), "t1")
    pid = describe(actuator).pid

    again = actuator.provision(spec(), "t1")

    assert again.applied is False
    assert again.endpoint == first.endpoint
    assert describe(actuator).pid == pid
    assert [item.id for item in actuator.list_instances()] == [INSTANCE_ID]


def test_provision_an_existing_instance_with_another_token_is_a_permanent_conflict(
    actuator: LocalProcessActuator,
) -> None:
    actuator.provision(spec(), "t1")

    with pytest.raises(ActuatorError, match="already exists") as raised:
        actuator.provision(spec(), "t2")

    assert raised.value.permanent is True


def test_restart_twice_with_one_token_restarts_once(actuator: LocalProcessActuator) -> None:
    endpoint = actuator.provision(spec(), "t1").endpoint
    pid_before = describe(actuator).pid

    first = actuator.restart(INSTANCE_ID, "r1")
    pid_after = describe(actuator).pid
    second = actuator.restart(INSTANCE_ID, "r1")

    assert first.applied is True
    assert second.applied is False
    assert pid_after != pid_before
    assert describe(actuator).pid == pid_after
    assert first.endpoint == endpoint
    assert actuator.probe(INSTANCE_ID).healthy is True


def test_a_killed_instance_stays_dead(actuator: LocalProcessActuator) -> None:
    actuator.provision(spec(), "t1")
    pid = describe(actuator).pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    probe = actuator.probe(INSTANCE_ID)

    assert probe.healthy is False
    assert probe.detail
    state = describe(actuator)
    assert state.running is False
    assert state.exit_code == -signal.SIGKILL
    time.sleep(0.6)
    assert describe(actuator).running is False

    # Bringing it back is the control plane's call: a restart.
    actuator.restart(INSTANCE_ID, "r1")
    assert actuator.probe(INSTANCE_ID).healthy is True


def test_delete_leaves_no_process_and_no_folder(
    actuator: LocalProcessActuator, agent: Agent
) -> None:
    actuator.provision(spec(), "t1")
    pid = describe(actuator).pid
    assert pid is not None

    deleted = actuator.delete(INSTANCE_ID, "d1")

    assert deleted.applied is True
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (agent.root / INSTANCE_ID).exists()
    assert actuator.describe(INSTANCE_ID) is None
    assert actuator.probe(INSTANCE_ID).healthy is False
    assert actuator.delete(INSTANCE_ID, "d1").applied is False
    assert actuator.delete(INSTANCE_ID, "d2").applied is False


def test_upgrade_runs_the_new_version_on_the_same_endpoint(
    actuator: LocalProcessActuator,
) -> None:
    endpoint = actuator.provision(spec("1.0.0"), "t1").endpoint

    result = actuator.upgrade(INSTANCE_ID, "1.1.0", "u1")

    assert result.applied is True
    assert result.endpoint == endpoint
    version = requests.get(f"{endpoint}/version", timeout=2).json()
    assert version["version"] == "1.1.0"
    assert actuator.probe(INSTANCE_ID).version == "1.1.0"
    assert actuator.upgrade(INSTANCE_ID, "1.1.0", "u1").applied is False


def test_resize_restarts_with_the_new_size(actuator: LocalProcessActuator) -> None:
    endpoint = actuator.provision(spec(), "t1").endpoint

    actuator.resize(INSTANCE_ID, Size.LARGE, "z1")

    assert requests.get(f"{endpoint}/version", timeout=2).json()["size"] == "large"
    assert describe(actuator).size == "large"


def test_snapshot_copies_the_data_folder(actuator: LocalProcessActuator, agent: Agent) -> None:
    actuator.provision(spec(), "t1")

    first = actuator.snapshot(INSTANCE_ID, "s1")
    again = actuator.snapshot(INSTANCE_ID, "s1")

    copied = agent.root / f"{INSTANCE_ID}.snapshots" / "s1" / "app.json"
    assert first.applied is True
    assert again.applied is False
    assert json.loads(copied.read_text(encoding="utf-8"))["instance"] == INSTANCE_ID


def test_suspend_keeps_data_and_resume_starts_again(
    actuator: LocalProcessActuator, agent: Agent
) -> None:
    actuator.provision(spec(), "t1")
    pid = describe(actuator).pid
    assert pid is not None

    actuator.suspend(INSTANCE_ID, "p1")

    assert wait_until_gone([pid]) == []
    suspended = describe(actuator)
    assert (suspended.running, suspended.suspended) == (False, True)
    assert actuator.probe(INSTANCE_ID).detail == "suspended"
    assert (agent.root / INSTANCE_ID / "data" / "app.json").is_file()

    actuator.resume(INSTANCE_ID, "p2")

    assert actuator.probe(INSTANCE_ID).healthy is True
    app = json.loads((agent.root / INSTANCE_ID / "data" / "app.json").read_text("utf-8"))
    assert app["starts"] == 2


def test_a_version_that_fails_to_start_is_reported(actuator: LocalProcessActuator) -> None:
    actuator.provision(spec("1.0.0"), "t1")
    actuator.set_faults(INSTANCE_ID, fail_start_versions=("2.0.0",))

    with pytest.raises(ActuatorError, match=r"failed to start at version 2\.0\.0") as raised:
        actuator.upgrade(INSTANCE_ID, "2.0.0", "u1")

    assert raised.value.permanent is False
    state = describe(actuator)
    assert (state.running, state.version, state.exit_code) == (False, "2.0.0", 1)
    rolled_back = actuator.upgrade(INSTANCE_ID, "1.0.0", "u2")
    assert rolled_back.applied is True
    assert actuator.probe(INSTANCE_ID).healthy is True


def test_a_failed_provision_leaves_nothing_to_conflict_with(
    actuator: LocalProcessActuator,
) -> None:
    actuator.set_faults(INSTANCE_ID, fail_start_versions=("2.0.0",))

    with pytest.raises(ActuatorError, match="failed to start"):
        actuator.provision(spec("2.0.0"), "t1")

    assert actuator.describe(INSTANCE_ID) is None
    assert actuator.provision(spec("1.0.0"), "t2").applied is True


def test_an_unhealthy_version_runs_but_probes_unhealthy(actuator: LocalProcessActuator) -> None:
    actuator.set_faults(INSTANCE_ID, unhealthy_versions=("3.0.0",))
    actuator.provision(spec("1.0.0"), "t1")

    actuator.upgrade(INSTANCE_ID, "3.0.0", "u1")
    probe = actuator.probe(INSTANCE_ID)

    assert describe(actuator).running is True
    assert (probe.healthy, probe.version) == (False, "3.0.0")
    assert "503" in probe.detail


def test_unknown_instance_and_bad_requests_are_permanent(actuator: LocalProcessActuator) -> None:
    with pytest.raises(ActuatorError) as unknown:
        actuator.restart("ghost", "r1")
    with pytest.raises(ActuatorError) as invalid:
        actuator.provision(InstanceSpec(id="../escape", version="1.0.0"), "t1")

    assert unknown.value.permanent is True
    assert invalid.value.permanent is True


def test_an_unreachable_agent_is_a_transient_error() -> None:
    actuator = LocalProcessActuator(f"http://127.0.0.1:{free_port()}")

    with pytest.raises(ActuatorError) as raised:
        actuator.provision(spec(), "t1")

    assert raised.value.permanent is False
    assert actuator.healthy() is False


def test_sigterm_to_the_agent_stops_every_instance(
    actuator: LocalProcessActuator, agent: Agent
) -> None:
    actuator.provision(spec(), "t1")
    actuator.provision(InstanceSpec(id="globex-2", version="1.0.0"), "t2")
    pids = [describe(actuator).pid, describe(actuator, "globex-2").pid]

    assert agent.stop() == 0

    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
