"""Builders shared by the tests."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from fleetops.contract.names import TOPIC_REQUESTS
from fleetops.contract.pubsub import PubsubMessage, encode_binary
from fleetops.contract.requests import new_request_event

SOURCE = "//tests/fleetops"


def request_message(
    data: Mapping[str, Any], *, event_id: str | None = None, source: str = SOURCE
) -> PubsubMessage:
    event = new_request_event(dict(data), source=source, event_id=event_id or str(uuid.uuid4()))
    body, attributes = encode_binary(event)
    return PubsubMessage(body, attributes, message_id=str(uuid.uuid4()), topic=TOPIC_REQUESTS)


def raw_message(data: bytes, attributes: Mapping[str, str] | None = None) -> PubsubMessage:
    return PubsubMessage(data, dict(attributes or {}), str(uuid.uuid4()), topic=TOPIC_REQUESTS)


def push_body(message: PubsubMessage) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "publishTime": "2026-01-05T12:00:00.123456789Z",
        },
        "subscription": "projects/p/subscriptions/s",
    }


def load_json(raw: bytes) -> Any:
    return json.loads(raw)


class FakeFleet:
    """The request and step services wired to in-memory fakes, with a manual clock."""

    def __init__(self) -> None:
        from fleetops.adapters.memory import (
            FakeClock,
            InMemoryActuator,
            InMemoryPublisher,
            InMemoryStateStore,
        )
        from fleetops.services.requests import RequestDeps
        from fleetops.services.steps import StepDeps

        self.store = InMemoryStateStore()
        self.publisher = InMemoryPublisher()
        self.actuator = InMemoryActuator()
        self.clock = FakeClock()
        self.slept: list[float] = []
        self.notified: list[dict[str, Any]] = []
        self.request_deps = RequestDeps(self.store, self.publisher, self.clock.now)
        self.step_deps = StepDeps(
            self.store,
            self.publisher,
            self.actuator,
            self.clock.now,
            sleep=self._sleep,
            jitter=lambda: 0.5,
        )

    def _sleep(self, seconds: float) -> None:
        from datetime import timedelta

        self.slept.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))

    def approve(self, operation_id: str, approver: str = "second@example.com") -> Any:
        from fleetops.services.control import ControlDeps, approve_operation

        deps = ControlDeps(self.store, self.publisher, self.clock.now)
        return approve_operation(operation_id, approver, deps)

    def cancel(self, operation_id: str, who: str = "someone@example.com") -> Any:
        from fleetops.services.control import ControlDeps, cancel_operation

        deps = ControlDeps(self.store, self.publisher, self.clock.now)
        return cancel_operation(operation_id, who, deps)

    def sweep(self) -> Any:
        from fleetops.services.sweeper import SweepDeps, sweep_all

        return sweep_all(self.clock.now(), SweepDeps(self.store, self.publisher))

    @property
    def alert_deps(self) -> Any:
        from fleetops.services.alerts import AlertDeps

        return AlertDeps(
            self.store,
            self.publisher,
            self.clock.now,
            sleep=self._sleep,
            notify=self.notified.append,
        )

    def alert(self, instance: str, incident: str, state: str = "open") -> Any:
        import json as _json

        from fleetops.contract.incidents import notification
        from fleetops.contract.names import TOPIC_ALERTS
        from fleetops.services.alerts import handle_alert_message

        body = notification(incident, instance, state, started_at=self.clock.now())
        message = PubsubMessage(
            _json.dumps(body).encode(), {}, str(uuid.uuid4()), topic=TOPIC_ALERTS
        )
        return handle_alert_message(message, self.alert_deps)

    def rechecks(self) -> list[PubsubMessage]:
        from fleetops.contract.names import TOPIC_ALERTS

        return [
            PubsubMessage(m.data, m.attributes, m.message_id, topic=TOPIC_ALERTS)
            for m in self.publisher.take(TOPIC_ALERTS)
        ]

    def settle(self, rounds: int = 50) -> None:
        """Run steps and rechecks, moving the clock, until nothing is left to do."""
        from fleetops.services.alerts import handle_alert_message

        for _ in range(rounds):
            ran = self.drain(limit=1000)
            pending = self.rechecks()
            for message in pending:
                handle_alert_message(message, self.alert_deps)
            if not ran and not pending:
                return
        raise AssertionError("the fleet never settled")

    def set_limit(self, name: str, value: object) -> None:
        from fleetops.services import automation

        automation.set_limit(self.store, name, str(value))

    def decisions(self, instance: str) -> list[dict[str, Any]]:
        found = self.store.list_documents(f"instances/{instance}/decisions", order_by="at")
        return [doc for _, doc in reversed(found)]

    @property
    def rollout_deps(self) -> Any:
        from fleetops.services.rollouts import RolloutDeps

        return RolloutDeps(self.store, self.publisher, self.clock.now)

    def tick(self, at: Any = None) -> Any:
        """One maintenance tick at `at` (default: now), then run what it started."""
        from fleetops.services.rollouts import advance_all

        reports = advance_all(at or self.clock.now(), self.rollout_deps)
        self.drain(limit=5000)
        return reports

    def request(self, data: Mapping[str, Any], *, event_id: str | None = None) -> Any:
        from fleetops.services.requests import handle_request_message

        return handle_request_message(request_message(data, event_id=event_id), self.request_deps)

    def step_messages(self) -> list[PubsubMessage]:
        from fleetops.contract.names import TOPIC_STEPS

        return [
            PubsubMessage(m.data, m.attributes, m.message_id, topic=TOPIC_STEPS)
            for m in self.publisher.take(TOPIC_STEPS)
        ]

    def run_step(self, message: PubsubMessage) -> Any:
        from fleetops.services.steps import handle_step_message

        return handle_step_message(message, self.step_deps)

    def drain(self, limit: int = 200) -> int:
        """Deliver step messages until none is left; returns how many ran."""
        ran = 0
        while ran < limit:
            messages = self.step_messages()
            if not messages:
                return ran
            for message in messages:
                self.run_step(message)
                ran += 1
        raise AssertionError("step messages never ran out")
