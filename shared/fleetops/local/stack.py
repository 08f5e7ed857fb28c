"""`fleetops up`: the whole loop on one machine, on Google's own emulators.

Starts the Pub/Sub and Firestore emulators, creates every topic and our own
push subscriptions (retry and dead-letter policies, as Terraform does on GCP),
runs each function in its own process (functions-framework's app on a threaded
server, see `function_host`) behind a relay that takes its pushes even while it
restarts (see `push_relay`), the host agent that runs instances as real
processes, and provisions a demo fleet through the normal request path.
Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import psutil

from fleetops.contract.names import ALL_TOPICS, TOPIC_DEAD_LETTER, TOPIC_EVENTS
from fleetops.local import config, emulators
from fleetops.local.processes import ChildProcess, check_port_free, free_port
from fleetops.local.push_relay import PushRelay

if TYPE_CHECKING:
    from fleetops.adapters.pubsub_admin import PushSubscription

DEAD_LETTER_INBOX = "fleetops-dead-letter-inbox"
LOCATION = "us-central1"
SCHEDULER_JOBS = Path(__file__).resolve().parents[1] / "data" / "scheduler_jobs.json"
EVENTS_AUDIT = "fleetops-events-audit"


class StackError(Exception):
    """The local stack cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class FunctionManifest:
    name: str
    folder: Path
    entry_point: str
    signature: str
    trigger_topic: str | None

    @classmethod
    def load(cls, folder: Path) -> FunctionManifest:
        data: dict[str, Any] = json.loads((folder / "function.json").read_text())
        return cls(
            name=folder.name,
            folder=folder,
            entry_point=str(data["entry_point"]),
            signature=str(data.get("signature", "cloudevent")),
            trigger_topic=data.get("trigger_topic"),
        )


def local_push_subscription(name: str, topic: str, endpoint: str) -> PushSubscription:
    """A push subscription as Terraform makes it on GCP, but with the emulator's own retry.

    With a retry policy, the Pub/Sub emulator stops pushing some messages of a
    subscription after a burst of failed pushes: measured here with 60 messages and 4 s
    of failures (500s, refused or reset connections), 20 to 56 of them were neither
    pushed again nor dead-lettered within 200 s, in most runs; without one, none was
    lost. So locally a failed push is delivered again about once a second, and after 5
    attempts goes to the dead-letter topic, as on GCP.
    """
    from fleetops.adapters.pubsub_admin import PushSubscription

    return PushSubscription(
        name=name,
        topic=topic,
        endpoint=endpoint,
        # The dead-letter topic's own consumer must never loop into itself.
        dead_letter_topic=None if topic == TOPIC_DEAD_LETTER else TOPIC_DEAD_LETTER,
        max_delivery_attempts=5,
        minimum_backoff=None,
        maximum_backoff=None,
        ack_deadline_seconds=120,
    )


def functions_dir() -> Path:
    """The repository's `functions/` folder (the stack runs from a clone)."""
    named = os.environ.get("FLEETOPS_FUNCTIONS_DIR")
    candidates = [Path(named)] if named else []
    candidates += [Path(__file__).resolve().parents[3] / "functions", Path.cwd() / "functions"]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*/function.json")):
            return candidate
    raise StackError(
        "cannot find the functions/ folder: run `fleetops up` from a clone of the repository "
        "or set FLEETOPS_FUNCTIONS_DIR"
    )


def load_manifests() -> list[FunctionManifest]:
    return [
        FunctionManifest.load(p.parent) for p in sorted(functions_dir().glob("*/function.json"))
    ]


@dataclass
class Ports:
    pubsub: int
    firestore: int
    agent: int
    scheduler: int
    functions: dict[str, int]

    @classmethod
    def plan(cls, base: int, manifests: list[FunctionManifest]) -> Ports:
        if base == 0:
            functions = {m.name: free_port() for m in manifests}
            return cls(free_port(), free_port(), free_port(), free_port(), functions)
        functions = {m.name: base + 4 + i for i, m in enumerate(manifests)}
        return cls(base, base + 1, base + 2, base + 3, functions)

    def check_free(self) -> None:
        check_port_free(self.pubsub, "Pub/Sub emulator")
        check_port_free(self.firestore, "Firestore emulator")
        check_port_free(self.agent, "host agent")
        check_port_free(self.scheduler, "local Cloud Scheduler")
        for name, port in self.functions.items():
            check_port_free(port, f"function {name}")


