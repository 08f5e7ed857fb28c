"""One fleet instance, run locally: a tiny HTTP program with its own port and data folder.

    python -m fleetops.local.instance_app --id ID --port PORT --data-dir DIR --version V --size S

Serves `GET /healthz` and `GET /version`. Keeps `DIR/data/app.json` across restarts. Reads
`DIR/faults.json` at start so tests can make a version fail to start or run unhealthy.
Standard library only: a fleet of these runs on one laptop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

FAULTS_FILE = "faults.json"
DATA_FOLDER = "data"
APP_FILE = "app.json"


@dataclass(frozen=True)
class InstanceConfig:
    id: str
    port: int
    data_dir: Path
    version: str
    size: str
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Faults:
    fail_start_versions: frozenset[str] = frozenset()
    unhealthy_versions: frozenset[str] = frozenset()


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave `serve_forever` at once.

    A BaseException, like KeyboardInterrupt: socketserver swallows an Exception raised while
    the main thread happens to be handing a request to its thread.
    """


def read_faults(data_dir: Path) -> Faults:
    path = data_dir / FAULTS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Faults()
    except (OSError, ValueError) as error:
        # A broken test knob must not look like a broken instance.
        print(f"instance_app: ignoring unreadable {path}: {error}", file=sys.stderr)
        return Faults()
    if not isinstance(raw, dict):
        print(f"instance_app: ignoring {path}: not a JSON object", file=sys.stderr)
        return Faults()
    return Faults(
        fail_start_versions=_string_set(raw.get("fail_start_versions")),
        unhealthy_versions=_string_set(raw.get("unhealthy_versions")),
    )


def _string_set(value: object) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def record_start(config: InstanceConfig) -> dict[str, Any]:
    """Create or update `data/app.json`: the state a snapshot copies and a restart keeps."""
    folder = config.data_dir / DATA_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / APP_FILE
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state: dict[str, Any]
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        state = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        state = {}
    state.setdefault("instance", config.id)
    state.setdefault("created_at", now)
    starts = state.get("starts")
    state["starts"] = (starts if isinstance(starts, int) else 0) + 1
    state["last_started_at"] = now
    state["version"] = config.version
    state["size"] = config.size
    partial = path.with_name(APP_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    # Atomic, so a snapshot copied while the instance runs never sees half a file.
    os.replace(partial, path)
    return state


def make_handler(config: InstanceConfig, faults: Faults) -> type[BaseHTTPRequestHandler]:
    healthy = config.version not in faults.unhealthy_versions

    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetops-instance/1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                if healthy:
                    self._send(200, {"status": "ok", "instance": config.id})
                else:
                    self._send(503, {"status": "unhealthy", "instance": config.id})
            elif path == "/version":
                body = {"instance": config.id, "version": config.version, "size": config.size}
                self._send(200, body)
            else:
                self._send(404, {"error": "not found", "path": path})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # Silent: the agent sends instance output to a log file nobody wants filled.
            return

    return Handler


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _ignore(signum: int, frame: FrameType | None) -> None:
    # A second signal while closing must not interrupt the close itself.
    return


def serve(config: InstanceConfig) -> int:
    faults = read_faults(config.data_dir)
    if config.version in faults.fail_start_versions:
        print(
            f"instance_app: {config.id} refuses to start version {config.version} "
            f"(fail_start_versions in {FAULTS_FILE})",
            file=sys.stderr,
        )
        return 1
    record_start(config)
    server = ThreadingHTTPServer((config.host, config.port), make_handler(config, faults))
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        server.serve_forever()
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, _ignore)
        signal.signal(signal.SIGINT, _ignore)
        server.server_close()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> InstanceConfig:
    parser = argparse.ArgumentParser(prog="python -m fleetops.local.instance_app")
    parser.add_argument("--id", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--version", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    return InstanceConfig(
        id=args.id,
        port=args.port,
        data_dir=args.data_dir,
        version=args.version,
        size=args.size,
        host=args.host,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
