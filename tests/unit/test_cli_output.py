"""Every command prints the same, for people and for scripts, whichever backend it uses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fleetops import log
from fleetops.api.auth import Role
from fleetops.cli import main
from fleetops.cli.backend import Backend
from tests.unit.test_api_endpoints import ROLLOUT
from tests.unit.test_cli_backends import WINDOW, Fleet

Run = Callable[..., Result]

# Commands that only read: the same state must print the same, table and JSON.
READS = [
    ["instances"],
    ["instances", "--all"],
    ["instances", "windows"],
    ["instances", "windows", "beta-2", "--count", "2"],
    ["ops", "list"],
    ["ops", "list", "--instance", "acme-1", "--limit", "1"],
    ["ops", "show", "{pending}"],
    ["rollout", "list"],
    ["rollout", "show", ROLLOUT],
    ["rollout", "show", ROLLOUT, "--watch", "--interval", "0.2"],
    ["automation", "status"],
    ["maintenance", "status"],
    ["dlq", "list"],
]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    seeded = Fleet(tmp_path, monkeypatch)
    seeded.direct().set_default_window(WINDOW)
    seeded.direct().add_freeze(
        {"start": "2026-12-20T00:00:00Z", "end": "2027-01-02T00:00:00Z", "reason": "year end"}
    )
    return seeded


def runner(monkeypatch: pytest.MonkeyPatch, backend: Backend) -> Run:
    monkeypatch.setattr(main, "_backend", lambda: backend)
    # The in-process API logs to stdout, which would mix with what the CLI prints.
    log.configure()
    monkeypatch.setattr(logging.getLogger("fleetops"), "disabled", True)
    cli = CliRunner()

    def run(*args: str) -> Result:
        return cli.invoke(main.app, list(args), env={"COLUMNS": "160"})

    return run


def both(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *args: str, role: Role = Role.ADMIN
) -> tuple[Result, Result]:
    via_api = runner(monkeypatch, fleet.api(role))(*args)
    direct = runner(monkeypatch, fleet.direct(role))(*args)
    return via_api, direct


@pytest.mark.parametrize("output", ["table", "json"])
@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_reads_print_the_same_through_the_api_and_directly(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, command: list[str], output: str
) -> None:
    args = [part.format(**fleet.ids) for part in command]
    if "--watch" in args:
        # Watching a rollout that has ended prints it once, and returns.
        fleet.direct().change_rollout(ROLLOUT, main_status("aborted"))
    via_api, direct = both(fleet, monkeypatch, *args, "--output", output, role=Role.VIEWER)
    assert via_api.exit_code == 0, via_api.output
    assert direct.exit_code == 0, direct.output
    assert via_api.stdout == direct.stdout
    if output == "json":
        json.loads(via_api.stdout)


def main_status(name: str) -> object:
    from fleetops.domain.rollouts import RolloutStatus

    return RolloutStatus(name)


def test_watching_a_rollout_refreshes_until_it_ends(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = fleet.api(Role.VIEWER)
    seen: list[str] = []
    real = backend.get_rollout

    def get_rollout(rollout_id: str) -> object:
        seen.append(rollout_id)
        if len(seen) == 3:
            fleet.direct().change_rollout(rollout_id, main_status("aborted"))  # type: ignore[arg-type]
        return real(rollout_id)

    monkeypatch.setattr(backend, "get_rollout", get_rollout)
    monkeypatch.setattr(main.time, "sleep", lambda seconds: None)
    result = runner(monkeypatch, backend)("rollout", "show", ROLLOUT, "--watch")
    assert result.exit_code == 0, result.output
    assert len(seen) == 3
    assert "aborted" in result.stdout
    assert "canary" in result.stdout


@pytest.mark.parametrize(
    ("command", "check"),
    [
        (["automation", "pause"], lambda out: out["paused_by"] == "admin@local"),
        (["automation", "dry-run", "true"], lambda out: out["dry_run"] is True),
        (
            ["automation", "set", "cooldown_seconds", "2"],
            lambda out: out["limits"]["cooldown_seconds"] == 2,
        ),
        (["automation", "resume"], lambda out: out["paused"] is False),
        (["maintenance", "pause"], lambda out: [j["state"] for j in out] == ["PAUSED"]),
        (["maintenance", "resume"], lambda out: [j["state"] for j in out] == ["ENABLED"]),
        (["maintenance", "run-now"], lambda out: len(out) == 1),
        (
            [
                "maintenance",
                "default-window",
                "--days",
                "Sun, sat",
                "--start",
                "01:00",
                "--duration",
                "3h",
                "--timezone",
                "Asia/Tokyo",
            ],
            lambda out: out["default_window"]["days"] == ["sat", "sun"],
        ),
        (
            [
                "maintenance",
                "freeze",
                "2026-12-24T00:00:00+01:00",
                "2026-12-27T00:00:00Z",
                "--reason",
                "holidays",
            ],
            lambda out: out["freeze"]["start"] == "2026-12-23T23:00:00+00:00",
        ),
        (["rollout", "pause", ROLLOUT], lambda out: out["status"] == "paused"),
        (["remediation", "reset", "acme-1"], lambda out: out["reset_by"] == "admin@local"),
        (["ops", "cancel", "{pending}"], lambda out: out["status"] == "cancelled"),
    ],
    ids=lambda c: " ".join(c) if isinstance(c, list) else "",
)
def test_changes_print_the_same_through_the_api_and_directly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    check: Callable[[object], bool],
) -> None:
    printed = {}
    for through in ("api", "direct"):
        fleet = Fleet(tmp_path / through, monkeypatch)
        backend = fleet.api() if through == "api" else fleet.direct()
        args = [part.format(**fleet.ids) for part in command]
        result = runner(monkeypatch, backend)(*args, "--output", "json")
        assert result.exit_code == 0, result.output
        printed[through] = json.loads(result.stdout)
        assert check(printed[through]), printed[through]
        again = Fleet(tmp_path / f"{through}-table", monkeypatch)
        table_backend = again.api() if through == "api" else again.direct()
        table_args = [part.format(**again.ids) for part in command]
        table = runner(monkeypatch, table_backend)(*table_args)
        assert table.exit_code == 0, table.output
    # History and ids carry each run's own times; the rest is the same.
    for shown in printed.values():
        if isinstance(shown, dict):
            for key in ("history", "updated_at", "finished_at", "id", "request_id", "created_at"):
                shown.pop(key, None)
    assert printed["api"] == printed["direct"]


def test_a_request_waits_with_its_operation(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = fleet.api(Role.OPERATOR)
    real = backend.get_operation

    def get_operation(op_id: str) -> object:
        fleet.harness.process_requests()
        return real(op_id)

    monkeypatch.setattr(backend, "get_operation", get_operation)
    run = runner(monkeypatch, backend)
    result = run("request", "acme-1", "snapshot", "--wait", "--output", "json")
    assert result.exit_code == 0, result.output
    op = json.loads(result.stdout)
    assert (op["status"], op["requested_by"]) == ("succeeded", "operator@local")
    published = run("request", "beta-2", "restart", "--reason", "r", "--output", "json")
    assert json.loads(published.stdout)["status"] == "published"
    failed = run("request", "ghost-9", "restart", "--wait")
    assert failed.exit_code == 1
    assert "instance ghost-9 does not exist" in failed.stdout


def test_instances_show_prints_the_same_once_the_api_serves_decisions(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.harness.fleet.alert("acme-1", "inc-1")
    store = fleet.harness.fleet.store
    decisions = [d for _, d in store.list_documents("instances/acme-1/decisions", order_by="at")]
    remediation = store.get_document("remediation/acme-1")
    assert decisions
    assert remediation
    backend = fleet.api(Role.VIEWER)
    real = backend._call

    def serving_decisions(method: str, path: str, **kwargs: Any) -> Any:
        answer = real(method, path, **kwargs)
        if path == "/v1/instances/acme-1":
            # As pydantic would write them: instants in UTC with a Z.
            extra = {"decisions": decisions, "remediation": remediation}
            answer |= json.loads(json.dumps(extra, default=_zulu))
        return answer

    monkeypatch.setattr(backend, "_call", serving_decisions)
    for output in ("table", "json"):
        via_api = runner(monkeypatch, backend)("instances", "show", "acme-1", "-o", output)
        direct = runner(monkeypatch, fleet.direct())("instances", "show", "acme-1", "-o", output)
        assert via_api.exit_code == direct.exit_code == 0, via_api.output + direct.output
        assert via_api.stdout == direct.stdout
        assert "acted" in via_api.stdout or "dry_run" in via_api.stdout or "inc-1" in via_api.stdout


def _zulu(value: Any) -> str:
    assert isinstance(value, datetime)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_instances_show_says_when_the_api_does_not_serve_decisions(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    via_api = runner(monkeypatch, fleet.api(Role.VIEWER))("instances", "show", "acme-1")
    assert "remediation decisions: this API does not serve them" in via_api.stdout
    shown = runner(monkeypatch, fleet.api(Role.VIEWER))("instances", "show", "acme-1", "-o", "json")
    assert json.loads(shown.stdout)["decisions"] is None
    direct = runner(monkeypatch, fleet.direct())("instances", "show", "acme-1", "-o", "json")
    assert json.loads(direct.stdout)["decisions"] == []
