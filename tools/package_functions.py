"""Build each function's deployable source.

For every folder `functions/<name>/` with a `function.json`, writes

- `build/functions/<name>/`: the function's own files (its `main.py` and anything
  beside it, except `function.json`), a copy of the `fleetops` package from
  `shared/fleetops`, and a `requirements.txt` pinning exactly what the manifest's
  `"requirements"` list names, at the versions installed here;
- `build/functions/<name>.zip`: the same folder zipped deterministically (sorted
  entries, fixed timestamps and permissions), so equal content gives an equal hash.

Terraform (terraform/modules/function) zips and uploads `build/functions/<name>/`,
so run this (`nox -s package`) before `terraform plan`.

    python tools/package_functions.py [--out DIR] [NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MANIFEST = "function.json"
REQUIREMENTS = "requirements.txt"
# The earliest time a zip entry can carry: the same for every build.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
IGNORED = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", ".ruff_cache")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PackagingError(Exception):
    """A function cannot be packaged; the message says why."""


@dataclass(frozen=True)
class Packaged:
    name: str
    folder: Path
    archive: Path
    requirements: tuple[str, ...]
    sha256: str
    files: int


def function_folders(functions_dir: Path) -> list[Path]:
    """Folders under functions/ that have a function.json, sorted by name."""
    return sorted(p.parent for p in functions_dir.glob(f"*/{MANIFEST}"))


def load_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PackagingError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PackagingError(f"{path}: must hold a JSON object")
    return data


def pinned_requirements(names: list[str], *, where: str) -> list[str]:
    """`name==version` for each distribution, at the version installed in this environment."""
    pins = []
    for name in names:
        if not isinstance(name, str) or not _REQUIREMENT.match(name):
            raise PackagingError(f"{where}: {name!r} is not a distribution name (no versions here)")
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError as exc:
            raise PackagingError(
                f"{where}: {name} is not installed here; install the project (pip install -e .) "
                "so its version can be pinned"
            ) from exc
        pins.append(f"{name.lower()}=={version}")
    return sorted(pins)


def _ignore(directory: str, names: list[str]) -> set[str]:
    ignored = set(shutil.ignore_patterns(*IGNORED)(directory, names))
    if Path(directory).joinpath(MANIFEST).is_file():
        ignored.add(MANIFEST)
    return ignored


def write_zip(folder: Path, archive: Path) -> str:
    """Zip `folder` deterministically into `archive`; returns the archive's sha256."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so that the mode below is read
            info.external_attr = ZIP_FILE_MODE << 16
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    tmp.replace(archive)
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def package_function(folder: Path, shared_package: Path, out_dir: Path) -> Packaged:
    name = folder.name
    if not _NAME.match(name):
        raise PackagingError(
            f"{folder}: a function's folder name is 2 to 16 of a-z, 0-9 and dashes, "
            "starting with a letter (it names its service accounts)"
        )
    if not (folder / "main.py").is_file():
        raise PackagingError(f"{folder}: has a {MANIFEST} but no main.py")
    manifest = load_manifest(folder)
    wanted = manifest.get("requirements")
    if not isinstance(wanted, list) or not wanted:
        raise PackagingError(
            f'{folder / MANIFEST}: needs a "requirements" list of the distributions it '
            'imports, e.g. ["functions-framework", "google-cloud-firestore"]'
        )
    pins = pinned_requirements(wanted, where=str(folder / MANIFEST))

    target = out_dir / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target, ignore=_ignore)
    shutil.copytree(shared_package, target / "fleetops", ignore=shutil.ignore_patterns(*IGNORED))
    (target / REQUIREMENTS).write_text(
        "# Pinned by tools/package_functions.py from the function's manifest.\n"
        + "".join(f"{pin}\n" for pin in pins),
        encoding="utf-8",
    )
    archive = out_dir / f"{name}.zip"
    digest = write_zip(target, archive)
    files = sum(1 for p in target.rglob("*") if p.is_file())
    return Packaged(name, target, archive, tuple(pins), digest, files)


def package_all(
    repo: Path = REPO, out_dir: Path | None = None, names: list[str] | None = None
) -> list[Packaged]:
    functions_dir = repo / "functions"
    shared_package = repo / "shared" / "fleetops"
    out_dir = out_dir or repo / "build" / "functions"
    if not shared_package.joinpath("__init__.py").is_file():
        raise PackagingError(f"{shared_package} is not the fleetops package")
    folders = function_folders(functions_dir)
    known = {f.name for f in folders}
    if names:
        unknown = sorted(set(names) - known)
        if unknown:
            raise PackagingError(f"no functions/<name>/{MANIFEST} for: {', '.join(unknown)}")
        folders = [f for f in folders if f.name in names]
    elif out_dir.exists():
        # A full build leaves nothing of functions that no longer exist.
        shutil.rmtree(out_dir)
    if not folders:
        raise PackagingError(f"no functions/<name>/{MANIFEST} under {functions_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [package_function(folder, shared_package, out_dir) for folder in folders]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="functions to package (default: all)")
    parser.add_argument("--repo", type=Path, default=REPO, help="the repository root")
    parser.add_argument("--out", type=Path, help="output folder (default: REPO/build/functions)")
    args = parser.parse_args(argv)
    try:
        packaged = package_all(args.repo, args.out, args.names or None)
    except PackagingError as exc:
        print(f"package_functions: {exc}", file=sys.stderr)
        return 1
    for item in packaged:
        print(
            f"{item.name}: {item.archive} ({item.files} files, sha256 {item.sha256[:16]}...) "
            f"requires {', '.join(item.requirements)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
