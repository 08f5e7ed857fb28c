"""Building clients on first use: what a function's cold start does not pay for."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from fleetops.adapters.memory import InMemoryPublisher
from fleetops.runtime import LazyPublisher


def test_a_lazy_publisher_builds_nothing_until_it_publishes_then_builds_once() -> None:
    built: list[InMemoryPublisher] = []

    def build() -> InMemoryPublisher:
        built.append(InMemoryPublisher())
        return built[-1]

    lazy = LazyPublisher(build)
    assert built == []
    assert not lazy.built
    threads = [
        threading.Thread(target=lazy.publish, args=("t", str(n).encode(), {"n": str(n)}))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert lazy.built
    assert sorted(m.data for m in built[0].on("t")) == [str(n).encode() for n in range(8)]


def test_a_failed_build_is_tried_again_on_the_next_publish() -> None:
    attempts: list[int] = []

    class Flaky:
        def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
            return "1"

    def build() -> Flaky:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("no credentials yet")
        return Flaky()

    lazy = LazyPublisher(build)
    with pytest.raises(ConnectionError):
        lazy.publish("t", b"", {})
    assert lazy.publish("t", b"", {}) == "1"
    assert len(attempts) == 2


def test_the_runtime_publisher_imports_no_pubsub_client_until_it_publishes() -> None:
    code = (
        "import sys\n"
        "from fleetops import runtime\n"
        "publisher = runtime.publisher()\n"
        "assert runtime.publisher() is publisher\n"
        "assert not any(m.startswith('google.cloud.pubsub') for m in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_importing_a_pubsub_function_imports_no_client_library_nor_pydantic() -> None:
    # The api is left out: it serves its OpenAPI document from its pydantic models.
    code = (
        "import importlib.util, pathlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    path = pathlib.Path('functions') / name / 'main.py'\n"
        "    spec = importlib.util.spec_from_file_location(f'main_{name}', path)\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "clients = ('google.cloud.firestore', 'google.cloud.pubsub', 'pydantic')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(clients))\n"
        "assert not loaded, loaded\n"
    )
    functions = ["alerts", "deadletters", "maintenance", "operations", "requests", "sweeper"]
    done = subprocess.run(
        [sys.executable, "-c", code, *functions],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
