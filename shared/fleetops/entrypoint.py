"""What every Pub/Sub-triggered function does around its one service call.

Decode the push delivery, call the service, then map the outcome: acknowledge,
retry (raise, so functions-framework answers 500 and Pub/Sub redelivers with
backoff), or dead-letter (copy with the reason, then acknowledge).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from fleetops import log
from fleetops.contract.errors import PermanentError
from fleetops.contract.pubsub import PubsubMessage
from fleetops.ports import Publisher
from fleetops.services.dead_letters import dead_letter
from fleetops.services.outcome import Disposition, Outcome


class RetryLater(Exception):
    """Raised to make Pub/Sub deliver the message again later."""


class PushEvent(Protocol):
    """The part of functions-framework's CloudEvent object that we read."""

    data: Any

    def __getitem__(self, key: str) -> Any: ...


def handle_push(
    event: PushEvent,
    service: Callable[[PubsubMessage], Outcome],
    publisher: Callable[[], Publisher],
    *,
    function: str,
) -> Outcome:
    log.configure()
    logger = log.get(function)
    message: PubsubMessage | None = None
    try:
        message = PubsubMessage.from_push(event.data or {}, source=_source(event))
        outcome = service(message)
    except PermanentError as error:
        if message is None:
            # Not even a Pub/Sub message: nothing to copy, and a retry cannot help.
            logger.error(
                "rejected an undecodable push: %s", error.reason, extra={"code": error.code}
            )
            return Outcome(Disposition.DEAD_LETTER, error.reason, code=error.code)
        dead_letter(publisher(), message, error)
        outcome = Outcome(Disposition.DEAD_LETTER, error.reason, code=error.code)
    extra = {
        "event_id": message.message_id if message else None,
        "operation": outcome.operation,
        "instance": outcome.instance,
        "code": outcome.code,
        "outcome": outcome.disposition.value,
        "topic": message.topic if message else None,
    }
    level = logging.WARNING if outcome.disposition is Disposition.DEAD_LETTER else logging.INFO
    logger.log(level, outcome.detail, extra=extra)
    if outcome.disposition is Disposition.RETRY:
        raise RetryLater(outcome.detail)
    return outcome


def _source(event: PushEvent) -> str | None:
    try:
        value = event["source"]
    except (KeyError, TypeError):
        return None
    return str(value) if value else None
