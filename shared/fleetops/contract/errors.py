"""Errors that decide what happens to a message: dead-letter now, or retry."""

from __future__ import annotations


class PermanentError(Exception):
    """The message can never succeed: acknowledge it and dead-letter it with the reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class MalformedEvent(PermanentError):
    """The bytes on the wire are not an event we understand."""


class InvalidRequest(PermanentError):
    """The event is well formed but its data breaks the contract."""
