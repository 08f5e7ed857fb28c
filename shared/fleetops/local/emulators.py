"""Start, probe and reset Google's Pub/Sub and Firestore emulators, straight from their jars.

Kept to the standard library and `requests`: the CLI imports this module, so it must stay light.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import requests

__all__ = [
    "FAST_START_JAVA_OPTIONS",
    "LOCAL_STACK_JAVA_OPTIONS",
    "MIN_JAVA_VERSION",
    "EmulatorError",
    "EmulatorNotInstalledError",
    "EmulatorNotReadyError",
    "EmulatorPair",
    "EmulatorProcess",
    "EmulatorUnreachableError",
    "JavaMissingError",
    "PortInUseError",
    "available",
    "emulators_from_env",
    "firestore_answers",
    "firestore_jar",
    "java_binary",
    "pubsub_answers",
    "pubsub_jar",
    "reset_firestore",
    "reset_pubsub",
    "sdk_root",
    "start_emulators",
    "start_firestore",
    "start_pubsub",
]

MIN_JAVA_VERSION = 17
LOOPBACK = "127.0.0.1"
DEFAULT_READY_TIMEOUT = 60.0
# Client JIT only and the serial collector: the JVMs start in about half the time on a busy
# machine, at some cost in peak throughput, so meant for tests rather than benchmarks.
FAST_START_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# For the long-running emulators of `fleetops up`: the serial collector and a heap that starts
# small and grows only as needed. With the defaults (G1, initial heap 1/64 of RAM) each JVM
# touches a large young generation before its first collection; these flags hold about 100 MB
# less for both emulators together, idle and under load, with no loss of speed (measured with
# `python -m bench --only memory`). The maximum heap stays the JVM's default.
LOCAL_STACK_JAVA_OPTIONS = ("-XX:+UseSerialGC", "-Xms16m")
_SDK_ROOT_ENV_VARS = ("CLOUDSDK_ROOT", "FLEETOPS_GCLOUD_SDK_ROOT")
_WELL_KNOWN_SDK_ROOTS = (
    Path("/usr/lib/google-cloud-sdk"),
    Path("/usr/share/google-cloud-sdk"),
    Path("~/google-cloud-sdk"),
)
_FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
# Not CLOUD_FIRESTORE, which crashes the emulator's argument parser.
_FIRESTORE_MODE = "--database-mode=firestore-native"
# The Pub/Sub emulator does not exit when it cannot bind: it logs this and keeps running.
_BIND_FAILURE = re.compile(r"BindException|Address already in use")
_LOG_TAIL_LINES = 25


class EmulatorError(Exception):
    """Something stops the local emulators from running; the message says what to do."""


class JavaMissingError(EmulatorError):
    """`java` is not on PATH, or is older than the emulators need."""


class EmulatorNotInstalledError(EmulatorError):
    """The Google Cloud SDK or one of its emulator components is not installed."""


class PortInUseError(EmulatorError):
    """The port asked for is already taken by another process."""

    def __init__(self, message: str, port: int) -> None:
        super().__init__(message)
        self.port = port

    def __reduce__(self) -> tuple[type[PortInUseError], tuple[str, int]]:
        return type(self), (str(self), self.port)


class EmulatorNotReadyError(EmulatorError):
    """An emulator exited or did not answer before the deadline."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path

    def __reduce__(self) -> tuple[type[EmulatorNotReadyError], tuple[str, Path | None]]:
        return type(self), (str(self), self.log_path)


class EmulatorUnreachableError(EmulatorError):
    """An emulator named by host (for example in the environment) does not answer."""


def _session() -> requests.Session:
    session = requests.Session()
    # A proxy from the environment must never see requests meant for a local emulator.
    session.trust_env = False
    return session


# --- locating Java and the SDK -------------------------------------------------------------


def java_binary() -> Path:
    """The `java` on PATH, checked to be at least `MIN_JAVA_VERSION`."""
    found = shutil.which("java")
    if found is None:
        raise JavaMissingError(
            f"Java is not on PATH: install Java {MIN_JAVA_VERSION} or newer "
            "(for example `apt-get install openjdk-17-jre-headless`) to run the emulators."
        )
    java = Path(found).resolve()
    version = _java_major_version(java)
    if version < MIN_JAVA_VERSION:
        raise JavaMissingError(
            f"{found} is Java {version} but the emulators need Java {MIN_JAVA_VERSION} or newer: "
            "install a newer Java and put it first on PATH."
        )
    return java


