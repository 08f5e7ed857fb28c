"""The Pub/Sub emulator frozen for ten seconds in the middle of a burst.

Its JVM is stopped with SIGSTOP and resumed with SIGCONT, so every connection to it hangs
rather than fails: publishers (the test's and the functions'), pushes in flight, the
supervisor's health checks. Afterwards nothing that Pub/Sub acknowledged is lost (every
request whose publish returned a message id ends with exactly one operation, finished),
and publishing works again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from tests.reliability.support import FULL, SIZES, Sent, StackClient, demo, describe

PAUSE_SECONDS = 10.0


@pytest.mark.timeout(1800 if FULL else 900)
def test_burst_survives_a_frozen_pubsub_emulator(client: StackClient) -> None:
    first = SIZES.burst_instances + 2
    instances = [demo(n) for n in range(first, first + SIZES.pause_instances)]
    asks = [(instances[n % len(instances)], "snapshot") for n in range(SIZES.pause_requests)]
    source = f"//tests/reliability/pause/{uuid.uuid4().hex}"
    third = len(asks) // 3
    emulator = client.pubsub_emulator()
    began = time.monotonic()

    before = client.publish_requests(asks[:third], source)
    during: list[Sent] = []
    publishing = threading.Thread(
        target=lambda: during.extend(client.publish_requests(asks[third:], source, timeout=120))
    )
    os.kill(emulator.pid, signal.SIGSTOP)
    try:
        publishing.start()
        time.sleep(PAUSE_SECONDS)
    finally:
        os.kill(emulator.pid, signal.SIGCONT)
    stopped_for = time.monotonic() - began
    publishing.join(timeout=180)
    assert not publishing.is_alive(), "publishing never returned after the emulator resumed"
    after = client.publish_requests([(instances[0], "snapshot")] * 5, source, timeout=60)
    assert all(s.published for s in after), f"publishing did not resume: {after[0].error}"

    sent = [*before, *during, *after]
    taken = [s for s in sent if s.published]
    refused = [s for s in sent if not s.published]
    print(
        f"\nemulator frozen {PAUSE_SECONDS:.0f}s ({stopped_for:.1f}s into the burst); "
        f"{len(taken)} publishes acknowledged, {len(refused)} refused"
    )
    ops, letters = client.wait_finished(taken, began + (900 if FULL else 480), tick_every=60)
    print(f"settled in {time.monotonic() - began:.0f}s")

    lost = [s.event_id for s in taken if not ops.get(s.event_id)]
    assert not lost, f"{len(lost)} acknowledged requests have no operation: {lost[:5]}"
    assert not letters, f"dead letters: {letters}"
    doubled = [k for k, v in ops.items() if len(v) > 1]
    assert not doubled, f"requests with several operations: {doubled[:5]}"
    recorded = [ops[s.event_id][0] for s in taken]
    unfinished = [o for o in recorded if o["status"] != "succeeded"]
    assert not unfinished, f"{len(unfinished)} did not succeed: {describe(unfinished)}"
    # A publish that was refused may or may not have been stored; never twice.
    for s in refused:
        assert len(client.operations_of([s]).get(s.event_id, [])) <= 1
