"""`GceActuator` through the real `google-cloud-compute` client (REST) against a local fake."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth.credentials import AnonymousCredentials

from fleetops.adapters.gce_actuator import (
    DEFAULT_MACHINE_TYPES,
    GceActuator,
    gce_labels,
    snapshot_name,
)
from fleetops.domain.model import Size
from fleetops.ports import ActuatorError, InstanceSpec
from tests.fakes.compute_fake import ComputeFake

TEMPLATE = "fleet-template"
INSTANCE = "acme-1"
GCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.fixture
def fake() -> Iterator[ComputeFake]:
    with ComputeFake(polls_until_done=2) as running:
        running.add_template(
            TEMPLATE,
            metadata={"startup-script": "#!/bin/sh\nrun-fleet-app"},
            labels={"team": "fleet"},
        )
        yield running
        assert running.unknown == [], "the actuator called paths the fake does not serve"


def make_actuator(
    fake: ComputeFake,
    *,
    machine_types: Mapping[Size, str] = DEFAULT_MACHINE_TYPES,
    operation_timeout: float = 5.0,
    probe_port: int = 8080,
) -> GceActuator:
    return GceActuator(
        fake.project,
        fake.zone,
        TEMPLATE,
        machine_types,
        client_options={"api_endpoint": fake.url},
        credentials=AnonymousCredentials(),
        operation_timeout=operation_timeout,
        call_timeout=5.0,
        poll_interval=0.01,
        probe_port=probe_port,
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def actuator(fake: ComputeFake) -> Iterator[GceActuator]:
    made = make_actuator(fake)
    yield made
    made.close()


@pytest.fixture
def provisioned(actuator: GceActuator) -> GceActuator:
    actuator.provision(InstanceSpec(id=INSTANCE, version="1.0"), "op-provision/0")
    return actuator


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        elif self.path == "/version":
            self._answer(200, {"version": "1.0"})
        else:
            self._answer(404, {})

    def _answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def health_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.02), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# --- provision -------------------------------------------------------------------------------


def test_provision_inserts_once_per_token_and_returns_the_endpoint(
    fake: ComputeFake, actuator: GceActuator
) -> None:
    spec = InstanceSpec(
        id=INSTANCE, version="1.4.2", size=Size.MEDIUM, labels={"Ring": "Canary!", "9x": "y"}
    )

    first = actuator.provision(spec, "op-1/0")
    again = actuator.provision(spec, "op-1/0")

    assert first.applied is True
    assert first.endpoint == "http://127.0.0.1:8080"
    assert again.applied is False
    assert again.endpoint == first.endpoint
    assert len(fake.effects("insert")) == 1
    instance = fake.instances[INSTANCE]
    assert instance["status"] == "RUNNING"
    assert fake.machine_type(INSTANCE) == "e2-medium"
    metadata = fake.metadata(INSTANCE)
    assert metadata["fleetops-version"] == "1.4.2"
    assert metadata["fleetops-token"] == "op-1/0"
    assert metadata["startup-script"] == "#!/bin/sh\nrun-fleet-app"
    assert instance["labels"] == {
        "team": "fleet",
        "ring": "canary_",
        "l9x": "y",
        "fleetops-instance": INSTANCE,
    }
    insert = fake.effects("insert")[0]
    assert insert.request_id is not None


def test_the_template_is_read_once_for_many_inserts(
    fake: ComputeFake, actuator: GceActuator
) -> None:
    fake.templates[TEMPLATE]["properties"]["metadata"]["items"].append(
        {"key": "read-at", "value": "first"}
    )
    actuator.provision(InstanceSpec(id="acme-1", version="1.0"), "op-1/0")
    fake.templates[TEMPLATE]["properties"]["metadata"]["items"][-1]["value"] = "second"

    actuator.provision(InstanceSpec(id="acme-2", version="1.0"), "op-2/0")

    assert fake.metadata("acme-2")["read-at"] == "first"


def test_provision_over_an_instance_of_another_token_fails_permanently(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    with pytest.raises(ActuatorError, match="another request") as raised:
        provisioned.provision(InstanceSpec(id=INSTANCE, version="2.0"), "op-other/0")

    assert raised.value.permanent is True
    assert len(fake.effects("insert")) == 1


def test_provision_with_a_missing_template_fails_permanently(fake: ComputeFake) -> None:
    actuator = GceActuator(
        fake.project,
        fake.zone,
        "no-such-template",
        client_options={"api_endpoint": fake.url},
        credentials=AnonymousCredentials(),
    )

    with pytest.raises(ActuatorError, match="no-such-template") as raised:
        actuator.provision(InstanceSpec(id=INSTANCE, version="1.0"), "op-1/0")

    assert raised.value.permanent is True
    assert fake.calls == []
    actuator.close()


def test_an_operation_past_the_deadline_is_waited_on_again_by_a_retry(fake: ComputeFake) -> None:
    fake.polls_until_done = 10_000
    actuator = make_actuator(fake, operation_timeout=0.3)
    spec = InstanceSpec(id=INSTANCE, version="1.0")

    with pytest.raises(ActuatorError, match="still RUNNING") as raised:
        actuator.provision(spec, "op-1/0")
    assert raised.value.permanent is False
    assert fake.instances[INSTANCE]["status"] == "PROVISIONING"

    fake.set_polls_left(2)
    retried = actuator.provision(spec, "op-1/0")

    assert retried.applied is False
    assert retried.endpoint == "http://127.0.0.1:8080"
    assert fake.instances[INSTANCE]["status"] == "RUNNING"
    assert len(fake.effects("insert")) == 1
    replays = [call for call in fake.calls if call.call == "insert" and call.replayed]
    assert len(replays) == 1
    actuator.close()


@pytest.mark.parametrize(
    ("code", "http_status", "permanent"),
    [
        ("ZONE_RESOURCE_POOL_EXHAUSTED", 503, False),
        ("INTERNAL_ERROR", 500, False),
        ("INVALID_FIELD_VALUE", 400, True),
        ("QUOTA_EXCEEDED", 403, True),
    ],
)
def test_a_failed_insert_operation_raises(
    fake: ComputeFake, actuator: GceActuator, code: str, http_status: int, permanent: bool
) -> None:
    fake.fail_next("insert", code=code, message="no luck", http_status=http_status)

    with pytest.raises(ActuatorError, match=f"{code}: no luck") as raised:
        actuator.provision(InstanceSpec(id=INSTANCE, version="1.0"), "op-1/0")

    assert raised.value.permanent is permanent
    assert INSTANCE not in fake.instances


def test_a_failed_stop_operation_raises_and_leaves_the_instance_running(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    fake.fail_next("stop", code="RESOURCE_NOT_READY", message="busy", http_status=400)

    with pytest.raises(ActuatorError, match="RESOURCE_NOT_READY: busy") as raised:
        provisioned.stop(INSTANCE, "op-2/0")

    assert raised.value.permanent is False
    assert fake.instances[INSTANCE]["status"] == "RUNNING"


# --- start, stop, restart, suspend, resume ---------------------------------------------------


def test_stop_and_start_make_one_call_per_token(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    stopped = provisioned.stop(INSTANCE, "op-2/1")
    stopped_again = provisioned.stop(INSTANCE, "op-2/1")
    assert (stopped.applied, stopped_again.applied) == (True, False)
    assert fake.instances[INSTANCE]["status"] == "TERMINATED"

    started = provisioned.start(INSTANCE, "op-2/2")
    started_again = provisioned.start(INSTANCE, "op-2/2")
    assert (started.applied, started_again.applied) == (True, False)
    assert started.endpoint == "http://127.0.0.1:8080"
    assert fake.instances[INSTANCE]["status"] == "RUNNING"

    assert len(fake.effects("stop")) == 1
    assert len(fake.effects("start")) == 1


def test_stop_and_start_do_nothing_when_the_world_is_already_as_asked(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    assert provisioned.start(INSTANCE, "op-3/0").applied is False
    fake.set_status(INSTANCE, "TERMINATED")
    assert provisioned.stop(INSTANCE, "op-3/1").applied is False

    assert fake.effects("start") == []
    assert fake.effects("stop") == []


def test_restart_resets_once_per_token(fake: ComputeFake, provisioned: GceActuator) -> None:
    first = provisioned.restart(INSTANCE, "op-4/0")
    provisioned.restart(INSTANCE, "op-4/0")
    provisioned.restart(INSTANCE, "op-5/0")

    assert first.endpoint == "http://127.0.0.1:8080"
    resets = [call for call in fake.calls if call.call == "reset"]
    assert [call.replayed for call in resets] == [False, True, False]
    assert resets[0].request_id == resets[1].request_id != resets[2].request_id


def test_restart_of_a_stopped_instance_starts_it(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    provisioned.stop(INSTANCE, "op-4/0")

    provisioned.restart(INSTANCE, "op-4/1")

    assert fake.instances[INSTANCE]["status"] == "RUNNING"
    assert len(fake.effects("start")) == 1
    assert fake.effects("reset") == []


def test_suspend_and_resume_make_one_call_per_token(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    assert provisioned.suspend(INSTANCE, "op-6/0").applied is True
    assert provisioned.suspend(INSTANCE, "op-6/0").applied is False
    assert provisioned.suspend(INSTANCE, "op-7/0").applied is False
    assert fake.instances[INSTANCE]["status"] == "SUSPENDED"

    resumed = provisioned.resume(INSTANCE, "op-8/0")
    assert resumed.applied is True
    assert resumed.endpoint == "http://127.0.0.1:8080"
    assert provisioned.resume(INSTANCE, "op-8/0").applied is False
    assert provisioned.resume(INSTANCE, "op-9/0").applied is False
    assert fake.instances[INSTANCE]["status"] == "RUNNING"

    assert len(fake.effects("suspend")) == 1
    assert len(fake.effects("resume")) == 1


def test_stop_of_a_suspended_instance_stops_it_for_a_cold_start(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    provisioned.suspend(INSTANCE, "op-6/0")

    assert provisioned.stop(INSTANCE, "op-6/1").applied is True

    assert fake.instances[INSTANCE]["status"] == "TERMINATED"


def test_start_of_a_suspended_instance_resumes_it(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    provisioned.suspend(INSTANCE, "op-6/0")

    provisioned.start(INSTANCE, "op-6/1")

    assert fake.instances[INSTANCE]["status"] == "RUNNING"
    assert len(fake.effects("resume")) == 1
    assert fake.effects("start") == []


def test_changes_to_a_missing_instance_fail_permanently(actuator: GceActuator) -> None:
    for change in (actuator.start, actuator.stop, actuator.restart, actuator.suspend):
        with pytest.raises(ActuatorError, match="not found") as raised:
            change("ghost-1", "op-1/0")
        assert raised.value.permanent is True


# --- set_version, set_size -------------------------------------------------------------------


def test_set_version_writes_metadata_with_the_fingerprint_read_first(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    fingerprint = fake.instances[INSTANCE]["metadata"]["fingerprint"]

    result = provisioned.set_version(INSTANCE, "2.0", "op-10/2")
    again = provisioned.set_version(INSTANCE, "2.0", "op-10/2")

    assert (result.applied, again.applied) == (True, False)
    [call] = fake.effects("setMetadata")
    assert call.body["fingerprint"] == fingerprint
    metadata = fake.metadata(INSTANCE)
    assert metadata["fleetops-version"] == "2.0"
    assert metadata["startup-script"] == "#!/bin/sh\nrun-fleet-app"
    assert fake.instances[INSTANCE]["metadata"]["fingerprint"] != fingerprint


def test_set_version_works_on_a_stopped_instance(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    provisioned.stop(INSTANCE, "op-10/1")

    provisioned.set_version(INSTANCE, "2.0", "op-10/2")

    assert fake.metadata(INSTANCE)["fleetops-version"] == "2.0"
    assert fake.instances[INSTANCE]["status"] == "TERMINATED"


def test_set_size_of_a_running_instance_fails_clearly(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    with pytest.raises(ActuatorError, match=r"while it is RUNNING.*TERMINATED") as raised:
        provisioned.set_size(INSTANCE, Size.LARGE, "op-11/2")

    assert raised.value.permanent is False
    assert fake.effects("setMachineType") == []
    assert fake.machine_type(INSTANCE) == "e2-small"


def test_set_size_of_a_stopped_instance_changes_the_machine_type(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    provisioned.stop(INSTANCE, "op-11/1")

    result = provisioned.set_size(INSTANCE, Size.LARGE, "op-11/2")
    again = provisioned.set_size(INSTANCE, Size.LARGE, "op-11/2")

    assert (result.applied, again.applied) == (True, False)
    assert fake.machine_type(INSTANCE) == "e2-standard-4"
    assert len(fake.effects("setMachineType")) == 1


def test_set_size_uses_the_configured_machine_types(fake: ComputeFake) -> None:
    actuator = make_actuator(fake, machine_types={Size.LARGE: "n2-standard-8"})
    actuator.provision(InstanceSpec(id=INSTANCE, version="1.0"), "op-1/0")
    actuator.stop(INSTANCE, "op-2/0")

    actuator.set_size(INSTANCE, Size.LARGE, "op-2/1")

    assert fake.machine_type(INSTANCE) == "n2-standard-8"
    actuator.close()


# --- snapshot --------------------------------------------------------------------------------


def test_snapshot_twice_with_one_token_makes_one_snapshot(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    first = provisioned.snapshot(INSTANCE, "op-12/0")
    again = provisioned.snapshot(INSTANCE, "op-12/0")
    other = provisioned.snapshot(INSTANCE, "op-13/0")

    assert (first.applied, again.applied, other.applied) == (True, False, True)
    assert first.snapshot is not None
    assert first.snapshot == again.snapshot != other.snapshot
    assert GCE_NAME.fullmatch(first.snapshot)
    assert len(fake.effects("createSnapshot")) == 2
    snapshot = fake.snapshots[first.snapshot]
    assert snapshot["status"] == "READY"
    assert snapshot["sourceDisk"].endswith(f"/disks/{INSTANCE}")
    assert snapshot["labels"] == {"fleetops-instance": INSTANCE}


def test_snapshot_already_being_made_under_a_forgotten_request_id_is_not_made_again(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    name = snapshot_name(INSTANCE, "op-12/0")
    fake.snapshots[name] = {"kind": "compute#snapshot", "name": name, "status": "CREATING"}

    result = provisioned.snapshot(INSTANCE, "op-12/0")

    assert result.applied is False
    assert result.snapshot == name
    assert fake.effects("createSnapshot") == []


def test_snapshot_names_are_valid_and_distinct() -> None:
    long_token = "4f1c7a0e-9b1d-4c55-8a57-0d2b7c9e1f00/12"
    names = {
        snapshot_name("a" * 40, long_token),
        snapshot_name("a" * 40, long_token.replace("/", "-")),
        snapshot_name("acme-1", "Op_1/0"),
        snapshot_name("acme-1", "op-1-0"),
        snapshot_name("acme-1", ""),
    }

    assert len(names) == 5
    for name in names:
        assert len(name) <= 63
        assert GCE_NAME.fullmatch(name), name
    assert snapshot_name("acme-1", "op-1-0") == "acme-1-op-1-0"


def test_gce_labels_follow_the_label_rules() -> None:
    labels = gce_labels({"Ring": "Canary", "cost center": "R&D", "": "dropped", "x" * 80: "v"})

    assert labels["ring"] == "canary"
    assert labels["cost_center"] == "r_d"
    assert "" not in labels
    assert all(len(key) <= 63 and re.fullmatch(r"[a-z][a-z0-9_-]*", key) for key in labels)


# --- delete ----------------------------------------------------------------------------------


def test_delete_twice_is_fine_and_the_instance_is_gone(
    fake: ComputeFake, provisioned: GceActuator
) -> None:
    first = provisioned.delete(INSTANCE, "op-14/0")
    again = provisioned.delete(INSTANCE, "op-14/0")

    assert (first.applied, again.applied) == (True, False)
    assert INSTANCE not in fake.instances
    assert INSTANCE not in fake.disks
    assert len(fake.effects("delete")) == 1
    assert provisioned.describe(INSTANCE) is None


# --- probe -----------------------------------------------------------------------------------


def test_probe_of_a_missing_instance_is_unhealthy(actuator: GceActuator) -> None:
    probe = actuator.probe("ghost-1")

    assert probe.healthy is False
    assert probe.detail == "not found"


def test_probe_of_a_stopped_instance_is_unhealthy_with_its_status(
    provisioned: GceActuator,
) -> None:
    provisioned.stop(INSTANCE, "op-15/0")

    probe = provisioned.probe(INSTANCE)

    assert probe.healthy is False
    assert probe.detail == "TERMINATED"


def test_probe_of_a_running_instance_asks_its_endpoint(fake: ComputeFake, health_port: int) -> None:
    actuator = make_actuator(fake, probe_port=health_port)
    actuator.provision(InstanceSpec(id=INSTANCE, version="1.0"), "op-1/0")

    probe = actuator.probe(INSTANCE)

    assert probe.healthy is True
    assert probe.version == "1.0"
    actuator.close()


def test_probe_of_an_unreachable_instance_is_unhealthy(fake: ComputeFake) -> None:
    actuator = make_actuator(fake, probe_port=closed_port())
    actuator.provision(InstanceSpec(id=INSTANCE, version="1.0"), "op-1/0")

    probe = actuator.probe(INSTANCE)

    assert probe.healthy is False
    assert "unreachable" in probe.detail
    actuator.close()
