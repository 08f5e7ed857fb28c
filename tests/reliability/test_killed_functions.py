"""A burst of requests while the `requests` and `operations` functions are killed at random.

A function's process is SIGKILLed (or, under a server that forks workers, its master or a
worker, chosen at random) as Cloud Functions instances can vanish at any line; the stack's
supervisor restarts a dead function within about a second, and Pub/Sub redelivers what was
in flight. Afterwards:

- every request has exactly one operation, or else exactly one dead letter;
- every operation finished (the sweeper, driven by maintenance ticks, re-drives any
  operation whose next message was lost), and succeeded;
- no instance received an effect twice: the starts each instance counted in its
  `data/app.json` grew by exactly the restarts that succeeded on it, and the host agent
  applied no token twice.

CI size: 150 requests over 30 instances, 3 kills; FLEETOPS_RELIABILITY_FULL=1: 1,000
over 100, 5 kills. FLEETOPS_RELIABILITY_SEED replays one run's choices.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid

import pytest

from tests.reliability.support import (
    FULL,
    SIZES,
    StackClient,
    demo,
    describe,
    function_answers,
    wait_until,
)

SEED = int(os.environ.get("FLEETOPS_RELIABILITY_SEED") or random.SystemRandom().randrange(10**6))
KILLED = ("requests", "operations")


@pytest.mark.timeout(3600 if FULL else 1200)
def test_burst_with_killed_functions(client: StackClient) -> None:
    rng = random.Random(SEED)
    print(f"\nseed {SEED} (FLEETOPS_RELIABILITY_SEED={SEED} replays these choices)")
    instances = [demo(n) for n in range(1, SIZES.burst_instances + 1)]
    before = {i: client.starts(i) for i in instances}
    asks = [
        (instances[n % len(instances)], rng.choice(("restart", "snapshot")))
        for n in range(SIZES.burst_requests)
    ]
    rng.shuffle(asks)
    began = time.monotonic()
    sent = client.publish_requests(asks, source=f"//tests/reliability/kills/{uuid.uuid4().hex}")
    assert all(s.published for s in sent), [s.error for s in sent if not s.published][:3]

    kills = []
    for _ in range(SIZES.kills):
        time.sleep(rng.uniform(1.0, 4.0))
        folder = rng.choice(KILLED)
        assert wait_until(lambda f=folder: function_answers(client, f), 30), f"{folder} is gone"
        master, workers = client.function_processes(folder)
        assert master is not None
        victim = master if rng.random() < 0.5 or not workers else rng.choice(workers)
        kind = "master" if victim is master else "worker"
        os.kill(victim.pid, signal.SIGKILL)
        kills.append(f"{folder} {kind} pid {victim.pid} at {time.monotonic() - began:.1f}s")
        assert wait_until(lambda f=folder: function_answers(client, f), 30), (
            f"{folder} did not come back after its {kind} was killed"
        )
    print("killed: " + "; ".join(kills))

    deadline = began + (1800 if FULL else 600)
    ops, letters = client.wait_finished(sent, deadline)
    print(f"all settled in {time.monotonic() - began:.0f}s; {sum(letters.values())} dead letters")

    twice = {s.event_id: ops.get(s.event_id, []) for s in sent if len(ops.get(s.event_id, [])) > 1}
    assert not twice, f"requests with several operations: {list(twice.items())[:3]}"
    both = [s.event_id for s in sent if ops.get(s.event_id) and letters.get(s.event_id)]
    assert not both, f"requests with an operation and a dead letter: {both[:5]}"
    none = [s for s in sent if not ops.get(s.event_id) and not letters.get(s.event_id)]
    assert not none, f"{len(none)} requests have neither operation nor dead letter: {none[:3]}"
    repeated = [k for k, n in letters.items() if n > 1]
    assert not repeated, f"requests dead-lettered more than once: {repeated[:5]}"

    recorded = [o for s in sent for o in ops.get(s.event_id, [])]
    stuck = [
        o
        for o in recorded
        if o.get("status") not in ("succeeded", "failed", "rejected", "cancelled")
    ]
    assert not stuck, f"{len(stuck)} operations unfinished after the deadline: {describe(stuck)}"
    unsuccessful = [o for o in recorded if o.get("status") != "succeeded"]
    assert not unsuccessful, f"{len(unsuccessful)} did not succeed: {describe(unsuccessful)}"

    problems = []
    for instance in instances:
        restarts = [
            o
            for o in recorded
            if o["instance"] == instance
            and o["action"] == "restart"
            and o["steps"][0]["status"] == "succeeded"
        ]
        grew = client.starts(instance) - before[instance]
        if grew != len(restarts):
            problems.append(f"{instance}: {grew} starts for {len(restarts)} restarts")
        record = json.loads((client.state_dir / "instances" / instance / "agent.json").read_text())
        tokens = record.get("tokens") or []
        if len(tokens) != len(set(tokens)):
            problems.append(f"{instance}: the agent applied a token twice")
    assert not problems, "effects not exactly once: " + "; ".join(problems[:10])
