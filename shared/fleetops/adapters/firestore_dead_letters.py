"""The dead-letter inbox in Firestore: `dead_letters/{id}`."""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from datetime import datetime
from functools import cache
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore

from fleetops.services.dead_letter_store import (
    COLLECTION_DEAD_LETTERS,
    DeadLetter,
    DeadLetterNotFound,
    ReplayRefused,
    letter_from_doc,
    letter_to_doc,
)

# Claims of one letter by several people at once: each loser must see the winner's mark.
CLAIM_ATTEMPTS = 8


class FirestoreDeadLetterStore:
    def __init__(self, client: firestore.Client) -> None:
        self._db = client

    def _doc(self, letter_id: str) -> Any:
        return self._db.collection(COLLECTION_DEAD_LETTERS).document(letter_id)

    def record(self, letter: DeadLetter) -> bool:
        doc = self._doc(letter.id)
        try:
            doc.create(letter_to_doc(letter))
        except exceptions.AlreadyExists:
            # Only the count changes: the first copy's fields and any replay mark stay.
            doc.update({"duplicates": firestore.Increment(1)})
            return False
        return True

    def get(self, letter_id: str) -> DeadLetter | None:
        snap = self._doc(letter_id).get()
        return letter_from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def list(self, *, limit: int = 50, replayed: bool | None = None) -> list[DeadLetter]:
        query: Any = self._db.collection(COLLECTION_DEAD_LETTERS)
        if replayed is not None:
            query = query.where(filter=firestore.FieldFilter("replayed", "==", replayed))
        query = query.order_by("received_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [letter_from_doc(snap.id, snap.to_dict() or {}) for snap in query.stream()]

    def claim_replay(self, letter_id: str, who: str, at: datetime) -> DeadLetter:
        doc = self._doc(letter_id)

        def claim(transaction: firestore.Transaction) -> DeadLetter:
            snap = doc.get(transaction=transaction)
            if not snap.exists:
                raise DeadLetterNotFound(letter_id)
            letter = letter_from_doc(letter_id, snap.to_dict() or {})
            blocker = letter.replay_blocker()
            if blocker is not None:
                raise ReplayRefused(blocker)
            transaction.update(
                doc,
                {
                    "replayed": True,
                    "replayed_at": at,
                    "replayed_by": who,
                    "replay_message_id": None,
                },
            )
            return letter

        run = firestore.transactional(claim)
        attempt = 0
        while True:
            attempt += 1
            try:
                letter: DeadLetter = run(self._db.transaction(max_attempts=CLAIM_ATTEMPTS))
                return replace(letter, replayed_at=at, replayed_by=who)
            except (exceptions.Aborted, ValueError) as exc:
                # A read that loses to a concurrent claim aborts without the client's
                # own retry (that covers the commit only): read again, the winner's
                # mark is then visible and refuses this claim properly.
                contended = isinstance(exc, exceptions.Aborted) or isinstance(
                    exc.__cause__, exceptions.Aborted
                )
                if not contended or attempt >= CLAIM_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.02, 0.1) * attempt)  # noqa: S311

    def release_replay(self, letter_id: str) -> None:
        self._doc(letter_id).update({"replayed": False, "replayed_at": None, "replayed_by": None})

    def finish_replay(self, letter_id: str, message_id: str) -> None:
        self._doc(letter_id).update({"replay_message_id": message_id})


@cache
def default_store() -> FirestoreDeadLetterStore:
    """Built on first use from the environment, like `fleetops.runtime`'s clients."""
    from fleetops import runtime

    database = os.environ.get("FLEETOPS_FIRESTORE_DATABASE", "(default)")
    return FirestoreDeadLetterStore(firestore.Client(project=runtime.project(), database=database))
