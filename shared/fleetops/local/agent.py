"""The host agent: starts and stops local instances as real OS processes.

    python -m fleetops.local.agent --host 127.0.0.1 --port PORT --root DIR

Functions are stateless and may be killed at any moment, so they must never be the parents
of instances: they ask this agent over HTTP, the way a cloud actuator asks Compute Engine.

Each instance `ID` has the folder `ROOT/ID/` (its data dir: `data/`, `faults.json`,
`instance.log`, and `agent.json`, the agent's record of spec, port, pid and applied tokens).
Snapshots go to `ROOT/ID.snapshots/<token>/` and outlive the instance.

JSON API (errors are `{"error": {"code", "message"}}`):

    GET    /v1/healthz
    GET    /v1/instances                          {"instances": [view, ...]}
    GET    /v1/instances/ID                       view | 404
    PUT    /v1/instances/ID      {version, size, token}    provision
    POST   /v1/instances/ID/restart   {token}
    POST   /v1/instances/ID/upgrade   {version, token}
    POST   /v1/instances/ID/resize    {size, token}
    POST   /v1/instances/ID/suspend   {token}
    POST   /v1/instances/ID/resume    {token}
    POST   /v1/instances/ID/snapshot  {token}      adds "snapshot": path
    PUT    /v1/instances/ID/faults    {fail_start_versions, unhealthy_versions}
    DELETE /v1/instances/ID?token=T

Changes answer 200 `{"id", "endpoint", "applied", "instance": view}` (DELETE: no view, and
`applied` false when the instance was absent); `applied` is false when the token was already
applied. A view is `{"id", "version", "size", "port", "pid", "running", "suspended",
"exit_code", "endpoint"}`. 400 bad request, 404 unknown instance or route, 405, 409 conflict
(exists under another token; restart while suspended), 502 `start_failed` when the process
died (or never answered /healthz) at start, 503 while the agent shuts down.

A failed provision forgets the instance (keeping its folder and log); a failed restart,
upgrade, resize or resume keeps it, stopped, with the spec that failed. Upgrade and resize of
a suspended instance change its spec only; it starts at resume.

The agent adopts nothing: on start it kills instance processes left by a crashed agent
and removes their folders. On SIGTERM/SIGINT it stops every instance and exits.
Crashed instances stay dead: restarting them is the control plane's decision.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil

import fleetops
from fleetops.domain.model import Size
from fleetops.local.instance_app import FAULTS_FILE

log = logging.getLogger("fleetops.agent")

INSTANCE_MODULE = "fleetops.local.instance_app"
RECORD_FILE = "agent.json"
LOG_FILE = "instance.log"
DATA_FOLDER = "data"
SNAPSHOTS_SUFFIX = ".snapshots"
FAULTS_FOLDER = ".faults"
INSTANCE_HOST = "127.0.0.1"

START_DEADLINE_SECONDS = 10.0
STOP_GRACE_SECONDS = 5.0
REAP_INTERVAL_SECONDS = 0.5

# No dots: `ID.snapshots` must never be another instance's folder.
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
_MAX_TOKEN = 256
_MAX_BODY = 64 * 1024
_ACTIONS = frozenset({"restart", "upgrade", "resize", "suspend", "resume", "snapshot"})
_SIZES = frozenset(size.value for size in Size)


class AgentError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad_request(message: str) -> AgentError:
    return AgentError(400, "bad_request", message)


def _not_found(instance_id: str) -> AgentError:
    return AgentError(404, "not_found", f"instance {instance_id} does not exist")


@dataclass
class _Instance:
    id: str
    version: str
    size: str
    port: int
    tokens: list[str] = field(default_factory=list)
    suspended: bool = False
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{INSTANCE_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def view(self) -> dict[str, Any]:
        proc = self.proc
        exit_code = proc.poll() if proc is not None else self.exit_code
        return {
            "id": self.id,
            "version": self.version,
            "size": self.size,
            "port": self.port,
            "pid": proc.pid if proc is not None else None,
            "running": proc is not None and exit_code is None,
            "suspended": self.suspended,
            "exit_code": exit_code,
            "endpoint": self.endpoint,
        }

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "size": self.size,
            "port": self.port,
            "pid": self.proc.pid if self.proc is not None else None,
            "suspended": self.suspended,
            "tokens": self.tokens,
        }


class Supervisor:
    """The agent's state and process handling, independent of HTTP."""

    def __init__(
        self,
        root: Path,
        *,
        start_deadline: float = START_DEADLINE_SECONDS,
        stop_grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.root = root
        self.start_deadline = start_deadline
        self.stop_grace = stop_grace
        self._instances: dict[str, _Instance] = {}
        self._locks: dict[str, threading.Lock] = {}
        # Guards the two dicts above, `_children` and `_closing`; never held while waiting.
        self._registry = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------

    def clean_leftovers(self) -> None:
        """Kill instance processes recorded by a previous agent, then remove their folders."""
        self.root.mkdir(parents=True, exist_ok=True)
        leftovers: list[psutil.Process] = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            record = folder / RECORD_FILE
            if record.is_file():
                process = _leftover_process(record, folder.name)
                if process is not None:
                    leftovers.append(process)
        for process in leftovers:
            log.warning("stopping leftover instance process pid=%s", process.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        alive = _wait_gone(leftovers, self.stop_grace)
        for process in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        _wait_gone(alive, self.stop_grace)
        shutil.rmtree(self.root / FAULTS_FOLDER, ignore_errors=True)
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and _is_agent_folder(folder):
                log.info("removing leftover folder %s", folder)
                shutil.rmtree(folder, ignore_errors=True)

    def reap(self) -> None:
        """Collect exited instances so a crash never lingers as a zombie."""
        with self._registry:
            children = list(self._children.items())
        for pid, proc in children:
            if proc.poll() is not None:
                with self._registry:
                    self._children.pop(pid, None)

    def close(self) -> None:
        """Stop every instance process this agent started; start no new one."""
        with self._registry:
            self._closing = True
            children = list(self._children.values())
        for proc in children:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for proc in children:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        with self._registry:
            self._children.clear()

    # --- queries ---------------------------------------------------------------------

    def describe(self, instance_id: str) -> dict[str, Any]:
        _check_id(instance_id)
        with self._registry:
            instance = self._instances.get(instance_id)
        if instance is None:
            raise _not_found(instance_id)
        return instance.view()

    def list_instances(self) -> list[dict[str, Any]]:
        with self._registry:
            instances = sorted(self._instances.values(), key=lambda item: item.id)
        return [instance.view() for instance in instances]

    # --- changes ---------------------------------------------------------------------

    def provision(
        self,
        instance_id: str,
        version: str,
        size: str,
        token: str,
        restore_from: str | None = None,
    ) -> dict[str, Any]:
        _check_id(instance_id)
        with self._lock(instance_id):
            with self._registry:
                existing = self._instances.get(instance_id)
            if existing is not None:
                if token in existing.tokens:
                    return _reply(existing, applied=False)
                raise AgentError(409, "conflict", f"instance {instance_id} already exists")
            self._folder(instance_id).mkdir(parents=True, exist_ok=True)
            if restore_from:
                self._restore(instance_id, Path(restore_from))
            with self._registry:
                instance = _Instance(instance_id, version, size, self._free_port())
                self._instances[instance_id] = instance
            try:
                self._start(instance)
            except AgentError:
                # A failed provision leaves no instance behind (only its folder and log),
                # so the caller may try again, with any token.
                with self._registry:
                    self._instances.pop(instance_id, None)
                (self._folder(instance_id) / RECORD_FILE).unlink(missing_ok=True)
                raise
            instance.tokens.append(token)
            self._save(instance)
            log.info("provisioned %s version=%s at %s", instance_id, version, instance.endpoint)
            return _reply(instance, applied=True)

    def restart(self, instance_id: str, token: str) -> dict[str, Any]:
        def change(instance: _Instance) -> None:
            if instance.suspended:
                raise AgentError(
                    409, "conflict", f"instance {instance_id} is suspended; resume it instead"
                )
            self._stop(instance)
            self._start(instance)

        return self._change(instance_id, token, "restart", change)

    def upgrade(self, instance_id: str, version: str, token: str) -> dict[str, Any]:
        def change(instance: _Instance) -> None:
            if instance.version == version and instance.running:
                return
            self._stop(instance)
            instance.version = version
            if not instance.suspended:
                self._start(instance)

        return self._change(instance_id, token, f"upgrade to {version}", change)

    def resize(self, instance_id: str, size: str, token: str) -> dict[str, Any]:
        def change(instance: _Instance) -> None:
            if instance.size == size and instance.running:
                return
            self._stop(instance)
            instance.size = size
            if not instance.suspended:
                self._start(instance)

        return self._change(instance_id, token, f"resize to {size}", change)

    def suspend(self, instance_id: str, token: str) -> dict[str, Any]:
        def change(instance: _Instance) -> None:
            self._stop(instance)
            instance.suspended = True

        return self._change(instance_id, token, "suspend", change)

    def resume(self, instance_id: str, token: str) -> dict[str, Any]:
        def change(instance: _Instance) -> None:
            if not instance.running:
                self._start(instance)
            instance.suspended = False

        return self._change(instance_id, token, "resume", change)

    def snapshot(self, instance_id: str, token: str) -> dict[str, Any]:
        destination = self._snapshots(instance_id) / _safe_name(token)

        def change(instance: _Instance) -> None:
            if destination.exists():
                return
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = self._folder(instance_id) / DATA_FOLDER
            staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=destination.parent))
            try:
                if source.is_dir():
                    shutil.copytree(source, staging / DATA_FOLDER)
                else:
                    (staging / DATA_FOLDER).mkdir()
                # Renamed into place whole: a snapshot folder is never half copied.
                os.replace(staging / DATA_FOLDER, destination)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

        reply = self._change(instance_id, token, "snapshot", change)
        reply["snapshot"] = str(destination)
        return reply

    def delete(self, instance_id: str, token: str) -> dict[str, Any]:
        _check_id(instance_id)
        with self._lock(instance_id):
            with self._registry:
                instance = self._instances.pop(instance_id, None)
            if instance is not None:
                self._stop(instance)
            shutil.rmtree(self._folder(instance_id), ignore_errors=True)
            if instance is not None:
                log.info("deleted %s (token %s)", instance_id, token)
            return {"id": instance_id, "endpoint": None, "applied": instance is not None}

    def set_faults(self, instance_id: str, faults: dict[str, list[str]]) -> dict[str, Any]:
        """Faults belong to the host, not the instance: they outlive a delete and a
        replace, so a version that is broken here stays broken."""
        _check_id(instance_id)
        with self._lock(instance_id):
            kept = self.root / FAULTS_FOLDER / f"{instance_id}.json"
            kept.parent.mkdir(parents=True, exist_ok=True)
            _write_json(kept, faults)
            folder = self._folder(instance_id)
            if folder.is_dir():
                _write_json(folder / FAULTS_FILE, faults)
        return {"id": instance_id, "applied": True, "faults": faults}

    def _restore(self, instance_id: str, snapshot: Path) -> None:
        """Start from a snapshot's data: only this instance's own snapshots may be used."""
        allowed = self._snapshots(instance_id).resolve()
        source = snapshot.resolve()
        if not source.is_relative_to(allowed) or not source.is_dir():
            raise AgentError(400, "bad_request", f"{snapshot} is not a snapshot of {instance_id}")
        data = self._folder(instance_id) / DATA_FOLDER
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(source, data)

    # --- internals -------------------------------------------------------------------

    def _change(
        self,
        instance_id: str,
        token: str,
        what: str,
        change: Callable[[_Instance], None],
    ) -> dict[str, Any]:
        _check_id(instance_id)
        with self._lock(instance_id):
            with self._registry:
                instance = self._instances.get(instance_id)
            if instance is None:
                raise _not_found(instance_id)
            if token in instance.tokens:
                return _reply(instance, applied=False)
            try:
                change(instance)
            finally:
                # Saved even when the start failed: the record shows what was tried.
                self._save(instance)
            instance.tokens.append(token)
            self._save(instance)
            log.info("%s: %s done", instance_id, what)
            return _reply(instance, applied=True)

    @contextlib.contextmanager
    def _lock(self, instance_id: str) -> Iterator[None]:
        with self._registry:
            lock = self._locks.setdefault(instance_id, threading.Lock())
        with lock:
            yield

    def _folder(self, instance_id: str) -> Path:
        return self.root / instance_id

    def _snapshots(self, instance_id: str) -> Path:
        return self.root / f"{instance_id}{SNAPSHOTS_SUFFIX}"

    def _free_port(self) -> int:
        taken = {instance.port for instance in self._instances.values()}
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((INSTANCE_HOST, 0))
                port: int = probe.getsockname()[1]
            if port not in taken:
                return port

    def _save(self, instance: _Instance) -> None:
        folder = self._folder(instance.id)
        if folder.is_dir():
            _write_json(folder / RECORD_FILE, instance.record())

    def _start(self, instance: _Instance) -> None:
        folder = self._folder(instance.id)
        folder.mkdir(parents=True, exist_ok=True)
        kept = self.root / FAULTS_FOLDER / f"{instance.id}.json"
        if kept.is_file():
            shutil.copyfile(kept, folder / FAULTS_FILE)
        command = [
            sys.executable,
            "-m",
            INSTANCE_MODULE,
            "--id",
            instance.id,
            "--port",
            str(instance.port),
            "--data-dir",
            str(folder),
            "--version",
            instance.version,
            "--size",
            instance.size,
        ]
        with self._registry:
            if self._closing:
                raise AgentError(503, "closing", "the agent is shutting down")
            with (folder / LOG_FILE).open("ab") as log_file:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=_child_env(),
                )
            self._children[proc.pid] = proc
        instance.proc = proc
        instance.exit_code = None
        self._save(instance)
        problem = self._await_ready(instance, proc)
        if problem is None:
            return
        self._stop(instance)
        log.warning("%s: start at version %s failed: %s", instance.id, instance.version, problem)
        tail = _tail(folder / LOG_FILE)
        raise AgentError(
            502,
            "start_failed",
            f"instance {instance.id} failed to start at version {instance.version}: {problem}"
            + (f"; log: {tail}" if tail else ""),
        )

    def _await_ready(self, instance: _Instance, proc: subprocess.Popen[bytes]) -> str | None:
        """None once the instance answers /healthz (any status), else what went wrong."""
        deadline = time.monotonic() + self.start_deadline
        while True:
            code = proc.poll()
            if code is not None:
                return f"process exited with code {code}"
            if _answers_as(instance.port, instance.id) and proc.poll() is None:
                return None
            if time.monotonic() >= deadline:
                return f"no answer on /healthz within {self.start_deadline:g}s"
            time.sleep(0.02)

    def _stop(self, instance: _Instance) -> None:
        proc = instance.proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        instance.exit_code = proc.returncode
        instance.proc = None
        with self._registry:
            self._children.pop(proc.pid, None)


