"""Bearer tokens for the local stack's API, fresh on every `fleetops up`.

Four principals: one per role, and a second admin so that an operation needing
approval can be requested by one person and approved by another.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetops.api.auth import Role, read_tokens_file

TOKENS_FILE_NAME = "api-tokens.json"


@dataclass(frozen=True)
class ApiToken:
    principal: str
    role: Role
    token: str

    def __repr__(self) -> str:
        # A token must not end up in a log line or a traceback by way of repr().
        return f"ApiToken(principal={self.principal!r}, role={self.role.value!r})"


@dataclass(frozen=True)
class LocalApiTokens:
    path: Path
    viewer: ApiToken
    operator: ApiToken
    admin: ApiToken
    admin2: ApiToken

    @property
    def all(self) -> tuple[ApiToken, ...]:
        return (self.viewer, self.operator, self.admin, self.admin2)


def _new(principal: str, role: Role) -> ApiToken:
    return ApiToken(principal, role, "fo_" + secrets.token_urlsafe(32))


def write_tokens_file(path: Path) -> LocalApiTokens:
    """Write a tokens file with new random tokens (readable by this user only)."""
    tokens = LocalApiTokens(
        path=path,
        viewer=_new("viewer@local", Role.VIEWER),
        operator=_new("operator@local", Role.OPERATOR),
        admin=_new("admin@local", Role.ADMIN),
        admin2=_new("admin2@local", Role.ADMIN),
    )
    document = {
        "tokens": [
            {"token": t.token, "principal": t.principal, "role": t.role.value} for t in tokens.all
        ]
    }
    _write_private(path, json.dumps(document, indent=2) + "\n")
    return tokens


def write_private_env(path: Path, values: Mapping[str, str]) -> None:
    """Write `local.env` (KEY=VALUE lines) readable by this user only: it holds a token."""
    _write_private(path, "".join(f"{key}={value}\n" for key, value in values.items()))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # A file left by an earlier run keeps its mode on open(): start from a fresh one.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def read_local_tokens(path: Path) -> dict[str, ApiToken]:
    """The tokens of a file written by `write_tokens_file`, by principal."""
    return {e.principal: ApiToken(e.principal, e.role, e.token) for e in read_tokens_file(path)}
