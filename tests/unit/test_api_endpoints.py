"""The API in-process on the in-memory fakes: every endpoint, for every role.

`ApiHarness` (also used by the other test_api_* modules) wires the API to the
fakes of `FakeFleet` and to `FakeSchedulerJobs`, so a request published through
the API can be handled by the real request service and its steps run, as on the
local stack.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from fleetops import log
from fleetops.adapters.memory import FakeClock
from fleetops.adapters.memory_dead_letters import InMemoryDeadLetterStore
from fleetops.api.app import Api, ApiDeps
from fleetops.api.auth import AuthConfigurationError, Role, TokenFileAuthenticator
from fleetops.contract.names import TOPIC_DEAD_LETTER, TOPIC_MAINTENANCE, TOPIC_REQUESTS
from fleetops.contract.pubsub import PubsubMessage
from fleetops.domain.model import Action, OperationStatus
from fleetops.domain.rollouts import RolloutStatus
from fleetops.local.api_tokens import LocalApiTokens, write_tokens_file
from fleetops.ports import ScheduledJob
from fleetops.services.dead_letter_store import record_dead_letter
from fleetops.services.requests import handle_request_message, operation_id_for
from fleetops.services.rollouts import RolloutDeps, StartRollout, plan_rollout, set_status
from tests.helpers import FakeFleet, push_body

ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
LETTER = "m-1"
ROLLOUT = "ro-seeded-running"
PAUSED_ROLLOUT = "ro-seeded-paused"
TICK_JOB = "fleetops-maintenance-tick"


class FakeSchedulerJobs:
    """Cloud Scheduler's jobs in memory: the maintenance tick, and a job of someone else's."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.reachable = True
        self.fired: list[str] = []
        self.jobs = {
            job.id: job
            for job in (
                self._job(TICK_JOB, TOPIC_MAINTENANCE, "*/5 * * * *"),
                self._job("billing-report", "billing", "0 3 * * *"),
            )
        }

    def _job(self, job_id: str, topic: str, schedule: str) -> ScheduledJob:
        return ScheduledJob(
            id=job_id,
            name=f"projects/p/locations/europe-west1/jobs/{job_id}",
            description=f"{job_id} job",
            schedule=schedule,
            time_zone="Etc/UTC",
            state="ENABLED",
            topic=topic,
            next_run=self.clock.now() + timedelta(minutes=5),
            last_attempt=None,
            last_error=None,
        )

    def _reach(self) -> None:
        if not self.reachable:
            raise ConnectionError("connection refused")

    def list_jobs(self) -> list[ScheduledJob]:
        self._reach()
        return list(self.jobs.values())

    def _set(self, job_id: str, **changes: Any) -> ScheduledJob:
        self._reach()
        self.jobs[job_id] = replace(self.jobs[job_id], **changes)
        return self.jobs[job_id]

    def pause_job(self, job: str) -> ScheduledJob:
        return self._set(job, state="PAUSED")

    def resume_job(self, job: str) -> ScheduledJob:
        return self._set(job, state="ENABLED")

    def run_job(self, job: str) -> ScheduledJob:
        self.fired.append(job)
        return self._set(job, last_attempt=self.clock.now())


