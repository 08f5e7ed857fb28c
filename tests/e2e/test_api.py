"""End to end: the API function on a running local stack, schemathesis against its own
OpenAPI document, and the dashboard in headless Chromium.

The stack is `fleetops up` as a subprocess (its own, for this module). It finds the API
where local.env says (FLEETOPS_API_URL, FLEETOPS_API_TOKENS_FILE) and, until `fleetops up`
writes those, where it prints `function api` and with a tokens file this fixture writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from fleetops.contract.names import TOPIC_REQUESTS
from fleetops.local.api_tokens import ApiToken, read_local_tokens, write_tokens_file
from tests.e2e.stack import ROOT, RunningStack

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# A freeze must end after it starts, which JSON Schema cannot say: the document says
# it in words, and the API answers 400 for such a body.
SCHEMATHESIS_CONFIG = """\
[[operations]]
include-path = "/v1/maintenance/freezes"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"""


@dataclass
class LiveApi:
    stack: RunningStack
    url: str
    tokens: dict[str, ApiToken]

    def call(
        self, method: str, path: str, principal: str | None = "admin@local", **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if principal is not None:
            headers["Authorization"] = f"Bearer {self.tokens[principal].token}"
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def until(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.25)
        raise AssertionError(f"{what} did not happen within {timeout:.0f}s")

    def finished(self, op_id: str, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            response = self.call("GET", f"/v1/operations/{op_id}", "viewer@local")
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            op = response.json()
            terminal = ("succeeded", "failed", "rejected", "cancelled")
            return dict(op) if op["status"] in terminal else None

        return dict(self.until(f"operation {op_id} finishing", done, timeout))


def _printed_api_url(output: list[str]) -> str:
    for line in output:
        found = re.search(r"function api\s*(http://\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError("fleetops up did not print where the api function listens")


@pytest.fixture(scope="module")
def live(emulator_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    workdir = tmp_path_factory.mktemp("api-stack")
    ours = write_tokens_file(workdir / "api-tokens.json")
    with pytest.MonkeyPatch.context() as patch:
        # Read by the api function through the stack's environment.
        patch.setenv("FLEETOPS_API_TOKENS_FILE", str(ours.path))
        running = RunningStack(workdir, instances=3)
    try:
        running.wait_ready()
        env = running.env
        url = env.get("FLEETOPS_API_URL") or _printed_api_url(running.output)
        tokens = Path(env.get("FLEETOPS_API_TOKENS_FILE") or ours.path)
        yield LiveApi(running, url.rstrip("/"), read_local_tokens(tokens))
    finally:
        running.kill_everything()


def test_the_document_is_served_and_is_valid_openapi(live: LiveApi) -> None:
    response = live.call("GET", "/v1/openapi.json", None)
    assert response.status_code == 200
    validate(response.json())
    assert live.call("GET", "/v1/instances", None).status_code == 401
    assert live.call("GET", "/v1/me", "viewer@local").json() == {
        "principal": "viewer@local",
        "role": "viewer",
    }


def test_a_request_runs_as_the_caller_and_a_second_admin_approves_the_delete(
    live: LiveApi,
) -> None:
    body = {"instance": "api-demo", "action": "provision", "version": "1.0.0"}
    accepted = live.call("POST", "/v1/requests", "operator@local", json=body)
    assert accepted.status_code == 202, accepted.text
    op = live.finished(accepted.json()["operation"])
    assert (op["status"], op["requested_by"]) == ("succeeded", "operator@local")
    agent = live.stack.agent("/v1/instances/api-demo")
    assert agent is not None
    assert agent["running"] is True

    forbidden = live.call("POST", "/v1/requests", "viewer@local", json=body)
    assert forbidden.status_code == 403
    deleting = live.call(
        "POST", "/v1/requests", "admin@local", json={"instance": "api-demo", "action": "delete"}
    ).json()["operation"]
    waiting = live.until(
        "the delete awaiting approval",
        lambda: (
            live.call("GET", f"/v1/operations/{deleting}", "viewer@local").json().get("status")
            == "awaiting_approval"
        ),
    )
    assert waiting
    own = live.call("POST", f"/v1/operations/{deleting}:approve", "admin@local")
    assert own.status_code == 409
    assert "a second person must" in own.json()["error"]["message"]
    approved = live.call("POST", f"/v1/operations/{deleting}:approve", "admin2@local")
    assert approved.status_code == 200
    done = live.finished(deleting)
    assert (done["status"], done["approved_by"]) == ("succeeded", "admin2@local")
    assert live.call("GET", "/v1/instances?q=api-demo", "viewer@local").json()["instances"] == []


def test_a_dead_lettered_request_reaches_the_inbox_and_replays_once(live: LiveApi) -> None:
    from fleetops.adapters.pubsub_publisher import PubsubPublisher

    env = live.stack.env
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ce_id = str(uuid.uuid4())
        PubsubPublisher(env["GOOGLE_CLOUD_PROJECT"]).publish(
            TOPIC_REQUESTS,
            b'{"instance": "api-bad", "action": "explode"}',
            {
                "ce-specversion": "1.0",
                "ce-id": ce_id,
                "ce-source": "//tests/e2e/api",
                "ce-type": "fleetops.instance.requested",
                "content-type": "application/json",
            },
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def letters() -> list[dict[str, Any]]:
        found = live.call("GET", "/v1/dead-letters?limit=100", "viewer@local").json()
        return [d for d in found["dead_letters"] if d["attributes"].get("ce-id") == ce_id]

    [letter] = live.until("the dead letter in the inbox", letters, timeout=30)
    assert letter["error_code"] == "unknown-action"
    assert letter["original_topic"] == TOPIC_REQUESTS
    replayed = live.call("POST", f"/v1/dead-letters/{letter['id']}:replay", "operator@local")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed_by"] == "operator@local"
    again = live.call("POST", f"/v1/dead-letters/{letter['id']}:replay", "operator@local")
    assert again.status_code == 409
    # The replayed message is refused again, so it comes back as a letter of its own.
    live.until("the replay's own dead letter", lambda: len(letters()) == 2, timeout=30)


def test_maintenance_jobs_are_steered_through_the_api_on_the_local_scheduler(
    live: LiveApi,
) -> None:
    shown = live.call("GET", "/v1/maintenance", "viewer@local")
    assert shown.status_code == 200, shown.text
    assert shown.json()["scheduler_error"] is None
    assert [j["state"] for j in shown.json()["jobs"]] == ["ENABLED"]
    assert live.call("POST", "/v1/maintenance:pause", "operator@local").status_code == 403
    paused = live.call("POST", "/v1/maintenance:pause", "admin@local")
    assert paused.status_code == 200, paused.text
    assert [j["state"] for j in paused.json()["jobs"]] == ["PAUSED"]
    assert paused.json()["history"][0]["actor"] == "admin@local"
    resumed = live.call("POST", "/v1/maintenance:resume", "admin@local")
    assert [j["state"] for j in resumed.json()["jobs"]] == ["ENABLED"]
    windows = live.call("GET", "/v1/instances/demo-1/windows?count=2", "viewer@local")
    assert windows.json() == {
        "instance": "demo-1",
        "window": None,
        "default": False,
        "openings": [],
    }


def test_the_dashboard_shows_the_fleet_and_follows_it_live(live: LiveApi) -> None:
    assert CHROMIUM.is_file(), "install Debian's chromium package: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    expected = {
        i["id"] for i in live.call("GET", "/v1/instances", "viewer@local").json()["instances"]
    }
    assert {"demo-1", "demo-2", "demo-3"} <= expected
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(live.url + "/")
            page.fill("#token", live.tokens["viewer@local"].token)
            page.click("#login button[type=submit]")
            page.wait_for_selector("[data-instance='demo-2']", timeout=15_000)
            shown = set(
                page.eval_on_selector_all(
                    "[data-instance]", "els => els.map(e => e.dataset.instance)"
                )
            )
            assert shown == expected
            assert page.text_content("#caller") == "viewer@local (viewer)"
            tile = page.locator("[data-instance='demo-2']")
            assert tile.get_attribute("data-health") == "healthy"
            before = tile.evaluate("el => getComputedStyle(el).borderLeftColor")
            # A reload would lose this mark: the changes below must arrive by polling.
            page.evaluate("window.__noReload = true")
            # Paused, so that remediation leaves the killed instance unhealthy (and no
            # maintenance tick carries the rollout out while it is looked at).
            paused = live.call("POST", "/v1/automation:pause", "operator@local")
            assert paused.status_code == 200, paused.text
            started = live.call(
                "POST",
                "/v1/rollouts",
                "operator@local",
                json={"version": "1.0.1", "selector": {"!id": "demo-2"}, "canary": "1"},
            )
            assert started.status_code == 201, started.text
            rollout = started.json()
            assert rollout["created_by"] == "operator@local"
            try:
                page.wait_for_selector(
                    "[data-automation='paused']:has-text('operator@local')", timeout=10_000
                )
                card = f"[data-rollout='{rollout['id']}']"
                page.wait_for_selector(f"{card} [data-wave='canary'] .target-pending")
                page.wait_for_selector(f"{card} [data-wave='batch 1'] .target-pending")
                assert page.is_hidden("#no-rollouts")
                view = live.stack.agent("/v1/instances/demo-2")
                assert view is not None
                os.kill(int(view["pid"]), signal.SIGKILL)
                # The prober finds it dead, and its incident marks it unhealthy.
                page.wait_for_selector(
                    "[data-instance='demo-2'][data-health='unhealthy']", timeout=30_000
                )
                after = tile.evaluate("el => getComputedStyle(el).borderLeftColor")
                assert after != before
                assert "health-unhealthy" in str(tile.get_attribute("class"))
                assert page.evaluate("window.__noReload") is True
                page.wait_for_timeout(1_600)
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                live.call("POST", f"/v1/rollouts/{rollout['id']}:abort", "operator@local")
                live.call("POST", "/v1/automation:resume", "admin@local")
            page.wait_for_selector(f"{card}[data-status='aborted']", timeout=10_000)
            page.wait_for_selector("[data-automation='on']", timeout=10_000)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live: LiveApi) -> None:
    assert shutil.which("st", path=str(Path(sys.executable).parent)), "pip install schemathesis"
    requests_log = live.stack.state_dir / "logs" / "function-requests.log"
    errors_before = requests_log.read_text(errors="replace").count("Traceback")
    report = ARTIFACTS / "schemathesis"
    report.mkdir(parents=True, exist_ok=True)
    config = report / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG, encoding="utf-8")
    command = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--config-file",
        str(config),
        "run",
        f"{live.url}/v1/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {live.tokens['admin@local'].token}",
        "--max-examples",
        "25",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "15",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
    ]
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=170, check=False)
    took = time.monotonic() - began
    # The output shows `Authorization: [Filtered]`, never the token.
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert took < 120, f"schemathesis took {took:.0f}s"
    summary = [line for line in result.stdout.splitlines() if "generated" in line]
    print(f"\nschemathesis: {' '.join(summary)} in {took:.0f}s")
    # Whatever the API accepted, the requests function handled without crashing.
    time.sleep(3)
    errors_after = requests_log.read_text(errors="replace").count("Traceback")
    assert errors_after == errors_before, requests_log.read_text(errors="replace")[-4000:]
    assert json.loads(live.call("GET", "/v1/openapi.json", None).text)["openapi"] == "3.1.0"
