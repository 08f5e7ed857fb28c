"""Authentication: local token files, Google identity tokens and the role map."""

from __future__ import annotations

import base64
import hmac
import json
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetops.api import auth
from fleetops.api.auth import (
    AuthConfigurationError,
    AuthUnavailable,
    Caller,
    ChainAuthenticator,
    GoogleIdTokenAuthenticator,
    Role,
    RoleMap,
    TokenFileAuthenticator,
    authenticator_from_env,
    bearer_token,
)
from fleetops.local.api_tokens import read_local_tokens, write_tokens_file

JWT = "header.payload.signature"


def test_roles_include_the_ones_below() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.ADMIN.allows(Role.VIEWER)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.OPERATOR.allows(Role.ADMIN)
    assert not Role.VIEWER.allows(Role.OPERATOR)


# ------------------------------------------------------------------ the local tokens file


def test_the_local_tokens_file_has_four_principals_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "api-tokens.json"
    tokens = write_tokens_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [(t.principal, t.role) for t in tokens.all] == [
        ("viewer@local", Role.VIEWER),
        ("operator@local", Role.OPERATOR),
        ("admin@local", Role.ADMIN),
        ("admin2@local", Role.ADMIN),
    ]
    assert len({t.token for t in tokens.all}) == 4
    assert all(len(t.token) >= 40 for t in tokens.all)
    assert read_local_tokens(path) == {t.principal: t for t in tokens.all}
    again = write_tokens_file(path)
    assert not {t.token for t in again.all} & {t.token for t in tokens.all}
    assert tokens.admin.token not in repr(tokens)


def test_a_token_from_the_file_names_its_principal_and_role(tmp_path: Path) -> None:
    tokens = write_tokens_file(tmp_path / "t.json")
    authenticator = TokenFileAuthenticator(tokens.path)
    for token in tokens.all:
        assert authenticator.authenticate(token.token) == Caller(token.principal, token.role)
    assert authenticator.authenticate(tokens.admin.token[:-1]) is None
    assert authenticator.authenticate(tokens.admin.token + "x") is None
    assert authenticator.authenticate("") is None


def test_every_entry_is_compared_even_after_a_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = write_tokens_file(tmp_path / "t.json")
    authenticator = TokenFileAuthenticator(tokens.path)
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert authenticator.authenticate(tokens.viewer.token) is not None
    assert len(compared) == 4
    assert {len(a) for a, _ in compared} == {len(b) for _, b in compared} == {32}


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"tokens": [{"token": "a" * 20, "principal": "p@x", "role": "viewer"}]})
    )
    authenticator = TokenFileAuthenticator(path)
    assert authenticator.authenticate("a" * 20) == Caller("p@x", Role.VIEWER)
    path.write_text(
        json.dumps({"tokens": [{"token": "b" * 21, "principal": "q@x", "role": "admin"}]})
    )
    assert authenticator.authenticate("a" * 20) is None
    assert authenticator.authenticate("b" * 21) == Caller("q@x", Role.ADMIN)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"tokens": [{"token": "short-secret", "principal": "p", "role": "viewer"}]}', "0.token"),
        (
            '{"tokens": [{"token": "long-enough-secret-1", "principal": "p", "role": "boss"}]}',
            "role",
        ),
        ("not json at all", "(file)"),
    ],
)
def test_a_broken_tokens_file_is_a_configuration_error_that_quotes_no_token(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(AuthConfigurationError) as caught:
        TokenFileAuthenticator(path).authenticate("anything-at-all-here")
    assert says in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_missing_tokens_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigurationError, match="cannot read the API tokens file"):
        TokenFileAuthenticator(tmp_path / "nope.json").authenticate("x" * 20)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_tokens_are_read_from_the_authorization_header(
    header: str | None, token: str | None
) -> None:
    assert bearer_token(header) == token


# ------------------------------------------------------------------ Google identity tokens


def test_the_role_map_reads_emails_prefixes_and_domains() -> None:
    roles = RoleMap.parse(
        json.dumps(
            {
                "Alice@Example.com": "admin",
                "user:bob@example.com": "operator",
                "serviceAccount:ci@proj.iam.gserviceaccount.com": "operator",
                "domain:example.com": "viewer",
            }
        )
    )
    assert roles.role_for("alice@example.com", "example.com") is Role.ADMIN
    assert roles.role_for("BOB@example.com", None) is Role.OPERATOR
    assert roles.role_for("ci@proj.iam.gserviceaccount.com", None) is Role.OPERATOR
    assert roles.role_for("carol@example.com", "example.com") is Role.VIEWER
    # Without the hosted-domain claim an address at the domain proves nothing.
    assert roles.role_for("carol@example.com", None) is None
    assert roles.role_for("mallory@evil.example", "evil.example") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"group:sre@example.com": "admin"}', "groups cannot be checked"),
        ('{"alice": "admin"}', "neither an email address"),
        ('{"alice@example.com": "root"}', "not one of: viewer, operator, admin"),
        ('["alice@example.com"]', "must be a JSON object"),
        ("{", "not valid JSON"),
    ],
)
def test_a_bad_role_map_is_refused_with_a_sentence(text: str, says: str) -> None:
    with pytest.raises(AuthConfigurationError, match=says):
        RoleMap.parse(text)


