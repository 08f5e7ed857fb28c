"""Every decoder and every handler, fed anything: a valid result or a `PermanentError`.

A `PermanentError` dead-letters the message with a reason; any other exception makes
Pub/Sub redeliver it, five times, for nothing. So for any bytes and attributes the
decoders must return or raise a `PermanentError` with a code and a reason, and the
handlers, run on in-memory fakes (which never fail for a passing reason), must answer
with an outcome; through `handle_push`, a dead letter must carry its code and reason.

Examples are shaped near the contract as well as at random, so the search reaches past
the first check of each decoder. `FLEETOPS_RELIABILITY_FULL=1` runs more examples.
"""

from __future__ import annotations

import base64
import json
import os
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetops.contract.errors import PermanentError
from fleetops.contract.incidents import decode_incident, incident_from_notification
from fleetops.contract.names import (
    ATTR_ERROR,
    ATTR_REASON,
    EVENT_INSTANCE_REQUESTED,
    EVENT_MAINTENANCE_TICK,
    EVENT_REMEDIATION_RECHECK,
    EVENT_STEP_READY,
    TOPIC_DEAD_LETTER,
)
from fleetops.contract.pubsub import CloudEvent, PubsubMessage, decode_cloudevent
from fleetops.contract.requests import parse_request
from fleetops.contract.ticks import decode_tick
from fleetops.services.outcome import Disposition, Outcome
from tests.helpers import FakeFleet

FULL = os.environ.get("FLEETOPS_RELIABILITY_FULL", "") not in ("", "0")
EXAMPLES = 1500 if FULL else 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- building blocks ------------------------------------------------------------------------

texts = st.text(max_size=30)
interesting_strings = st.sampled_from(
    [
        "",
        " ",
        "1.0",
        "0.3",
        "open",
        "closed",
        "OPEN",
        "restart",
        "provision",
        "snapshot",
        "delete",
        "acme-prod",
        "demo-1",
        "1.2",
        "test",
        "small",
        "huge",
        "2026-01-05T12:00:00Z",
        "2026-13-45T99:99:99Z",
        "2026-01-05T12:00:00.123456789Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+14:00",
        "not a time",
        "\x00",
        "é",
        "a" * 300,
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents+json; charset=utf-8",
        EVENT_INSTANCE_REQUESTED,
        EVENT_STEP_READY,
        EVENT_MAINTENANCE_TICK,
        EVENT_REMEDIATION_RECHECK,
    ]
)
strings = st.one_of(texts, interesting_strings)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 1e20, -1e20, 2**63, 1.5, 253402300800, 1767614400]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=5)
    ),
    max_leaves=12,
)


def _dumps(value: Any) -> bytes:
    # allow_nan: JSON with NaN and Infinity is what a careless publisher sends, and
    # Python's json.loads reads it back.
    return json.dumps(value, allow_nan=True).encode()


