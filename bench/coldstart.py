"""Cold start of every function, beside the baseline, and the client libraries each imports.

Cold start: from just before `python -m functions_framework --target ... --source ...` is
started to its first successful answer to a real push body (what the emulator POSTs,
to the path `/projects/P/topics/T`), or for an http function to a GET of a read endpoint.
The body is sent every 10 ms until one is answered, so the figure includes the
interpreter's start, the imports, the clients' construction and the first piece of real
work. The baseline does the same with its one Firestore transaction. Functions and the
baseline alternate, round after round.

Imports: each function is loaded with `functions_framework.create_app` in a fresh
interpreter; the `google.cloud` packages in `sys.modules` are listed after the import and
after its first request, mapped to the distribution that ships them, and compared with
the requirements its `function.json` declares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import env
from bench.report import Row, median

POLL_SECONDS = 0.01
START_DEADLINE = 60.0
TARGET_FACTOR = 1.25
# Distributions under google/cloud/ that are plumbing rather than a client library.
NOT_CLIENTS = frozenset(
    {"functions-framework", "google-cloud-core", "googleapis-common-protos", "grpc-google-iam-v1"}
)


@dataclass
class Probe:
    """How to ask one function for its first piece of real work."""

    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fixture:
    project: str
    tokens_file: Path
    viewer_token: str
    finished_operation: str
    counter: int = 0

    def next_instance(self) -> str:
        self.counter += 1
        return f"cold-{self.counter:04d}"


def _event_body(event: Any) -> dict[str, Any]:
    from fleetops.contract.pubsub import encode_binary

    data, attributes = encode_binary(event)
    return env.push_body(data, attributes, str(uuid.uuid4()))


def probe_for(manifest: env.Manifest, fixture: Fixture) -> Probe:
    from fleetops.contract.incidents import notification
    from fleetops.contract.names import (
        ATTR_ERROR,
        ATTR_ORIGINAL_TOPIC,
        ATTR_REASON,
        EVENT_MAINTENANCE_TICK,
        EVENT_STEP_READY,
        TOPIC_REQUESTS,
    )
    from fleetops.contract.pubsub import CloudEvent
    from fleetops.contract.requests import new_request_event

    now = datetime.now(UTC)
    topic = manifest.trigger_topic or ""
    path = f"/projects/{fixture.project}/topics/{topic}"
    name = manifest.name
    if manifest.signature == "http":
        return Probe(
            "GET", "/v1/instances", headers={"Authorization": f"Bearer {fixture.viewer_token}"}
        )
    if name == "baseline":
        body = {"collection": "bench_cold", "id": uuid.uuid4().hex, "published_at": time.time()}
        return Probe("POST", path, env.push_body(json.dumps(body).encode(), {}, str(uuid.uuid4())))
    if name == "requests":
        event = new_request_event(
            {"instance": fixture.next_instance(), "action": "restart"},
            source="//bench/cold",
            event_id=str(uuid.uuid4()),
        )
        return Probe("POST", path, _event_body(event))
    if name == "alerts":
        incident = notification(
            f"cold-{uuid.uuid4().hex[:8]}", fixture.next_instance(), "open", started_at=now
        )
        return Probe(
            "POST", path, env.push_body(json.dumps(incident).encode(), {}, str(uuid.uuid4()))
        )
    if name == "operations":
        event = CloudEvent(
            id=f"{fixture.finished_operation}/0/{uuid.uuid4().hex[:8]}",
            source="//bench/cold",
            type=EVENT_STEP_READY,
            data={"operation": fixture.finished_operation, "instance": "cold-0000", "step": 0},
            time=now,
        )
        return Probe("POST", path, _event_body(event))
    if name in ("sweeper", "maintenance"):
        event = CloudEvent(
            id=uuid.uuid4().hex, source="//bench/cold", type=EVENT_MAINTENANCE_TICK, time=now
        )
        return Probe("POST", path, _event_body(event))
    if name == "deadletters":
        attributes = {
            ATTR_ERROR: "malformed-json",
            ATTR_REASON: "a cold-start probe",
            ATTR_ORIGINAL_TOPIC: TOPIC_REQUESTS,
        }
        return Probe("POST", path, env.push_body(b"not json", attributes, str(uuid.uuid4())))
    raise ValueError(f"no probe for function {name}: add one to bench/coldstart.py")


def prepare(bench: env.Bench, instances: int, state_dir: Path) -> Fixture:
    from fleetops.adapters.memory import InMemoryPublisher
    from fleetops.contract.names import ALL_TOPICS
    from fleetops.local.api_tokens import write_tokens_file
    from fleetops.runtime import utc_now
    from fleetops.services import automation
    from fleetops.services.requests import RequestDeps, handle_request_message

    project = env.new_project("bench-cold")
    env.create_topics(project, ALL_TOPICS)
    store = env.state_store(project)
    env.seed_instances(store, ["cold-0000"] + [f"cold-{i:04d}" for i in range(1, instances + 1)])
    automation.set_dry_run(store, True)
    automation.set_limit(store, "circuit_minimum", str(instances * 10 + 10))
    deps = RequestDeps(store, InMemoryPublisher(), utc_now)
    outcome = handle_request_message(
        env.request_message("cold-0000", "snapshot", dry_run=True), deps
    )
    tokens = write_tokens_file(state_dir / "api-tokens.json")
    assert outcome.operation is not None
    return Fixture(project, tokens.path, tokens.viewer.token, outcome.operation)


def _send(url: str, probe: Probe) -> requests.Response:
    if probe.method == "GET":
        return requests.get(url + probe.path, headers=probe.headers, timeout=30)
    return requests.post(url + probe.path, json=probe.body, headers=probe.headers, timeout=30)


def cold_start(bench: env.Bench, manifest: env.Manifest, fixture: Fixture) -> dict[str, Any]:
    probe = probe_for(manifest, fixture)
    extra = {"FLEETOPS_API_TOKENS_FILE": str(fixture.tokens_file)}
    began = time.perf_counter()
    function = bench.spawn_function(manifest, fixture.project, extra, wait=False)
    attempts = 0
    try:
        while time.perf_counter() - began < START_DEADLINE:
            if not function.child.alive():
                return {"ok": False, "error": "exited", "attempts": attempts}
            try:
                attempts += 1
                response = _send(function.url, probe)
            except requests.ConnectionError:
                time.sleep(POLL_SECONDS)
                continue
            seconds = time.perf_counter() - began
            ok = 200 <= response.status_code < 300
            return {
                "ok": ok,
                "seconds": round(seconds, 3),
                "status": response.status_code,
                "attempts": attempts,
            }
        return {"ok": False, "error": "timeout", "attempts": attempts}
    finally:
        bench.stop_function(function, graceful=False)


_IMPORT_PROBE = r"""
import time
began = time.perf_counter()
import gc, importlib.metadata, json, sys
import functions_framework
framework_s = time.perf_counter() - began

