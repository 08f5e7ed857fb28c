"""Memory of the whole local stack: `fleetops up --instances 10`, idle and under load.

RSS is summed over every process of the stack (the `fleetops up` process, everything
below it, and the instance processes the host agent runs), grouped by role. RSS counts
pages shared between processes (the interpreter, shared libraries) once per process,
so the sum overstates what the stack takes from the machine; PSS, which splits shared
pages between their users, is given beside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import env
from bench.report import Row

READY_LINE = "fleetops is up"
TARGET_MB = 1500.0
MB = 1_000_000


@dataclass
class StackProcess:
    workdir: Path
    instances: int
    output: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None

    @property
    def state_dir(self) -> Path:
        return self.workdir / ".fleetops"

    def start(self) -> None:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith("_EMULATOR_HOST") and k != "GOOGLE_CLOUD_PROJECT"
        }
        environ.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetops.cli.main",
                "up",
                "--instances",
                str(self.instances),
                "--port-base",
                "0",
                "--state-dir",
                str(self.state_dir),
            ],
            cwd=self.workdir,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if any(READY_LINE in line for line in self.output):
                return time.monotonic() - began
            if self.process is None or self.process.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError("fleetops up exited:\n" + "\n".join(self.output[-20:]))
            time.sleep(0.1)
        raise RuntimeError(f"fleetops up not ready in {timeout:.0f}s:\n" + "\n".join(self.output))

    @property
    def local_env(self) -> dict[str, str]:
        from fleetops.local import config

        return config.read_env(self.state_dir / "local.env")

    def processes(self) -> list[psutil.Process]:
        assert self.process is not None
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        # Instances are the agent's children in their own sessions; found by their folder too.
        folder = str((self.state_dir / "instances").resolve())
        for candidate in psutil.process_iter(["cmdline"]):
            cmdline = candidate.info.get("cmdline") or []
            if "fleetops.local.instance_app" in cmdline and any(folder in a for a in cmdline):
                found.setdefault(candidate.pid, candidate)
        return list(found.values())

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for child in self.processes():
                with contextlib.suppress(psutil.Error):
                    child.kill()
            self.process.kill()
            self.process.wait(timeout=10)


def role(process: psutil.Process) -> str:
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return "gone"
    text = " ".join(cmdline)
    if "pubsub-emulator" in text:
        return "Pub/Sub emulator"
    if "cloud-firestore-emulator" in text:
        return "Firestore emulator"
    served = "fleetops.local.function_host" in cmdline or "functions_framework" in text
    if served and "--source" in cmdline:
        return f"function {Path(cmdline[cmdline.index('--source') + 1]).parent.name}"
    for module, name in (
        ("fleetops.local.instance_app", "instances"),
        ("fleetops.local.agent", "host agent"),
        ("fleetops.local.scheduler", "local scheduler"),
        ("fleetops.local.prober", "prober"),
        ("fleetops.cli.main", "fleetops up"),
    ):
        if module in cmdline:
            return name
    return Path(cmdline[0]).name if cmdline else "unknown"


@dataclass
class Sample:
    rss: dict[str, int]
    pss: dict[str, int]
    count: dict[str, int]

    @property
    def total_rss(self) -> int:
        return sum(self.rss.values())

    @property
    def total_pss(self) -> int:
        return sum(self.pss.values())


def sample(stack: StackProcess) -> Sample:
    rss: dict[str, int] = {}
    pss: dict[str, int] = {}
    count: dict[str, int] = {}
    for process in stack.processes():
        name = role(process)
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss[name] = rss.get(name, 0) + info.rss
        pss[name] = pss.get(name, 0) + getattr(info, "pss", info.rss)
        count[name] = count.get(name, 0) + 1
    return Sample(rss, pss, count)


@contextlib.contextmanager
def pointed_at(values: dict[str, str]) -> Iterator[None]:
    """Google's clients read the emulator hosts when built: build them inside this block."""
    keys = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: values[k] for k in keys if k in values})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load(stack: StackProcess, requests: int, instances: int) -> None:
    from fleetops.contract.names import TOPIC_REQUESTS
    from fleetops.contract.pubsub import encode_binary
    from fleetops.contract.requests import new_request_event

    local = stack.local_env
    with pointed_at(local):
        publisher = env.Publisher(local["GOOGLE_CLOUD_PROJECT"])
    futures = []
    for n in range(requests):
        event = new_request_event(
            {"instance": f"demo-{n % instances + 1}", "action": "restart"},
            source="//bench/memory",
            event_id=str(uuid.uuid4()),
        )
        data, attributes = encode_binary(event)
        futures.append(publisher.publish(TOPIC_REQUESTS, data, attributes))
    for future in futures:
        future.result(timeout=60)
    publisher.close()