@functools.cache
def _java_major_version(java: Path) -> int:
    try:
        result = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaMissingError(
            f"Could not run `{java} -version` ({exc}): repair the Java installation on PATH."
        ) from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise JavaMissingError(
            f"Could not read the version from `{java} -version`: "
            f"install Java {MIN_JAVA_VERSION} or newer and put it first on PATH."
        )
    major = int(match.group(1))
    # Java 8 and older report themselves as "1.N".
    if major == 1 and match.group(2) is not None:
        major = int(match.group(2))
    return major


def sdk_root() -> Path:
    """The Google Cloud SDK root, where the emulator jars live.

    `CLOUDSDK_ROOT` or `FLEETOPS_GCLOUD_SDK_ROOT` win when set; otherwise `gcloud info` is asked
    (its answer is cached in-process and in `~/.cache/fleetops/sdk_root`), and failing that the
    usual install locations are tried.
    """
    for var in _SDK_ROOT_ENV_VARS:
        value = os.environ.get(var)
        if value:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise EmulatorNotInstalledError(
                    f"{var}={value} is not a directory: point it at the Google Cloud SDK root "
                    "or unset it."
                )
            return root
    return _discovered_sdk_root()


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetops" / "sdk_root"


def _looks_like_sdk_root(path: Path) -> bool:
    return (path / "platform").is_dir() or (path / "bin" / "gcloud").is_file()


@functools.cache
def _discovered_sdk_root() -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        root = _sdk_root_from_gcloud(Path(gcloud).resolve())
        if root is not None:
            return root
    for candidate in _WELL_KNOWN_SDK_ROOTS:
        path = candidate.expanduser()
        if _looks_like_sdk_root(path):
            return path
    raise EmulatorNotInstalledError(
        "The Google Cloud SDK was not found (no `gcloud` on PATH, nothing in the usual places): "
        "install the gcloud CLI or set CLOUDSDK_ROOT to its root."
    )


def _sdk_root_from_gcloud(gcloud: Path) -> Path | None:
    cache = _cache_file()
    try:
        cached = json.loads(cache.read_text())
        root = Path(cached["sdk_root"])
        # The cache is keyed on which gcloud answered, so a switched install is asked again.
        if cached["gcloud"] == str(gcloud) and _looks_like_sdk_root(root):
            return root
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        result = subprocess.run(
            [str(gcloud), "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = result.stdout.strip()
    if result.returncode != 0 or not answer or not _looks_like_sdk_root(Path(answer)):
        return None
    root = Path(answer)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"gcloud": str(gcloud), "sdk_root": str(root)}))
        tmp.replace(cache)
    except OSError:
        pass  # Only a cache: a read-only home costs 1 s per process, nothing more.
    return root