spec = json.loads(sys.argv[1])

def owners():
    found = {}
    for dist in importlib.metadata.distributions():
        for f in dist.files or ():
            parts = f.parts
            if len(parts) >= 3 and parts[0] == "google" and parts[1] == "cloud":
                found.setdefault(parts[2].removesuffix(".py"), dist.metadata["Name"].lower())
    return found

def loaded():
    return sorted({m.split(".")[2] for m in sys.modules if m.startswith("google.cloud.")})

app = functions_framework.create_app(spec["target"], spec["source"], spec["signature"])
import_s = time.perf_counter() - began - framework_s
after_import = loaded()
client = app.test_client()
asked = time.perf_counter()
if spec["method"] == "GET":
    response = client.get(spec["path"], headers=spec["headers"])
else:
    response = client.post(spec["path"], json=spec["body"], headers=spec["headers"])
request_s = time.perf_counter() - asked
asked = time.perf_counter()
if spec["method"] == "GET":
    client.get(spec["path"], headers=spec["headers"])
else:
    client.post(spec["path"], json=spec["second"], headers=spec["headers"])
second_s = time.perf_counter() - asked
after_request = loaded()
names = owners()
built = set()
for obj in gc.get_objects():
    kind = type(obj)
    module = getattr(kind, "__module__", None)
    if isinstance(module, str) and module.startswith("google.cloud."):
        if kind.__name__.endswith("Client"):
            built.add(names.get(module.split(".")[2], module))
