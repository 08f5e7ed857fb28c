"""Who is calling, and what they may do.

Three roles, each including the ones before it: `viewer` reads, `operator` also
requests operations, cancels them, replays dead letters, starts and steers rollouts,
pauses automation and resets remediation, `admin` also approves, resumes automation,
changes its limits and steers maintenance.

- Locally (`FLEETOPS_API_TOKENS_FILE`): bearer tokens listed in a JSON file
  `{"tokens": [{"token": ..., "principal": ..., "role": ...}]}`, compared in
  constant time; `fleetops up` writes a fresh one on every start.
- On GCP (`FLEETOPS_API_AUDIENCE`): a Google-signed identity token for that
  audience, whose verified email is mapped to a role by `FLEETOPS_API_ROLES`
  (see `RoleMap`).

Both may be configured; a token either accepts is enough. Tokens are never
logged and never echoed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Caller:
    principal: str
    # None: a verified identity that FLEETOPS_API_ROLES grants nothing.
    role: Role | None


class AuthConfigurationError(Exception):
    """The environment does not say how to authenticate callers, or says it wrongly."""


class AuthUnavailable(Exception):
    """Tokens cannot be checked right now (Google's signing keys are out of reach)."""


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Caller | None:
        """The caller a bearer token proves, or None when this authenticator rejects it."""
        ...


# ------------------------------------------------------------------ local tokens


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=16)
    principal: str = Field(min_length=1, max_length=200)
    role: Role


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: list[TokenEntry]


def read_tokens_file(path: Path) -> list[TokenEntry]:
    try:
        return TokensFile.model_validate_json(path.read_bytes()).tokens
    except OSError as exc:
        raise AuthConfigurationError(
            f"cannot read the API tokens file {path}: {exc.strerror}"
        ) from exc
    except ValidationError as exc:
        # The validation message could quote a token: name only the places.
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "(file)" for e in exc.errors())
        raise AuthConfigurationError(f"the API tokens file {path} is invalid at: {where}") from exc


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).digest()


