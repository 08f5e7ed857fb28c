"""Running `fleetops up` as a subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from fleetops.local import config

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "fleetops is up"


class RunningStack:
    def __init__(self, workdir: Path, instances: int) -> None:
        self.workdir = workdir
        self.state_dir = workdir / ".fleetops"
        self.output: list[str] = []
        env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
        env["PYTHONUNBUFFERED"] = "1"
        env["COLUMNS"] = "200"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetops.cli.main",
                "up",
                "--instances",
                str(instances),
                "--port-base",
                "0",
                "--state-dir",
                str(self.state_dir),
            ],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started_in: float | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 180) -> None:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if any(READY_LINE in line for line in self.output):
                self.started_in = time.monotonic() - began
                return
            if self.process.poll() is not None:
                time.sleep(0.2)
                raise AssertionError("fleetops up exited:\n" + "\n".join(self.output))
            time.sleep(0.1)
        raise AssertionError(f"fleetops up not ready in {timeout}s:\n" + "\n".join(self.output))

    @property
    def env(self) -> dict[str, str]:
        return config.read_env(self.state_dir / "local.env")

    def cli(
        self, *args: str, timeout: float = 180, principal: str = "alice@example.com"
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "COLUMNS": "200", "FLEETOPS_PRINCIPAL": principal}
        env["FLEETOPS_ENV_FILE"] = str(self.state_dir / "local.env")
        return subprocess.run(
            [sys.executable, "-m", "fleetops.cli.main", *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def approved(self, *request: str) -> dict[str, Any]:
        """Request an operation as alice, approve it as bob, wait for it."""
        asked = self.cli("request", *request, "--output", "json")
        assert asked.returncode == 0, asked.stdout + asked.stderr
        op_id = json.loads(asked.stdout)["operation"]
        approval = self.cli("ops", "approve", op_id, principal="bob@example.com")
        assert approval.returncode == 0, approval.stdout + approval.stderr
        waited = self.cli("ops", "wait", op_id, "--output", "json")
        return dict(json.loads(waited.stdout))

    def agent(self, path: str) -> Any:
        response = requests.get(f"{self.env['FLEETOPS_AGENT_URL']}{path}", timeout=5)
        return response.json() if response.status_code == 200 else None

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill_everything(self) -> None:
        """Last-resort cleanup after a failed test."""
        if self.process.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                for child in self.descendants():
                    child.kill()
                self.process.kill()
