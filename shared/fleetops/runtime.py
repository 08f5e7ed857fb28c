"""Building adapters from the environment, on first use and once per process.

Nothing here runs at import: a function's cold start pays only for the
clients it actually uses, and tests import without credentials.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

from fleetops.contract.names import DEFAULT_LOCAL_PROJECT

if TYPE_CHECKING:
    from fleetops.ports import Actuator, Publisher, StateStore


class ConfigurationError(Exception):
    """The environment does not say enough to build an adapter."""


def project() -> str:
    return (
        os.environ.get("GOOGLE_CLOUD_PROJECT")
        or os.environ.get("GCP_PROJECT")
        or DEFAULT_LOCAL_PROJECT
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


@cache
def state_store() -> StateStore:
    from google.cloud import firestore

    from fleetops.adapters.firestore_store import FirestoreStateStore

    database = os.environ.get("FLEETOPS_FIRESTORE_DATABASE", "(default)")
    return FirestoreStateStore(firestore.Client(project=project(), database=database))


@cache
def publisher() -> Publisher:
    from fleetops.adapters.pubsub_publisher import PubsubPublisher

    return PubsubPublisher(project())


@cache
def actuator() -> Actuator:
    kind = os.environ.get("FLEETOPS_ACTUATOR", "local")
    if kind == "local":
        from fleetops.adapters.local_actuator import LocalProcessActuator

        agent_url = os.environ.get("FLEETOPS_AGENT_URL")
        if not agent_url:
            raise ConfigurationError(
                "FLEETOPS_AGENT_URL is not set: the local actuator needs the host agent "
                "that `fleetops up` starts"
            )
        return LocalProcessActuator(agent_url)
    raise ConfigurationError(f"FLEETOPS_ACTUATOR={kind!r} is not a known actuator (local)")


def reset_clients() -> None:
    """Forget the cached clients (tests that change project or emulator between cases)."""
    state_store.cache_clear()
    publisher.cache_clear()
    actuator.cache_clear()
