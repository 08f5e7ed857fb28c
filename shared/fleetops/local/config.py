"""`.fleetops/local.env`: where the local stack listens, for the CLI and tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_FILE = Path(".fleetops") / "local.env"
KEYS = (
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "FLEETOPS_AGENT_URL",
    "FLEETOPS_ACTUATOR",
    "FLEETOPS_API_URL",
    "FLEETOPS_API_TOKENS_FILE",
    "FLEETOPS_API_TOKEN",
    "FLEETOPS_SCHEDULER_URL",
    "FLEETOPS_LOCATION",
)


def write_env(path: Path, values: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={value}" for key, value in values.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def find_env_file(start: Path | None = None) -> Path | None:
    """The nearest `.fleetops/local.env` from `start` upwards, or FLEETOPS_ENV_FILE."""
    named = os.environ.get("FLEETOPS_ENV_FILE")
    if named:
        return Path(named) if Path(named).is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ENV_FILE
        if candidate.is_file():
            return candidate
    return None


def load_into_environ(start: Path | None = None) -> Path | None:
    """Fill unset variables from the local env file; the environment wins."""
    path = find_env_file(start)
    if path is None:
        return None
    for key, value in read_env(path).items():
        os.environ.setdefault(key, value)
    return path
