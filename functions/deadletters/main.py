"""fleetops-dead-letter -> Firestore: keeps every dead-lettered message for people.

Never dead-letters its own input (this function consumes the dead-letter topic):
a message it cannot read is kept as it came, with a note, and acknowledged. Only
a failure to store it is retried.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from fleetops import log, runtime
from fleetops.services.dead_letter_store import record_dead_letter


@functions_framework.cloud_event
def record_dead_letter_event(event: CloudEvent) -> None:
    # On first use, as every function builds its clients: importing main.py stays cheap.
    from fleetops.adapters.firestore_dead_letters import default_store

    log.configure()
    try:
        source = str(event["source"])
    except (KeyError, TypeError):
        source = None
    recorded = record_dead_letter(event.data, source, default_store(), runtime.utc_now)
    letter = recorded.letter
    log.get("deadletters").warning(
        "%s dead letter %s from %s: %s",
        "recorded" if recorded.new else "duplicate of",
        letter.id,
        letter.original_topic or "an unknown topic",
        letter.reason,
        extra={"code": letter.error_code, "topic": letter.original_topic, "event_id": letter.id},
    )
