"""The front of an event function in the local stack, as Cloud Run's front end is on GCP.

On GCP a push to a function whose instance is starting waits for it, and a push to an
instance that crashes mid-request is answered with a 5xx. Locally the function is one
process: while it restarts its port refuses connections, and when it dies mid-request
the connection is reset. The local subscriptions deliver a failed push again about once
a second and dead-letter it after 5 attempts (see `stack.local_push_subscription`), so a
restart of a few seconds would send whole bursts to the dead-letter topic. So
`fleetops up` listens on each event function's push port itself, for as long as it runs,
and relays every push to the function's process: while the process is restarting the
relay waits for it, and when it dies mid-request the relay answers 503, one failed
attempt that Pub/Sub delivers again. The handlers are idempotent, so a push handled just
before its process died is safe to deliver again.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Headers that belong to one connection, not to the request relayed.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)
# Above any function's timeout_seconds (Cloud Functions' maximum for event functions).
DEFAULT_ANSWER_TIMEOUT = 600.0
# Longer than a function process takes to restart and import, even on a busy machine.
DEFAULT_RESTART_WAIT = 30.0


class FunctionUnavailable(Exception):
    """The function's process did not answer: the push is answered 503 and retried."""


class PushRelay:
    """Listens on `listen_port` and relays each request to the process on `target_port`."""

    def __init__(
        self,
        name: str,
        listen_port: int,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        restart_wait: float = DEFAULT_RESTART_WAIT,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.host = host
        self.target_port = target_port
        self.restart_wait = restart_wait
        self.answer_timeout = answer_timeout
        self._sleep = sleep
        self._lock = threading.Lock()
        self.relayed = 0
        self.unavailable = 0
        handler = type("_BoundRelayHandler", (_RelayHandler,), {"relay": self})
        self._server = ThreadingHTTPServer((host, listen_port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"relay-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The function's answer; FunctionUnavailable when there is none to give."""
        deadline = time.monotonic() + self.restart_wait
        while True:
            connection = http.client.HTTPConnection(
                self.host, self.target_port, timeout=self.answer_timeout
            )
            try:
                connection.connect()
            except OSError as exc:
                connection.close()
                if time.monotonic() >= deadline:
                    self._count(unavailable=True)
                    raise FunctionUnavailable(
                        f"function {self.name} has not answered on port {self.target_port} "
                        f"for {self.restart_wait:g}s ({exc})"
                    ) from exc
                self._sleep(0.05)
                continue
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                answer = (response.status, response.reason, response.getheaders(), response.read())
            except (OSError, http.client.HTTPException) as exc:
                # The request may have been handled: only a retry can tell, and it is safe.
                self._count(unavailable=True)
                raise FunctionUnavailable(
                    f"function {self.name} died while handling {method} {path} ({exc!r})"
                ) from exc
            finally:
                connection.close()
            self._count(unavailable=False)
            return answer

    def _count(self, *, unavailable: bool) -> None:
        with self._lock:
            if unavailable:
                self.unavailable += 1
            else:
                self.relayed += 1


class _RelayHandler(BaseHTTPRequestHandler):
    relay: PushRelay

    def do_POST(self) -> None:
        self._relay()

    def do_GET(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, reason, answer_headers, payload = self.relay.forward(
                self.command, self.path, headers, body
            )
        except FunctionUnavailable as exc:
            self._answer(503, "Service Unavailable", [("Content-Type", "text/plain")], str(exc))
            return
        self._answer(status, reason, answer_headers, payload)

    def _answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes | str
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.send_response(status, reason)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP and key.lower() not in ("server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        # The function's own log has a line per event; the relay adds none.
        pass