class ApiHarness:
    def __init__(self, tmp_path: Path, *, viewer_token: str | None = None) -> None:
        self.fleet = FakeFleet()
        self.letters = InMemoryDeadLetterStore()
        self.jobs = FakeSchedulerJobs(self.fleet.clock)
        self.tokens: LocalApiTokens = write_tokens_file(tmp_path / "api-tokens.json")
        self.deps = ApiDeps(
            self.fleet.store,
            self.fleet.publisher,
            self.letters,
            self.fleet.clock.now,
            self.jobs,
        )
        self.api = Api(
            lambda: self.deps,
            lambda: TokenFileAuthenticator(self.tokens.path),
            dashboard_viewer_token=viewer_token,
        )
        self.client = Client(self.api)

    def token(self, role: Role) -> str:
        return {
            Role.VIEWER: self.tokens.viewer,
            Role.OPERATOR: self.tokens.operator,
            Role.ADMIN: self.tokens.admin,
        }[role].token

    def call(
        self,
        method: str,
        path: str,
        role: Role | None = Role.ADMIN,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> TestResponse:
        sent = dict(headers or {})
        chosen = token if token is not None else (self.token(role) if role else None)
        if chosen is not None:
            sent["Authorization"] = f"Bearer {chosen}"
        if body is not None:
            kwargs["json"] = body
        return self.client.open(path, method=method, headers=sent, **kwargs)

    def process_requests(self) -> list[str]:
        """Hand what the API published to the request service, then run every step."""
        recorded = []
        for published in self.fleet.publisher.take(TOPIC_REQUESTS):
            message = PubsubMessage(
                published.data, published.attributes, published.message_id, topic=TOPIC_REQUESTS
            )
            outcome = handle_request_message(message, self.fleet.request_deps)
            recorded.append(str(outcome.operation))
        self.fleet.drain()
        return recorded

    @property
    def rollout_deps(self) -> RolloutDeps:
        return RolloutDeps(self.fleet.store, self.fleet.publisher, self.fleet.clock.now)

    def seed_rollouts(self) -> None:
        """An upgrade to 3.0.0 running (canary beta-2, then acme-1), and the same one paused."""
        for rollout_id in (PAUSED_ROLLOUT, ROLLOUT):
            self.fleet.clock.advance(timedelta(seconds=1))
            command = StartRollout(
                action=Action.UPGRADE, version="3.0.0", requested_by="operator@local"
            )
            plan_rollout(command, self.rollout_deps, rollout_id)
        set_status(PAUSED_ROLLOUT, RolloutStatus.PAUSED, "operator@local", self.rollout_deps)

    def seed(self) -> dict[str, str]:
        """Two running instances, a delete awaiting approval (by operator@local), a dead letter,
        and two rollouts (see `seed_rollouts`)."""
        self.fleet.request({"instance": "acme-1", "action": "provision", "version": "1.0.0"})
        self.fleet.request(
            {
                "instance": "beta-2",
                "action": "provision",
                "version": "2.0.0",
                "labels": {"ring": "canary"},
                "customer": "Beta Corp",
            }
        )
        self.fleet.drain()
        self.fleet.clock.advance(timedelta(seconds=1))
        pending = self.fleet.request(
            {"instance": "acme-1", "action": "delete", "requested_by": "operator@local"}
        ).operation
        message = PubsubMessage(
            b'{"instance": "acme-1", "action": ',
            {
                "ce-id": "x",
                "fleetops-error": "malformed-json",
                "fleetops-reason": "not JSON",
                "fleetops-original-topic": TOPIC_REQUESTS,
                "fleetops-original-message-id": LETTER,
            },
            "dl-message-1",
            topic=TOPIC_DEAD_LETTER,
        )
        record_dead_letter(
            push_body(message),
            f"//pubsub.googleapis.com/projects/p/topics/{TOPIC_DEAD_LETTER}",
            self.letters,
            self.fleet.clock.now,
        )
        self.seed_rollouts()
        return {
            "pending": str(pending),
            "letter": LETTER,
            "rollout": ROLLOUT,
            "paused": PAUSED_ROLLOUT,
        }


@pytest.fixture
def harness(tmp_path: Path) -> ApiHarness:
    return ApiHarness(tmp_path)


@pytest.fixture
def seeded(harness: ApiHarness) -> tuple[ApiHarness, dict[str, str]]:
    return harness, harness.seed()


def error(response: TestResponse) -> dict[str, str]:
    body = response.get_json()
    assert isinstance(body, dict), response.get_data(as_text=True)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return dict(body["error"])


# ------------------------------------------------------------------ the role matrix

# Every /v1 endpoint that needs a token: how to call it successfully, and the least role.
PROTECTED: list[tuple[str, str, Any, Role, int]] = [
    ("GET", "/v1/instances", None, Role.VIEWER, 200),
    ("GET", "/v1/instances/acme-1", None, Role.VIEWER, 200),
    ("POST", "/v1/requests", {"instance": "acme-1", "action": "restart"}, Role.OPERATOR, 202),
    ("GET", "/v1/operations", None, Role.VIEWER, 200),
    ("GET", "/v1/operations/{pending}", None, Role.VIEWER, 200),
    ("POST", "/v1/operations/{pending}:approve", None, Role.ADMIN, 200),
    ("POST", "/v1/operations/{pending}:cancel", None, Role.OPERATOR, 200),
    ("GET", "/v1/dead-letters", None, Role.VIEWER, 200),
    ("GET", "/v1/dead-letters/{letter}", None, Role.VIEWER, 200),
    ("POST", "/v1/dead-letters/{letter}:replay", None, Role.OPERATOR, 200),
    ("GET", "/v1/me", None, Role.VIEWER, 200),
    ("POST", "/v1/rollouts", {"version": "4.0.0"}, Role.OPERATOR, 201),
    ("GET", "/v1/rollouts", None, Role.VIEWER, 200),
    ("GET", "/v1/rollouts/{rollout}", None, Role.VIEWER, 200),
    ("POST", "/v1/rollouts/{rollout}:pause", None, Role.OPERATOR, 200),
    ("POST", "/v1/rollouts/{paused}:resume", None, Role.OPERATOR, 200),
    ("POST", "/v1/rollouts/{rollout}:abort", None, Role.OPERATOR, 200),
    ("GET", "/v1/automation", None, Role.VIEWER, 200),
    ("POST", "/v1/automation:pause", None, Role.OPERATOR, 200),
    ("POST", "/v1/automation:resume", None, Role.ADMIN, 200),
    ("PATCH", "/v1/automation", {"dry_run": True}, Role.ADMIN, 200),
    ("GET", "/v1/maintenance", None, Role.VIEWER, 200),
    ("POST", "/v1/maintenance:pause", None, Role.ADMIN, 200),
    ("POST", "/v1/maintenance:resume", None, Role.ADMIN, 200),
    ("POST", "/v1/maintenance:run-now", None, Role.ADMIN, 200),
    (
        "PUT",
        "/v1/maintenance/default-window",
        {"days": ["sat", "sun"], "start": "02:00", "duration": "4h", "timezone": "Europe/Berlin"},
        Role.ADMIN,
        200,
    ),
    (
        "POST",
        "/v1/maintenance/freezes",
        {"start": "2026-12-20T00:00:00Z", "end": "2027-01-02T00:00:00Z", "reason": "year end"},
        Role.ADMIN,
        201,
    ),
    ("GET", "/v1/instances/acme-1/windows", None, Role.VIEWER, 200),
    ("POST", "/v1/instances/acme-1/remediation:reset", None, Role.OPERATOR, 200),
]
TEMPLATES = {
    "/v1/instances/acme-1": "/v1/instances/{id}",
    "/v1/operations/{pending}": "/v1/operations/{id}",
    "/v1/operations/{pending}:approve": "/v1/operations/{id}:approve",
    "/v1/operations/{pending}:cancel": "/v1/operations/{id}:cancel",
    "/v1/dead-letters/{letter}": "/v1/dead-letters/{id}",
    "/v1/dead-letters/{letter}:replay": "/v1/dead-letters/{id}:replay",
    "/v1/rollouts/{rollout}": "/v1/rollouts/{id}",
    "/v1/rollouts/{rollout}:pause": "/v1/rollouts/{id}:pause",
    "/v1/rollouts/{paused}:resume": "/v1/rollouts/{id}:resume",
    "/v1/rollouts/{rollout}:abort": "/v1/rollouts/{id}:abort",
    "/v1/instances/acme-1/windows": "/v1/instances/{id}/windows",
    "/v1/instances/acme-1/remediation:reset": "/v1/instances/{id}/remediation:reset",
}


def test_the_matrix_covers_every_protected_route(harness: ApiHarness) -> None:
    protected = {(r.method, r.path, r.role) for r in harness.api.routes if r.role is not None}
    covered = {(m, TEMPLATES.get(p, p), role) for m, p, _, role, _ in PROTECTED}
    assert covered == protected


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
@pytest.mark.parametrize(
    ("method", "path", "body", "needed", "status"),
    PROTECTED,
    ids=[f"{m} {p}" for m, p, *_ in PROTECTED],
)
def test_each_role_is_allowed_exactly_what_it_needs(
    seeded: tuple[ApiHarness, dict[str, str]],
    method: str,
    path: str,
    body: Any,
    needed: Role,
    status: int,
    role: Role,
) -> None:
    harness, ids = seeded
    response = harness.call(method, path.format(**ids), role, body=body)
    if role.allows(needed):
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.content_type == "application/json"
    else:
        assert response.status_code == 403
        assert error(response)["code"] == "permission-denied"
        assert f"needs {needed.value}" in error(response)["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "needed", "status"),
    PROTECTED,
    ids=[f"{m} {p}" for m, p, *_ in PROTECTED],
)
def test_no_token_or_a_bad_token_is_401(
    seeded: tuple[ApiHarness, dict[str, str]],
    method: str,
    path: str,
    body: Any,
    needed: Role,
    status: int,
) -> None:
    harness, ids = seeded
    store = harness.fleet.store
    before = copy.deepcopy((store.docs, store.history, store.paths, harness.jobs.jobs))
    target = path.format(**ids)
    missing = harness.call(method, target, None, body=body)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert error(missing)["code"] == "unauthenticated"
    forged = "fo_" + "x" * 43
    bad = harness.call(method, target, token=forged, body=body)
    assert bad.status_code == 401
    assert forged not in bad.get_data(as_text=True)
    basic = harness.call(method, target, None, body=body, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    # Nothing happened on the caller's behalf.
    assert harness.fleet.publisher.on(TOPIC_REQUESTS) == []
    assert (store.docs, store.history, store.paths, harness.jobs.jobs) == before
    assert harness.jobs.fired == []


def test_a_token_removed_from_the_file_stops_working(harness: ApiHarness) -> None:
    assert harness.call("GET", "/v1/me", Role.VIEWER).status_code == 200
    old = harness.token(Role.VIEWER)
    write_tokens_file(harness.tokens.path)
    assert harness.call("GET", "/v1/me", token=old).status_code == 401


def test_me_names_the_caller_and_role(harness: ApiHarness) -> None:
    for role, principal in ((Role.VIEWER, "viewer@local"), (Role.ADMIN, "admin@local")):
        assert harness.call("GET", "/v1/me", role).get_json() == {
            "principal": principal,
            "role": role.value,
        }


# ------------------------------------------------------------------ instances


def test_instances_are_listed_and_filtered(seeded: tuple[ApiHarness, dict[str, str]]) -> None:
    harness, _ = seeded

    def ids(query: str) -> list[str]:
        response = harness.call("GET", f"/v1/instances{query}", Role.VIEWER)
        assert response.status_code == 200, response.get_data(as_text=True)
        return [i["id"] for i in response.get_json()["instances"]]

    assert ids("") == ["acme-1", "beta-2"]
    assert ids("?state=running") == ["acme-1", "beta-2"]
    assert ids("?state=suspended") == []
    assert ids("?health=healthy") == ["acme-1", "beta-2"]
    assert ids("?label=ring:canary") == ["beta-2"]
    assert ids("?label=ring:canary&label=tier:gold") == []
    assert ids("?q=BETA%20corp") == ["beta-2"]
    assert ids("?q=2.0.0") == ["beta-2"]
    assert ids("?state=deleted") == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("?state=sleeping", "state"),
        ("?health=", "health"),
        ("?label=nocolon", "label"),
        ("?state=running&state=failed", "state"),
        ("?q=" + "x" * 201, "q"),
    ],
)
def test_bad_instance_filters_are_400_naming_the_parameter(
    harness: ApiHarness, query: str, named: str
) -> None:
    response = harness.call("GET", f"/v1/instances{query}", Role.VIEWER)
    assert response.status_code == 400
    assert f"parameter '{named}'" in error(response)["message"]