def payload_bytes(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Raw bytes, any JSON, or JSON shaped like the contract."""
    return st.one_of(
        st.binary(max_size=64),
        json_values.map(_dumps),
        shaped.map(_dumps),
    )


ce_keys = st.sampled_from(
    [
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-subject",
        "content-type",
        "ce-traceparent",
        "fleetops-error",
    ]
)
random_attributes = st.dictionaries(st.one_of(ce_keys, texts), strings, max_size=8)


@st.composite
def event_attributes(draw: st.DrawFn, event_type: st.SearchStrategy[str]) -> dict[str, str]:
    """Binary-mode attributes, mostly complete, sometimes broken, sometimes structured."""
    attrs = {
        "ce-id": draw(st.one_of(st.uuids().map(str), strings)),
        "ce-source": draw(st.one_of(st.just("//fuzz"), strings)),
        "ce-type": draw(event_type),
        "ce-specversion": draw(st.sampled_from(["1.0", "1.0", "0.3", ""])),
        "content-type": draw(
            st.sampled_from(["application/json", "application/cloudevents+json", ""])
        ),
    }
    if draw(st.booleans()):
        attrs["ce-time"] = draw(strings)
    for key in draw(st.lists(st.sampled_from(sorted(attrs)), max_size=2)):
        attrs.pop(key, None)
    attrs.update(draw(st.dictionaries(texts, strings, max_size=2)))
    return attrs


def messages(
    shaped: st.SearchStrategy[Any], event_type: st.SearchStrategy[str]
) -> st.SearchStrategy[PubsubMessage]:
    attributes = st.one_of(random_attributes, event_attributes(event_type))
    return st.builds(
        PubsubMessage,
        data=st.one_of(payload_bytes(shaped), structured_events(shaped, event_type)),
        attributes=attributes,
        message_id=st.uuids().map(str),
        publish_time=st.one_of(
            st.none(), st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1))
        ),
        topic=st.one_of(st.none(), strings),
    )


def structured_events(
    shaped: st.SearchStrategy[Any], event_type: st.SearchStrategy[str]
) -> st.SearchStrategy[bytes]:
    envelope = st.fixed_dictionaries(
        {
            "specversion": st.sampled_from(["1.0", "1.0", 1, None]),
            "id": st.one_of(strings, numbers),
            "source": st.one_of(st.just("//fuzz"), strings),
            "type": event_type,
        },
        optional={
            "data": st.one_of(shaped, json_values),
            "data_base64": st.one_of(
                shaped.map(lambda v: base64.b64encode(_dumps(v)).decode()), strings
            ),
            "time": st.one_of(strings, numbers),
            "subject": json_values,
        },
    )
    return envelope.map(_dumps)


# --- contract-shaped data -------------------------------------------------------------------

actions = st.sampled_from(
    ["provision", "upgrade", "resize", "restart", "suspend", "resume", "snapshot", "delete", "x"]
)
instance_ids = st.one_of(
    st.sampled_from(["acme-one", "acme-two", "missing-one"]),
    st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=0, max_size=45),
    strings,
)
request_data = st.fixed_dictionaries(
    {"instance": instance_ids, "action": actions},
    optional={
        "version": st.one_of(st.sampled_from(["1.0.0", "2.0.0"]), strings, numbers),
        "size": st.one_of(st.sampled_from(["small", "medium", "large"]), strings),
        "region": strings,
        "customer": strings,
        "labels": st.one_of(st.dictionaries(strings, strings, max_size=3), json_values),
        "maintenance_window": st.one_of(
            st.fixed_dictionaries(
                {
                    "days": st.lists(st.sampled_from(["mon", "sun", "xyz"]), max_size=3),
                    "start": st.sampled_from(["02:00", "25:00", "2:0", ""]),
                    "duration": st.sampled_from(["4h", "90m", "0m", "1h30m", "999h", "x"]),
                    "timezone": st.sampled_from(["UTC", "America/New_York", "Mars/Base", ""]),
                }
            ),
            json_values,
        ),
        "requested_by": st.one_of(strings, numbers),
        "reason": strings,
        "dry_run": st.one_of(st.booleans(), scalars),
        "unknown": scalars,
    },
)
step_data = st.fixed_dictionaries(
    {
        "operation": st.one_of(st.sampled_from(["OP", "op-0000000000000000"]), strings),
        "step": st.one_of(st.integers(min_value=-3, max_value=6), numbers, strings),
    },
    optional={"not_before": st.one_of(strings, numbers), "instance": strings},
)


@st.composite
def notifications(draw: st.DrawFn) -> Any:
    incident: dict[str, Any] = {
        "incident_id": draw(st.one_of(st.sampled_from(["inc-1", "inc-2"]), strings, numbers)),
        "state": draw(st.one_of(st.sampled_from(["open", "closed", "OPEN"]), scalars)),
        "started_at": draw(st.one_of(numbers, strings, st.none())),
        "ended_at": draw(st.one_of(numbers, strings, st.none())),
        "summary": draw(scalars),
        "policy_name": draw(scalars),
    }
    where = draw(st.sampled_from(["metadata", "policy", "resource", "none", "junk"]))
    label = {"fleetops_instance": draw(instance_ids)}
    if where == "metadata":
        incident["metadata"] = {"user_labels": label}
    elif where == "policy":
        incident["policy_user_labels"] = {**label, "fleetops_playbook": draw(strings)}
    elif where == "resource":
        incident["resource"] = {"labels": label}
    elif where == "junk":
        incident["metadata"] = draw(json_values)
        incident["resource"] = draw(json_values)
        incident["policy_user_labels"] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(sorted(incident)), max_size=2)):
        incident.pop(key, None)
    return {"version": draw(st.sampled_from(["1.2", "test", "1.1", 1.2])), "incident": incident}


recheck_data = st.fixed_dictionaries(
    {},
    optional={
        "instance": st.one_of(instance_ids, numbers),
        "incident": st.one_of(strings, numbers),
        "not_before": st.one_of(strings, numbers),
    },
)

request_types = st.one_of(st.just(EVENT_INSTANCE_REQUESTED), strings)
step_types = st.one_of(st.just(EVENT_STEP_READY), strings)
tick_types = st.one_of(st.just(EVENT_MAINTENANCE_TICK), strings)
alert_types = st.one_of(st.just(EVENT_REMEDIATION_RECHECK), strings)


# --- the property ---------------------------------------------------------------------------


def permanent_or_result(call: Callable[[], Any]) -> Any:
    """Run `call`; a `PermanentError` must name a code and a reason. Anything else fails."""
    try:
        return call()
    except PermanentError as error:
        caught = error
    assert caught.code, "a PermanentError without a code"
    assert caught.reason, "a PermanentError without a reason"
    return caught


def check_outcome(result: Any) -> None:
    if isinstance(result, PermanentError):
        return
    assert isinstance(result, Outcome), f"a handler returned {result!r}, not an Outcome"
    assert result.detail, "an outcome without a detail"


# --- decoders -------------------------------------------------------------------------------


@FUZZ
@given(payload=st.one_of(json_values, st.fixed_dictionaries({"message": json_values})))
def test_from_push_reads_any_body(payload: Any) -> None:
    if not isinstance(payload, dict):
        payload = {"message": payload}
    result = permanent_or_result(lambda: PubsubMessage.from_push(payload, source="//p/topics/t"))
    assert isinstance(result, PubsubMessage | PermanentError)


@FUZZ
@given(
    message=st.fixed_dictionaries(
        {},
        optional={
            "data": st.one_of(
                st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()), strings, numbers
            ),
            "attributes": st.one_of(st.dictionaries(strings, scalars, max_size=4), json_values),
            "messageId": scalars,
            "message_id": scalars,
            "publishTime": st.one_of(strings, numbers),
            "publish_time": scalars,
        },
    ),
    source=st.one_of(st.none(), strings, st.just("//pubsub.googleapis.com/projects/p/topics/")),
)
def test_from_push_reads_any_message(message: dict[str, Any], source: str | None) -> None:
    result = permanent_or_result(lambda: PubsubMessage.from_push({"message": message}, source))
    assert isinstance(result, PubsubMessage | PermanentError)


@FUZZ
@given(message=messages(st.one_of(request_data, step_data), request_types))
def test_decode_cloudevent(message: PubsubMessage) -> None:
    result = permanent_or_result(lambda: decode_cloudevent(message))
    assert isinstance(result, CloudEvent | PermanentError)


@FUZZ
@given(
    data=st.one_of(request_data, json_values),
    event_type=request_types,
)
def test_parse_request(data: Any, event_type: str) -> None:
    event = CloudEvent(id="1", source="//fuzz", type=event_type, data=data)
    permanent_or_result(lambda: parse_request(event))


@FUZZ
@given(message=messages(notifications(), alert_types))
def test_decode_incident(message: PubsubMessage) -> None:
    permanent_or_result(lambda: decode_incident(message))


@FUZZ
@given(body=st.one_of(notifications(), json_values))
def test_incident_from_notification(body: Any) -> None:
    permanent_or_result(lambda: incident_from_notification(body))


@FUZZ
@given(message=messages(json_values, tick_types))
def test_decode_tick(message: PubsubMessage) -> None:
    permanent_or_result(lambda: decode_tick(message))


@FUZZ
@given(
    payload=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "message": st.fixed_dictionaries(
                    {}, optional={"data": strings, "attributes": json_values}
                )
            }
        ),
    ),
    source=st.one_of(st.none(), strings),
)
def test_dead_letter_inbox_keeps_anything(payload: Any, source: str | None) -> None:
    from fleetops.services.dead_letter_store import dead_letter_from_push

    letter = dead_letter_from_push(payload, source, datetime(2026, 1, 5, tzinfo=UTC))
    assert letter.id


# --- handlers on in-memory fakes ------------------------------------------------------------


def _fleet() -> tuple[FakeFleet, str]:
    """Two running instances and one finished operation to aim at."""
    fleet = FakeFleet()
    for name in ("acme-one", "acme-two"):
        fleet.request({"instance": name, "action": "provision", "version": "1.0.0"})
    fleet.drain()
    done = fleet.request({"instance": "acme-one", "action": "snapshot"})
    fleet.drain()
    return fleet, str(done.operation)


def _aim(message: PubsubMessage, operation: str) -> PubsubMessage:
    """Point step messages that name `OP` at the real operation."""
    if b'"OP"' not in message.data:
        return message
    data = message.data.replace(b'"OP"', json.dumps(operation).encode())
    return PubsubMessage(data, message.attributes, message.message_id, topic=message.topic)


@FUZZ
@given(message=messages(request_data, request_types))
def test_request_handler(message: PubsubMessage) -> None:
    from fleetops.services.requests import handle_request_message

    fleet, _ = _fleet()
    check_outcome(permanent_or_result(lambda: handle_request_message(message, fleet.request_deps)))
    # Whatever was recorded must run to its end without another kind of error.
    permanent_or_result(lambda: fleet.drain(limit=500))


@FUZZ
@given(message=messages(step_data, step_types))
def test_step_handler(message: PubsubMessage) -> None:
    from fleetops.services.steps import handle_step_message

    fleet, operation = _fleet()
    aimed = _aim(message, operation)
    check_outcome(permanent_or_result(lambda: handle_step_message(aimed, fleet.step_deps)))


@FUZZ
@given(message=messages(st.one_of(notifications(), recheck_data), alert_types))
def test_alert_handler(message: PubsubMessage) -> None:
    from fleetops.services.alerts import handle_alert_message

    fleet, _ = _fleet()
    check_outcome(permanent_or_result(lambda: handle_alert_message(message, fleet.alert_deps)))


@FUZZ
@given(message=messages(json_values, tick_types))
def test_tick_handlers(message: PubsubMessage) -> None:
    from fleetops.services import rollouts, sweeper

    fleet, _ = _fleet()
    check_outcome(
        permanent_or_result(lambda: rollouts.handle_tick_message(message, fleet.rollout_deps))
    )
    deps = sweeper.SweepDeps(fleet.store, fleet.publisher, now=fleet.clock.now)
    check_outcome(permanent_or_result(lambda: sweeper.handle_tick_message(message, deps)))


class _Event:
    """What functions-framework hands a function: `data` and the CloudEvent's attributes."""

    def __init__(self, data: Any, source: str | None) -> None:
        self.data = data
        self._source = source

    def __getitem__(self, key: str) -> Any:
        if key == "source" and self._source is not None:
            return self._source
        raise KeyError(key)


SERVICES = ("requests", "operations", "alerts")


@FUZZ
@given(
    service=st.sampled_from(SERVICES),
    message=messages(st.one_of(request_data, step_data, notifications()), request_types),
    raw=st.one_of(st.none(), json_values),
)
def test_push_entry_point_dead_letters_with_a_reason(
    service: str, message: PubsubMessage, raw: Any
) -> None:
    """Through `handle_push`: an outcome, and every dead letter copied with code and reason."""
    from fleetops.entrypoint import handle_push
    from fleetops.services.alerts import handle_alert_message
    from fleetops.services.requests import handle_request_message
    from fleetops.services.steps import handle_step_message

    fleet, operation = _fleet()
    handlers: dict[str, Callable[[PubsubMessage], Outcome]] = {
        "requests": lambda m: handle_request_message(m, fleet.request_deps),
        "operations": lambda m: handle_step_message(_aim(m, operation), fleet.step_deps),
        "alerts": lambda m: handle_alert_message(m, fleet.alert_deps),
    }
    body: Any = raw
    if raw is None:
        body = {
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "attributes": dict(message.attributes),
                "messageId": message.message_id,
            }
        }
    outcome = handle_push(
        _Event(body, "//pubsub.googleapis.com/projects/p/topics/t"),
        handlers[service],
        lambda: fleet.publisher,
        function=service,
    )
    assert isinstance(outcome, Outcome)
    if outcome.disposition is Disposition.DEAD_LETTER:
        assert outcome.code
        assert outcome.detail
        copies = fleet.publisher.take(TOPIC_DEAD_LETTER)
        if isinstance(body, dict) and isinstance(body.get("message"), dict) and copies:
            assert copies[-1].attributes[ATTR_ERROR] == outcome.code
            assert copies[-1].attributes[ATTR_REASON]
