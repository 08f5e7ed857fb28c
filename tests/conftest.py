"""Shared fixtures: the Pub/Sub and Firestore emulators, and a fresh project per test.

Running emulators named by PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST are reused;
otherwise both are started once per session. Where they cannot run, their tests are skipped
with a loud banner, or fail when FLEETOPS_REQUIRE_EMULATORS=1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetops.local import emulators as emu

MISSING = "EMULATORS MISSING"
_TESTS = Path(__file__).parent
_EMULATOR_DIRS = tuple(_TESTS / name for name in ("integration", "e2e", "contract"))


@dataclass(frozen=True)
class Emulators:
    pubsub_host: str
    firestore_host: str
    # True when this session started them (and so stops them); False when reused from the env.
    started: bool


@dataclass(frozen=True)
class GcpEnv:
    project: str
    pubsub_host: str
    firestore_host: str


def _emulators_required() -> bool:
    return os.environ.get("FLEETOPS_REQUIRE_EMULATORS", "").strip() not in ("", "0")


@pytest.fixture(scope="session")
def emulator_tools() -> None:
    """Java and both emulator jars are here; else skip (or fail when they are required)."""
    reason = emu.available()
    if reason is None:
        return
    if _emulators_required():
        pytest.fail(f"{MISSING} (FLEETOPS_REQUIRE_EMULATORS=1): {reason}", pytrace=False)
    pytest.skip(f"{MISSING}: {reason}")


@pytest.fixture(scope="session")
def emulators(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulators]:
    """Both emulators answering: reused from the environment, or started for this session."""
    reused = emu.emulators_from_env()
    if reused is not None:
        yield Emulators(pubsub_host=reused[0], firestore_host=reused[1], started=False)
        return
    request.getfixturevalue("emulator_tools")
    log_dir = tmp_path_factory.mktemp("emulators")
    with emu.start_emulators(log_dir, java_options=emu.FAST_START_JAVA_OPTIONS) as pair:
        yield Emulators(
            pubsub_host=pair.pubsub_host, firestore_host=pair.firestore_host, started=True
        )


@pytest.fixture
def gcp_env(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> GcpEnv:
    """The emulators in the environment and a project id of this test's own.

    A fresh project isolates both emulators: Firestore keeps one database per project, and
    Pub/Sub topic and subscription names are scoped by project.
    """
    project = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulators.pubsub_host)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    return GcpEnv(
        project=project,
        pubsub_host=emulators.pubsub_host,
        firestore_host=emulators.firestore_host,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marker = pytest.mark.emulators
    for item in items:
        under = any(item.path.is_relative_to(d) for d in _EMULATOR_DIRS)
        uses = "emulators" in getattr(item, "fixturenames", ())
        if (under or uses) and item.get_closest_marker("emulators") is None:
            item.add_marker(marker)


def _skip_reason(report: pytest.TestReport) -> str | None:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        message = str(longrepr[2])
        if MISSING in message:
            return message.split(f"{MISSING}: ", 1)[-1]
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = _skip_reason(report)
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        banner = f"*** {count} emulator tests SKIPPED: {reason} ***"
        terminalreporter.write_sep("*", "EMULATORS MISSING", red=True, bold=True)
        terminalreporter.write_line(banner, red=True, bold=True)
        terminalreporter.write_line(
            "*** set FLEETOPS_REQUIRE_EMULATORS=1 to make this a failure ***", red=True, bold=True
        )
