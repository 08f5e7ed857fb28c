"""Names users and other systems see: topics, collections, event types."""

from __future__ import annotations

from typing import Final

DEFAULT_LOCAL_PROJECT: Final = "fleetops-local"

TOPIC_REQUESTS: Final = "fleetops-requests"
TOPIC_ALERTS: Final = "fleetops-alerts"
TOPIC_MAINTENANCE: Final = "fleetops-maintenance"
TOPIC_STEPS: Final = "fleetops-steps"
TOPIC_EVENTS: Final = "fleetops-events"
TOPIC_DEAD_LETTER: Final = "fleetops-dead-letter"

ALL_TOPICS: Final = (
    TOPIC_REQUESTS,
    TOPIC_ALERTS,
    TOPIC_MAINTENANCE,
    TOPIC_STEPS,
    TOPIC_EVENTS,
    TOPIC_DEAD_LETTER,
)

COLLECTION_INSTANCES: Final = "instances"
COLLECTION_OPERATIONS: Final = "operations"
COLLECTION_PROCESSED_EVENTS: Final = "processed_events"

ALL_COLLECTIONS: Final = (
    COLLECTION_INSTANCES,
    COLLECTION_OPERATIONS,
    COLLECTION_PROCESSED_EVENTS,
)

EVENT_INSTANCE_REQUESTED: Final = "fleetops.instance.requested"
EVENT_STEP_READY: Final = "fleetops.operation.step.ready"
EVENT_OPERATION_FINISHED: Final = "fleetops.operation.finished"
EVENT_MAINTENANCE_TICK: Final = "fleetops.maintenance.tick"
EVENT_REMEDIATION_ESCALATED: Final = "fleetops.remediation.escalated"
EVENT_REMEDIATION_RECHECK: Final = "fleetops.remediation.recheck"
SOURCE_REMEDIATION: Final = "//fleetops/remediation"
SOURCE_MONITORING: Final = "//monitoring.googleapis.com"

SOURCE_OPERATIONS: Final = "//fleetops/operations"

# Attributes added to a message copied to the dead-letter topic.
ATTR_ERROR: Final = "fleetops-error"
ATTR_REASON: Final = "fleetops-reason"
ATTR_ORIGINAL_TOPIC: Final = "fleetops-original-topic"
ATTR_ORIGINAL_MESSAGE_ID: Final = "fleetops-original-message-id"
