"""Child processes of the local stack: started in their own group, stopped without leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests


class PortTakenError(Exception):
    pass


class ProcessStartError(Exception):
    """A child of the local stack did not start; the message names its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortTakenError(
                f"port {port} for the {what} is already in use; stop what listens there "
                f"or pass --port-base with another port (or 0 for free ports)"
            ) from exc


@dataclass
class ChildProcess:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    ready_url: str | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own group: Ctrl-C in a terminal reaches `fleetops up` only, which stops us.
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(
        self, timeout: float, accept: Callable[[requests.Response], bool] | None = None
    ) -> None:
        if self.ready_url is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessStartError(
                    f"{self.name} exited with code {self.popen.returncode if self.popen else '?'} "
                    f"while starting; see {self.log_path}: {tail(self.log_path)}"
                )
            try:
                response = requests.get(self.ready_url, timeout=1)
                if accept is None or accept(response):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise ProcessStartError(
            f"{self.name} did not answer at {self.ready_url} within {timeout:.0f}s; "
            f"see {self.log_path}: {tail(self.log_path)}"
        )

    def stop(self, grace: float = 5.0) -> None:
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        stop_group(popen, grace)


def stop_group(popen: subprocess.Popen[bytes], grace: float) -> None:
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait(timeout=grace)


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
