"""Every check of fleetops, one session per purpose.

The sessions run in the project's own environment (`.venv`, made by `make dev`),
so `make test` installs once and every session reuses it:

    make test                 # what CI runs: every session below except package and bench
    .venv/bin/nox -s unit     # one session
"""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = [
    "lint",
    "typecheck",
    "unit",
    "integration",
    "e2e",
    "terraform",
    "reliability",
]
nox.options.error_on_missing_interpreters = True

PY = sys.executable


def _pytest(session: nox.Session, *args: str) -> None:
    session.run(PY, "-m", "pytest", *args, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check of the whole tree."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the shared package (the functions' code)."""
    session.run(PY, "-m", "mypy")


@nox.session
def unit(session: nox.Session) -> None:
    """Fast, pure tests: no network, no emulators, in-memory fakes."""
    _pytest(session, "tests/unit", "-q")


@nox.session
def integration(session: nox.Session) -> None:
    """Adapters, functions and contract tests on the real Pub/Sub and Firestore emulators."""
    _pytest(session, "tests/contract", "tests/integration", "-q")


@nox.session
def e2e(session: nox.Session) -> None:
    """`fleetops up` as a subprocess, driven by the CLI and raw Pub/Sub publishes."""
    _pytest(session, "tests/e2e", "-q")


@nox.session
def terraform(session: nox.Session) -> None:
    """Offline Terraform checks: fmt, configuration loading, cross-references, checkov."""
    _pytest(session, "tests/terraform", "-q")


@nox.session
def reliability(session: nox.Session) -> None:
    """Faults on the local stack (killed functions, a paused Pub/Sub emulator, concurrency) and
    fuzzing of every decoder; FLEETOPS_RELIABILITY_FULL=1 for the full-size run."""
    _pytest(session, "tests/reliability", "-q")


@nox.session
def package(session: nox.Session) -> None:
    """Build each function's deployable source and zip under build/functions/."""
    session.run(PY, "tools/package_functions.py")
    _pytest(session, "tests/terraform", "-q", "-m", "package_install")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the machine's own limit; prints a table, writes bench/results/."""
    session.run(PY, "-m", "bench", *session.posargs)
