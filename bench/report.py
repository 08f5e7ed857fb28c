"""Results: one row per figure, printed as a table and written as JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    benchmark: str
    measure: str
    value: str
    target: str = ""
    # None: no target, or the figure could not be measured.
    met: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(load[0], 2),
    }


def table(rows: Sequence[Row], title: str) -> Table:
    out = Table(title=title, show_lines=False)
    out.add_column("benchmark")
    out.add_column("measure")
    out.add_column("value", justify="right")
    out.add_column("target")
    out.add_column("met")
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        style = "red" if row.met is False else None
        out.add_row(row.benchmark, row.measure, row.value, row.target, met, style=style)
    return out


def print_table(rows: Sequence[Row], title: str, console: Console | None = None) -> None:
    (console or Console()).print(table(rows, title))


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| benchmark | measure | value | target | met |", "|---|---|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.benchmark} | {row.measure} | {row.value} | {row.target} | {met} |")
    return "\n".join(lines)


def write(rows: Sequence[Row], meta: dict[str, Any], path: Path | None = None) -> Path:
    target = path or RESULTS / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "written_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        **meta,
        "rows": [asdict(r) for r in rows],
    }
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    tmp.replace(target)
    return target
