"""The local prober's judgement, against real HTTP servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetops.contract.incidents import incident_from_notification
from fleetops.domain.model import Instance, InstanceState
from fleetops.local.prober import Prober

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


class Health:
    status = 200


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(Health.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def instance(endpoint: str, **changes: object) -> Instance:
    base = Instance("acme-1", InstanceState.RUNNING, NOW, NOW, endpoint=endpoint)
    return base.evolve(**changes)


def test_three_failures_open_one_incident_and_recovery_closes_it(server: str) -> None:
    prober = Prober(failures_to_open=3)
    Health.status = 503
    sent = [prober.round([instance(server)], NOW) for _ in range(5)]
    assert [len(s) for s in sent] == [0, 0, 1, 0, 0]
    opened = incident_from_notification(sent[2][0])
    assert (opened.instance, opened.state) == ("acme-1", "open")
    Health.status = 200
    [closed_body] = prober.round([instance(server)], NOW)
    closed = incident_from_notification(closed_body)
    assert (closed.incident_id, closed.state) == (opened.incident_id, "closed")
    assert prober.round([instance(server)], NOW) == []
    Health.status = 200


def test_a_dead_port_counts_as_a_failure() -> None:
    prober = Prober(failures_to_open=1)
    [body] = prober.round([instance("http://127.0.0.1:9")], NOW)
    assert incident_from_notification(body).state == "open"


def test_instances_under_an_operation_are_not_judged(server: str) -> None:
    prober = Prober(failures_to_open=1)
    Health.status = 503
    busy = instance(server, active_operation="op-1")
    suspended = instance(server, state=InstanceState.SUSPENDED)
    assert prober.round([busy], NOW) == []
    assert prober.round([suspended], NOW) == []
    Health.status = 200