class TokenFileAuthenticator:
    """Bearer tokens from a JSON file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[tuple[bytes, Caller]] = []

    def _load(self) -> list[tuple[bytes, Caller]]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise AuthConfigurationError(
                f"cannot read the API tokens file {self.path}: {exc.strerror}"
            ) from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._entries = [
                    (_digest(e.token), Caller(e.principal, e.role))
                    for e in read_tokens_file(self.path)
                ]
                self._stamp = stamp
            return self._entries

    def authenticate(self, token: str) -> Caller | None:
        offered = _digest(token)
        found: Caller | None = None
        # Every entry is compared, equal-length digests, no early exit: the time
        # taken says nothing about which token, or how much of one, matched.
        for digest, caller in self._load():
            if hmac.compare_digest(digest, offered):
                found = caller
        return found


# ------------------------------------------------------------------ Google identity


DOMAIN_PREFIX = "domain:"


class RoleMap:
    """FLEETOPS_API_ROLES: `{"alice@example.com": "admin", "domain:example.com": "viewer"}`.

    A key is either an email address (a person or a service account, matched
    case-insensitively against the token's verified `email`; IAM's `user:` and
    `serviceAccount:` prefixes may be kept) or `domain:<domain>`, matched against
    the token's `hd` claim, which Google sets only for accounts of that Google
    Workspace or Cloud Identity domain. A caller matching several keys gets the
    highest of their roles. Google groups cannot be named: an identity token does
    not carry group membership.
    """

    def __init__(self, entries: Mapping[str, Role]) -> None:
        self._emails: dict[str, Role] = {}
        self._domains: dict[str, Role] = {}
        for key, role in entries.items():
            name = _member(key)
            if name.startswith(DOMAIN_PREFIX):
                self._domains[name.removeprefix(DOMAIN_PREFIX)] = role
            else:
                self._emails[name] = role

    @classmethod
    def parse(cls, text: str) -> RoleMap:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuthConfigurationError(f"FLEETOPS_API_ROLES is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise AuthConfigurationError(
                'FLEETOPS_API_ROLES must be a JSON object such as {"alice@example.com": "admin"}'
            )
        entries: dict[str, Role] = {}
        roles = ", ".join(r.value for r in Role)
        for key, value in raw.items():
            name = _member(str(key))
            if name.startswith("group:") or (
                "@" not in name and not name.startswith(DOMAIN_PREFIX)
            ):
                raise AuthConfigurationError(
                    f"FLEETOPS_API_ROLES key {key!r} is neither an email address nor "
                    f"domain:<domain> (groups cannot be checked from an identity token)"
                )
            if value not in {r.value for r in Role}:
                raise AuthConfigurationError(
                    f"FLEETOPS_API_ROLES gives {key!r} the role {value!r}, not one of: {roles}"
                )
            entries[name] = Role(value)
        return cls(entries)

    def role_for(self, email: str, hosted_domain: str | None) -> Role | None:
        found = [self._emails.get(email.lower())]
        if hosted_domain:
            found.append(self._domains.get(hosted_domain.lower()))
        granted = [r for r in found if r is not None]
        return max(granted, key=lambda r: r.rank) if granted else None


def _member(key: str) -> str:
    name = key.strip().lower()
    for prefix in ("user:", "serviceaccount:"):
        name = name.removeprefix(prefix)
    return name


Verifier = Callable[[str, list[str]], Mapping[str, Any]]


class GoogleIdTokenAuthenticator:
    """Google-signed identity tokens (people, and service accounts) for our audience."""

    def __init__(
        self, audiences: Iterable[str], roles: RoleMap, verify: Verifier | None = None
    ) -> None:
        self.audiences = [a for a in audiences if a]
        self.roles = roles
        self._verify = verify or _google_verifier()

    def authenticate(self, token: str) -> Caller | None:
        if token.count(".") != 2:
            return None
        try:
            claims = self._verify(token, self.audiences)
        except ValueError:
            # google-auth raises ValueError (or a subclass) for every bad token:
            # wrong signature, audience, issuer, expired.
            return None
        except Exception as exc:
            raise AuthUnavailable(
                f"cannot verify Google identity tokens now: {type(exc).__name__}"
            ) from exc
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            return None
        hd = claims.get("hd")
        return Caller(email, self.roles.role_for(email, hd if isinstance(hd, str) else None))


# Google's signing keys change rarely; fetching them for every request would add
# a round trip to each call.
_CERTS_TTL_SECONDS = 300.0


def _google_verifier() -> Verifier:
    cache: dict[str, tuple[float, Any]] = {}
    lock = threading.Lock()

    def verify(token: str, audiences: list[str]) -> Mapping[str, Any]:
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        transport = google_requests.Request()

        def cached(url: str, method: str = "GET", **kwargs: Any) -> Any:
            with lock:
                hit = cache.get(url)
                if hit is not None and time.monotonic() - hit[0] < _CERTS_TTL_SECONDS:
                    return hit[1]
            response = transport(url, method=method, **kwargs)
            if response.status == 200:
                with lock:
                    cache[url] = (time.monotonic(), response)
            return response

        claims = id_token.verify_oauth2_token(  # type: ignore[no-untyped-call]
            token, cached, audience=audiences
        )
        return dict(claims)

    return verify


# ------------------------------------------------------------------ from the environment


class ChainAuthenticator:
    def __init__(self, authenticators: list[Authenticator]) -> None:
        self.authenticators = authenticators

    def authenticate(self, token: str) -> Caller | None:
        for authenticator in self.authenticators:
            caller = authenticator.authenticate(token)
            if caller is not None:
                return caller
        return None


def authenticator_from_env(environ: Mapping[str, str] | None = None) -> Authenticator:
    env = os.environ if environ is None else environ
    found: list[Authenticator] = []
    tokens_file = env.get("FLEETOPS_API_TOKENS_FILE")
    if tokens_file:
        found.append(TokenFileAuthenticator(Path(tokens_file)))
    audience = env.get("FLEETOPS_API_AUDIENCE")
    if audience:
        roles_text = env.get("FLEETOPS_API_ROLES")
        if not roles_text:
            raise AuthConfigurationError(
                "FLEETOPS_API_AUDIENCE is set but FLEETOPS_API_ROLES is not: "
                "nobody would be granted a role"
            )
        found.append(
            GoogleIdTokenAuthenticator(
                [a.strip() for a in audience.split(",")], RoleMap.parse(roles_text)
            )
        )
    if not found:
        raise AuthConfigurationError(
            "the API cannot authenticate anyone: set FLEETOPS_API_TOKENS_FILE (local stack) "
            "or FLEETOPS_API_AUDIENCE and FLEETOPS_API_ROLES (Google identity tokens)"
        )
    return found[0] if len(found) == 1 else ChainAuthenticator(found)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
