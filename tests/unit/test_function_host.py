"""`fleetops.local.function_host` answers as `python -m functions_framework` does, in one process.

Both run the same function as real subprocesses; every request gets the same status and body
from each, and a push reaches the function as the same CloudEvent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from fleetops.local.processes import free_port

FUNCTION = textwrap.dedent(
    """
    import json
    import os
    import threading
    import time

    import flask
    import functions_framework

    from fleetops import log

    log.configure()
    _logger = log.get("test_function")
    _pair = threading.Barrier(2, timeout=5)


    def _record(what):
        with open(os.environ["RECORD_TO"], "a") as out:
            out.write(json.dumps(what) + "\\n")


    @functions_framework.cloud_event
    def on_push(event):
        message = event.data["message"]
        command = json.loads(__import__("base64").b64decode(message["data"]))
        attributes = {k: v for k, v in event.get_attributes().items() if k != "time"}
        _record({"attributes": attributes, "data": event.data, "command": command})
        _logger.info("handled %s", command["kind"], extra={"event_id": event["id"]})
        if command["kind"] == "fail":
            raise RuntimeError("asked to fail")
        if command["kind"] == "pair":
            _pair.wait()
        if command["kind"] == "slow":
            time.sleep(command["seconds"])


    @functions_framework.http
    def on_http(request: flask.Request):
        if request.path == "/boom":
            raise RuntimeError("asked to fail")
        body = request.get_data(as_text=True)
        return flask.jsonify(path=request.path, args=request.args, body=body)
    """
)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    record: Path
    log: Path

    def records(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def serve(tmp: Path, module: str, target: str, signature: str, name: str | None = None) -> Served:
    folder = tmp / "fn"
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(FUNCTION)
    name = name or f"{module}-{target}"
    port = free_port()
    record, log = tmp / f"{name}.jsonl", tmp / f"{name}.log"
    env = {**os.environ, "RECORD_TO": str(record), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--target",
                target,
                "--source",
                str(folder / "main.py"),
                "--signature-type",
                signature,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(process, f"http://127.0.0.1:{port}", record, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            requests.get(served.url, timeout=1)
            return served
        except requests.RequestException:
            time.sleep(0.05)
    served.stop()
    raise AssertionError(f"{module} did not answer: {log.read_text()}")


def push_body(kind: str, **fields: Any) -> dict[str, Any]:
    """What the Pub/Sub emulator POSTs to a push endpoint."""
    data = base64.b64encode(json.dumps({"kind": kind, **fields}).encode()).decode()
    return {
        "message": {
            "data": data,
            "attributes": {"ce-type": "example.kind", "origin": "tests"},
            "messageId": str(uuid.uuid4().int % 10**12),
            "publishTime": "2026-01-02T03:04:05.678Z",
        },
        "subscription": "projects/p/subscriptions/fleetops-requests-to-requests",
    }


PUSH = "/projects/p/topics/fleetops-requests"


def comparable(body: bytes, served: Served) -> bytes:
    """The body without what differs by server: its port and the random execution id."""
    body = body.replace(served.url.rsplit(":", 1)[1].encode(), b"PORT")
    return re.sub(rb"Function-Execution-Id: \w+", b"Function-Execution-Id: ID", body)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Served]]:
    """The cloudevent function under functions-framework's gunicorn, and under the host."""
    tmp = tmp_path_factory.mktemp("cloudevent")
    with ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(serve, tmp, module, "on_push", "cloudevent")
            for module in ("functions_framework", "fleetops.local.function_host")
        ]
        reference, host = (f.result() for f in started)
    yield reference, host
    reference.stop()
    host.stop()


@pytest.fixture(scope="module")
def http_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Served]]:
    tmp = tmp_path_factory.mktemp("http")
    with ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(serve, tmp, module, "on_http", "http")
            for module in ("functions_framework", "fleetops.local.function_host")
        ]
        reference, host = (f.result() for f in started)
    yield reference, host
    reference.stop()
    host.stop()


