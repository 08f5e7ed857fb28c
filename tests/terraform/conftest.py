"""Fixtures of the offline Terraform and packaging checks.

Tests marked `package_install` build a virtualenv per function and install its pinned
requirements from PyPI; they run only when selected (`pytest -m package_install`,
which `nox -s package` does).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a rule needs of the repository: a break test copies these and edits the copy.
COPIED = ("terraform", "functions", "shared/fleetops")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".terraform", "*.tfstate*", "*.egg-info")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "package_install: installs each packaged function's requirements into a fresh "
        "virtualenv (PyPI, slow); run with -m package_install",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "package_install" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: select with -m package_install (nox -s package)")
    for item in items:
        if "package_install" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def repo_copy(tmp_path: Path) -> Callable[[], Path]:
    """Make a scratch copy of what the rules read; returns its root."""

    def make() -> Path:
        root = tmp_path / "repo"
        for rel in COPIED:
            shutil.copytree(REPO / rel, root / rel, ignore=_IGNORE)
        return root

    return make
