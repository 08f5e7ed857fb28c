"""Rollouts, automation, maintenance, windows and remediation through both CLI backends.

`Fleet` wires one seeded `ApiHarness` to both: the API backend over an in-process
WSGI transport, and the direct backend on the same in-memory fakes. Whatever one
answers about a state, the other must answer too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from fleetops import runtime
from fleetops.adapters import firestore_dead_letters
from fleetops.api.auth import Role
from fleetops.cli.backend import ApiBackend, Backend, BackendError, DirectBackend, RolloutPlan
from fleetops.domain.model import MaintenanceWindow
from fleetops.domain.rollouts import RolloutStatus
from fleetops.domain.windows import Freeze
from tests.unit.test_api_backend import URL, WsgiAdapter
from tests.unit.test_api_endpoints import PAUSED_ROLLOUT, ROLLOUT, TICK_JOB, ApiHarness

PRINCIPALS = {
    Role.VIEWER: "viewer@local",
    Role.OPERATOR: "operator@local",
    Role.ADMIN: "admin@local",
}
WINDOW = {"days": ["sat", "sun"], "start": "02:00", "duration": "4h", "timezone": "Europe/Berlin"}


class Fleet:
    """One seeded fleet, reachable through the API (any role) and directly."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.harness = ApiHarness(tmp_path)
        self.ids = self.harness.seed()
        fleet = self.harness.fleet
        monkeypatch.setattr(runtime, "state_store", lambda: fleet.store)
        monkeypatch.setattr(runtime, "publisher", lambda: fleet.publisher)
        monkeypatch.setattr(runtime, "utc_now", fleet.clock.now)
        monkeypatch.setattr(firestore_dead_letters, "default_store", lambda: self.harness.letters)
        monkeypatch.setattr(runtime, "scheduler_jobs", lambda: self.harness.jobs)

    def api(self, role: Role = Role.ADMIN) -> ApiBackend:
        session = requests.Session()
        session.mount(URL, WsgiAdapter(self.harness.client))
        return ApiBackend(URL, self.harness.token(role), session)

    def direct(self, role: Role = Role.ADMIN) -> DirectBackend:
        return DirectBackend(principal=PRINCIPALS[role])

    def both(self, role: Role = Role.ADMIN) -> list[Backend]:
        return [self.api(role), self.direct(role)]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    return Fleet(tmp_path, monkeypatch)


# ------------------------------------------------------------------ rollouts


def test_both_backends_read_the_same_rollouts(fleet: Fleet) -> None:
    api, direct = fleet.both(Role.VIEWER)
    assert [r.id for r in api.list_rollouts()] == [ROLLOUT, PAUSED_ROLLOUT]
    assert api.list_rollouts() == direct.list_rollouts()
    assert api.list_rollouts(limit=1) == direct.list_rollouts(limit=1)
    shown = api.get_rollout(ROLLOUT)
    assert shown == direct.get_rollout(ROLLOUT)
    assert [w.wave.name for w in shown.waves] == ["canary", "batch 1"]
    assert shown.waves[0].counts == {
        "pending": 1,
        "started": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
    }


@pytest.mark.parametrize("through", ["api", "direct"])
def test_a_rollout_is_started_paused_resumed_and_aborted_as_the_caller(
    fleet: Fleet, through: str
) -> None:
    backend = fleet.api(Role.OPERATOR) if through == "api" else fleet.direct(Role.OPERATOR)
    plan = RolloutPlan(version="4.0.0", selector="ring!=canary", canary="", bake="0", now=True)
    started = backend.start_rollout(plan)
    rollout = started.rollout
    assert (rollout.status, rollout.created_by) == (RolloutStatus.RUNNING, "operator@local")
    assert rollout.target_version == "4.0.0"
    assert not rollout.respect_windows
    assert rollout.bake == timedelta(0)
    assert [w.instances for w in rollout.waves] == [("acme-1",)]
    assert started == fleet.direct().get_rollout(rollout.id)
    paused = backend.change_rollout(rollout.id, RolloutStatus.PAUSED)
    assert paused.rollout.status is RolloutStatus.PAUSED
    assert paused.rollout.history[-1]["actor"] == "operator@local"
    resumed = backend.change_rollout(rollout.id, RolloutStatus.RUNNING)
    assert resumed.rollout.status is RolloutStatus.RUNNING
    aborted = backend.change_rollout(rollout.id, RolloutStatus.ABORTED)
    assert aborted.rollout.status is RolloutStatus.ABORTED
    assert aborted == fleet.api().get_rollout(rollout.id)
    with pytest.raises(BackendError, match=f"rollout {rollout.id} is aborted: cannot make it"):
        backend.change_rollout(rollout.id, RolloutStatus.RUNNING)


