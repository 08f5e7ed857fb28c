"""Which distributions a packaged function imports, found statically.

Starting from the function's own modules (main.py and its siblings), follows every
import into the bundled `fleetops` package, including imports made lazily inside
functions and excluding those under `if TYPE_CHECKING:`, and maps each import from
outside the folder to the installed distribution that provides it. A function may
import only the standard library, its own folder, and what its pinned requirements
bring in (with their own dependencies).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def local_modules(folder: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py in the packaged folder."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports_of(path: Path, module: str, is_package: bool) -> set[str]:
    """Absolute dotted names a module imports (for `from a import b`: a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_closure(folder: Path) -> tuple[set[str], set[str]]:
    """(local modules reached, external dotted names imported) from the function's own
    top-level modules."""
    modules = local_modules(folder)
    tops = {name.split(".")[0] for name in modules}
    start = [name for name, path in modules.items() if path.parent == folder]
    seen: set[str] = set()
    external: set[str] = set()
    queue = list(start)
    while queue:
        current = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        path = modules[current]
        for name in imports_of(path, current, path.name == "__init__.py"):
            if name.split(".")[0] not in tops:
                external.add(name)
                continue
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if candidate in modules and candidate not in seen:
                    queue.append(candidate)
    return seen, external


@functools.cache
def module_providers() -> dict[str, str]:
    """Dotted module or package -> normalized distribution name, for everything installed."""
    providers: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if not name:
            continue
        for file in dist.files or ():
            parts = list(Path(str(file)).parts)
            if (
                not parts
                or parts[0].endswith((".dist-info", ".egg-info", ".data"))
                or parts[0] == ".."
            ):
                continue
            last = parts[-1]
            if last.endswith(".py"):
                parts[-1] = last[:-3]
            elif ".cpython-" in last or last.endswith((".so", ".pyd")):
                parts[-1] = last.split(".")[0]
            else:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            dotted = ".".join(parts)
            if dotted and all(p.isidentifier() for p in parts):
                providers.setdefault(dotted, normalize(name))
    return providers


def provider_of(dotted: str) -> str | None:
    providers = module_providers()
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        found = providers.get(".".join(parts[:end]))
        if found:
            return found
    return None


def requirement_closure(names: list[str]) -> set[str]:
    """The distributions the requirements bring, with their dependencies (extras off)."""
    environment = default_environment()
    found: set[str] = set()
    queue = [normalize(n) for n in names]
    while queue:
        name = queue.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker and not requirement.marker.evaluate({**environment, "extra": ""}):
                continue
            queue.append(normalize(requirement.name))
    return found


def unmet_imports(folder: Path, requirements: list[str]) -> list[str]:
    """Problems: imports neither stdlib, nor local, nor from the requirement closure."""
    _, external = import_closure(folder)
    allowed = requirement_closure(requirements)
    problems = []
    for name in sorted(external):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        provider = provider_of(name)
        if provider is None:
            # `from a import b` also lists a.b, which may be a name rather than a module.
            parent = name.rpartition(".")[0]
            if parent and parent in external and provider_of(parent) is not None:
                continue
            # A namespace package (google.cloud): its submodules are checked themselves.
            if any(key.startswith(f"{name}.") for key in module_providers()):
                continue
            problems.append(f"{name}: no installed distribution provides it")
        elif provider not in allowed:
            problems.append(f"{name}: from {provider}, which its requirements do not bring")
    return problems