print(json.dumps({
    "status": response.status_code,
    "after_import": sorted({names.get(p, p) for p in after_import}),
    "after_request": sorted({names.get(p, p) for p in after_request}),
    "constructed": sorted(built),
    "seconds": {
        "functions_framework": round(framework_s, 3),
        "import_main": round(import_s, 3),
        "first_request": round(request_s, 3),
        "second_request": round(second_s, 3),
    },
}))
"""


def imports(bench: env.Bench, manifest: env.Manifest, fixture: Fixture) -> dict[str, Any]:
    probe = probe_for(manifest, fixture)
    spec = {
        "target": manifest.entry_point,
        "source": str(manifest.source),
        "signature": manifest.signature,
        "method": probe.method,
        "path": probe.path,
        "body": probe.body,
        # The same work again, warm: what the first request pays on top is start-up.
        "second": probe_for(manifest, fixture).body,
        "headers": probe.headers,
    }
    environ = bench.env(fixture.project, {"FLEETOPS_API_TOKENS_FILE": str(fixture.tokens_file)})
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(spec)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout)[-500:]}
    found: dict[str, Any] = json.loads(lines[-1])
    declared = set(manifest.requirements)
    clients = [d for d in found["after_request"] if d not in NOT_CLIENTS]
    found["clients"] = clients
    found["undeclared"] = [d for d in clients if d not in declared]
    # Imported, yet no client of it was built while serving: loaded for nothing.
    found["unused"] = [d for d in clients if d not in found["constructed"]]
    found["at_import"] = [d for d in found["after_import"] if d not in NOT_CLIENTS]
    return found


def run(
    bench: env.Bench, *, rounds: int, state_dir: Path, say: Callable[[str], None] = print
) -> list[Row]:
    functions = env.manifests()
    baseline = env.baseline_manifest()
    fixture = prepare(bench, instances=(len(functions) + 2) * (rounds + 2), state_dir=state_dir)
    times: dict[str, list[float]] = {m.name: [] for m in [baseline, *functions]}
    failures: dict[str, list[dict[str, Any]]] = {m.name: [] for m in [baseline, *functions]}
    for r in range(rounds):
        for manifest in [baseline, *functions, baseline]:
            result = cold_start(bench, manifest, fixture)
            if result["ok"]:
                times[manifest.name].append(result["seconds"])
            else:
                failures[manifest.name].append(result)
            say(f"  cold start {manifest.name:<12} round {r + 1}: {result}")
    base = median(times["baseline"])
    rows = [
        Row(
            "cold start",
            "baseline (1 Firestore tx)",
            f"{base:.2f} s",
            data={"seconds": times["baseline"], "failures": failures["baseline"]},
        )
    ]
    for manifest in functions:
        seconds = median(times[manifest.name])
        factor = seconds / base if base else float("nan")
        ok = not failures[manifest.name] and factor <= TARGET_FACTOR
        rows.append(
            Row(
                "cold start",
                f"{manifest.name} ({manifest.signature})",
                f"{seconds:.2f} s ({factor:.2f}x baseline)"
                + (f", {len(failures[manifest.name])} failed" if failures[manifest.name] else ""),
                f"<= {TARGET_FACTOR}x baseline",
                ok,
                data={"seconds": times[manifest.name], "failures": failures[manifest.name]},
            )
        )
    for manifest in [baseline, *functions]:
        found = imports(bench, manifest, fixture)
        say(f"  imports {manifest.name:<12}: {found}")
        if "error" in found:
            rows.append(
                Row("imports", manifest.name, "could not load: " + found["error"][:80], "", False)
            )
            continue
        clean = not found["undeclared"] and not found["unused"]
        problems = [
            *(f"{d} not declared" for d in found["undeclared"]),
            *(f"{d} imported, no client built" for d in found["unused"]),
            *(f"{d} imported with main.py" for d in found["at_import"]),
        ]
        phases = found.get("seconds", {})
        listed = ", ".join(c.removeprefix("google-cloud-") for c in found["clients"]) or "none"
        rows.append(
            Row(
                "imports",
                f"{manifest.name}: client libraries after 1st request",
                listed
                + (f" ({'; '.join(problems)})" if problems else "")
                + (
                    f"; import {phases['import_main']:.2f} s, 1st request "
                    f"{phases['first_request']:.2f} s, 2nd {phases['second_request']:.2f} s"
                    if phases
                    else ""
                ),
                "only what it uses",
                clean and 200 <= found["status"] < 300,
                data=found,
            )
        )
    return rows
