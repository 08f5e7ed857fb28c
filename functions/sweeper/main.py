"""fleetops-maintenance -> operations: re-drives, fails or starts operations nobody drives."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from fleetops import runtime
from fleetops.entrypoint import handle_push
from fleetops.services.alerts import AlertDeps
from fleetops.services.sweeper import SweepDeps, handle_tick_message


@functions_framework.cloud_event
def sweep(event: CloudEvent) -> None:
    store, publisher = runtime.state_store(), runtime.publisher()
    alerts = AlertDeps(store, publisher, runtime.utc_now, runtime.approval_policy())
    deps = SweepDeps(store, publisher, alerts=alerts, now=runtime.utc_now)
    handle_push(
        event,
        lambda message: handle_tick_message(message, deps),
        runtime.publisher,
        function="sweeper",
    )
