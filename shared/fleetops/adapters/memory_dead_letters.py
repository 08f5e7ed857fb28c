"""The dead-letter inbox in memory, for unit tests; same documents as Firestore."""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any

from fleetops.services.dead_letter_store import (
    DeadLetter,
    DeadLetterNotFound,
    ReplayRefused,
    letter_from_doc,
    letter_to_doc,
)


class InMemoryDeadLetterStore:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, letter: DeadLetter) -> bool:
        with self._lock:
            existing = self.docs.get(letter.id)
            if existing is not None:
                existing["duplicates"] = int(existing.get("duplicates") or 0) + 1
                return False
            self.docs[letter.id] = letter_to_doc(replace(letter, duplicates=0))
            return True

    def get(self, letter_id: str) -> DeadLetter | None:
        with self._lock:
            doc = self.docs.get(letter_id)
            return letter_from_doc(letter_id, copy.deepcopy(doc)) if doc is not None else None

    def list(self, *, limit: int = 50, replayed: bool | None = None) -> list[DeadLetter]:
        with self._lock:
            found = [letter_from_doc(i, copy.deepcopy(d)) for i, d in self.docs.items()]
        if replayed is not None:
            found = [letter for letter in found if letter.replayed is replayed]
        found.sort(key=lambda letter: (letter.received_at, letter.id), reverse=True)
        return found[:limit]

    def claim_replay(self, letter_id: str, who: str, at: datetime) -> DeadLetter:
        with self._lock:
            doc = self.docs.get(letter_id)
            if doc is None:
                raise DeadLetterNotFound(letter_id)
            letter = letter_from_doc(letter_id, copy.deepcopy(doc))
            blocker = letter.replay_blocker()
            if blocker is not None:
                raise ReplayRefused(blocker)
            doc.update(replayed=True, replayed_at=at, replayed_by=who, replay_message_id=None)
            return replace(letter, replayed_at=at, replayed_by=who)

    def release_replay(self, letter_id: str) -> None:
        with self._lock:
            doc = self.docs.get(letter_id)
            if doc is not None:
                doc.update(replayed=False, replayed_at=None, replayed_by=None)

    def finish_replay(self, letter_id: str, message_id: str) -> None:
        with self._lock:
            doc = self.docs.get(letter_id)
            if doc is not None:
                doc["replay_message_id"] = message_id
