"""Running `fleetops up` as a subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import requests

from fleetops.local import config
from fleetops.local.api_tokens import read_local_tokens

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "fleetops is up"
# The principals of the tokens file `fleetops up` writes.
VIEWER = "viewer@local"
OPERATOR = "operator@local"
ADMIN = "admin@local"
ADMIN2 = "admin2@local"


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

    def token(self, principal: str) -> str:
        """`principal`'s bearer token from the stack's tokens file (see api_tokens)."""
        tokens = read_local_tokens(Path(self.env["FLEETOPS_API_TOKENS_FILE"]))
        return tokens[principal].token

    def cli(
        self,
        *args: str,
        timeout: float = 180,
        principal: str = OPERATOR,
        direct: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `fleetops` as a user would: through the API with `principal`'s token, or
        (`direct`) straight on Pub/Sub and Firestore, recorded as `principal`; `env` last."""
        chosen = {**os.environ, **self.env, "COLUMNS": "200"}
        chosen["FLEETOPS_ENV_FILE"] = str(self.state_dir / "local.env")
        chosen.pop("FLEETOPS_AS", None)
        if direct:
            # Empty, so that local.env cannot fill it in again.
            chosen["FLEETOPS_API_URL"] = ""
            chosen["FLEETOPS_PRINCIPAL"] = principal
        else:
            chosen["FLEETOPS_API_TOKEN"] = self.token(principal)
            chosen.pop("FLEETOPS_PRINCIPAL", None)
        chosen.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "fleetops.cli.main", *args],
            cwd=self.workdir,
            env=chosen,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def approved(self, *request: str) -> dict[str, Any]:
        """Request an operation as the operator, approve it as an admin, wait for it."""
        asked = self.cli("request", *request, "--output", "json")
        assert asked.returncode == 0, asked.stdout + asked.stderr
        op_id = json.loads(asked.stdout)["operation"]
        approval = self.cli("ops", "approve", op_id, principal=ADMIN)
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
