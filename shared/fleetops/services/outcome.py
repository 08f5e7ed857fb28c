"""What a handler tells its entry point to do with the message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Disposition(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    disposition: Disposition
    detail: str
    operation: str | None = None
    instance: str | None = None
    code: str | None = None

    @classmethod
    def ack(
        cls, detail: str, *, operation: str | None = None, instance: str | None = None
    ) -> Outcome:
        return cls(Disposition.ACK, detail, operation, instance)

    @classmethod
    def retry(
        cls, detail: str, *, operation: str | None = None, instance: str | None = None
    ) -> Outcome:
        return cls(Disposition.RETRY, detail, operation, instance)