def test_rollout_refusals_are_one_sentence_both_ways(fleet: Fleet) -> None:
    for backend in fleet.both(Role.OPERATOR):
        with pytest.raises(BackendError, match="rollout ro-nothing does not exist"):
            backend.get_rollout("ro-nothing")
        with pytest.raises(BackendError, match="no instance matches the selector"):
            backend.start_rollout(RolloutPlan(version="1.0.0", selector="region=mars"))
        with pytest.raises(BackendError, match="selector 'ring': each part must be KEY=VALUE"):
            backend.start_rollout(RolloutPlan(version="5.0.0", selector="ring"))
    with pytest.raises(BackendError, match="field 'version' is required"):
        fleet.api(Role.OPERATOR).start_rollout(RolloutPlan())
    with pytest.raises(BackendError) as denied:
        fleet.api(Role.VIEWER).change_rollout(ROLLOUT, RolloutStatus.PAUSED)
    assert str(denied.value) == (
        "pausing a rollout needs the operator role; you are viewer@local (viewer)"
    )


def test_a_retried_rollout_start_names_one_rollout(fleet: Fleet) -> None:
    """The key is chosen once per start: a retry after a lost answer plans nothing new."""

    class LoseFirstAnswer(WsgiAdapter):
        def send(self, request: requests.PreparedRequest, *a: Any, **k: Any) -> requests.Response:
            answer = super().send(request, *a, **k)
            if request.method == "POST" and len(self.sent) == 1:
                raise requests.ConnectionError("reset by peer")
            return answer

    session = requests.Session()
    adapter = LoseFirstAnswer(fleet.harness.client)
    session.mount(URL, adapter)
    backend = ApiBackend(URL, fleet.harness.token(Role.OPERATOR), session)
    started = backend.start_rollout(RolloutPlan(version="4.0.0", canary="", now=True))
    keys = {r.headers["Idempotency-Key"] for r in adapter.sent if r.method == "POST"}
    assert len(keys) == 1
    assert len(adapter.sent) == 2
    assert len(fleet.direct().list_rollouts()) == 3
    assert started.rollout.id in {r.id for r in fleet.direct().list_rollouts()}


# ------------------------------------------------------------------ automation


def test_automation_reads_and_changes_alike_through_both(fleet: Fleet) -> None:
    api, direct = fleet.both()
    assert api.automation_status() == direct.automation_status()
    paused = api.pause_automation()
    assert (paused.settings.paused, paused.settings.paused_by) == (True, "admin@local")
    assert paused == direct.automation_status()
    changed = api.change_automation(dry_run=True, limits={"cooldown_seconds": "2"})
    assert changed.settings.dry_run
    assert changed.settings.limits.cooldown == timedelta(seconds=2)
    assert changed == direct.automation_status()
    resumed = direct.resume_automation()
    assert not resumed.settings.paused
    now = fleet.harness.fleet.clock.now()
    assert resumed.circuit.reason == f"closed by admin@local at {now.isoformat()}"
    assert api.automation_status() == resumed
    again = direct.change_automation(dry_run=False, limits={"max_remediations": "5"})
    assert again.settings.limits.max_remediations == 5
    assert api.automation_status() == again