def pubsub_jar(root: Path | None = None) -> Path:
    """The Pub/Sub emulator jar under the SDK root (the newest, if several)."""
    base = sdk_root() if root is None else root
    jars = sorted(
        (base / "platform" / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*-all.jar"),
        key=_version_key,
    )
    if not jars:
        raise EmulatorNotInstalledError(
            f"The Pub/Sub emulator is not installed under {base}: run "
            "`gcloud components install pubsub-emulator` (or install the Debian package "
            "google-cloud-cli-pubsub-emulator)."
        )
    return jars[-1]


def firestore_jar(root: Path | None = None) -> Path:
    """The Firestore emulator jar under the SDK root."""
    base = sdk_root() if root is None else root
    jar = base / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not jar.is_file():
        raise EmulatorNotInstalledError(
            f"The Firestore emulator is not installed under {base}: run "
            "`gcloud components install cloud-firestore-emulator` (or install the Debian package "
            "google-cloud-cli-firestore-emulator)."
        )
    return jar


def _version_key(jar: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", jar.name))


def available() -> str | None:
    """None when both emulators can be started here, else the reason they cannot."""
    try:
        java_binary()
        pubsub_jar()
        firestore_jar()
    except EmulatorError as exc:
        return str(exc)
    return None


# --- probing and resetting -----------------------------------------------------------------


def pubsub_answers(host: str, timeout: float = 2.0) -> bool:
    """Whether a Pub/Sub emulator answers a real request at host ("HOST:PORT")."""
    try:
        with _session() as session:
            response = session.get(
                f"http://{host}/v1/projects/fleetops-probe/topics", timeout=timeout
            )
    except requests.RequestException:
        return False
    return response.status_code == 200


def firestore_answers(host: str, timeout: float = 2.0) -> bool:
    """Whether a Firestore emulator answers a real request at host ("HOST:PORT")."""
    # Listing documents, unlike GET /, is something only Firestore answers (Pub/Sub says "Ok"
    # to GET / as well), so swapped host variables are caught.
    url = f"http://{host}/v1/projects/fleetops-probe/databases/(default)/documents/probe"
    try:
        with _session() as session:
            response = session.get(url, timeout=timeout)
    except requests.RequestException:
        return False
    return response.status_code == 200


def _request(method: str, url: str, what: str, timeout: float) -> None:
    try:
        with _session() as session:
            response = session.request(method, url, timeout=timeout)
    except requests.RequestException as exc:
        raise EmulatorUnreachableError(
            f"Could not {what} at {url} ({exc.__class__.__name__}): check that the emulator runs."
        ) from exc
    if response.status_code >= 300:
        raise EmulatorError(
            f"Could not {what}: {method} {url} answered {response.status_code} "
            f"{response.text[:200]!r}; check the host and project."
        )


def reset_firestore(
    host: str, project: str, database: str = "(default)", timeout: float = 30.0
) -> None:
    """Delete every document of one database of one project in the Firestore emulator."""
    url = (
        f"http://{host}/emulator/v1/projects/{quote(project, safe='')}"
        f"/databases/{quote(database, safe='()')}/documents"
    )
    _request("DELETE", url, "reset the Firestore emulator", timeout)


def reset_pubsub(host: str, timeout: float = 30.0) -> None:
    """Delete every topic and subscription, of every project, in the Pub/Sub emulator."""
    _request("POST", f"http://{host}/reset", "reset the Pub/Sub emulator", timeout)


def emulators_from_env() -> tuple[str, str] | None:
    """(pubsub_host, firestore_host) from the environment when both are set and answering.

    None when neither is set. Raises `EmulatorUnreachableError` when they are set but do not
    both answer, and `EmulatorError` when only one is set.
    """
    pubsub = os.environ.get("PUBSUB_EMULATOR_HOST", "").strip()
    firestore = os.environ.get("FIRESTORE_EMULATOR_HOST", "").strip()
    if not pubsub and not firestore:
        return None
    if not (pubsub and firestore):
        set_var, unset_var = (
            ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")
            if pubsub
            else ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
        )
        raise EmulatorError(
            f"{set_var} is set but {unset_var} is not: set both to reuse running emulators, "
            "or unset both to start fresh ones."
        )
    with ThreadPoolExecutor(max_workers=2) as pool:
        pubsub_ok = pool.submit(pubsub_answers, pubsub)
        firestore_ok = pool.submit(firestore_answers, firestore)
        answers = {
            "PUBSUB_EMULATOR_HOST": pubsub_ok.result(),
            "FIRESTORE_EMULATOR_HOST": firestore_ok.result(),
        }
    silent = [f"{var}={os.environ[var].strip()}" for var, ok in answers.items() if not ok]
    if silent:
        raise EmulatorUnreachableError(
            f"{' and '.join(silent)} {'is' if len(silent) == 1 else 'are'} set, but no "
            "emulator of that kind answers there: start the emulators or unset these variables."
        )
    return pubsub, firestore


# --- processes -----------------------------------------------------------------------------


class EmulatorProcess:
    """One emulator running in its own process group; stop() ends the whole group."""

    def __init__(
        self,
        name: str,
        port: int,
        process: subprocess.Popen[bytes],
        log_path: Path,
        started_in: float,
    ) -> None:
        self.name = name
        self.port = port
        self.host = f"{LOOPBACK}:{port}"
        self.log_path = log_path
        self.started_in = started_in
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after timeout seconds; safe to call again."""
        if self._process.returncode is not None:
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self._process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorProcess({self.name!r}, host={self.host!r}, pid={self.pid})"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class EmulatorPair:
    """A Pub/Sub and a Firestore emulator that start and stop together."""

    def __init__(self, pubsub: EmulatorProcess, firestore: EmulatorProcess) -> None:
        self.pubsub = pubsub
        self.firestore = firestore

    @property
    def pubsub_host(self) -> str:
        return self.pubsub.host

    @property
    def firestore_host(self) -> str:
        return self.firestore.host

    def env(self) -> dict[str, str]:
        """The variables that point Google's client libraries at these emulators."""
        return {
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
        }

    def stop(self, timeout: float = 10.0) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            stops = [pool.submit(p.stop, timeout) for p in (self.pubsub, self.firestore)]
        for done in stops:
            done.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _check_port_free(port: int, name: str) -> None:
    # SO_REUSEADDR as the emulators' own servers set it, so a TIME_WAIT leftover does not count
    # as taken, while a listener (on 127.0.0.1 or on every address) still does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            raise PortInUseError(
                f"Port {port} on {LOOPBACK} is already in use, so the {name} emulator cannot "
                "start there: stop whatever holds it or choose another port.",
                port,
            ) from exc


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen, so the kernel hands out distinct ones.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _log_tail(log_path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"


def _start(
    name: str,
    command: Callable[[], list[str]],
    ready: Callable[[str, float], bool],
    *,
    port: int | None,
    log_dir: Path,
    ready_timeout: float,
    java_options: Sequence[str],
) -> EmulatorProcess:
    java = java_binary()
    jar_args = command()
    chosen = _free_ports(1)[0] if port is None else port
    _check_port_free(chosen, name)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name.lower().replace('/', '')}-{chosen}.log"
    argv = [str(java), *java_options, *jar_args, f"--host={LOOPBACK}", f"--port={chosen}"]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
            start_new_session=True,
        )
    emulator = EmulatorProcess(name, chosen, process, log_path, 0.0)
    try:
        _wait_ready(emulator, process, ready, started + ready_timeout, ready_timeout)
    except BaseException:
        emulator.stop(timeout=5)
        raise
    emulator.started_in = time.monotonic() - started
    return emulator


