"""`fleetops up` stops everything it started on Ctrl-C, and refuses a taken port clearly."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil

from tests.e2e.stack import RunningStack


def test_ctrl_c_leaves_no_process_behind(emulator_tools: None, tmp_path: Path) -> None:
    stack = RunningStack(tmp_path, instances=1)
    try:
        stack.wait_ready()
        started = stack.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in started)
        for expected in (
            "instance_app",
            "fleetops.local.function_host",
            "java",
            "fleetops.local.agent",
        ):
            assert expected in names
        assert stack.interrupt() == 0
        leftovers = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert leftovers == [], [p.cmdline() for p in leftovers]
        assert not (tmp_path / ".fleetops" / "local.env").exists()
    finally:
        stack.kill_everything()


def test_a_taken_port_is_a_clear_error_not_a_traceback(
    emulator_tools: None, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fleetops.cli.main", "up", "--port-base", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"port {port}" in result.stderr
    assert "already in use" in result.stderr
