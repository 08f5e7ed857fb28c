"""Fifty requests for one instance at once: one at a time, all of them, in order.

The first request takes the instance's lease; the others are queued, and each finishing
operation starts the oldest queued one in the same transaction. So the operations'
[started_at, finished_at] never overlap, every one finishes, the order they ran in is
the order they were recorded in (created_at, then id), and each holder's fencing
token is higher than the one before.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.reliability.support import FULL, SIZES, StackClient, demo, describe, intervals_overlap


@pytest.mark.timeout(1800 if FULL else 900)
def test_concurrent_requests_for_one_instance_run_one_at_a_time_in_order(
    client: StackClient,
) -> None:
    instance = demo(SIZES.burst_instances + 1)
    count = SIZES.one_instance_requests
    began = time.monotonic()
    sent = client.publish_requests(
        [(instance, "snapshot")] * count, source=f"//tests/reliability/one/{uuid.uuid4().hex}"
    )
    assert all(s.published for s in sent)
    # No maintenance ticks: nothing is lost here, and each sweep would take the instance's
    # locks once per queued operation.
    ops, letters = client.wait_finished(sent, began + (900 if FULL else 480), tick_every=None)
    print(f"\n{count} operations on {instance} settled in {time.monotonic() - began:.0f}s")

    assert not letters, f"dead letters: {letters}"
    unrecorded = [s.event_id for s in sent if not ops.get(s.event_id)]
    assert not unrecorded, (
        f"{len(unrecorded)} of {count} requests not even recorded after "
        f"{time.monotonic() - began:.0f}s (lock waits on the instance document)"
    )
    assert all(len(ops[s.event_id]) == 1 for s in sent), "not one operation per request"
    recorded = [ops[s.event_id][0] for s in sent]
    created = sorted(o["created_at"] for o in recorded)
    started = sorted(o["started_at"] for o in recorded)
    print(
        f"recorded within {(created[-1] - created[0]).total_seconds():.1f}s, "
        f"run within {(started[-1] - started[0]).total_seconds():.1f}s"
    )
    unfinished = [o for o in recorded if o["status"] != "succeeded"]
    assert not unfinished, f"{len(unfinished)} did not succeed: {describe(unfinished)}"

    overlaps = intervals_overlap(recorded)
    assert not overlaps, f"operations ran at the same time: {overlaps[:5]}"
    by_creation = [o["id"] for o in sorted(recorded, key=lambda o: (o["created_at"], o["id"]))]
    by_start = [o["id"] for o in sorted(recorded, key=lambda o: o["started_at"])]
    first_out_of_order = next(
        (n for n, (a, b) in enumerate(zip(by_creation, by_start, strict=True)) if a != b), None
    )
    if first_out_of_order is not None:
        by_id = {o["id"]: o for o in recorded}
        shown = [
            f"{i} created {by_id[i]['created_at'].isoformat()} started "
            f"{by_id[i]['started_at'].isoformat()} history "
            f"{[h.get('event') for h in by_id[i].get('history') or []]}"
            for i in by_start[first_out_of_order : first_out_of_order + 2]
        ]
        pytest.fail(
            f"ran out of the order of creation from position {first_out_of_order}: "
            + "; ".join(shown)
        )
    tokens = [o["lease_token"] for o in sorted(recorded, key=lambda o: o["started_at"])]
    assert tokens == sorted(set(tokens)), f"fencing tokens not increasing: {tokens}"
