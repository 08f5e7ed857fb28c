"""fleetops-steps -> the world: runs one step of an operation per message."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from fleetops import runtime
from fleetops.entrypoint import handle_push
from fleetops.services.steps import StepDeps, handle_step_message


@functions_framework.cloud_event
def run_step(event: CloudEvent) -> None:
    deps = StepDeps(
        runtime.state_store(),
        runtime.publisher(),
        runtime.actuator(),
        runtime.utc_now,
        wait_timeout=runtime.wait_timeout(),
        after_effect=runtime.after_effect_hook(),
    )
    handle_push(
        event,
        lambda message: handle_step_message(message, deps),
        runtime.publisher,
        function="operations",
    )
