"""The instance program, run for real as a subprocess."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

INSTANCE_ID = "acme-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RunningInstance:
    def __init__(self, data_dir: Path, version: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetops.local.instance_app",
                "--id",
                INSTANCE_ID,
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--version",
                version,
                "--size",
                "small",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, deadline: float = 10.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                pytest.fail(f"instance exited with {self.proc.returncode}: {err.decode()}")
            try:
                requests.get(f"{self.url}/healthz", timeout=0.5)
            except requests.RequestException:
                time.sleep(0.02)
                continue
            return
        pytest.fail("instance did not answer within the deadline")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode


Start = Callable[[str], RunningInstance]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts instances with `tmp_path` as data dir; stops them even when a test fails."""
    started: list[RunningInstance] = []

    def run(version: str) -> RunningInstance:
        instance = RunningInstance(tmp_path, version)
        started.append(instance)
        return instance

    yield run
    for instance in started:
        instance.stop()


def write_faults(data_dir: Path, **faults: list[str]) -> None:
    (data_dir / "faults.json").write_text(json.dumps(faults), encoding="utf-8")


def test_healthz_and_version_answer_json(start: Start) -> None:
    instance = start("1.2.3")
    instance.wait_ready()

    health = requests.get(f"{instance.url}/healthz", timeout=2)
    version = requests.get(f"{instance.url}/version", timeout=2)
    missing = requests.get(f"{instance.url}/nope", timeout=2)

    assert health.status_code == 200
    assert health.headers["Content-Type"] == "application/json"
    assert health.json() == {"status": "ok", "instance": INSTANCE_ID}
    assert version.status_code == 200
    assert version.json() == {"instance": INSTANCE_ID, "version": "1.2.3", "size": "small"}
    assert missing.status_code == 404


def test_sigterm_stops_cleanly_and_silently(start: Start) -> None:
    instance = start("1.0.0")
    instance.wait_ready()
    for _ in range(3):
        requests.get(f"{instance.url}/healthz", timeout=2)

    instance.proc.send_signal(signal.SIGTERM)
    out, err = instance.proc.communicate(timeout=5)

    assert instance.proc.returncode == 0
    assert out == b""
    assert err == b""


def test_data_file_is_created_then_kept_across_restarts(start: Start, tmp_path: Path) -> None:
    first = start("1.0.0")
    first.wait_ready()
    app_file = tmp_path / "data" / "app.json"
    created = json.loads(app_file.read_text(encoding="utf-8"))
    assert first.stop() == 0

    second = start("1.1.0")
    second.wait_ready()
    kept = json.loads(app_file.read_text(encoding="utf-8"))

    assert created["instance"] == INSTANCE_ID
    assert created["starts"] == 1
    assert kept["starts"] == 2
    assert kept["created_at"] == created["created_at"]
    assert kept["version"] == "1.1.0"


def test_unhealthy_version_answers_503(start: Start, tmp_path: Path) -> None:
    write_faults(tmp_path, unhealthy_versions=["3.0.0"])
    instance = start("3.0.0")
    instance.wait_ready()

    health = requests.get(f"{instance.url}/healthz", timeout=2)
    version = requests.get(f"{instance.url}/version", timeout=2)

    assert health.status_code == 503
    assert health.json()["instance"] == INSTANCE_ID
    assert version.json()["version"] == "3.0.0"


def test_other_versions_ignore_the_faults(start: Start, tmp_path: Path) -> None:
    write_faults(tmp_path, fail_start_versions=["2.0.0"], unhealthy_versions=["3.0.0"])
    instance = start("1.0.0")
    instance.wait_ready()

    assert requests.get(f"{instance.url}/healthz", timeout=2).status_code == 200


def test_fail_start_version_exits_non_zero(start: Start, tmp_path: Path) -> None:
    write_faults(tmp_path, fail_start_versions=["2.0.0"])
    instance = start("2.0.0")

    _, err = instance.proc.communicate(timeout=10)

    assert instance.proc.returncode == 1
    assert b"2.0.0" in err
    assert not (tmp_path / "data" / "app.json").exists()


def test_unreadable_faults_file_is_ignored(start: Start, tmp_path: Path) -> None:
    (tmp_path / "faults.json").write_text("{not json", encoding="utf-8")
    instance = start("2.0.0")
    instance.wait_ready()

    assert requests.get(f"{instance.url}/healthz", timeout=2).status_code == 200
