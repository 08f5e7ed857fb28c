"""Rollouts, automation, maintenance, windows and remediation resets through the API.

The role matrix and 401s of these endpoints are in test_api_endpoints; here is what
each one does, what it records about its caller, and its 400, 404, 409 and 503 answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import TestResponse

from fleetops import remediation_documents as rdocs
from fleetops.api.app import ApiDeps
from fleetops.api.auth import Role
from fleetops.domain.remediation import Circuit
from fleetops.domain.windows import freeze_from_dict, window_from_dict
from fleetops.services.automation_changes import HISTORY_PATH
from fleetops.services.maintenance import SETTINGS_PATH
from fleetops.services.rollouts import advance
from tests.unit.test_api_endpoints import (
    PAUSED_ROLLOUT,
    ROLLOUT,
    TICK_JOB,
    ApiHarness,
    error,
)

BERLIN_WEEKENDS = {
    "days": ["sat", "sun"],
    "start": "02:00",
    "duration": "4h",
    "timezone": "Europe/Berlin",
}


@pytest.fixture
def harness(tmp_path: Path) -> ApiHarness:
    made = ApiHarness(tmp_path)
    made.seed()
    return made


def ok(response: TestResponse, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def refused(response: TestResponse, status: int, says: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert says in error(response)["message"], error(response)["message"]


# ------------------------------------------------------------------ rollouts


def test_a_rollout_is_planned_for_the_caller_with_its_waves(harness: ApiHarness) -> None:
    response = harness.call(
        "POST",
        "/v1/rollouts",
        Role.OPERATOR,
        body={"version": "4.0.0", "max_concurrency": 1, "bake": "0", "now": True},
    )
    rollout = ok(response, 201)
    assert response.headers["Location"] == f"/v1/rollouts/{rollout['id']}"
    assert rollout["created_by"] == "operator@local"
    assert rollout["history"][0]["actor"] == "operator@local"
    assert (rollout["action"], rollout["status"], rollout["target_version"]) == (
        "upgrade",
        "running",
        "4.0.0",
    )
    assert [(w["name"], w["instances"]) for w in rollout["waves"]] == [
        ("canary", ["beta-2"]),
        ("batch 1", ["acme-1"]),
    ]
    assert (rollout["max_concurrency"], rollout["max_errors_spec"], rollout["bake_seconds"]) == (
        1,
        "0",
        0,
    )
    assert rollout["respect_windows"] is False
    assert rollout["progress"] == [
        {
            "index": 0,
            "wave": "canary",
            "total": 1,
            "pending": 1,
            "started": 0,
            "succeeded": 0,
            "failed": 0,
            "skipped": 0,
        },
        {
            "index": 1,
            "wave": "batch 1",
            "total": 1,
            "pending": 1,
            "started": 0,
            "succeeded": 0,
            "failed": 0,
            "skipped": 0,
        },
    ]
    assert ok(harness.call("GET", response.headers["Location"], Role.VIEWER)) == rollout


def test_progress_follows_the_ticks(harness: ApiHarness) -> None:
    advance(ROLLOUT, harness.fleet.clock.now(), harness.rollout_deps)
    shown = ok(harness.call("GET", f"/v1/rollouts/{ROLLOUT}", Role.VIEWER))
    canary, batch = shown["progress"]
    assert (canary["pending"], canary["started"]) == (0, 1)
    assert batch["pending"] == 1
    harness.fleet.drain()
    advance(ROLLOUT, harness.fleet.clock.now(), harness.rollout_deps)
    canary = ok(harness.call("GET", f"/v1/rollouts/{ROLLOUT}", Role.VIEWER))["progress"][0]
    assert (canary["started"], canary["succeeded"]) == (0, 1)


def test_rollouts_are_listed_newest_first_without_progress(harness: ApiHarness) -> None:
    listed = ok(harness.call("GET", "/v1/rollouts", Role.VIEWER))["rollouts"]
    assert [r["id"] for r in listed] == [ROLLOUT, PAUSED_ROLLOUT]
    assert all(r["progress"] is None for r in listed)
    assert [r["id"] for r in ok(harness.call("GET", "/v1/rollouts?limit=1"))["rollouts"]] == [
        ROLLOUT
    ]
    refused(harness.call("GET", "/v1/rollouts?limit=0"), 400, "parameter 'limit'")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "field 'version' is required"),
        ({"action": "resize"}, "field 'size' is required"),
        ({"action": "provision", "version": "1"}, "field 'action'"),
        ({"action": "delete"}, "field 'action'"),
        ({"version": ""}, "field 'version'"),
        ({"version": "4", "selector": {"": "x"}}, "field 'selector."),
        ({"version": "4", "selector": {"ring": 1}}, "field 'selector.ring'"),
        ({"version": "4", "max_concurrency": "150%"}, "field 'max_concurrency"),
        ({"version": "4", "max_errors": -1}, "field 'max_errors"),
        ({"version": "4", "bake": "10s"}, "field 'bake'"),
        ({"version": "4", "canary": "ring"}, "field 'canary'"),
        ({"version": "4", "now": "yes"}, "field 'now'"),
        ({"version": "4", "created_by": "mallory"}, "field 'created_by' is not part"),
        ({"version": "4", "requested_by": "mallory"}, "field 'requested_by' is not part"),
    ],
)
def test_a_bad_rollout_body_is_400_naming_the_field(
    harness: ApiHarness, body: dict[str, Any], says: str
) -> None:
    before = harness.fleet.store.list_documents("rollouts", limit=100)
    response = harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=body)
    refused(response, 400, says)
    assert error(response)["code"] == "invalid-request"
    assert harness.fleet.store.list_documents("rollouts", limit=100) == before


def test_a_rollout_body_must_be_a_json_object(harness: ApiHarness) -> None:
    broken = harness.call(
        "POST", "/v1/rollouts", Role.OPERATOR, data=b"{", content_type="application/json"
    )
    assert (broken.status_code, error(broken)["code"]) == (400, "malformed-json")
    refused(harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=[1]), 400, "a JSON object")
    form = harness.call("POST", "/v1/rollouts", Role.OPERATOR, data={"version": "4"})
    assert form.status_code == 415


def test_a_rollout_with_nothing_to_do_is_409(harness: ApiHarness) -> None:
    refused(
        harness.call(
            "POST", "/v1/rollouts", Role.OPERATOR, body={"version": "4", "selector": {"ring": "x"}}
        ),
        409,
        "no instance matches the selector",
    )
    harness.fleet.request({"instance": "acme-1", "action": "upgrade", "version": "2.0.0"})
    harness.fleet.drain()
    refused(
        harness.call("POST", "/v1/rollouts", Role.OPERATOR, body={"version": "2.0.0"}),
        409,
        "already run that version",
    )


def test_selectors_pick_and_exclude_and_other_actions_need_no_version(
    harness: ApiHarness,
) -> None:
    body = {"action": "restart", "selector": {"!ring": "canary"}, "canary": None}
    rollout = ok(harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=body), 201)
    assert [w["instances"] for w in rollout["waves"]] == [["acme-1"]]
    assert rollout["selector"] == {"!ring": "canary"}
    resize = {"action": "resize", "size": "large", "canary": "1", "max_errors": "50%"}
    resized = ok(harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=resize), 201)
    assert (resized["size"], resized["max_errors_spec"]) == ("large", "50%")
    assert [w["name"] for w in resized["waves"]] == ["canary", "batch 1"]


def test_an_idempotency_key_names_one_rollout(harness: ApiHarness) -> None:
    body = {"version": "4.0.0"}
    key = {"Idempotency-Key": "deploy-42"}
    first = harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=body, headers=key)
    again = harness.call("POST", "/v1/rollouts", Role.OPERATOR, body=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    other = harness.call(
        "POST", "/v1/rollouts", Role.OPERATOR, body={"version": "4.0.1"}, headers=key
    )
    assert ok(other, 201)["id"] != first.get_json()["id"]
    refused(
        harness.call(
            "POST", "/v1/rollouts", Role.OPERATOR, body=body, headers={"Idempotency-Key": "a b"}
        ),
        400,
        "parameter 'Idempotency-Key'",
    )


def test_pause_resume_and_abort_record_who_and_refuse_what_the_state_forbids(
    harness: ApiHarness,
) -> None:
    def act(verb: str, rollout: str = ROLLOUT, role: Role = Role.OPERATOR) -> TestResponse:
        return harness.call("POST", f"/v1/rollouts/{rollout}:{verb}", role)

    paused = ok(act("pause"))
    assert paused["status"] == "paused"
    assert paused["progress"] is not None
    assert paused["history"][-1] | {"at": None} == {
        "at": None,
        "actor": "operator@local",
        "event": "paused",
        "detail": "",
    }
    refused(act("pause"), 409, f"rollout {ROLLOUT} is paused: cannot make it paused")
    assert ok(act("resume", role=Role.ADMIN))["history"][-1]["actor"] == "admin@local"
    refused(act("resume"), 409, "is running: cannot make it running")
    aborted = ok(act("abort"))
    assert (aborted["status"], aborted["finished_at"] is not None) == ("aborted", True)
    for verb in ("pause", "resume", "abort"):
        refused(act(verb), 409, "is aborted")
        refused(act(verb, "ro-nope"), 404, "rollout ro-nope does not exist")
    refused(harness.call("GET", "/v1/rollouts/ro-nope", Role.VIEWER), 404, "does not exist")
    refused(harness.call("GET", "/v1/rollouts/%20x", Role.VIEWER), 400, "parameter 'id'")
    assert ok(act("abort", PAUSED_ROLLOUT))["status"] == "aborted"


# ------------------------------------------------------------------ automation


def test_automation_status_is_the_services_own_shape(harness: ApiHarness) -> None:
    status = ok(harness.call("GET", "/v1/automation", Role.VIEWER))
    assert status == {
        "paused": False,
        "paused_by": None,
        "dry_run": False,
        "circuit": {"open": False, "opened_at": None, "reason": None, "closed_at": None},
        "limits": {
            "max_remediations": 3,
            "flap_cycles": 4,
            "concurrency_percent": 10.0,
            "circuit_percent": 20.0,
            "circuit_minimum": 2,
            "cap_window_seconds": 3600.0,
            "cooldown_seconds": 300.0,
            "flap_window_seconds": 1800.0,
            "circuit_window_seconds": 600.0,
        },
    }


def test_an_operator_pauses_and_an_admin_resumes_and_closes_the_circuit(
    harness: ApiHarness,
) -> None:
    opened = Circuit(True, harness.fleet.clock.now(), "5 of 10 instances had incidents")
    harness.fleet.store.transact(
        lambda tx: tx.put_document(rdocs.CIRCUIT_PATH, rdocs.circuit_to_doc(opened))
    )
    assert ok(harness.call("GET", "/v1/automation", Role.VIEWER))["circuit"]["open"] is True
    paused = ok(harness.call("POST", "/v1/automation:pause", Role.OPERATOR))
    assert (paused["paused"], paused["paused_by"]) == (True, "operator@local")
    refused(harness.call("POST", "/v1/automation:resume", Role.OPERATOR), 403, "needs admin")
    resumed = ok(harness.call("POST", "/v1/automation:resume", Role.ADMIN))
    assert (resumed["paused"], resumed["paused_by"]) == (False, None)
    assert resumed["circuit"]["open"] is False
    assert resumed["circuit"]["reason"].startswith("closed by admin@local")


def test_patch_changes_dry_run_and_limits_and_records_who(harness: ApiHarness) -> None:
    body = {"dry_run": True, "limits": {"cooldown_seconds": 120, "max_remediations": 5}}
    changed = ok(harness.call("PATCH", "/v1/automation", Role.ADMIN, body=body))
    assert changed["dry_run"] is True
    assert (changed["limits"]["cooldown_seconds"], changed["limits"]["max_remediations"]) == (
        120.0,
        5,
    )
    assert changed["limits"]["flap_cycles"] == 4
    kept = ok(harness.call("PATCH", "/v1/automation", Role.ADMIN, body={"dry_run": None}))
    assert kept == changed
    off = ok(harness.call("PATCH", "/v1/automation", Role.ADMIN, body={"dry_run": False}))
    assert (off["dry_run"], off["limits"]["cooldown_seconds"]) == (False, 120.0)
    history = harness.fleet.store.list_documents(HISTORY_PATH, limit=10)
    assert sorted((h["actor"], h["detail"]) for _, h in history) == [
        ("admin@local", "dry_run=false"),
        ("admin@local", "dry_run=true, cooldown_seconds=120, max_remediations=5"),
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"dry_run": "true"}, "field 'dry_run'"),
        ({"limits": {"colour": 1}}, "field 'limits.colour' is not part"),
        ({"limits": {"cooldown_seconds": -1}}, "field 'limits.cooldown_seconds'"),
        ({"limits": {"max_remediations": 2.5}}, "field 'limits.max_remediations'"),
        ({"limits": {"concurrency_percent": 101}}, "field 'limits.concurrency_percent'"),
        ({"paused": False}, "field 'paused' is not part"),
    ],
)
def test_a_bad_automation_patch_is_400_and_changes_nothing(
    harness: ApiHarness, body: dict[str, Any], says: str
) -> None:
    before = ok(harness.call("GET", "/v1/automation", Role.VIEWER))
    refused(harness.call("PATCH", "/v1/automation", Role.ADMIN, body=body), 400, says)
    assert ok(harness.call("GET", "/v1/automation", Role.VIEWER)) == before


# ------------------------------------------------------------------ maintenance


def test_maintenance_shows_only_the_tick_jobs_and_the_settings(harness: ApiHarness) -> None:
    shown = ok(harness.call("GET", "/v1/maintenance", Role.VIEWER))
    assert [j["id"] for j in shown["jobs"]] == [TICK_JOB]
    assert shown["jobs"][0]["state"] == "ENABLED"
    assert shown["jobs"][0]["topic"] == "fleetops-maintenance"
    assert shown["scheduler_error"] is None
    assert (shown["default_window"], shown["freezes"], shown["history"]) == (None, [], [])


def test_an_admin_pauses_resumes_and_fires_the_tick_jobs_on_the_record(
    harness: ApiHarness,
) -> None:
    paused = ok(harness.call("POST", "/v1/maintenance:pause", Role.ADMIN))
    assert [j["state"] for j in paused["jobs"]] == ["PAUSED"]
    assert harness.jobs.jobs["billing-report"].state == "ENABLED"
    assert paused["history"][0] | {"at": None} == {
        "at": None,
        "actor": "admin@local",
        "event": "jobs paused",
        "detail": TICK_JOB,
    }
    resumed = ok(harness.call("POST", "/v1/maintenance:resume", Role.ADMIN))
    assert [j["state"] for j in resumed["jobs"]] == ["ENABLED"]
    fired = ok(harness.call("POST", "/v1/maintenance:run-now", Role.ADMIN))
    assert harness.jobs.fired == [TICK_JOB]
    assert fired["jobs"][0]["last_attempt"] is not None
    assert [h["event"] for h in fired["history"]] == ["jobs fired", "jobs resumed", "jobs paused"]


def test_a_scheduler_out_of_reach_is_503_for_changes_and_said_when_reading(
    harness: ApiHarness, tmp_path: Path
) -> None:
    harness.jobs.reachable = False
    shown = ok(harness.call("GET", "/v1/maintenance", Role.VIEWER))
    assert shown["jobs"] == []
    assert "could not be reached" in shown["scheduler_error"]
    for verb in ("pause", "resume", "run-now"):
        response = harness.call("POST", f"/v1/maintenance:{verb}", Role.ADMIN)
        refused(response, 503, "the scheduler is out of reach")
        assert response.headers["Retry-After"] == "5"
    assert harness.call("GET", "/v1/maintenance", Role.VIEWER).get_json()["history"] == []

    unconfigured = ApiHarness(tmp_path / "other")
    unconfigured.deps = ApiDeps(
        unconfigured.fleet.store,
        unconfigured.fleet.publisher,
        unconfigured.letters,
        unconfigured.fleet.clock.now,
    )
    assert "no scheduler" in ok(unconfigured.call("GET", "/v1/maintenance"))["scheduler_error"]
    refused(unconfigured.call("POST", "/v1/maintenance:pause"), 503, "no scheduler")


def test_the_default_window_is_set_on_the_record_and_rollouts_wait_for_it(
    harness: ApiHarness,
) -> None:
    body = {**BERLIN_WEEKENDS, "days": ["sun", "sat", "sun"]}
    stored = ok(harness.call("PUT", "/v1/maintenance/default-window", Role.ADMIN, body=body))
    assert stored == BERLIN_WEEKENDS
    shown = ok(harness.call("GET", "/v1/maintenance", Role.VIEWER))
    assert shown["default_window"] == BERLIN_WEEKENDS
    assert shown["history"][0]["actor"] == "admin@local"
    doc = harness.fleet.store.get_document(SETTINGS_PATH)
    assert doc is not None
    assert window_from_dict(doc["default_window"]).days == ("sat", "sun")
    # Monday noon: the rollout's canary waits for the weekend.
    report = advance(ROLLOUT, harness.fleet.clock.now(), harness.rollout_deps)
    assert report.started == ()
    canary = ok(harness.call("GET", f"/v1/rollouts/{ROLLOUT}", Role.VIEWER))["progress"][0]
    assert (canary["pending"], canary["started"]) == (1, 0)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"timezone": "Mars/Olympus"}, "field 'timezone'"),
        ({"duration": "1h90m"}, "field 'duration'"),
        ({"duration": "169h"}, "field 'duration'"),
        ({"start": "24:00"}, "field 'start'"),
        ({"days": []}, "field 'days'"),
        ({"days": ["sunday"]}, "field 'days.0'"),
        ({"start": None}, "field 'start'"),
        ({"colour": "red"}, "field 'colour' is not part"),
    ],
)
def test_a_bad_default_window_is_400_naming_the_field(
    harness: ApiHarness, change: dict[str, Any], says: str
) -> None:
    body = {**BERLIN_WEEKENDS, **change}
    response = harness.call("PUT", "/v1/maintenance/default-window", Role.ADMIN, body=body)
    refused(response, 400, says)
    assert harness.fleet.store.get_document(SETTINGS_PATH) is None


def test_a_freeze_is_added_once_on_the_record_in_a_form_rollouts_read(
    harness: ApiHarness,
) -> None:
    body = {
        "start": "2026-12-20T01:00:00+01:00",
        "end": "2027-01-02T00:00:00Z",
        "reason": "year end",
    }
    added = ok(harness.call("POST", "/v1/maintenance/freezes", Role.ADMIN, body=body), 201)
    assert added == {
        "start": "2026-12-20T00:00:00Z",
        "end": "2027-01-02T00:00:00Z",
        "reason": "year end",
    }
    ok(harness.call("POST", "/v1/maintenance/freezes", Role.ADMIN, body=body), 201)
    shown = ok(harness.call("GET", "/v1/maintenance", Role.VIEWER))
    assert shown["freezes"] == [added]
    assert [h["event"] for h in shown["history"]] == ["freeze added", "freeze added"]
    doc = harness.fleet.store.get_document(SETTINGS_PATH)
    assert doc is not None
    [stored] = doc["freezes"]
    assert freeze_from_dict(stored).start == datetime(2026, 12, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"end": "2026-12-19T00:00:00Z"}, "field 'end' must be after 'start'"),
        ({"start": "2026-12-20T00:00:00"}, "field 'start'"),
        ({"start": "tomorrow"}, "field 'start'"),
        ({"start": "1900-01-01T00:00:00Z"}, "field 'start'"),
        ({"reason": ""}, "field 'reason'"),
        ({"reason": "   "}, "field 'reason'"),
        ({"reason": None}, "field 'reason'"),
    ],
)
def test_a_bad_freeze_is_400_naming_the_field(
    harness: ApiHarness, change: dict[str, Any], says: str
) -> None:
    body = {"start": "2026-12-20T00:00:00Z", "end": "2027-01-02T00:00:00Z", "reason": "year end"}
    response = harness.call("POST", "/v1/maintenance/freezes", Role.ADMIN, body={**body, **change})
    refused(response, 400, says)
    assert harness.fleet.store.get_document(SETTINGS_PATH) is None


# ------------------------------------------------------------------ one instance


def test_an_instances_windows_are_its_own_or_the_fleet_default(harness: ApiHarness) -> None:
    nothing = ok(harness.call("GET", "/v1/instances/acme-1/windows", Role.VIEWER))
    assert nothing == {"instance": "acme-1", "window": None, "default": False, "openings": []}
    harness.fleet.request(
        {
            "instance": "gamma-3",
            "action": "provision",
            "version": "1.0.0",
            "maintenance_window": {
                "days": ["sun"],
                "start": "02:00",
                "duration": "4h",
                "timezone": "America/New_York",
            },
        }
    )
    harness.fleet.drain()
    own = ok(harness.call("GET", "/v1/instances/gamma-3/windows?count=2", Role.VIEWER))
    assert own["default"] is False
    assert own["window"]["timezone"] == "America/New_York"
    assert [(o["local_start"], o["start"]) for o in own["openings"]] == [
        ("2026-01-11T02:00:00-05:00", "2026-01-11T07:00:00Z"),
        ("2026-01-18T02:00:00-05:00", "2026-01-18T07:00:00Z"),
    ]
    ok(harness.call("PUT", "/v1/maintenance/default-window", Role.ADMIN, body=BERLIN_WEEKENDS))
    fallback = ok(harness.call("GET", "/v1/instances/acme-1/windows", Role.VIEWER))
    assert (fallback["default"], fallback["window"]) == (True, BERLIN_WEEKENDS)
    assert [o["local_start"] for o in fallback["openings"]] == [
        "2026-01-10T02:00:00+01:00",
        "2026-01-11T02:00:00+01:00",
        "2026-01-17T02:00:00+01:00",
    ]


def test_windows_of_a_missing_instance_or_a_bad_count(harness: ApiHarness) -> None:
    refused(harness.call("GET", "/v1/instances/nope-1/windows"), 404, "instance nope-1 does not")
    for count in ("0", "21", "x"):
        refused(
            harness.call("GET", f"/v1/instances/acme-1/windows?count={count}"),
            400,
            "parameter 'count'",
        )


def test_a_remediation_reset_lets_automation_act_again_and_names_who(
    harness: ApiHarness,
) -> None:
    now = harness.fleet.clock.now()
    harness.fleet.store.transact(
        lambda tx: tx.put_document(
            rdocs.state_path("acme-1"),
            {"escalated_at": now - timedelta(hours=1), "escalation_reason": "3 restarts failed"},
        )
    )
    reset = ok(harness.call("POST", "/v1/instances/acme-1/remediation:reset", Role.OPERATOR))
    assert reset == {
        "instance": "acme-1",
        "reset_by": "operator@local",
        "reset_at": now.isoformat().replace("+00:00", "Z"),
    }
    state = rdocs.state_from_doc("acme-1", harness.fleet.store.get_document("remediation/acme-1"))
    assert state.escalated_at is None
    history = harness.fleet.store.instance_history("acme-1", limit=1)
    assert (history[0].actor, history[0].event) == ("operator@local", "remediation reset")
    refused(
        harness.call("POST", "/v1/instances/nope-1/remediation:reset", Role.OPERATOR),
        404,
        "instance nope-1 does not exist",
    )


def test_new_endpoints_log_the_caller_and_never_a_token(
    harness: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="fleetops"):
        harness.call("POST", "/v1/rollouts", Role.OPERATOR, body={"version": "4.0.0"})
        harness.call("POST", "/v1/automation:pause", Role.OPERATOR)
        harness.call("POST", "/v1/maintenance:pause", Role.ADMIN)
    text = caplog.text
    assert "POST /v1/rollouts 201 operator@local" in text
    assert "operator@local started rollout" in text
    assert "operator@local paused automation" in text
    assert "POST /v1/maintenance:pause 200 admin@local" in text
    for token in harness.tokens.all:
        assert token.token not in text
    assert json.dumps(harness.tokens.operator.token) not in text