def _operations(db: Any) -> tuple[int, int]:
    """(recorded, succeeded) operations."""
    from google.cloud.firestore import FieldFilter

    every = db.collection("operations")
    succeeded = every.where(filter=FieldFilter("status", "==", "succeeded"))
    return int(every.count().get()[0][0].value), int(succeeded.count().get()[0][0].value)


def run(
    *,
    instances: int,
    requests: int,
    window: float,
    idle_wait: float = 5.0,
    say: Callable[[str], None] = print,
) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="fleetops-bench-") as tmp:
        stack = StackProcess(Path(tmp), instances)
        stack.start()
        try:
            ready_in = stack.wait_ready(timeout=240)
            say(f"  memory: fleetops up --instances {instances} ready in {ready_in:.1f}s")
            time.sleep(idle_wait)
            idle = max((sample(stack) for _ in range(3)), key=lambda s: s.total_rss)
            say(f"  memory: idle {idle.total_rss / MB:.0f} MB RSS")
            with pointed_at(stack.local_env):
                db = env.firestore_client(stack.local_env["GOOGLE_CLOUD_PROJECT"])
            recorded_before, done_before = _operations(db)
            began = time.monotonic()
            _load(stack, requests, instances)
            samples = []
            while time.monotonic() - began < window:
                samples.append(sample(stack))
                time.sleep(0.5)
            recorded_after, done_after = _operations(db)
            recorded, done = recorded_after - recorded_before, done_after - done_before
            say(
                f"  memory: of {requests} restarts, {recorded} recorded and {done} finished "
                f"in the {window:.0f}s window"
            )
        finally:
            stack.stop()
    loaded = max(samples, key=lambda s: s.total_rss)
    peak_by_role = {
        name: max(s.rss.get(name, 0) for s in samples) for name in {*idle.rss, *loaded.rss}
    }
    return _rows(
        idle, loaded, peak_by_role, instances, requests, (recorded, done), window, ready_in
    )


def _rows(
    idle: Sample,
    loaded: Sample,
    peak_by_role: dict[str, int],
    instances: int,
    requests: int,
    progress: tuple[int, int],
    window: float,
    ready_in: float,
) -> list[Row]:
    recorded, done = progress
    name = f"fleetops up --instances {instances}"
    target = f"< {TARGET_MB / 1000:g} GB"
    rows = [
        Row(
            "memory",
            f"{name}: idle (RSS sum)",
            f"{idle.total_rss / MB:,.0f} MB in {sum(idle.count.values())} processes "
            f"(PSS {idle.total_pss / MB:,.0f} MB)",
            target,
            idle.total_rss / MB < TARGET_MB,
            data={"rss": idle.rss, "pss": idle.pss, "count": idle.count, "ready_in": ready_in},
        ),
        Row(
            "memory",
            f"{name}: {requests} restarts (peak RSS sum)",
            f"{loaded.total_rss / MB:,.0f} MB in {sum(loaded.count.values())} processes "
            f"(PSS {loaded.total_pss / MB:,.0f} MB); {recorded} recorded, {done} done in "
            f"{window:.0f} s",
            target,
            loaded.total_rss / MB < TARGET_MB,
            data={
                "rss": loaded.rss,
                "pss": loaded.pss,
                "count": loaded.count,
                "recorded": recorded,
                "finished": done,
            },
        ),
    ]
    for role_name in sorted(peak_by_role, key=lambda r: -peak_by_role[r]):
        n = max(idle.count.get(role_name, 0), loaded.count.get(role_name, 0))
        rows.append(
            Row(
                "memory",
                f"  {role_name}" + (f" ({n} processes)" if n > 1 else ""),
                f"idle {idle.rss.get(role_name, 0) / MB:,.0f} MB, "
                f"load peak {peak_by_role[role_name] / MB:,.0f} MB",
                data={
                    "idle_rss": idle.rss.get(role_name, 0),
                    "peak_rss": peak_by_role[role_name],
                    "processes": n,
                },
            )
        )
    return rows
