"""fleetops.local.emulators against the real Pub/Sub and Firestore emulators."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from google.cloud import firestore, pubsub_v1

from fleetops.local import emulators as emu
from tests.conftest import Emulators, GcpEnv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _java_on_port(port: int) -> list[psutil.Process]:
    flag = f"--port={port}"
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if flag in cmdline and "java" in cmdline[0]:
            found.append(proc)
    return found


def test_both_emulators_answer(emulators: Emulators) -> None:
    assert emu.pubsub_answers(emulators.pubsub_host)
    assert emu.firestore_answers(emulators.firestore_host)
    # The probes tell the two apart, so swapped host variables are caught.
    assert not emu.pubsub_answers(emulators.firestore_host)
    assert not emu.firestore_answers(emulators.pubsub_host)


def test_emulators_from_env_reuses_answering_hosts(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulators.pubsub_host)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    assert emu.emulators_from_env() == (emulators.pubsub_host, emulators.firestore_host)

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.pubsub_host)
    with pytest.raises(emu.EmulatorUnreachableError, match="FIRESTORE_EMULATOR_HOST="):
        emu.emulators_from_env()


def test_emulators_from_env_rejects_hosts_that_do_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = f"127.0.0.1:{_free_port()}"
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    assert emu.emulators_from_env() is None

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", dead)
    with pytest.raises(emu.EmulatorError, match="FIRESTORE_EMULATOR_HOST is not"):
        emu.emulators_from_env()

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", dead)
    with pytest.raises(emu.EmulatorUnreachableError) as caught:
        emu.emulators_from_env()
    assert f"PUBSUB_EMULATOR_HOST={dead} and FIRESTORE_EMULATOR_HOST={dead}" in str(caught.value)


def test_pubsub_publish_pull_ack_round_trip(gcp_env: GcpEnv) -> None:
    with pubsub_v1.PublisherClient() as publisher, pubsub_v1.SubscriberClient() as subscriber:
        topic = publisher.topic_path(gcp_env.project, "orders")
        subscription = subscriber.subscription_path(gcp_env.project, "orders-pull")
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=30)

        publisher.publish(topic, b"hello", kind="test").result(timeout=10)

        received: list[pubsub_v1.types.ReceivedMessage] = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
            received.extend(response.received_messages)
        assert [m.message.data for m in received] == [b"hello"]
        assert dict(received[0].message.attributes) == {"kind": "test"}

        subscriber.acknowledge(subscription=subscription, ack_ids=[received[0].ack_id])
        # Were it not acked, a zero deadline would hand it out again with the next message
        # (an empty pull would prove nothing quickly: the emulator holds it about 4 s).
        subscriber.modify_ack_deadline(
            subscription=subscription, ack_ids=[received[0].ack_id], ack_deadline_seconds=0
        )
        publisher.publish(topic, b"second").result(timeout=10)
        again = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
        assert [m.message.data for m in again.received_messages] == [b"second"]


def test_firestore_write_then_read(gcp_env: GcpEnv) -> None:
    client = firestore.Client(project=gcp_env.project)
    try:
        ref = client.collection("instances").document("i-1")
        ref.set({"state": "running", "generation": 3})
        assert ref.get().to_dict() == {"state": "running", "generation": 3}
    finally:
        client.close()


def test_reset_firestore_empties_only_that_database(gcp_env: GcpEnv) -> None:
    other = f"{gcp_env.project}-b"
    client = firestore.Client(project=gcp_env.project)
    other_client = firestore.Client(project=other)
    try:
        for i in range(3):
            client.collection("instances").document(f"i-{i}").set({"n": i})
        client.collection("operations").document("op-1").set({"step": "start"})
        other_client.collection("instances").document("kept").set({"n": 0})
        assert {c.id for c in client.collections()} == {"instances", "operations"}

        emu.reset_firestore(gcp_env.firestore_host, gcp_env.project)

        assert list(client.collections()) == []
        assert other_client.collection("instances").document("kept").get().exists
    finally:
        client.close()
        other_client.close()


@pytest.mark.usefixtures("emulator_tools")
def test_start_on_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        with pytest.raises(emu.PortInUseError, match=f"Port {port} on 127.0.0.1 is already in use"):
            emu.start_pubsub(port, tmp_path)
        with pytest.raises(emu.PortInUseError, match="Firestore emulator cannot start there"):
            emu.start_firestore(port, tmp_path)
        with pytest.raises(emu.PortInUseError) as caught:
            emu.start_emulators(tmp_path, pubsub_port=port)
    assert caught.value.port == port
    assert _java_on_port(port) == []


@pytest.mark.usefixtures("emulator_tools")
def test_stop_leaves_no_java_behind(tmp_path: Path) -> None:
    with emu.start_emulators(tmp_path, java_options=emu.FAST_START_JAVA_OPTIONS) as pair:
        ports = [pair.pubsub.port, pair.firestore.port]
        group: list[psutil.Process] = []
        for emulator in (pair.pubsub, pair.firestore):
            leader = psutil.Process(emulator.pid)
            group += [leader, *leader.children(recursive=True)]
            assert "java" in leader.name()
            assert emulator.running()
            assert emulator.log_path.is_file()
        print(
            f"started in: Pub/Sub {pair.pubsub.started_in:.2f} s, "
            f"Firestore {pair.firestore.started_in:.2f} s"
        )

        # Reset wipes every project, so it is tried here on emulators no other test shares.
        topics = f"http://{pair.pubsub_host}/v1/projects/reset-probe/topics"
        assert requests.put(f"{topics}/topic-1", json={}, timeout=10).status_code == 200
        assert requests.get(topics, timeout=10).json().get("topics")
        emu.reset_pubsub(pair.pubsub_host)
        assert requests.get(topics, timeout=10).json().get("topics") is None

    pair.stop()  # again: idempotent
    assert not pair.pubsub.running()
    assert not pair.firestore.running()
    for proc in group:
        assert not proc.is_running()
    for port in ports:
        assert _java_on_port(port) == []


@pytest.mark.usefixtures("emulator_tools")
def test_not_ready_in_time_stops_it_and_shows_the_log(tmp_path: Path) -> None:
    port = _free_port()
    with pytest.raises(emu.EmulatorNotReadyError) as caught:
        emu.start_pubsub(port, tmp_path, ready_timeout=0.3)
    message = str(caught.value)
    assert f"did not answer at 127.0.0.1:{port} within" in message
    assert str(caught.value.log_path) in message
    assert _java_on_port(port) == []


def test_missing_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(emu.JavaMissingError, match="Java is not on PATH: install Java 17"):
        emu.start_pubsub(None, tmp_path)
    with pytest.raises(emu.JavaMissingError):
        emu.start_emulators(tmp_path)
    reason = emu.available()
    assert reason is not None
    assert "Java is not on PATH" in reason


def test_old_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(emu.JavaMissingError, match="is Java 11 but the emulators need Java 17"):
        emu.java_binary()


@pytest.fixture
def fresh_sdk_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty cache dir and no SDK root override; the in-process cache cleared around it."""
    monkeypatch.delenv("CLOUDSDK_ROOT", raising=False)
    monkeypatch.delenv("FLEETOPS_GCLOUD_SDK_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    emu._discovered_sdk_root.cache_clear()
    yield tmp_path / "cache" / "fleetops" / "sdk_root"
    emu._discovered_sdk_root.cache_clear()


def test_sdk_root_override_without_emulators_names_the_components(
    fresh_sdk_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETOPS_GCLOUD_SDK_ROOT", str(tmp_path))
    assert emu.sdk_root() == tmp_path
    with pytest.raises(emu.EmulatorNotInstalledError) as pubsub:
        emu.pubsub_jar()
    assert "gcloud components install pubsub-emulator" in str(pubsub.value)
    assert "google-cloud-cli-pubsub-emulator" in str(pubsub.value)
    with pytest.raises(emu.EmulatorNotInstalledError) as fs:
        emu.firestore_jar()
    assert "gcloud components install cloud-firestore-emulator" in str(fs.value)
    assert "google-cloud-cli-firestore-emulator" in str(fs.value)

    monkeypatch.setenv("CLOUDSDK_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(emu.EmulatorNotInstalledError, match=r"CLOUDSDK_ROOT=.* is not a directory"):
        emu.sdk_root()


def test_sdk_root_cache_is_validated_and_used(fresh_sdk_root: Path, tmp_path: Path) -> None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not on PATH")
    real_gcloud = str(Path(gcloud).resolve())
    fresh_sdk_root.parent.mkdir(parents=True)
    fresh_sdk_root.write_text(json.dumps({"gcloud": real_gcloud, "sdk_root": "/nonexistent"}))

    root = emu.sdk_root()  # the stale entry is ignored and gcloud asked
    assert (root / "bin" / "gcloud").is_file()
    assert json.loads(fresh_sdk_root.read_text()) == {"gcloud": real_gcloud, "sdk_root": str(root)}

    # A valid entry for this gcloud is trusted without asking gcloud again.
    elsewhere = tmp_path / "sdk"
    (elsewhere / "platform").mkdir(parents=True)
    fresh_sdk_root.write_text(json.dumps({"gcloud": real_gcloud, "sdk_root": str(elsewhere)}))
    emu._discovered_sdk_root.cache_clear()
    assert emu.sdk_root() == elsewhere
