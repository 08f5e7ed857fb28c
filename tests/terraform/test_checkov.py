"""checkov on terraform/, offline (--skip-download): no failed check, every skip
justified in place.

checkov runs from its own virtualenv: its fork of the HCL parser (bc-python-hcl2)
installs the same `hcl2` module as python-hcl2, which these tests use, so the two
cannot share one environment. FLEETOPS_CHECKOV names the executable; otherwise the
virtualenv build/.venvs/checkov is made once (from PyPI) and reused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.edits import replace

CHECKOV_REQUIREMENT = "checkov==3.3.30"
# Checks that must have run (and passed): the parser really read the configuration.
EXPECTED_PASSING = {
    "CKV_GCP_29",  # uniform bucket-level access
    "CKV_GCP_78",  # bucket versioning
    "CKV_GCP_114",  # public access prevention
    "CKV_GCP_117",  # no basic roles at project level
    "CKV_GCP_46",  # no default service account at project level
    "CKV_GCP_49",  # no impersonation roles at project level
    "CKV_GCP_99",  # topics not public
}
_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def checkov_executable(repo_root: Path) -> Path:
    named = os.environ.get("FLEETOPS_CHECKOV")
    if named:
        return Path(named)
    venv = repo_root / "build" / ".venvs" / "checkov"
    executable = venv / "bin" / "checkov"
    if not executable.exists():
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", CHECKOV_REQUIREMENT],
            check=True,
            timeout=600,
        )
    return executable


def run_checkov(executable: Path, directory: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(executable),
            "-d",
            str(directory),
            "--skip-download",
            "--framework",
            "terraform",
            "--compact",
            "--output",
            "json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    if isinstance(report, list):
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    assert isinstance(report, dict)
    return report


@pytest.fixture(scope="module")
def checkov(repo_root: Path) -> Path:
    return checkov_executable(repo_root)


@pytest.fixture(scope="module")
def report(checkov: Path, repo_root: Path) -> dict[str, Any]:
    return run_checkov(checkov, repo_root / "terraform")


def test_checkov_finds_no_failed_check(report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0


def test_checkov_read_the_configuration(report: dict[str, Any]) -> None:
    assert report["summary"]["resource_count"] >= 40
    passed = {c["check_id"] for c in report["results"].get("passed_checks", [])}
    assert passed >= EXPECTED_PASSING


def test_every_skip_is_justified(report: dict[str, Any], repo_root: Path) -> None:
    for check in report["results"].get("skipped_checks", []):
        assert len(str(check.get("check_result", {}).get("suppress_comment", ""))) >= 20, check
    for path in sorted((repo_root / "terraform").rglob("*.tf")):
        for line in path.read_text(encoding="utf-8").splitlines():
            found = _SKIP.search(line)
            if found:
                reason = (found.group(2) or "").strip()
                assert len(reason) >= 20, f"{path}: a skip needs its reason: {line}"


def test_checkov_can_fail(checkov: Path, repo_copy: Callable[[], Path]) -> None:
    root = repo_copy()
    replace(
        root / "terraform/modules/build/main.tf",
        'public_access_prevention    = "enforced"',
        'public_access_prevention    = "inherited"',
    )
    broken = run_checkov(checkov, root / "terraform")
    assert "CKV_GCP_114" in {c["check_id"] for c in broken["results"]["failed_checks"]}
