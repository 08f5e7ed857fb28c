"""One `fleetops up` for the reliability tests that need the whole loop.

It provisions enough demo instances for every test, each test using its own range,
and pauses automatic remediation so the only effects on instances are the tests' own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fleetops.services import automation
from tests.e2e.stack import RunningStack
from tests.reliability.support import FULL, SIZES, StackClient, demo


@pytest.fixture(scope="session")
def reliability_stack(
    emulator_tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    running = RunningStack(tmp_path_factory.mktemp("reliability"), instances=SIZES.instances)
    try:
        running.wait_ready(timeout=900 if FULL else 420)
        print(f"\nfleetops up --instances {SIZES.instances} was ready in {running.started_in:.0f}s")
        yield running
    finally:
        running.kill_everything()


@pytest.fixture(scope="session")
def client(reliability_stack: RunningStack) -> StackClient:
    client = StackClient(
        reliability_stack.env, reliability_stack.state_dir, reliability_stack.process.pid
    )
    wanted = {demo(n) for n in range(1, SIZES.instances + 1)}
    deadline = time.monotonic() + 300
    while True:
        ready = {
            i.id
            for i in client.store.list_instances()
            if i.state.value == "running" and i.active_operation is None
        }
        if wanted <= ready or time.monotonic() > deadline:
            break
        time.sleep(2)
    missing = sorted(wanted - ready)
    assert not missing, f"demo instances not running after start: {missing[:10]}"
    # Only the tests' own requests may touch instances: no remediation under load.
    automation.pause(client.store, "reliability tests")
    return client