def _wait_ready(
    emulator: EmulatorProcess,
    process: subprocess.Popen[bytes],
    ready: Callable[[str, float], bool],
    deadline: float,
    ready_timeout: float,
) -> None:
    name, log_path = emulator.name, emulator.log_path
    while True:
        if _BIND_FAILURE.search(_log_tail(log_path, 200)) is not None:
            raise PortInUseError(
                f"Port {emulator.port} on {LOOPBACK} was taken before the {name} emulator could "
                "bind it: stop whatever holds it or choose another port.",
                emulator.port,
            )
        code = process.poll()
        if code is not None:
            raise EmulatorNotReadyError(
                f"The {name} emulator exited with code {code} before answering; "
                f"its log ({log_path}) ends with:\n{_log_tail(log_path)}",
                log_path,
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EmulatorNotReadyError(
                f"The {name} emulator did not answer at {emulator.host} within "
                f"{ready_timeout:g} s (a busy machine may need a longer ready_timeout); "
                f"its log ({log_path}) ends with:\n{_log_tail(log_path)}",
                log_path,
            )
        if ready(emulator.host, min(2.0, max(remaining, 0.1))):
            return
        time.sleep(0.05)


def start_pubsub(
    port: int | None,
    log_dir: Path,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    java_options: Sequence[str] = (),
) -> EmulatorProcess:
    """Start the Pub/Sub emulator on 127.0.0.1 (a free port when port is None) and wait until
    it answers; its output goes to `pubsub-PORT.log` in log_dir.

    java_options go to the JVM, for example `FAST_START_JAVA_OPTIONS`.
    """
    return _start(
        "Pub/Sub",
        lambda: ["-jar", str(pubsub_jar())],
        pubsub_answers,
        port=port,
        log_dir=log_dir,
        ready_timeout=ready_timeout,
        java_options=java_options,
    )


def start_firestore(
    port: int | None,
    log_dir: Path,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    java_options: Sequence[str] = (),
) -> EmulatorProcess:
    """Start the Firestore emulator (native mode) on 127.0.0.1 (a free port when port is None)
    and wait until it answers; its output goes to `firestore-PORT.log` in log_dir.

    java_options go to the JVM, for example `FAST_START_JAVA_OPTIONS`.
    """
    return _start(
        "Firestore",
        lambda: ["-cp", str(firestore_jar()), _FIRESTORE_MAIN, "start", _FIRESTORE_MODE],
        firestore_answers,
        port=port,
        log_dir=log_dir,
        ready_timeout=ready_timeout,
        java_options=java_options,
    )


def start_emulators(
    log_dir: Path,
    pubsub_port: int | None = None,
    firestore_port: int | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    java_options: Sequence[str] = (),
) -> EmulatorPair:
    """Start both emulators at once (their JVMs warm up in parallel) and wait for both.

    If either fails, the other is stopped and the first error is raised.
    """
    java_binary()
    pubsub_jar()
    firestore_jar()
    if pubsub_port is None or firestore_port is None:
        free = iter(_free_ports(2))
        pubsub_port = next(free) if pubsub_port is None else pubsub_port
        firestore_port = next(free) if firestore_port is None else firestore_port
    # Both checked before either starts, so a taken port costs no JVM start.
    _check_port_free(pubsub_port, "Pub/Sub")
    _check_port_free(firestore_port, "Firestore")
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-start") as pool:
        pubsub = pool.submit(start_pubsub, pubsub_port, log_dir, ready_timeout, java_options)
        firestore = pool.submit(
            start_firestore, firestore_port, log_dir, ready_timeout, java_options
        )
    started: list[EmulatorProcess] = []
    errors: list[BaseException] = []
    for future in (pubsub, firestore):
        error = future.exception()
        if error is None:
            started.append(future.result())
        else:
            errors.append(error)
    if errors:
        for emulator in started:
            emulator.stop()
        raise errors[0]
    return EmulatorPair(started[0], started[1])
