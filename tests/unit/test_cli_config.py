"""Which backend and which token the CLI uses, local.env's privacy, and errors as one sentence."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from fleetops.cli import main
from fleetops.cli.backend import (
    ApiBackend,
    BackendError,
    DirectBackend,
    backend_from_env,
    token_for,
)
from fleetops.local import config
from fleetops.local.api_tokens import write_private_env, write_tokens_file

URL = "http://127.0.0.1:9"


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens_file(tmp_path / "api-tokens.json").path


def test_local_env_is_written_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / ".fleetops" / "local.env"
    (tmp_path / ".fleetops").mkdir()
    (tmp_path / ".fleetops" / "local.env.tmp").write_text("left over\n")
    (tmp_path / ".fleetops" / "local.env.tmp").chmod(0o644)
    values = {"FLEETOPS_API_URL": URL, "FLEETOPS_API_TOKEN": "fo_secret"}
    write_private_env(path, values)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.read_env(path) == values
    assert not (tmp_path / ".fleetops" / "local.env.tmp").exists()


def test_a_token_is_picked_by_principal_or_its_name(tokens_file: Path) -> None:
    from fleetops.local.api_tokens import read_local_tokens

    tokens = read_local_tokens(tokens_file)
    assert token_for(tokens_file, "admin2@local") == tokens["admin2@local"].token
    assert token_for(tokens_file, "admin2") == tokens["admin2@local"].token
    with pytest.raises(BackendError) as caught:
        token_for(tokens_file, "mallory")
    assert str(caught.value) == (
        f"FLEETOPS_API_TOKENS_FILE={tokens_file} has no token for mallory; it has "
        "admin2@local, admin@local, operator@local, viewer@local"
    )
    with pytest.raises(BackendError, match="cannot read the API tokens file"):
        token_for(tokens_file.with_name("missing.json"), "admin")


def test_the_api_is_used_whenever_its_url_is_set(tokens_file: Path) -> None:
    from fleetops.local.api_tokens import read_local_tokens

    tokens = read_local_tokens(tokens_file)
    chosen = backend_from_env({"FLEETOPS_API_URL": URL, "FLEETOPS_API_TOKEN": "fo_mine"})
    assert isinstance(chosen, ApiBackend)
    assert chosen.found_in == "FLEETOPS_API_TOKEN"
    env = {"FLEETOPS_API_URL": URL, "FLEETOPS_API_TOKENS_FILE": str(tokens_file)}
    for picked in (
        backend_from_env({**env, "FLEETOPS_API_TOKEN": "fo_mine"}, acting_as="admin"),
        backend_from_env({**env, "FLEETOPS_AS": "admin"}),
    ):
        assert isinstance(picked, ApiBackend)
        assert picked._token == tokens["admin@local"].token
        assert picked.found_in == "FLEETOPS_API_TOKENS_FILE for admin"
    with pytest.raises(BackendError) as caught:
        backend_from_env({"FLEETOPS_API_URL": URL, "FLEETOPS_AS": "admin"})
    assert str(caught.value).startswith(
        "--as admin picks a token from FLEETOPS_API_TOKENS_FILE, which is not set"
    )
    with pytest.raises(BackendError) as caught:
        backend_from_env(env)
    assert str(caught.value).startswith(
        f"FLEETOPS_API_URL={URL} is set but FLEETOPS_API_TOKEN is not: set FLEETOPS_API_TOKEN"
    )


def test_without_the_api_url_the_cli_works_directly() -> None:
    made: list[str | None] = []

    def direct(who: str | None) -> DirectBackend:
        made.append(who)
        return DirectBackend(principal=who or "me@laptop")

    assert isinstance(backend_from_env({"FLEETOPS_API_TOKEN": "x"}, direct), DirectBackend)
    chosen = backend_from_env({"FLEETOPS_API_URL": ""}, direct, acting_as="alice@example.com")
    assert chosen.principal == "alice@example.com"
    assert made == [None, "alice@example.com"]


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["fleetops", *args])
    with pytest.raises(SystemExit) as exited:
        main.main()
    code = exited.value.code
    return code if isinstance(code, int) else 1


@pytest.fixture
def no_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEETOPS_ENV_FILE", str(tmp_path / "none.env"))
    for name in (
        "FLEETOPS_API_URL",
        "FLEETOPS_API_TOKEN",
        "FLEETOPS_API_TOKENS_FILE",
        "FLEETOPS_AS",
        "FIRESTORE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "GOOGLE_CLOUD_PROJECT",
        "FLEETOPS_DEBUG",
    ):
        monkeypatch.delenv(name, raising=False)


def test_errors_are_one_sentence_on_stderr(
    no_stack: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("FLEETOPS_API_URL", URL)
    assert run_main(monkeypatch, "rollout", "list") == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "error: FLEETOPS_API_URL=http://127.0.0.1:9 is set but FLEETOPS_API_TOKEN"
    )
    # Not wrapped at the terminal's width: one line, for scripts and people alike.
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("FLEETOPS_API_TOKEN", "fo_token")
    assert run_main(monkeypatch, "automation", "status") == 1
    assert capsys.readouterr().err.strip() == (
        f"error: cannot reach the fleetops API at {URL}: is `fleetops up` running?"
    )


def test_no_stack_and_no_api_is_one_sentence(
    no_stack: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(monkeypatch, "instances") == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(
            "error: no local stack found (.fleetops/local.env) and GOOGLE_CLOUD_PROJECT is not set"
        )
    )


def test_an_unexpected_failure_is_one_sentence_unless_debugging(
    no_stack: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise KeyError("principal")

    monkeypatch.setattr(main, "_backend", broken)
    assert run_main(monkeypatch, "instances") == 1
    assert capsys.readouterr().err.strip() == (
        "error: fleetops failed unexpectedly (KeyError: 'principal'); "
        "FLEETOPS_DEBUG=1 shows the traceback"
    )
    monkeypatch.setenv("FLEETOPS_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["fleetops", "instances"])
    with pytest.raises(KeyError):
        main.main()


def test_messages_are_printed_as_text_not_markup(
    no_stack: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse() -> None:
        raise BackendError("field 'days': ['[bold]x'] is not a day")

    monkeypatch.setattr(main, "_backend", refuse)
    assert run_main(monkeypatch, "instances") == 1
    assert capsys.readouterr().err.strip() == "error: field 'days': ['[bold]x'] is not a day"


def test_as_is_a_global_option(
    no_stack: None,
    tokens_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLEETOPS_API_URL", URL)
    monkeypatch.setenv("FLEETOPS_API_TOKENS_FILE", str(tokens_file))
    assert run_main(monkeypatch, "--as", "nobody", "instances") == 1
    assert "has no token for nobody" in capsys.readouterr().err
    assert run_main(monkeypatch, "--as", "admin2", "instances") == 1
    # The token was found: what fails now is reaching the API.
    assert "cannot reach the fleetops API" in capsys.readouterr().err
