"""fleetops-alerts -> remediation: Monitoring incidents to safe, limited remediation."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from fleetops import runtime
from fleetops.entrypoint import handle_push
from fleetops.services.alerts import AlertDeps, handle_alert_message


@functions_framework.cloud_event
def handle_alert(event: CloudEvent) -> None:
    deps = AlertDeps(
        runtime.state_store(),
        runtime.publisher(),
        runtime.utc_now,
        runtime.approval_policy(),
        notify=runtime.escalation_webhook(),
    )
    handle_push(
        event,
        lambda message: handle_alert_message(message, deps),
        runtime.publisher,
        function="alerts",
    )
