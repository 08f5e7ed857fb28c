"""`python -m bench [--quick] [--only NAME]`: run the benchmarks, print a table, write JSON.

Everything runs on this machine against 127.0.0.1: the emulators are started from their
jars for the throughput, cost, rollout and cold-start benchmarks (and stopped after them),
then `fleetops up` runs as a subprocess for the memory benchmark.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench import env, report
from bench.report import Row

NAMES = ("throughput", "cost", "rollout", "coldstart", "memory")
ON_EMULATORS = ("throughput", "cost", "rollout", "coldstart")


@dataclass(frozen=True)
class Sizes:
    messages: int
    rounds: int
    alert_deadline: float
    latency_seconds: float
    cost_units: int
    rollout_instances: int
    cold_rounds: int
    memory_requests: int
    memory_window: float
    # Unmeasured messages per path before the bursts, so the emulators' JIT is warm.
    jit_warmup: int
    memory_idle_wait: float


FULL = Sizes(
    messages=600,
    rounds=2,
    alert_deadline=30,
    latency_seconds=6,
    cost_units=20,
    rollout_instances=10_000,
    cold_rounds=3,
    memory_requests=300,
    memory_window=30,
    jit_warmup=300,
    memory_idle_wait=5,
)
QUICK = Sizes(
    messages=150,
    rounds=1,
    alert_deadline=10,
    latency_seconds=2,
    cost_units=5,
    rollout_instances=10_000,
    cold_rounds=1,
    memory_requests=100,
    memory_window=6,
    jit_warmup=150,
    memory_idle_wait=2,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 3 minutes")
    parser.add_argument("--only", choices=NAMES, action="append", help="run only this (repeat)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    chosen = [n for n in NAMES if not args.only or n in args.only]
    # A wide table even when the output is a file or a pipe (CI logs, nox).
    console = Console() if sys.stdout.isatty() else Console(width=200)

    from fleetops.local import emulators

    problem = emulators.available()
    if problem is not None:
        console.print(f"[red]cannot benchmark: the emulators cannot run here: {problem}[/]")
        return 2

    def say(text: str) -> None:
        console.print(text, highlight=False)

    began = time.monotonic()
    rows: list[Row] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="fleetops-bench-") as tmp:
        bench = env.Bench(Path(tmp) / "logs")
        try:
            if any(n in ON_EMULATORS for n in chosen):
                bench.start()
                say(f"emulators ready in {time.monotonic() - began:.1f}s")
            steps = _steps(bench, sizes, Path(tmp), say)
            for name in chosen:
                if name == "memory":
                    # Alone on the machine: the bench's own emulators are not part of the stack.
                    bench.stop()
                say(f"[bold]{name}[/]")
                step_began = time.monotonic()
                try:
                    rows.extend(steps[name]())
                except Exception as exc:
                    failed = True
                    traceback.print_exc()
                    rows.append(Row(name, "error", f"{type(exc).__name__}: {exc}"[:160], "", False))
                say(f"  {name} took {time.monotonic() - step_began:.0f}s")
        finally:
            bench.stop()
    seconds = time.monotonic() - began
    title = f"fleetops bench{' --quick' if args.quick else ''} ({seconds:.0f} s)"
    report.print_table(rows, title, console)
    path = report.write(
        rows,
        {"quick": args.quick, "only": chosen, "seconds": round(seconds, 1), "sizes": vars(sizes)},
        args.output,
    )
    say(f"wrote {path}")
    return 1 if failed else 0


def _steps(
    bench: env.Bench, sizes: Sizes, tmp: Path, say: Callable[[str], None]
) -> dict[str, Callable[[], list[Row]]]:
    from bench import coldstart, cost, memory, rollout, throughput

    return {
        "throughput": lambda: throughput.run(
            bench,
            n=sizes.messages,
            rounds=sizes.rounds,
            latency_seconds=sizes.latency_seconds,
            alert_deadline=sizes.alert_deadline,
            jit_warmup=sizes.jit_warmup,
            say=say,
        ),
        "cost": lambda: cost.run(bench, units=sizes.cost_units, say=say),
        "rollout": lambda: rollout.run(bench, instances=sizes.rollout_instances, say=say),
        "coldstart": lambda: coldstart.run(bench, rounds=sizes.cold_rounds, state_dir=tmp, say=say),
        "memory": lambda: memory.run(
            instances=10,
            requests=sizes.memory_requests,
            window=sizes.memory_window,
            idle_wait=sizes.memory_idle_wait,
            say=say,
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
