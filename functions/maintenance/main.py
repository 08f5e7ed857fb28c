"""fleetops-maintenance -> rollouts: each tick advances every running rollout at its own time."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from fleetops import runtime
from fleetops.entrypoint import handle_push
from fleetops.services.rollouts import RolloutDeps, handle_tick_message


@functions_framework.cloud_event
def advance_rollouts(event: CloudEvent) -> None:
    deps = RolloutDeps(
        runtime.state_store(), runtime.publisher(), runtime.utc_now, runtime.approval_policy()
    )
    handle_push(
        event,
        lambda message: handle_tick_message(message, deps),
        runtime.publisher,
        function="maintenance",
    )
