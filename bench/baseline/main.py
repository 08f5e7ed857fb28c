"""The raw limit of one function: a push, one Firestore transaction on a distinct document.

Nothing else: no CloudEvent decoding beyond the push body, no publish. The client is
built on first use, as fleetops' functions build theirs, so start-up costs compare.
The message data is JSON `{"collection": C, "id": ID, "published_at": SECONDS}`.
"""

from __future__ import annotations

import base64
import json
import os
from functools import cache
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent


@cache
def _client() -> Any:
    from google.cloud import firestore

    return firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    from google.cloud import firestore

    body = json.loads(base64.b64decode(event.data["message"]["data"]))
    db = _client()
    ref = db.collection(body["collection"]).document(body["id"])

    @firestore.transactional
    def record(transaction: Any) -> None:
        # A redelivery finds the document and writes nothing: one effect per message.
        if ref.get(transaction=transaction).exists:
            return
        transaction.set(
            ref,
            {
                "published_at": body.get("published_at"),
                "handled_at": firestore.SERVER_TIMESTAMP,
            },
        )

    record(db.transaction())
