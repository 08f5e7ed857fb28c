"""Cloud Monitoring notifications as Monitoring sends them (contract section 4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fleetops.contract.errors import InvalidRequest, MalformedEvent
from fleetops.contract.pubsub import PubsubMessage
from fleetops.domain.remediation import Incident

INSTANCE_LABEL = "fleetops_instance"
PLAYBOOK_LABEL = "fleetops_playbook"


def decode_incident(message: PubsubMessage) -> Incident:
    try:
        body = json.loads(message.data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent("malformed-json", f"the notification is not JSON: {exc}") from exc
    return incident_from_notification(body)


def incident_from_notification(body: Any) -> Incident:
    if not isinstance(body, dict) or not isinstance(body.get("incident"), dict):
        raise MalformedEvent(
            "not-an-incident", "not a Monitoring notification: no 'incident' object"
        )
    version = str(body.get("version", ""))
    if version not in ("1.2", "test"):
        raise MalformedEvent(
            "unsupported-version", f"notification version {version!r} is not 1.2 (or test)"
        )
    incident: dict[str, Any] = body["incident"]
    incident_id = incident.get("incident_id")
    if not incident_id:
        raise InvalidRequest("invalid-incident", "field 'incident.incident_id' is required")
    state = str(incident.get("state", "")).lower()
    if state not in ("open", "closed"):
        raise InvalidRequest(
            "invalid-incident", f"field 'incident.state' must be open or closed, not {state!r}"
        )
    instance = _first_label(incident, INSTANCE_LABEL)
    if not instance:
        raise InvalidRequest(
            "unknown-instance",
            "the incident names no fleetops instance (label fleetops_instance in "
            "metadata.user_labels, policy_user_labels or resource.labels)",
        )
    policy_labels = incident.get("policy_user_labels") or {}
    playbook = policy_labels.get(PLAYBOOK_LABEL) if isinstance(policy_labels, dict) else None
    return Incident(
        incident_id=str(incident_id),
        instance=str(instance),
        state=state,
        started_at=_epoch(incident.get("started_at")),
        ended_at=_epoch(incident.get("ended_at")),
        summary=str(incident.get("summary") or ""),
        policy=str(incident.get("policy_name") or ""),
        playbook=str(playbook) if playbook else None,
    )


def _first_label(incident: dict[str, Any], name: str) -> str | None:
    metadata = incident.get("metadata")
    resource = incident.get("resource")
    places = [
        metadata.get("user_labels") if isinstance(metadata, dict) else None,
        incident.get("policy_user_labels"),
        resource.get("labels") if isinstance(resource, dict) else None,
    ]
    for labels in places:
        if isinstance(labels, dict) and labels.get(name):
            return str(labels[name])
    return None


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def notification(
    incident_id: str,
    instance: str,
    state: str,
    *,
    started_at: datetime,
    ended_at: datetime | None = None,
    summary: str = "",
    policy: str = "fleetops-local-prober",
    playbook: str | None = None,
) -> dict[str, Any]:
    """A notification shaped exactly like Monitoring's version 1.2 (for the local prober)."""
    policy_labels = {PLAYBOOK_LABEL: playbook} if playbook else {}
    return {
        "version": "1.2",
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": "fleetops-local",
            "scoping_project_number": 0,
            "url": "",
            "started_at": int(started_at.timestamp()),
            "ended_at": int(ended_at.timestamp()) if ended_at else None,
            "state": state,
            "summary": summary,
            "apigee_url": "",
            "observed_value": "0",
            "resource": {"type": "generic_node", "labels": {"node_id": instance}},
            "resource_type_display_name": "Generic Node",
            "resource_id": instance,
            "resource_display_name": instance,
            "resource_name": instance,
            "metric": {
                "type": "monitoring.googleapis.com/uptime_check/check_passed",
                "displayName": "Check passed",
                "labels": {},
            },
            "metadata": {"system_labels": {}, "user_labels": {INSTANCE_LABEL: instance}},
            "policy_name": policy,
            "policy_user_labels": policy_labels,
            "documentation": {"content": "", "mime_type": "text/markdown"},
            "condition": {
                "name": f"{policy}/conditions/healthz",
                "displayName": "/healthz fails",
            },
            "condition_name": "/healthz fails",
            "threshold_value": "1",
        },
    }