@dataclass
class LocalStack:
    state_dir: Path
    project: str
    port_base: int = 8085
    say: Callable[[str], None] = print
    children: list[ChildProcess] = field(default_factory=list)
    emulator_processes: list[emulators.EmulatorProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    functions: dict[str, ChildProcess] = field(default_factory=dict)
    relays: dict[str, PushRelay] = field(default_factory=dict)

    @property
    def env_file(self) -> Path:
        return self.state_dir / "local.env"

    @property
    def instances_root(self) -> Path:
        return self.state_dir / "instances"

    def start(self) -> None:
        problem = emulators.available()
        if problem is not None:
            raise StackError(problem)
        manifests = load_manifests()
        ports = Ports.plan(self.port_base, manifests)
        ports.check_free()
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)

        began = time.monotonic()
        self._start_emulators(ports, logs)
        self.say(f"emulators ready in {time.monotonic() - began:.1f}s")
        self.env = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{ports.pubsub}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{ports.firestore}",
            "FLEETOPS_AGENT_URL": f"http://127.0.0.1:{ports.agent}",
            "FLEETOPS_ACTUATOR": "local",
            "FLEETOPS_SCHEDULER_URL": f"http://127.0.0.1:{ports.scheduler}",
            "FLEETOPS_LOCATION": LOCATION,
        }
        from fleetops.local.api_tokens import write_private_env, write_tokens_file

        tokens = write_tokens_file((self.state_dir / "api-tokens.json").resolve())
        if "api" in ports.functions:
            self.env["FLEETOPS_API_URL"] = f"http://127.0.0.1:{ports.functions['api']}"
        self.env["FLEETOPS_API_TOKENS_FILE"] = str(tokens.path)
        # Local instances start in well under a second: a short wait for health
        # makes a bad version roll back quickly.
        child_env_extra = {
            "FLEETOPS_WAIT_TIMEOUT_SECONDS": os.environ.get("FLEETOPS_WAIT_TIMEOUT_SECONDS", "15"),
            "FLEETOPS_FAULTS_DIR": str((self.state_dir / "faults").resolve()),
        }
        child_env = {**os.environ, **self.env, **child_env_extra, "PYTHONUNBUFFERED": "1"}
        # Never the real credentials when talking to emulators.
        child_env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)

        agent = ChildProcess(
            "host agent",
            [
                sys.executable,
                "-m",
                "fleetops.local.agent",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.agent),
                "--root",
                str(self.instances_root),
            ],
            child_env,
            logs / "agent.log",
            ready_url=f"http://127.0.0.1:{ports.agent}/v1/healthz",
        )
        self._spawn(agent)
        for manifest in manifests:
            port = ports.functions[manifest.name]
            if manifest.trigger_topic is not None:
                # Pushes reach the function through a relay that outlives its restarts.
                relay = PushRelay(manifest.name, port, free_port())
                relay.start()
                self.relays[manifest.name] = relay
                port = relay.target_port
            child = ChildProcess(
                f"function {manifest.name}",
                [
                    sys.executable,
                    "-m",
                    "fleetops.local.function_host",
                    "--target",
                    manifest.entry_point,
                    "--source",
                    str(manifest.folder / "main.py"),
                    "--signature-type",
                    manifest.signature,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                child_env,
                logs / f"function-{manifest.name}.log",
                ready_url=f"http://127.0.0.1:{port}/",
            )
            self._spawn(child)
            self.functions[manifest.name] = child
        for child in self.children:
            child.wait_ready(timeout=30)
        self.say(f"functions and host agent ready in {time.monotonic() - began:.1f}s")

        os.environ.update(self.env)
        self._create_topics_and_subscriptions(manifests, ports)
        scheduler = ChildProcess(
            "local scheduler",
            [
                sys.executable,
                "-m",
                "fleetops.local.scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.scheduler),
                "--project",
                self.project,
                "--location",
                LOCATION,
                "--jobs",
                str(SCHEDULER_JOBS),
            ],
            child_env,
            logs / "scheduler.log",
            ready_url=f"http://127.0.0.1:{ports.scheduler}/healthz",
        )
        self._spawn(scheduler)
        scheduler.wait_ready(timeout=30)
        self._spawn(
            ChildProcess(
                "prober",
                [
                    sys.executable,
                    "-m",
                    "fleetops.local.prober",
                    "--interval",
                    "1",
                    "--failures",
                    "3",
                ],
                child_env,
                logs / "prober.log",
            )
        )
        if "api" in ports.functions:
            # Only local.env carries it: no function, agent or instance needs the CLI's token.
            self.env["FLEETOPS_API_TOKEN"] = tokens.operator.token
        write_private_env(self.env_file, self.env)
        self.say(f"topics and push subscriptions ready in {time.monotonic() - began:.1f}s")

    def _start_emulators(self, ports: Ports, logs: Path) -> None:
        results: dict[str, emulators.EmulatorProcess] = {}
        errors: list[BaseException] = []

        def run(
            kind: str,
            start: Callable[[int | None, Path, float, Sequence[str]], emulators.EmulatorProcess],
            port: int,
        ) -> None:
            try:
                results[kind] = start(
                    port,
                    logs,
                    emulators.DEFAULT_READY_TIMEOUT,
                    emulators.LOCAL_STACK_JAVA_OPTIONS,
                )
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=("pubsub", emulators.start_pubsub, ports.pubsub)),
            threading.Thread(
                target=run, args=("firestore", emulators.start_firestore, ports.firestore)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.emulator_processes.extend(results.values())
        if errors:
            raise errors[0]

    def _spawn(self, child: ChildProcess) -> None:
        child.start()
        self.children.append(child)

    def _create_topics_and_subscriptions(
        self, manifests: list[FunctionManifest], ports: Ports
    ) -> None:
        from fleetops.adapters.pubsub_admin import PubsubAdmin

        admin = PubsubAdmin(self.project)
        try:
            for topic in ALL_TOPICS:
                admin.ensure_topic(topic)
            for manifest in manifests:
                if manifest.trigger_topic is None:
                    continue
                port = ports.functions[manifest.name]
                admin.ensure_push_subscription(
                    local_push_subscription(
                        f"{manifest.trigger_topic}-to-{manifest.name}",
                        manifest.trigger_topic,
                        f"http://127.0.0.1:{port}/projects/{self.project}"
                        f"/topics/{manifest.trigger_topic}",
                    )
                )
            admin.ensure_pull_subscription(DEAD_LETTER_INBOX, TOPIC_DEAD_LETTER)
            admin.ensure_pull_subscription(EVENTS_AUDIT, TOPIC_EVENTS)
        finally:
            admin.close()

    def supervise_once(self) -> None:
        """Restart a function process that died: functions are stateless, as on GCP."""
        for name, child in self.functions.items():
            if not child.alive():
                code = child.popen.returncode if child.popen else None
                self.say(f"function {name} exited (code {code}); restarting it")
                child.restarts += 1
                child.start()
        for child in self.children:
            if child.name == "host agent" and not child.alive():
                raise StackError("the host agent exited; see .fleetops/logs/agent.log")
        for process in self.emulator_processes:
            if not psutil.pid_exists(process.pid):
                raise StackError(f"an emulator (pid {process.pid}) exited; see .fleetops/logs")

    def function_url(self, name: str) -> str:
        """Where `name` takes requests: its relay for an event function, else its process."""
        relay = self.relays.get(name)
        return relay.url if relay is not None else str(self.functions[name].ready_url)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        for relay in self.relays.values():
            relay.stop()
        for process in self.emulator_processes:
            process.stop(10)
        self._kill_leftover_instances()
        if self.env_file.is_file() and config.read_env(self.env_file) == self.env:
            self.env_file.unlink()

    def _kill_leftover_instances(self) -> None:
        root = str(self.instances_root.resolve())
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if "fleetops.local.instance_app" in cmdline and any(root in a for a in cmdline):
                with contextlib.suppress(psutil.Error):
                    process.kill()


@contextmanager
def running_stack(stack: LocalStack) -> Iterator[LocalStack]:
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


class _Stop(Exception):
    pass


def run_until_interrupted(stack: LocalStack, after_start: Callable[[LocalStack], None]) -> int:
    """Start, run `after_start`, then supervise until SIGINT or SIGTERM; stop everything."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # A second Ctrl-C must not interrupt the orderly stop.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise _Stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with running_stack(stack):
            after_start(stack)
            while True:
                time.sleep(1)
                stack.supervise_once()
    except _Stop:
        stack.say("stopping the local stack...")
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