def _reply(instance: _Instance, *, applied: bool) -> dict[str, Any]:
    return {
        "id": instance.id,
        "endpoint": instance.endpoint,
        "applied": applied,
        "instance": instance.view(),
    }


def _check_id(instance_id: str) -> None:
    if not _INSTANCE_ID.match(instance_id):
        raise _bad_request(f"invalid instance id {instance_id!r}")


def _safe_name(token: str) -> str:
    if _SAFE_NAME.match(token):
        return token
    # Deterministic, so the same token always names the same snapshot folder.
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", token)[:80]
    return f"{readable}-{digest}"


def _signal_group(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # Only while the leader is unreaped: after that its pid, hence the group id, may be reused.
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def _answers_as(port: int, instance_id: str) -> bool:
    connection = http.client.HTTPConnection(INSTANCE_HOST, port, timeout=0.5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()
    # Someone else's server on a reused port is not our instance.
    return isinstance(body, dict) and body.get("instance") == instance_id


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(fleetops.__file__).resolve().parent.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root if not existing else f"{package_root}{os.pathsep}{existing}"
    return env


def _tail(path: Path, limit: int = 600) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _write_json(path: Path, value: object) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _is_agent_folder(folder: Path) -> bool:
    if folder.name.endswith(SNAPSHOTS_SUFFIX):
        return True
    return any((folder / name).exists() for name in (RECORD_FILE, LOG_FILE, FAULTS_FILE))


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after `timeout`, zombies counting as gone.

    These are not our children: whoever adopted them reaps them, perhaps never.
    """
    deadline = time.monotonic() + timeout
    alive = processes
    while alive:
        alive = [process for process in alive if _alive(process)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return alive


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _leftover_process(record: Path, instance_id: str) -> psutil.Process | None:
    try:
        pid = json.loads(record.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
        command = process.cmdline()
    except psutil.Error:
        return None
    # The pid may have been reused since: only an instance_app for this id is ours to kill.
    if INSTANCE_MODULE in command and instance_id in command:
        return process
    return None


# --- HTTP ------------------------------------------------------------------------------

_INSTANCE_PATH = re.compile(r"^/v1/instances/([^/]+)(?:/([^/]+))?$")


def _body_string(body: dict[str, Any], name: str, pattern: re.Pattern[str] | None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _bad_request(f"{name!r} must be a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise _bad_request(f"invalid {name} {value!r}")
    if len(value) > _MAX_TOKEN:
        raise _bad_request(f"{name!r} is too long")
    return value


def _body_size(body: dict[str, Any]) -> str:
    size = _body_string(body, "size", None)
    if size not in _SIZES:
        raise _bad_request(f"size must be one of {sorted(_SIZES)}, not {size!r}")
    return size


def _body_faults(body: dict[str, Any]) -> dict[str, list[str]]:
    faults: dict[str, list[str]] = {}
    for name in ("fail_start_versions", "unhealthy_versions"):
        value = body.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _bad_request(f"{name!r} must be a list of strings")
        faults[name] = list(value)
    unknown = set(body) - set(faults)
    if unknown:
        raise _bad_request(f"unknown fault settings {sorted(unknown)}")
    return faults


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], supervisor: Supervisor) -> None:
        super().__init__(address, AgentHandler)
        self.supervisor = supervisor


class AgentHandler(BaseHTTPRequestHandler):
    server_version = "fleetops-agent/1"
    server: AgentServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        # Operations are logged by the supervisor, once each; requests are not.
        return

    def _dispatch(self, method: str) -> None:
        try:
            status, body = self._route(method)
        except AgentError as error:
            status, body = error.status, {"error": {"code": error.code, "message": error.message}}
        except Exception as error:
            log.exception("%s %s failed", method, self.path)
            status, body = 500, {"error": {"code": "internal", "message": repr(error)}}
        self._send(status, body)

    def _route(self, method: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(self.path)
        supervisor = self.server.supervisor
        if url.path == "/v1/healthz":
            self._allow(method, "GET")
            return 200, {"status": "ok"}
        if url.path == "/v1/instances":
            self._allow(method, "GET")
            return 200, {"instances": supervisor.list_instances()}
        match = _INSTANCE_PATH.match(url.path)
        if match is None:
            raise AgentError(404, "no_route", f"no route for {url.path}")
        instance_id, action = match.group(1), match.group(2)
        if action is None:
            if method == "GET":
                return 200, supervisor.describe(instance_id)
            if method == "PUT":
                body = self._json_body()
                restore = body.get("restore_from")
                return 200, supervisor.provision(
                    instance_id,
                    _body_string(body, "version", _VERSION),
                    _body_size(body),
                    _body_string(body, "token", None),
                    restore if isinstance(restore, str) and restore else None,
                )
            if method == "DELETE":
                tokens = parse_qs(url.query).get("token", [])
                token = _body_string({"token": tokens[0] if tokens else ""}, "token", None)
                return 200, supervisor.delete(instance_id, token)
            raise AgentError(405, "method_not_allowed", f"{method} not allowed on {url.path}")
        if action == "faults":
            self._allow(method, "PUT")
            return 200, supervisor.set_faults(instance_id, _body_faults(self._json_body()))
        if action not in _ACTIONS:
            raise AgentError(404, "no_route", f"no action {action!r}")
        self._allow(method, "POST")
        body = self._json_body()
        token = _body_string(body, "token", None)
        if action == "restart":
            return 200, supervisor.restart(instance_id, token)
        if action == "upgrade":
            return 200, supervisor.upgrade(
                instance_id, _body_string(body, "version", _VERSION), token
            )
        if action == "resize":
            return 200, supervisor.resize(instance_id, _body_size(body), token)
        if action == "suspend":
            return 200, supervisor.suspend(instance_id, token)
        if action == "resume":
            return 200, supervisor.resume(instance_id, token)
        return 200, supervisor.snapshot(instance_id, token)

    def _allow(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise AgentError(405, "method_not_allowed", f"{method} not allowed on {self.path}")

    def _json_body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as error:
            raise _bad_request("invalid Content-Length") from error
        if length > _MAX_BODY:
            raise AgentError(413, "too_large", "request body too large")
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise _bad_request(f"body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise _bad_request("body must be a JSON object")
        return body

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# --- process entry point ---------------------------------------------------------------


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave `serve_forever` at once.

    A BaseException, like KeyboardInterrupt: socketserver swallows an Exception raised while
    the main thread happens to be handing a request to its thread.
    """


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _ignore(signum: int, frame: FrameType | None) -> None:
    # A second signal must not interrupt stopping the instances.
    return


def _reap_forever(supervisor: Supervisor, stop: threading.Event) -> None:
    while not stop.wait(REAP_INTERVAL_SECONDS):
        supervisor.reap()


def run(host: str, port: int, root: Path) -> int:
    supervisor = Supervisor(root)
    supervisor.clean_leftovers()
    server = AgentServer((host, port), supervisor)
    bound_host, bound_port = server.server_address[:2]
    stop_reaper = threading.Event()
    reaper = threading.Thread(
        target=_reap_forever, args=(supervisor, stop_reaper), name="reaper", daemon=True
    )
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    reaper.start()
    print(f"fleetops agent listening on http://{bound_host!s}:{bound_port}", flush=True)
    log.info("root %s", root.resolve())
    try:
        server.serve_forever()
    except _Stop as stop:
        log.info("%s: stopping every instance", stop)
    finally:
        signal.signal(signal.SIGTERM, _ignore)
        signal.signal(signal.SIGINT, _ignore)
        stop_reaper.set()
        supervisor.close()
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetops.local.agent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--root", type=Path, default=Path(".fleetops/instances"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s", stream=sys.stderr
    )
    return run(args.host, args.port, args.root)


if __name__ == "__main__":
    sys.exit(main())
