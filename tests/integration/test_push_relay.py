"""The local stack's push path loses no message while a function restarts or dies.

The subscription is the stack's own (`local_push_subscription`: no retry policy, which
makes the emulator drop messages after failed pushes) and the function is reached
through its relay (`PushRelay`: a restart is waited for, a death mid-request is a 503).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.cloud import pubsub_v1

from fleetops.adapters.pubsub_admin import PubsubAdmin
from fleetops.contract.names import TOPIC_DEAD_LETTER
from fleetops.local.processes import free_port
from fleetops.local.push_relay import PushRelay
from fleetops.local.stack import local_push_subscription
from tests.conftest import GcpEnv

MESSAGES = 60
DOWN_SECONDS = 3.0
RESETTING_SECONDS = 2.0


class FlakyFunction:
    """Refuses connections, then resets them, then acknowledges: a process killed twice."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[str, int] = {}
        self.resets = 0
        self.resetting_until = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self, resetting_for: float) -> None:
        self.resetting_until = time.monotonic() + resetting_for
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if time.monotonic() < flaky.resetting_until:
                    flaky.resets += 1
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    return
                number = json.loads(body)["message"]["attributes"]["n"]
                with flaky._lock:
                    flaky.seen[number] = flaky.seen.get(number, 0) + 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def admin(gcp_env: GcpEnv) -> Iterator[PubsubAdmin]:
    found = PubsubAdmin(gcp_env.project)
    yield found
    found.close()


def test_no_push_is_lost_while_the_function_is_down_then_dying(
    gcp_env: GcpEnv, admin: PubsubAdmin
) -> None:
    function = FlakyFunction(free_port())
    relay = PushRelay("flaky", free_port(), function.port)
    relay.start()
    try:
        admin.ensure_topic("relayed-topic")
        admin.ensure_topic(TOPIC_DEAD_LETTER)
        admin.ensure_pull_subscription("relayed-dead-letter-inbox", TOPIC_DEAD_LETTER)
        admin.ensure_push_subscription(
            local_push_subscription(
                "relayed-push",
                "relayed-topic",
                f"{relay.url}projects/{gcp_env.project}/topics/relayed-topic",
            )
        )
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(gcp_env.project, "relayed-topic")
        for future in [publisher.publish(topic, b"{}", n=str(n)) for n in range(MESSAGES)]:
            future.result(timeout=30)

        time.sleep(DOWN_SECONDS)
        function.start(resetting_for=RESETTING_SECONDS)
        deadline = time.monotonic() + 90
        while len(function.seen) < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        function.stop()
        relay.stop()

    missing = sorted(set(map(str, range(MESSAGES))) - set(function.seen), key=int)
    assert not missing, f"{len(missing)} pushes never arrived: {missing[:10]}"
    assert function.resets > 0, "the function never died mid-request: the test proved nothing"
    assert relay.unavailable >= function.resets
