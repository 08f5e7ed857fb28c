"""PushRelay: relays a request and its answer; a missing or dying process is a 503."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from fleetops.local.processes import free_port
from fleetops.local.push_relay import PushRelay

Behaviour = Callable[[BaseHTTPRequestHandler, bytes], None]


def _echo(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    payload = f"{handler.command} {handler.path} {body.decode()}".encode()
    handler.send_response(202)
    handler.send_header("X-Seen", handler.headers.get("X-Custom", ""))
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _reset(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    # What a SIGKILLed process does to the connection it was answering.
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


@contextmanager
def target(port: int, behaviour: Behaviour) -> Iterator[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            behaviour(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def do_GET(self) -> None:
            behaviour(self, b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def relay() -> Iterator[PushRelay]:
    found = PushRelay("steps", free_port(), free_port(), restart_wait=2.0)
    found.start()
    yield found
    found.stop()


def test_a_push_and_its_answer_are_relayed_unchanged(relay: PushRelay) -> None:
    with target(relay.target_port, _echo):
        answer = requests.post(
            relay.url + "projects/p/topics/fleetops-steps",
            data=b'{"message": {}}',
            headers={"X-Custom": "kept"},
            timeout=5,
        )
    assert answer.status_code == 202
    assert answer.text == 'POST /projects/p/topics/fleetops-steps {"message": {}}'
    assert answer.headers["X-Seen"] == "kept"
    assert (relay.relayed, relay.unavailable) == (1, 0)


def test_a_push_waits_for_a_process_that_is_restarting(relay: PushRelay) -> None:
    def restart_later() -> None:
        time.sleep(0.5)
        with target(relay.target_port, _echo):
            time.sleep(2.0)

    restarting = threading.Thread(target=restart_later)
    restarting.start()
    answer = requests.post(relay.url + "x", data=b"late", timeout=10)
    restarting.join()
    assert (answer.status_code, answer.text) == (202, "POST /x late")


def test_no_process_at_all_is_a_503_that_names_the_function(relay: PushRelay) -> None:
    began = time.monotonic()
    answer = requests.post(relay.url + "x", data=b"lost?", timeout=10)
    assert answer.status_code == 503
    assert "function steps has not answered" in answer.text
    assert time.monotonic() - began >= relay.restart_wait
    assert relay.unavailable == 1


def test_a_process_that_dies_mid_request_is_a_503_so_the_push_is_retried(
    relay: PushRelay,
) -> None:
    with target(relay.target_port, _reset):
        answer = requests.post(relay.url + "x", data=b"half-done", timeout=10)
    assert answer.status_code == 503
    assert "function steps died while handling POST /x" in answer.text


def test_the_relay_keeps_its_port_until_stopped() -> None:
    port = free_port()
    relay = PushRelay("alerts", port, free_port(), restart_wait=0.1)
    relay.start()
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 503
    relay.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
