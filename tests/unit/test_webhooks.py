"""Escalation webhooks: the JSON Slack and PagerDuty Events v2 accept, sent over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from fleetops.adapters.webhooks import pagerduty_event, slack_message, webhook

ESCALATION = {
    "instance": "acme-prod",
    "incident": "inc-7",
    "reason": "3 remediations within 60 minutes (the cap is 3)",
    "fleet_wide": False,
    "next_step": "fleetops remediation reset acme-prod",
}


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]], list[int]]]:
    received: list[dict[str, Any]] = []
    answer = [202]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(answer[0])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received, answer
    server.shutdown()


def test_slack_gets_a_text_message(receiver: Any) -> None:
    url, received, _ = receiver
    webhook(url, "slack")(ESCALATION)
    assert received == [slack_message(ESCALATION)]
    assert "acme-prod" in received[0]["text"]
    assert "fleetops remediation reset acme-prod" in received[0]["text"]


def test_pagerduty_gets_an_events_v2_trigger_with_a_stable_dedup_key(receiver: Any) -> None:
    url, received, _ = receiver
    send = webhook(url, "pagerduty", routing_key="R0UT1NG")
    send(ESCALATION)
    send(ESCALATION)
    first, second = received
    assert first["routing_key"] == "R0UT1NG"
    assert first["event_action"] == "trigger"
    assert first["payload"]["severity"] == "error"
    assert first["payload"]["source"] == "acme-prod"
    assert first["dedup_key"] == second["dedup_key"] == "fleetops/acme-prod/inc-7"
    fleet = pagerduty_event({**ESCALATION, "fleet_wide": True, "instance": None}, "R")
    assert fleet["payload"]["severity"] == "critical"


def test_a_failed_delivery_raises(receiver: Any) -> None:
    url, _, answer = receiver
    answer[0] = 500
    with pytest.raises(requests.HTTPError):
        webhook(url, "slack")(ESCALATION)
