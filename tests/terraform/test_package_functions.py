"""tools/package_functions.py: what it builds is what Terraform uploads, reproducibly,
with pinned requirements that cover every import.

The fast tests run by default. Tests marked package_install create a virtualenv per
function, install its requirements.txt from PyPI and load the entry point from the
unzipped archive alone (nox -s package).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from tests.terraform import pkgcheck, tfcheck

REPO = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "package_functions", REPO / "tools" / "package_functions.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
FUNCTIONS = sorted(tfcheck.function_manifests(REPO))


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("package") / "functions"
    return {item.name: item for item in tool.package_all(REPO, out)}


def test_every_function_is_packaged(packaged: dict[str, object]) -> None:
    assert sorted(packaged) == FUNCTIONS


@pytest.mark.parametrize("name", FUNCTIONS)
def test_package_layout(packaged: dict[str, object], name: str) -> None:
    item = packaged[name]
    folder = item.folder
    assert (folder / "main.py").read_bytes() == (REPO / "functions" / name / "main.py").read_bytes()
    assert not (folder / "function.json").exists()
    assert (folder / "fleetops" / "__init__.py").is_file()
    assert (folder / "fleetops" / "contract" / "names.py").read_bytes() == (
        REPO / "shared/fleetops/contract/names.py"
    ).read_bytes()
    assert not list(folder.rglob("__pycache__"))
    with zipfile.ZipFile(item.archive) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert set(names) == {
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
        }
        assert {i.date_time for i in archive.infolist()} == {tool.ZIP_DATE_TIME}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_requirements_are_pinned_to_the_installed_versions(
    packaged: dict[str, object], name: str
) -> None:
    manifest = tfcheck.function_manifests(REPO)[name]
    lines = [
        line
        for line in (packaged[name].folder / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    pins = dict(line.split("==") for line in lines)
    assert sorted(pins) == sorted(n.lower() for n in manifest["requirements"])
    for distribution, version in pins.items():
        assert metadata.version(distribution) == version


@pytest.mark.parametrize("name", FUNCTIONS)
def test_imports_are_covered_by_the_requirements(packaged: dict[str, object], name: str) -> None:
    manifest = tfcheck.function_manifests(REPO)[name]
    assert pkgcheck.unmet_imports(packaged[name].folder, manifest["requirements"]) == []


def test_import_check_can_fail(packaged: dict[str, object]) -> None:
    folder = packaged[FUNCTIONS[0]].folder
    problems = pkgcheck.unmet_imports(folder, ["pydantic"])
    assert any("functions_framework" in p for p in problems), problems


def test_packaging_is_reproducible(tmp_path: Path) -> None:
    first = {item.name: item.sha256 for item in tool.package_all(REPO, tmp_path / "first")}
    second = {item.name: item.sha256 for item in tool.package_all(REPO, tmp_path / "second")}
    assert first == second


def test_terraform_uploads_the_packaged_folder() -> None:
    """modules/function zips build/functions/<name>, where the tool writes by default."""
    example = tfcheck.load_module(REPO / tfcheck.EXAMPLE_ROOT)
    call = example.modules["function"]
    source_dir = tfcheck.resolve_path(example, call["source_dir"].replace("${each.key}", "NAME"))
    assert source_dir is not None
    default_out = REPO / "build" / "functions"
    assert Path(source_dir).resolve() == (default_out / "NAME").resolve()
    module = tfcheck.load_module(REPO / "terraform/modules/function")
    archive = module.data[("archive_file", "source")]
    assert archive["source_dir"] == "${var.source_dir}"
    assert "output_md5" in module.resources[("google_storage_bucket_object", "source")]["name"]


def test_packaging_refuses_a_manifest_without_requirements(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "functions" / "demo").mkdir(parents=True)
    (repo / "shared" / "fleetops").mkdir(parents=True)
    (repo / "shared" / "fleetops" / "__init__.py").write_text("")
    (repo / "functions" / "demo" / "main.py").write_text("def demo(request):\n    return 'ok'\n")
    manifest = {"entry_point": "demo", "signature": "http", "roles": []}
    (repo / "functions" / "demo" / "function.json").write_text(json.dumps(manifest))
    with pytest.raises(tool.PackagingError, match="requirements"):
        tool.package_all(repo, tmp_path / "out")
    manifest["requirements"] = ["no-such-distribution-here"]
    (repo / "functions" / "demo" / "function.json").write_text(json.dumps(manifest))
    with pytest.raises(tool.PackagingError, match="not installed"):
        tool.package_all(repo, tmp_path / "out")


# ------------------------------------------------------------------ slow: real install


@pytest.mark.package_install
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_entry_point_loads_from_the_archive_alone(
    packaged: dict[str, object], name: str, tmp_path: Path
) -> None:
    """A fresh venv with only requirements.txt, the unzipped archive as the only path:
    functions-framework loads the target, and every bundled module it reaches imports."""
    manifest = tfcheck.function_manifests(REPO)[name]
    source = tmp_path / "source"
    with zipfile.ZipFile(packaged[name].archive) as archive:
        archive.extractall(source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(source / "requirements.txt")],
        check=True,
        timeout=800,
    )
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": str(source),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp_path),
    }
    loader = (
        "import sys, functions_framework\n"
        "from functions_framework import _function_registry as registry\n"
        "target, signature = sys.argv[1:]\n"
        "app = functions_framework.create_app(target, 'main.py', signature)\n"
        "found = registry.get_func_signature_type(target, None)\n"
        "assert found == signature, (found, signature)\n"
    )
    subprocess.run(
        [str(python), "-c", loader, manifest["entry_point"], manifest["signature"]],
        cwd=source,
        env=env,
        check=True,
        timeout=120,
    )
    reached, _ = pkgcheck.import_closure(source)
    script = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    subprocess.run(
        [str(python), "-c", script, *sorted(reached)],
        cwd=source,
        env=env,
        check=True,
        timeout=120,
    )


def test_lazy_imports_count_only_when_their_function_can_run(tmp_path: Path) -> None:
    folder = tmp_path / "fn"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "clients.py").write_text(
        "def store():\n    import google.cloud.firestore\n\n\n"
        "def compute():\n    from google.cloud import compute_v1\n"
    )
    (folder / "main.py").write_text(
        "from pkg import clients\n\n\ndef entry():\n    clients.store()\n"
    )
    _, external = pkgcheck.import_closure(folder)
    assert "google.cloud.firestore" in external
    assert not any("compute" in name for name in external)
    (folder / "main.py").write_text(
        "from pkg.clients import compute\n\n\ndef entry():\n    compute()\n"
    )
    _, external = pkgcheck.import_closure(folder)
    assert "google.cloud.compute_v1" in external
