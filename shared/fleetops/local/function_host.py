"""One function of the local stack, served by one process.

    python -m fleetops.local.function_host --target T --source functions/F/main.py \\
        --signature-type cloudevent --host 127.0.0.1 --port PORT

The app is functions-framework's own (`create_app`), so a Pub/Sub push to
`/projects/P/topics/T` becomes the same CloudEvent, and an answer the same status code,
as under `python -m functions_framework`. Only the server differs: instead of gunicorn
(a master process and a forked worker, each holding a copy of the function's imports),
a threaded WSGI server in this one process, a thread per request. The stack still runs
one process per function, so each can die and be restarted on its own.

SIGTERM or SIGINT stops accepting, lets the requests being answered finish (for at most
`--grace` seconds) and exits 0. Access lines are not logged, as under gunicorn at its
`error` level: the function's log holds its own structured lines and errors only.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

SIGNATURE_TYPES = ("http", "event", "cloudevent", "typed")
# Under the 5 s after which the stack's stop_group sends SIGKILL, so the exit stays clean.
DEFAULT_GRACE_SECONDS = 4.0


class _Handler(WSGIRequestHandler):
    server: FunctionServer

    def run_wsgi(self) -> None:
        self.server.request_began()
        try:
            super().run_wsgi()
        finally:
            self.server.request_ended()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FunctionServer(ThreadedWSGIServer):
    """A thread per request; counts the requests being answered, so a stop can wait for them."""

    def __init__(self, app: WSGIApplication, host: str, port: int) -> None:
        self._requests = threading.Condition()
        self._in_flight = 0
        self._serving: threading.Thread | None = None
        super().__init__(host, port, app, _Handler)

    @property
    def in_flight(self) -> int:
        with self._requests:
            return self._in_flight

    def request_began(self) -> None:
        with self._requests:
            self._in_flight += 1

    def request_ended(self) -> None:
        with self._requests:
            self._in_flight -= 1
            self._requests.notify_all()

    def start(self) -> None:
        self._serving = threading.Thread(
            target=self.serve_forever, name="function-server", daemon=True
        )
        self._serving.start()

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> bool:
        """Stop accepting, then wait up to `grace` seconds for the requests being answered.

        True when none was left unanswered.
        """
        if self._serving is not None:
            # serve_forever closes the listening socket as it returns.
            self.shutdown()
            self._serving.join()
        else:
            self.server_close()
        deadline = time.monotonic() + grace
        with self._requests:
            while self._in_flight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._requests.wait(remaining)
        return True


def load_app(target: str, source: str, signature_type: str) -> WSGIApplication:
    import functions_framework

    # functions-framework ships no annotations for create_app.
    create_app: Callable[[str, str, str], WSGIApplication] = functions_framework.create_app
    return create_app(target, source, signature_type)


def serve(
    target: str,
    source: str,
    signature_type: str,
    host: str,
    port: int,
    grace: float = DEFAULT_GRACE_SECONDS,
) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    # The app is loaded before the port is bound, so answering means ready.
    server = FunctionServer(load_app(target, source, signature_type), host, port)
    server.start()
    while not stopping.wait(1.0):
        pass
    if not server.stop(grace):
        print(
            f"stopped with {server.in_flight} request(s) unanswered after {grace:g}s",
            file=sys.stderr,
            flush=True,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetops.local.function_host")
    parser.add_argument("--target", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--signature-type", choices=SIGNATURE_TYPES, default="http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS)
    args: Any = parser.parse_args(argv)
    return serve(args.target, args.source, args.signature_type, args.host, args.port, args.grace)


if __name__ == "__main__":
    sys.exit(main())