def test_automation_refusals_are_one_sentence(fleet: Fleet) -> None:
    for backend in fleet.both():
        with pytest.raises(BackendError, match="cooldown_seconds takes a number, not 'soon'"):
            backend.change_automation(limits={"cooldown_seconds": "soon"})
    with pytest.raises(BackendError, match="cooldown_seconds cannot be negative"):
        fleet.direct().change_automation(limits={"cooldown_seconds": "-1"})
    with pytest.raises(BackendError, match="cooldown_seconds"):
        fleet.api().change_automation(limits={"cooldown_seconds": "-1"})
    with pytest.raises(BackendError, match="speed is not a limit"):
        fleet.direct().change_automation(limits={"speed": "1"})
    with pytest.raises(BackendError, match="speed"):
        fleet.api().change_automation(limits={"speed": "1"})
    with pytest.raises(BackendError) as denied:
        fleet.api(Role.OPERATOR).resume_automation()
    assert str(denied.value) == (
        "resuming automation needs the admin role; you are operator@local (operator)"
    )


# ------------------------------------------------------------------ maintenance


def test_maintenance_jobs_and_settings_through_both(fleet: Fleet) -> None:
    api, direct = fleet.both()
    status = api.maintenance_status()
    assert [job.id for job in status.jobs] == [TICK_JOB]
    assert status == direct.maintenance_status()
    paused = api.change_maintenance_jobs("pause")
    assert [job.state for job in paused.jobs] == ["PAUSED"]
    assert paused.settings.history[-1].actor == "admin@local"
    assert paused == direct.maintenance_status()
    resumed = direct.change_maintenance_jobs("resume")
    assert [job.state for job in resumed.jobs] == ["ENABLED"]
    assert resumed == api.maintenance_status()
    api.change_maintenance_jobs("run-now")
    assert fleet.harness.jobs.fired == [TICK_JOB]


def test_the_default_window_and_freezes_through_both(fleet: Fleet) -> None:
    api, direct = fleet.both()
    window = MaintenanceWindow(("sat", "sun"), "02:00", "4h", "Europe/Berlin")
    assert api.set_default_window(WINDOW) == window
    assert direct.set_default_window({**WINDOW, "start": "03:00"}).start == "03:00"
    assert api.maintenance_status().settings.default_window == window.__class__(
        ("sat", "sun"), "03:00", "4h", "Europe/Berlin"
    )
    year_end = Freeze(
        datetime(2026, 12, 20, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC), "year end"
    )
    freeze = {"start": "2026-12-20T00:00:00Z", "end": "2027-01-02T00:00:00Z", "reason": "year end"}
    assert api.add_freeze(freeze) == year_end
    assert direct.add_freeze({**freeze, "start": "2026-12-20T01:00:00+01:00"}) == year_end
    settings = direct.maintenance_status().settings
    assert settings.freezes == (year_end,)
    assert settings == api.maintenance_status().settings
    for backend in (api, direct):
        with pytest.raises(BackendError, match="end"):
            backend.add_freeze({**freeze, "end": "2026-12-01T00:00:00Z"})
        with pytest.raises(BackendError, match="Mars/Olympus"):
            backend.set_default_window({**WINDOW, "timezone": "Mars/Olympus"})


def test_a_scheduler_out_of_reach(fleet: Fleet) -> None:
    fleet.harness.jobs.reachable = False
    status = fleet.api().maintenance_status()
    assert status.jobs == []
    assert status.scheduler_error == "the scheduler could not be reached; try again"
    with pytest.raises(BackendError, match="the scheduler is out of reach; try again"):
        fleet.api().change_maintenance_jobs("pause")


# ------------------------------------------------------------------ one instance


def test_windows_and_remediation_reset_through_both(fleet: Fleet) -> None:
    api, direct = fleet.both(Role.OPERATOR)
    fleet.direct().set_default_window(WINDOW)
    one = api.instance_windows("acme-1", 2)
    assert one == direct.instance_windows("acme-1", 2)
    assert [o.to_json() for o in one] == [o.to_json() for o in direct.instance_windows("acme-1", 2)]
    assert one[0].default
    assert len(one[0].openings) == 2
    every = api.instance_windows(None, 3)
    assert [w.instance for w in every] == ["acme-1", "beta-2"]
    assert [w.to_json() for w in every] == [w.to_json() for w in direct.instance_windows(None, 3)]
    for backend in (api, direct):
        with pytest.raises(BackendError, match="instance nope-1 does not exist"):
            backend.instance_windows("nope-1", 3)
        with pytest.raises(BackendError, match="instance nope-1 does not exist"):
            backend.reset_remediation("nope-1")
    assert api.reset_remediation("acme-1") == "operator@local"
    assert direct.reset_remediation("beta-2") == "operator@local"
    history = fleet.harness.fleet.store.instance_history("acme-1", limit=1)
    assert (history[0].actor, history[0].event) == ("operator@local", "remediation reset")


