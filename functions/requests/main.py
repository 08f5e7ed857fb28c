"""fleetops-requests -> operations: records each instance request as an operation."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from fleetops import runtime
from fleetops.entrypoint import handle_push
from fleetops.services.requests import RequestDeps, handle_request_message


@functions_framework.cloud_event
def handle_request(event: CloudEvent) -> None:
    deps = RequestDeps(
        runtime.state_store(), runtime.publisher(), runtime.utc_now, runtime.approval_policy()
    )
    handle_push(
        event,
        lambda message: handle_request_message(message, deps),
        runtime.publisher,
        function="requests",
    )
