"""The local stack, started once for the end-to-end module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import RunningStack


@pytest.fixture(scope="module")
def stack(emulator_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = RunningStack(tmp_path_factory.mktemp("stack"), instances=3)
    try:
        running.wait_ready()
        print(f"\nfleetops up --instances 3 was ready in {running.started_in:.1f}s")
        yield running
    finally:
        running.kill_everything()


@pytest.fixture(autouse=True, scope="module")
def _restore_environment() -> Iterator[None]:
    """Tests point clients at a stack through os.environ; later modules start clean."""
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