# ------------------------------------------------------------------ error sentences


class Canned(WsgiAdapter):
    """Answers every call with one canned response."""

    def __init__(self, status: int, body: bytes, reason: str = "") -> None:
        self.sent = []
        self.status, self.body, self.reason = status, body, reason

    def send(self, request: requests.PreparedRequest, *a: Any, **k: Any) -> requests.Response:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response.reason = self.reason
        response._content = self.body
        response.request = request
        return response


def canned(status: int, body: bytes, reason: str = "", **kwargs: Any) -> ApiBackend:
    session = requests.Session()
    session.mount(URL, Canned(status, body, reason))
    return ApiBackend(URL, "fo_token", session, **kwargs)


def test_http_answers_become_one_sentence() -> None:
    def sentence(status: int, message: str, **kwargs: Any) -> str:
        body = json.dumps({"error": {"code": "x", "message": message}}).encode()
        with pytest.raises(BackendError) as caught:
            canned(status, body, **kwargs).pause_automation()
        return str(caught.value)

    assert sentence(401, "the bearer token is not valid") == (
        "the API refused the token in FLEETOPS_API_TOKEN: the bearer token is not valid"
    )
    assert sentence(
        401, "the bearer token is not valid", found_in="FLEETOPS_API_TOKENS_FILE for admin2"
    ) == (
        "the API refused the token in FLEETOPS_API_TOKENS_FILE for admin2: "
        "the bearer token is not valid"
    )
    assert sentence(403, "bob@example.com is viewer; POST /v1/automation:pause needs operator") == (
        "pausing automation needs the operator role; you are bob@example.com (viewer)"
    )
    assert sentence(403, "bob@example.com has no fleetops role") == (
        "bob@example.com has no fleetops role"
    )
    assert sentence(400, "field 'dry_run': Input should be a valid boolean") == (
        "field 'dry_run': Input should be a valid boolean"
    )
    assert sentence(409, "rollout r is aborted: cannot make it running") == (
        "rollout r is aborted: cannot make it running"
    )
    assert sentence(503, "the scheduler is out of reach; try again") == (
        "the scheduler is out of reach; try again"
    )
    with pytest.raises(BackendError) as caught:
        canned(502, b"<html>bad gateway</html>", "Bad Gateway").automation_status()
    assert str(caught.value) == f"the fleetops API at {URL} answered 502 Bad Gateway"
    with pytest.raises(BackendError) as caught:
        canned(200, b"<html>a login page</html>").automation_status()
    assert str(caught.value) == (
        f"the fleetops API at {URL} answered GET /v1/automation with something other than JSON"
    )


def test_an_api_that_never_answers_is_one_sentence() -> None:
    class Slow(WsgiAdapter):
        def __init__(self) -> None:
            self.sent = []

        def send(self, request: requests.PreparedRequest, *a: Any, **k: Any) -> requests.Response:
            self.sent.append(request)
            raise requests.ReadTimeout("read timed out")

    session = requests.Session()
    slow = Slow()
    session.mount(URL, slow)
    with pytest.raises(BackendError) as caught:
        ApiBackend(URL, "fo_token", session).list_rollouts()
    assert str(caught.value) == f"the fleetops API at {URL} did not answer within 30s; try again"
    with pytest.raises(BackendError):
        ApiBackend(URL, "fo_token", session).start_rollout(RolloutPlan(version="2.0.0"))
    # Reads are not retried; a start is, with its one key.
    assert len(slow.sent) == 1 + 3