def test_the_host_is_one_process(pair: tuple[Served, Served]) -> None:
    reference, host = pair
    assert psutil.Process(reference.process.pid).children(), "gunicorn forks a worker"
    assert psutil.Process(host.process.pid).children() == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", PUSH, push_body("ok")),
        ("POST", PUSH, push_body("fail")),
        ("POST", PUSH, {"not": "a push"}),
        ("POST", PUSH, "not json"),
        ("GET", "/", None),
        ("GET", PUSH, None),
    ],
)
def test_a_cloudevent_function_answers_the_same(
    pair: tuple[Served, Served], method: str, path: str, body: object
) -> None:
    answers = []
    for served in pair:
        data = body if isinstance(body, str) else json.dumps(body) if body is not None else None
        response = requests.request(
            method,
            served.url + path,
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        answers.append((response.status_code, comparable(response.content, served)))
    assert answers[0] == answers[1]


def test_a_push_becomes_the_same_cloudevent(pair: tuple[Served, Served]) -> None:
    body = push_body("ok", marker=uuid.uuid4().hex)
    for served in pair:
        response = requests.post(served.url + PUSH, json=body, timeout=10)
        assert response.status_code == 200, response.text
    marker = json.loads(base64.b64decode(body["message"]["data"]))["marker"]
    seen = [
        [r for r in served.records() if r["command"].get("marker") == marker] for served in pair
    ]
    assert len(seen[0]) == len(seen[1]) == 1
    assert seen[0] == seen[1]
    event = seen[1][0]["attributes"]
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == "//pubsub.googleapis.com/projects/p/topics/fleetops-requests"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/", None),
        ("GET", "/v1/instances?page=2&q=a%20b", None),
        ("POST", "/v1/requests", '{"x": 1}'),
        ("GET", "/boom", None),
        ("DELETE", "/v1/instances/demo-1", None),
    ],
)
def test_an_http_function_answers_the_same(
    http_pair: tuple[Served, Served], method: str, path: str, body: str | None
) -> None:
    answers = []
    for served in http_pair:
        response = requests.request(method, served.url + path, data=body, timeout=10)
        answers.append(
            (
                response.status_code,
                response.headers["Content-Type"],
                comparable(response.content, served),
            )
        )
    assert answers[0] == answers[1]


def test_requests_are_answered_concurrently(pair: tuple[Served, Served]) -> None:
    # The function waits until two requests are inside it: a server answering one at a
    # time would break the barrier after 5 s and answer 500.
    _, host = pair
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(host.url + PUSH, json=push_body("pair"), timeout=20),
                range(2),
            )
        )
    assert [a.status_code for a in answers] == [200, 200]


def test_the_log_holds_the_functions_structured_lines_only(tmp_path: Path) -> None:
    host = serve(tmp_path, "fleetops.local.function_host", "on_push", "cloudevent")
    try:
        for _ in range(3):
            requests.post(host.url + PUSH, json=push_body("ok"), timeout=10)
        host.process.send_signal(signal.SIGTERM)
        assert host.process.wait(10) == 0
    finally:
        host.stop()
    lines = host.log.read_text().splitlines()
    assert len(lines) == 3, lines
    for line in lines:
        entry = json.loads(line)
        assert entry["message"] == "handled ok"
        assert entry["severity"] == "INFO"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_lets_the_request_in_flight_finish(tmp_path: Path, signum: int) -> None:
    host = serve(tmp_path, "fleetops.local.function_host", "on_push", "cloudevent")
    try:
        answer: list[int] = []
        slow = threading.Thread(
            target=lambda: answer.append(
                requests.post(
                    host.url + PUSH, json=push_body("slow", seconds=1.5), timeout=20
                ).status_code
            )
        )
        slow.start()
        deadline = time.monotonic() + 10
        while not host.records() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert host.records(), "the slow request never arrived"
        began = time.monotonic()
        host.process.send_signal(signum)
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):
            requests.post(host.url + PUSH, json=push_body("ok"), timeout=2)
        assert host.process.wait(10) == 0
        slow.join(10)
        assert answer == [200]
        assert time.monotonic() - began < 5
    finally:
        host.stop()


def test_a_stop_does_not_wait_forever_for_a_stuck_request(tmp_path: Path) -> None:
    host = serve(tmp_path, "fleetops.local.function_host", "on_push", "cloudevent")

    def stuck() -> None:
        # The server goes away without answering it.
        with contextlib.suppress(requests.ConnectionError):
            requests.post(host.url + PUSH, json=push_body("slow", seconds=30), timeout=40)

    try:
        threading.Thread(target=stuck, daemon=True).start()
        deadline = time.monotonic() + 10
        while not host.records() and time.monotonic() < deadline:
            time.sleep(0.02)
        began = time.monotonic()
        host.process.send_signal(signal.SIGTERM)
        assert host.process.wait(15) == 0
        assert time.monotonic() - began < 8
        assert "unanswered" in host.log.read_text()
    finally:
        host.stop()


def test_a_function_that_cannot_load_exits_with_its_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "main.py").write_text("raise ImportError('no such dependency')\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetops.local.function_host",
            "--target",
            "nothing",
            "--source",
            str(folder / "main.py"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no such dependency" in result.stderr
