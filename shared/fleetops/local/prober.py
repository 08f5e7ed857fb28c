"""The local health prober: Cloud Monitoring's uptime checks and alerting, on one machine.

Every `--interval` seconds it probes each instance's `/healthz`; after
`--failures` failed probes in a row it publishes an `open` incident to
`fleetops-alerts` shaped exactly like Monitoring's (version 1.2, with
`metadata.user_labels.fleetops_instance`), and a `closed` one when the instance
answers again. Instances that an operation holds, or that are suspended or
going away, are not judged: their downtime is expected.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import requests

from fleetops import log, runtime
from fleetops.contract.incidents import notification
from fleetops.contract.names import TOPIC_ALERTS
from fleetops.domain.model import Instance, InstanceState

_logger = log.get("prober")
JUDGED_STATES = frozenset({InstanceState.RUNNING, InstanceState.FAILED})


@dataclass
class Watch:
    failures: int = 0
    open_incident: str | None = None
    opened_at: datetime | None = None


@dataclass
class Prober:
    failures_to_open: int = 3
    timeout: float = 1.0
    watches: dict[str, Watch] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)

    def healthy(self, endpoint: str) -> bool:
        try:
            return self.session.get(f"{endpoint}/healthz", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    def round(self, instances: Sequence[Instance], now: datetime) -> list[dict[str, object]]:
        """Probe once; return the notifications to publish."""
        out: list[dict[str, object]] = []
        seen = set()
        for instance in instances:
            seen.add(instance.id)
            watch = self.watches.setdefault(instance.id, Watch())
            if instance.active_operation or instance.state not in JUDGED_STATES:
                watch.failures = 0
                continue
            if not instance.endpoint:
                continue
            if self.healthy(instance.endpoint):
                watch.failures = 0
                if watch.open_incident is not None:
                    out.append(
                        notification(
                            watch.open_incident,
                            instance.id,
                            "closed",
                            started_at=watch.opened_at or now,
                            ended_at=now,
                            summary=f"{instance.id} answers /healthz again",
                        )
                    )
                    watch.open_incident = None
                continue
            watch.failures += 1
            if watch.failures >= self.failures_to_open and watch.open_incident is None:
                watch.open_incident = f"{instance.id}-{uuid.uuid4().hex[:8]}"
                watch.opened_at = now
                out.append(
                    notification(
                        watch.open_incident,
                        instance.id,
                        "open",
                        started_at=now,
                        summary=f"{instance.id} failed {watch.failures} /healthz probes in a row",
                    )
                )
        for gone in set(self.watches) - seen:
            del self.watches[gone]
        return out


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run(interval: float, failures: int) -> int:
    log.configure()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    prober = Prober(failures_to_open=failures)
    store, publisher = runtime.state_store(), runtime.publisher()
    print(f"fleetops prober: every {interval}s, {failures} failures open an incident", flush=True)
    try:
        while True:
            began = time.monotonic()
            try:
                instances = store.list_instances()
                for body in prober.round(instances, datetime.now(UTC)):
                    publisher.publish(TOPIC_ALERTS, json.dumps(body).encode(), {})
                    incident = body["incident"]
                    assert isinstance(incident, dict)
                    _logger.info(
                        "incident %s %s",
                        incident["incident_id"],
                        incident["state"],
                        extra={"instance": incident["resource_id"]},
                    )
            except _Stop:
                raise
            except Exception as exc:
                _logger.error("probe round failed: %s", exc)
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
    except _Stop:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--failures", type=int, default=3, help="failed probes that open")
    args = parser.parse_args(argv)
    return run(args.interval, args.failures)


if __name__ == "__main__":
    sys.exit(main())
