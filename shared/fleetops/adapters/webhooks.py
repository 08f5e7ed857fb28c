"""Escalations to chat and paging: Slack incoming webhooks and PagerDuty Events v2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

TIMEOUT_SECONDS = 5.0


def slack_message(escalation: dict[str, Any]) -> dict[str, Any]:
    where = (
        "the whole fleet"
        if escalation.get("fleet_wide")
        else f"instance {escalation.get('instance')}"
    )
    text = (
        f":rotating_light: fleetops escalated {where}: {escalation.get('reason')}. "
        f"Next: `{escalation.get('next_step')}`"
    )
    return {"text": text}


def pagerduty_event(escalation: dict[str, Any], routing_key: str) -> dict[str, Any]:
    source = "fleet" if escalation.get("fleet_wide") else str(escalation.get("instance"))
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        # One alert per incident (or circuit opening), however often it is sent.
        "dedup_key": f"fleetops/{source}/{escalation.get('incident')}",
        "payload": {
            "summary": f"fleetops escalated {source}: {escalation.get('reason')}"[:1024],
            "source": source,
            "severity": "critical" if escalation.get("fleet_wide") else "error",
            "component": "fleetops",
            "custom_details": escalation,
        },
    }


def webhook(
    url: str, kind: str, routing_key: str | None = None
) -> Callable[[dict[str, Any]], None]:
    """A sender for `kind` "slack" or "pagerduty"; raises on a failed delivery."""

    def send(escalation: dict[str, Any]) -> None:
        if kind == "pagerduty":
            body = pagerduty_event(escalation, routing_key or "")
        else:
            body = slack_message(escalation)
        response = requests.post(url, json=body, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()

    return send
