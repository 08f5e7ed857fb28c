"""Which distributions a packaged function imports, found statically.

Starting from the function's own modules (main.py and its siblings), follows the
imports into the bundled `fleetops` package and maps each import from outside the
folder to the installed distribution that provides it. Imports under
`if TYPE_CHECKING:` do not count. An import inside a function counts once that
function can run (see import_closure): fleetops builds its clients lazily, so a
function needs the libraries of the clients it asks for, not of all of them. A call
made by a computed name (getattr) is not seen; the package_install test, which
installs the requirements for real, covers what this reading cannot.

A function may import only the standard library, its own folder, and what its
pinned requirements bring in (with their own dependencies).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from dataclasses import dataclass, field
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


def _from_base(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of `from X import ...`, relative imports resolved."""
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _imported_names(node: ast.AST, package: str, skipped: set[int]) -> set[str]:
    """Absolute dotted names imported under `node` (for `from a import b`: a and a.b)."""
    names: set[str] = set()
    for child in ast.walk(node):
        if id(child) in skipped:
            continue
        if isinstance(child, ast.Import):
            names.update(alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            base = _from_base(child, package)
            if base == "__future__":
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in child.names if alias.name != "*")
    return names


TOP = "<module>"


@dataclass
class Unit:
    """Module-level code, or one function or method: what it imports and refers to."""

    imports: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    attributes: set[tuple[str | None, str]] = field(default_factory=set)


@dataclass
class ModuleScan:
    units: dict[str, Unit] = field(default_factory=dict)
    functions: set[str] = field(default_factory=set)  # top-level function names
    methods: set[str] = field(default_factory=set)  # method names, any class
    aliases: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def _unit(node: ast.AST, package: str, skipped: set[int]) -> Unit:
    unit = Unit(imports=_imported_names(node, package, skipped))
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            unit.names.add(child.id)
        elif isinstance(child, ast.Attribute):
            owner = child.value.id if isinstance(child.value, ast.Name) else None
            unit.attributes.add((owner, child.attr))
    return unit


def scan_module(path: Path, module: str, is_package: bool) -> ModuleScan:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = module if is_package else module.rpartition(".")[0]
    scan = ModuleScan()
    top = Unit()
    scan.units[TOP] = top
    for statement in tree.body:
        members: list[ast.stmt] = [statement]
        if isinstance(statement, ast.ClassDef):
            members = statement.body
        for member in members:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                key = member.name if member is statement else f".{member.name}"
                (scan.functions if member is statement else scan.methods).add(member.name)
                found = _unit(member, package, skipped)
                previous = scan.units.setdefault(key, Unit())
                previous.imports |= found.imports
                previous.names |= found.names
                previous.attributes |= found.attributes
                for decorator in member.decorator_list:
                    decorated = _unit(decorator, package, skipped)
                    top.names |= decorated.names
                    top.attributes |= decorated.attributes
            else:
                found = _unit(member, package, skipped)
                top.imports |= found.imports
                top.names |= found.names
                top.attributes |= found.attributes
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                scan.aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0],
                    None,
                )
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, package)
            for alias in node.names:
                scan.aliases[alias.asname or alias.name] = (base, alias.name)
    return scan


def import_closure(folder: Path) -> tuple[set[str], set[str]]:
    """(local modules reached, external dotted names imported) from the function's own
    top-level modules.

    Module-level imports count as soon as a module is reached. An import inside a
    function counts once that function can run: it is referred to from code that can
    run (module-level code, or a function that can): by name in its own module, as
    `module.function` or `from module import function` elsewhere; a method by its
    attribute name anywhere. So a function that never asks runtime.py for the
    actuator does not need the actuator's library.
    """
    modules = local_modules(folder)
    tops = {name.split(".")[0] for name in modules}
    scans: dict[str, ModuleScan] = {}
    external: set[str] = set()
    active: set[tuple[str, str]] = set()
    # The function's own modules: everything in them can run (the entry point is
    # called by the framework, not by our code).
    pending = [
        (name, key)
        for name, path in modules.items()
        if path.parent == folder
        for key in scan_module(path, name, path.name == "__init__.py").units
    ]

    def reach(names: set[str]) -> None:
        for name in names:
            if name.split(".")[0] not in tops:
                external.add(name)
                continue
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if candidate in modules:
                    pending.append((candidate, TOP))

    def target(module: str, key: str) -> None:
        if module in modules:
            pending.append((module, key))

    while pending:
        module, key = pending.pop()
        if (module, key) in active:
            continue
        if module not in scans:
            path = modules[module]
            scans[module] = scan_module(path, module, path.name == "__init__.py")
            if key != TOP:
                pending.append((module, key))
                key = TOP
        scan = scans[module]
        unit = scan.units.get(key)
        active.add((module, key))
        if unit is None:
            continue
        reach(unit.imports)
        for name in unit.names:
            if name in scan.functions:
                target(module, name)
            alias = scan.aliases.get(name)
            if alias and alias[1] is not None:
                target(alias[0], alias[1])
                target(f"{alias[0]}.{alias[1]}", TOP)
        for owner, attribute in unit.attributes:
            alias = scan.aliases.get(owner or "")
            if alias:
                dotted = alias[0] if alias[1] is None else f"{alias[0]}.{alias[1]}"
                target(dotted, attribute)
            for other, other_scan in scans.items():
                if attribute in other_scan.methods:
                    target(other, f".{attribute}")
    return {module for module, _ in active}, external


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