def test_one_instance_comes_with_its_operations_and_history(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, ids = seeded
    body = harness.call("GET", "/v1/instances/acme-1", Role.VIEWER).get_json()
    assert body["instance"]["id"] == "acme-1"
    assert body["instance"]["state"] == "running"
    assert [o["action"] for o in body["operations"]] == ["delete", "provision"]
    assert body["operations"][0]["id"] == ids["pending"]
    assert body["history"], "the instance's history is empty"
    assert all(h["at"] for h in body["history"])


def test_unknown_and_malformed_instance_ids(harness: ApiHarness) -> None:
    missing = harness.call("GET", "/v1/instances/nope-1", Role.VIEWER)
    assert missing.status_code == 404
    assert error(missing)["message"] == "instance nope-1 does not exist"
    malformed = harness.call("GET", "/v1/instances/NOPE", Role.VIEWER)
    assert malformed.status_code == 400
    assert "parameter 'id'" in error(malformed)["message"]


# ------------------------------------------------------------------ requests


def test_a_request_is_published_for_the_caller_and_becomes_that_operation(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, _ = seeded
    response = harness.call(
        "POST", "/v1/requests", Role.OPERATOR, body={"instance": "acme-1", "action": "restart"}
    )
    assert response.status_code == 202
    accepted = response.get_json()
    published = harness.fleet.publisher.on(TOPIC_REQUESTS)
    assert len(published) == 1
    attributes = published[0].attributes
    assert attributes["ce-source"] == "//fleetops/api/operator@local"
    assert attributes["ce-type"] == "fleetops.instance.requested"
    assert attributes["ce-subject"] == "acme-1"
    assert json.loads(published[0].data)["requested_by"] == "operator@local"
    expected = operation_id_for(attributes["ce-source"], attributes["ce-id"])
    assert accepted == {"operation": expected, "href": f"/v1/operations/{expected}"}
    assert response.headers["Location"] == accepted["href"]
    assert harness.process_requests() == [expected]
    op = harness.call("GET", accepted["href"], Role.VIEWER).get_json()
    assert op["requested_by"] == "operator@local"
    assert op["status"] == "succeeded"
    assert op["action"] == "restart"


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"action": "restart"}, "invalid-request", "field 'instance' is required"),
        ({"instance": "acme-1", "action": "explode"}, "unknown-action", "action 'explode'"),
        ({"instance": "acme-1", "action": "upgrade"}, "invalid-request", "field 'version'"),
        ({"instance": "acme-1", "action": "resize"}, "invalid-request", "field 'size'"),
        ({"instance": "A", "action": "restart"}, "invalid-request", "field 'instance'"),
        (
            {"instance": "acme-1", "action": "restart", "requested_by": "mallory@evil"},
            "invalid-request",
            "field 'requested_by' is set by the API",
        ),
        ({"instance": "acme-1", "action": "restart", "colour": "red"}, "invalid-request", "colour"),
        (
            {"instance": "acme-1", "action": "restart", "dry_run": "yes"},
            "invalid-request",
            "dry_run",
        ),
        (["acme-1", "restart"], "invalid-request", "a JSON object"),
        (
            {"instance": "acme-1", "action": "provision", "version": "1", "labels": {"__x__": "y"}},
            "invalid-request",
            "field 'labels': the key '__x__' is reserved",
        ),
        ({"instance": "acme-1", "action": {}}, "invalid-request", "field 'action'"),
        (
            {
                "instance": "gamma-3",
                "action": "provision",
                "version": "1.0.0",
                "maintenance_window": {
                    "days": ["sun"],
                    "start": "02:00",
                    "duration": "1h90m",
                    "timezone": "Europe/Paris",
                },
            },
            "invalid-request",
            "field 'maintenance_window.duration'",
        ),
        (
            {
                "instance": "gamma-3",
                "action": "provision",
                "version": "1.0.0",
                "maintenance_window": {
                    "days": ["sun"],
                    "start": "02:00",
                    "duration": "4h",
                    "timezone": "Mars/Olympus",
                },
            },
            "invalid-request",
            "timezone",
        ),
    ],
)
def test_a_bad_request_body_is_400_naming_the_field_and_publishes_nothing(
    harness: ApiHarness, body: Any, code: str, says: str
) -> None:
    response = harness.call("POST", "/v1/requests", Role.OPERATOR, body=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert error(response)["code"] == code
    assert says in error(response)["message"]
    assert harness.fleet.publisher.on(TOPIC_REQUESTS) == []


def test_a_body_that_is_not_json_is_400_and_another_media_type_415(harness: ApiHarness) -> None:
    broken = harness.call(
        "POST", "/v1/requests", Role.OPERATOR, data=b"{", content_type="application/json"
    )
    assert broken.status_code == 400
    assert error(broken)["code"] == "malformed-json"
    form = harness.call("POST", "/v1/requests", Role.OPERATOR, data={"instance": "acme-1"})
    assert form.status_code == 415


def test_a_full_provision_request_is_accepted(harness: ApiHarness) -> None:
    body = {
        "instance": "gamma-3",
        "action": "provision",
        "version": "3.1.0",
        "size": "medium",
        "region": "europe-west1",
        "customer": "Gamma",
        "labels": {"ring": "canary"},
        "maintenance_window": {
            "days": ["sat", "sun"],
            "start": "02:00",
            "duration": "1h30m",
            "timezone": "America/New_York",
        },
        "reason": "new customer",
        "dry_run": False,
    }
    response = harness.call("POST", "/v1/requests", Role.OPERATOR, body=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    [op_id] = harness.process_requests()
    instance = harness.call("GET", "/v1/instances/gamma-3", Role.VIEWER).get_json()["instance"]
    assert instance["maintenance_window"]["duration"] == "1h30m"
    assert instance["size"] == "medium"
    assert harness.fleet.store.get_operation(op_id) is not None


def test_an_idempotency_key_with_the_same_body_names_the_same_operation(
    harness: ApiHarness,
) -> None:
    body = {"instance": "acme-1", "action": "restart"}
    key = {"Idempotency-Key": "retry-123"}
    first = harness.call("POST", "/v1/requests", Role.OPERATOR, body=body, headers=key).get_json()
    again = harness.call("POST", "/v1/requests", Role.OPERATOR, body=body, headers=key).get_json()
    other = harness.call(
        "POST", "/v1/requests", Role.OPERATOR, body={**body, "reason": "x"}, headers=key
    ).get_json()
    plain = harness.call("POST", "/v1/requests", Role.OPERATOR, body=body).get_json()
    assert first == again
    assert len({first["operation"], other["operation"], plain["operation"]}) == 3
    bad = harness.call(
        "POST", "/v1/requests", Role.OPERATOR, body=body, headers={"Idempotency-Key": "a b"}
    )
    assert bad.status_code == 400
    assert "parameter 'Idempotency-Key'" in error(bad)["message"]


def test_a_publish_failure_is_503_and_says_so(harness: ApiHarness) -> None:
    def refuse(topic: str, data: bytes, attributes: Any) -> str:
        raise ConnectionError("pubsub down")

    harness.fleet.publisher.publish = refuse  # type: ignore[method-assign]
    response = harness.call(
        "POST", "/v1/requests", Role.OPERATOR, body={"instance": "acme-1", "action": "restart"}
    )
    assert response.status_code == 503
    assert "could not be published" in error(response)["message"]


# ------------------------------------------------------------------ operations


def test_operations_are_listed_newest_first_and_filtered(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, ids = seeded

    def listed(query: str) -> list[dict[str, Any]]:
        response = harness.call("GET", f"/v1/operations{query}", Role.VIEWER)
        assert response.status_code == 200, response.get_data(as_text=True)
        return list(response.get_json()["operations"])

    everything = listed("")
    assert next(o["action"] for o in everything) == "delete"
    assert len(everything) == 3
    assert [o["id"] for o in listed("?status=awaiting_approval")] == [ids["pending"]]
    assert {o["instance"] for o in listed("?instance=beta-2")} == {"beta-2"}
    assert len(listed("?limit=1")) == 1
    for query, named in (("?limit=0", "limit"), ("?limit=x", "limit"), ("?status=done", "status")):
        response = harness.call("GET", f"/v1/operations{query}", Role.VIEWER)
        assert response.status_code == 400
        assert f"parameter '{named}'" in error(response)["message"]


def test_one_operation_and_a_missing_one(seeded: tuple[ApiHarness, dict[str, str]]) -> None:
    harness, ids = seeded
    body = harness.call("GET", f"/v1/operations/{ids['pending']}", Role.VIEWER).get_json()
    assert body["id"] == ids["pending"]
    assert body["status"] == "awaiting_approval"
    assert body["requested_by"] == "operator@local"
    missing = harness.call("GET", "/v1/operations/op-0000000000000000", Role.VIEWER)
    assert missing.status_code == 404
    assert error(missing)["message"] == "operation op-0000000000000000 does not exist"


def test_approval_records_the_approver_and_the_requester_cannot_approve(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, ids = seeded
    op_id = ids["pending"]
    harness.fleet.request({"instance": "beta-2", "action": "delete", "requested_by": "admin@local"})
    own = harness.fleet.store.list_operations(instance="beta-2", limit=1)[0]
    refused = harness.call("POST", f"/v1/operations/{own.id}:approve", Role.ADMIN)
    assert refused.status_code == 409
    assert error(refused)["message"] == (
        f"admin@local requested operation {own.id} and cannot approve it: a second person must"
    )
    approved = harness.call("POST", f"/v1/operations/{op_id}:approve", Role.ADMIN)
    assert approved.status_code == 200
    assert approved.get_json()["approved_by"] == "admin@local"
    again = harness.call("POST", f"/v1/operations/{op_id}:approve", Role.ADMIN)
    assert again.status_code == 409
    assert "not awaiting approval" in error(again)["message"]
    second = harness.call(
        "POST", f"/v1/operations/{own.id}:approve", token=harness.tokens.admin2.token
    )
    assert second.status_code == 200
    assert second.get_json()["approved_by"] == "admin2@local"


def test_cancel_records_who_cancelled_and_a_finished_operation_is_409(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, ids = seeded
    op_id = ids["pending"]
    cancelled = harness.call("POST", f"/v1/operations/{op_id}:cancel", Role.OPERATOR)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    assert cancelled.get_json()["error"] == "cancelled by operator@local"
    again = harness.call("POST", f"/v1/operations/{op_id}:cancel", Role.OPERATOR)
    assert again.status_code == 409
    assert error(again)["message"] == f"operation {op_id} is already cancelled"
    for verb in ("approve", "cancel"):
        missing = harness.call("POST", f"/v1/operations/op-0000000000000000:{verb}", Role.ADMIN)
        assert missing.status_code == 404


# ------------------------------------------------------------------ dead letters


def test_dead_letters_are_listed_shown_and_replayed_once(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, _ids = seeded
    listed = harness.call("GET", "/v1/dead-letters", Role.VIEWER).get_json()["dead_letters"]
    assert [d["id"] for d in listed] == [LETTER]
    shown = harness.call("GET", f"/v1/dead-letters/{LETTER}", Role.VIEWER).get_json()
    assert shown["error_code"] == "malformed-json"
    assert shown["original_topic"] == TOPIC_REQUESTS
    assert shown["data_text"] == '{"instance": "acme-1", "action": '
    assert shown["replayable"] is True
    replayed = harness.call("POST", f"/v1/dead-letters/{LETTER}:replay", Role.OPERATOR)
    assert replayed.status_code == 200
    assert replayed.get_json()["replayed_by"] == "operator@local"
    [again] = harness.fleet.publisher.on(TOPIC_REQUESTS)
    assert again.data == b'{"instance": "acme-1", "action": '
    assert dict(again.attributes) == {"ce-id": "x"}
    twice = harness.call("POST", f"/v1/dead-letters/{LETTER}:replay", Role.OPERATOR)
    assert twice.status_code == 409
    assert "already replayed by operator@local" in error(twice)["message"]
    not_yet = harness.call("GET", "/v1/dead-letters?replayed=false", Role.VIEWER).get_json()
    assert not_yet["dead_letters"] == []
    done = harness.call("GET", "/v1/dead-letters?replayed=true", Role.VIEWER).get_json()
    assert [d["id"] for d in done["dead_letters"]] == [LETTER]
    assert harness.call("GET", "/v1/dead-letters/nope", Role.VIEWER).status_code == 404
    assert harness.call("POST", "/v1/dead-letters/nope:replay", Role.OPERATOR).status_code == 404
    bad = harness.call("GET", "/v1/dead-letters?replayed=maybe", Role.VIEWER)
    assert bad.status_code == 400
    assert "parameter 'replayed'" in error(bad)["message"]


# ------------------------------------------------------------------ everything else


def test_unknown_paths_are_404_and_wrong_methods_405_with_allow(harness: ApiHarness) -> None:
    missing = harness.call("GET", "/v2/instances")
    assert missing.status_code == 404
    assert error(missing)["code"] == "not-found"
    wrong = harness.call("DELETE", "/v1/instances")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"
    options = harness.call("OPTIONS", "/v1/operations/op-1:approve", None)
    assert options.status_code == 204
    assert options.headers["Allow"] == "OPTIONS, POST"
    head = harness.call("HEAD", "/v1/instances", Role.VIEWER)
    assert head.status_code == 200
    assert head.data == b""


def test_the_dashboard_and_the_document_need_no_token(harness: ApiHarness) -> None:
    page = harness.call("GET", "/", None)
    assert page.status_code == 200
    assert page.content_type == "text/html; charset=utf-8"
    assert b"fleetops-viewer-token" not in page.data.split(b"<title>")[0]
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = harness.call("GET", f"/assets/{name}", None)
        assert asset.status_code == 200
        assert asset.content_type.startswith(kind)
    assert harness.call("GET", "/assets/secrets.txt", None).status_code == 400
    document = harness.call("GET", "/v1/openapi.json", None)
    assert document.status_code == 200
    assert document.get_json()["openapi"] == "3.1.0"


def test_a_viewer_token_is_injected_into_the_page_only_when_configured(tmp_path: Path) -> None:
    harness = ApiHarness(tmp_path, viewer_token='v"<tok>')
    page = harness.call("GET", "/", None).get_data(as_text=True)
    assert '<meta name="fleetops-viewer-token" content="v&quot;&lt;tok&gt;">' in page


def test_without_authentication_configured_protected_routes_are_503(tmp_path: Path) -> None:
    def unconfigured() -> TokenFileAuthenticator:
        raise AuthConfigurationError("the API cannot authenticate anyone: set it up")

    harness = ApiHarness(tmp_path)
    api = Api(lambda: harness.deps, unconfigured)
    client = Client(api)
    response = client.get("/v1/instances", headers={"Authorization": "Bearer whatever-token"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "auth-not-configured"
    assert client.get("/").status_code == 200


def test_an_unexpected_failure_is_a_json_500(harness: ApiHarness) -> None:
    def broken(**kwargs: Any) -> list[Any]:
        raise RuntimeError("disk on fire")

    harness.fleet.store.list_instances = broken  # type: ignore[method-assign]
    response = harness.call("GET", "/v1/instances", Role.VIEWER)
    assert response.status_code == 500
    assert error(response) == {"code": "internal", "message": "the API failed; see its logs"}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(log.JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logged() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("fleetops")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_logs_name_the_caller_and_never_a_token(
    seeded: tuple[ApiHarness, dict[str, str]], logged: _Records
) -> None:
    harness, ids = seeded
    for role in ROLES:
        harness.call("GET", "/v1/instances?q=x", role)
    harness.call(
        "POST", "/v1/requests", Role.OPERATOR, body={"instance": "acme-1", "action": "restart"}
    )
    harness.call("POST", f"/v1/operations/{ids['pending']}:approve", Role.ADMIN)
    harness.call("GET", "/v1/me", token="fo_not-a-real-token-at-all-xxxxxxxx")
    text = "\n".join(logged.lines)
    for entry in (json.loads(line) for line in logged.lines):
        assert {"severity", "message"} <= set(entry)
    assert "GET /v1/instances 200 viewer@local" in text
    assert "POST /v1/operations/" in text
    assert "200 admin@local" in text
    assert "GET /v1/me 401 -" in text
    for secret in (*(t.token for t in harness.tokens.all), "fo_not-a-real-token"):
        assert secret not in text
    assert harness.fleet.store.get_operation(ids["pending"]).status is OperationStatus.RUNNING  # type: ignore[union-attr]