class FakeVerifier:
    def __init__(self, claims: Mapping[str, Any] | Exception) -> None:
        self.claims = claims
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, token: str, audiences: list[str]) -> Mapping[str, Any]:
        self.calls.append((token, audiences))
        if isinstance(self.claims, Exception):
            raise self.claims
        return self.claims


ROLES = RoleMap.parse('{"alice@example.com": "admin", "domain:example.com": "viewer"}')


def test_a_verified_google_identity_gets_its_role() -> None:
    verify = FakeVerifier({"email": "alice@example.com", "email_verified": True})
    authenticator = GoogleIdTokenAuthenticator(["https://api.example"], ROLES, verify)
    assert authenticator.authenticate(JWT) == Caller("alice@example.com", Role.ADMIN)
    assert verify.calls == [(JWT, ["https://api.example"])]


def test_a_verified_identity_without_a_role_is_known_but_granted_nothing() -> None:
    verify = FakeVerifier({"email": "dave@other.example", "email_verified": True})
    caller = GoogleIdTokenAuthenticator(["aud"], ROLES, verify).authenticate(JWT)
    assert caller == Caller("dave@other.example", None)


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "alice@example.com", "email_verified": False},
        {"email": "alice@example.com"},
        {"email_verified": True},
        ValueError("Token has wrong audience"),
    ],
)
def test_unverified_or_invalid_google_tokens_are_refused(
    claims: Mapping[str, Any] | Exception,
) -> None:
    authenticator = GoogleIdTokenAuthenticator(["aud"], ROLES, FakeVerifier(claims))
    assert authenticator.authenticate(JWT) is None


def test_something_that_is_not_a_jwt_is_refused_without_asking_google() -> None:
    verify = FakeVerifier({"email": "alice@example.com", "email_verified": True})
    assert GoogleIdTokenAuthenticator(["aud"], ROLES, verify).authenticate("opaque") is None
    assert verify.calls == []


def test_when_google_cannot_be_reached_the_caller_is_told_to_retry() -> None:
    verify = FakeVerifier(ConnectionError("no route to host"))
    with pytest.raises(AuthUnavailable, match="cannot verify Google identity tokens now"):
        GoogleIdTokenAuthenticator(["aud"], ROLES, verify).authenticate(JWT)


def test_the_real_verifier_refuses_a_forged_token_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth's own checks run: claims that would pass, signed by no Google key."""
    from google.oauth2 import id_token

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {
        "iss": "https://accounts.google.com",
        "aud": "aud",
        "email": "alice@example.com",
        "email_verified": True,
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    forged = f"{part({'alg': 'RS256', 'kid': 'kid-1'})}.{part(claims)}.c2lnbmF0dXJl"
    monkeypatch.setattr(id_token, "_fetch_certs", lambda request, url: {"kid-1": "not a cert"})
    assert GoogleIdTokenAuthenticator(["aud"], ROLES).authenticate(forged) is None
    accepting = FakeVerifier(claims)
    assert GoogleIdTokenAuthenticator(["aud"], ROLES, accepting).authenticate(forged) == Caller(
        "alice@example.com", Role.ADMIN
    )


# ------------------------------------------------------------------ from the environment


def test_the_environment_chooses_the_authenticators(tmp_path: Path) -> None:
    tokens = write_tokens_file(tmp_path / "t.json")
    local = authenticator_from_env({"FLEETOPS_API_TOKENS_FILE": str(tokens.path)})
    assert isinstance(local, TokenFileAuthenticator)
    google = authenticator_from_env(
        {"FLEETOPS_API_AUDIENCE": "a, b", "FLEETOPS_API_ROLES": '{"x@y.z": "viewer"}'}
    )
    assert isinstance(google, GoogleIdTokenAuthenticator)
    assert google.audiences == ["a", "b"]
    both = authenticator_from_env(
        {
            "FLEETOPS_API_TOKENS_FILE": str(tokens.path),
            "FLEETOPS_API_AUDIENCE": "a",
            "FLEETOPS_API_ROLES": "{}",
        }
    )
    assert isinstance(both, ChainAuthenticator)
    assert both.authenticate(tokens.operator.token) == Caller("operator@local", Role.OPERATOR)
    with pytest.raises(AuthConfigurationError, match="FLEETOPS_API_ROLES is not"):
        authenticator_from_env({"FLEETOPS_API_AUDIENCE": "a"})
    with pytest.raises(AuthConfigurationError, match="cannot authenticate anyone"):
        authenticator_from_env({})
