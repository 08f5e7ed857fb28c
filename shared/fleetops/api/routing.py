"""A small router whose table is also the source of the OpenAPI document.

A `Route` says everything about an endpoint: method, path template, the role it
needs, its parameters (each parses what it documents), its request body and its
answers. `Api` dispatches from the table and `openapi.document` describes the
same table, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from fleetops.api.auth import Caller, Role

if TYPE_CHECKING:
    from fleetops.api.app import ApiDeps


class ApiContext(Protocol):
    """What every handler may reach: the dependencies (built on first use) and the table."""

    routes: Sequence[Route]
    dashboard_viewer_token: str | None

    def deps(self) -> ApiDeps: ...


class ApiError(Exception):
    """An answer other than success: status, a short code, and one sentence."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str, code: str = "invalid-argument") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not-found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


# ------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter: its schema, and a parser that enforces it."""

    name: str
    location: str  # path, query or header
    description: str
    schema: Mapping[str, Any]
    parse: Callable[[str], Any]
    required: bool = False
    repeated: bool = False
    default: Any = None

    def read(self, values: Sequence[str]) -> Any:
        if not values:
            if self.required:
                raise bad_request(f"parameter '{self.name}' is required")
            return [] if self.repeated else self.default
        if not self.repeated and len(values) > 1:
            raise bad_request(f"parameter '{self.name}' must be given once")
        parsed = [self._one(v) for v in values]
        return parsed if self.repeated else parsed[0]

    def _one(self, value: str) -> Any:
        try:
            return self.parse(value)
        except ValueError as exc:
            raise bad_request(f"parameter '{self.name}': {exc}") from exc

    def openapi(self) -> dict[str, Any]:
        schema = dict(self.schema)
        if self.default is not None:
            schema["default"] = self.default
        if self.repeated:
            schema = {"type": "array", "items": schema}
        described: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "description": self.description,
            "required": self.required or self.location == "path",
            "schema": schema,
        }
        if self.repeated:
            described |= {"style": "form", "explode": True}
        return described


def string_param(
    name: str,
    location: str,
    description: str,
    *,
    pattern: str | None = None,
    min_length: int = 1,
    max_length: int = 200,
    required: bool = False,
    repeated: bool = False,
) -> Param:
    compiled = re.compile(pattern) if pattern else None

    def parse(value: str) -> str:
        if not min_length <= len(value) <= max_length:
            raise ValueError(f"must be {min_length} to {max_length} characters long")
        # fullmatch: with search, Python's `$` would also accept a trailing newline.
        if compiled is not None and not compiled.fullmatch(value):
            raise ValueError(f"{value!r} does not match {pattern}")
        return value

    schema: dict[str, Any] = {"type": "string", "minLength": min_length, "maxLength": max_length}
    if pattern:
        schema["pattern"] = pattern
    return Param(name, location, description, schema, parse, required, repeated)


def enum_param(name: str, enum: type[StrEnum], description: str) -> Param:
    values = [e.value for e in enum]

    def parse(value: str) -> StrEnum:
        if value not in values:
            raise ValueError(f"{value!r} is not one of: {', '.join(values)}")
        return enum(value)

    return Param(name, "query", description, {"type": "string", "enum": values}, parse)


_INTEGER = re.compile(r"-?[0-9]{1,12}")


def int_param(name: str, description: str, *, minimum: int, maximum: int, default: int) -> Param:
    def parse(value: str) -> int:
        if not _INTEGER.fullmatch(value):
            raise ValueError(f"{value!r} is not an integer")
        number = int(value)
        if not minimum <= number <= maximum:
            raise ValueError(f"{number} is not between {minimum} and {maximum}")
        return number

    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return Param(name, "query", description, schema, parse, default=default)


def bool_param(name: str, description: str) -> Param:
    def parse(value: str) -> bool:
        if value not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")
        return value == "true"

    return Param(name, "query", description, {"type": "boolean"}, parse)


# ------------------------------------------------------------------ routes


@dataclass(frozen=True)
class Reply:
    """A successful answer: a model (JSON) or raw bytes with a content type."""

    status: int = 200
    model: BaseModel | None = None
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """What a handler gets: the caller, the parsed parameters and the raw body."""

    api: ApiContext
    caller: Caller | None
    params: Mapping[str, Any]
    body: bytes
    content_type: str

    @property
    def deps(self) -> ApiDeps:
        return self.api.deps()

    @property
    def principal(self) -> str:
        if self.caller is None:
            raise ApiError(401, "unauthenticated", "this endpoint needs a bearer token")
        return self.caller.principal


@dataclass(frozen=True)
class Answer:
    """One documented answer of a route."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    content_types: tuple[str, ...] = ("application/json",)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Callable[[Call], Reply]
    # None: public, no token needed.
    role: Role | None
    tag: str
    answers: tuple[Answer, ...]
    params: tuple[Param, ...] = ()
    # (schema, definitions) for a JSON body, given how to refer to a definition.
    body_schema: Callable[[str], tuple[dict[str, Any], dict[str, Any]]] | None = None
    description: str = ""

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.path)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        return found.groupdict() if found else None


_TEMPLATE = re.compile(r"\{(\w+)\}")
_compiled: dict[str, re.Pattern[str]] = {}


def _compile(template: str) -> re.Pattern[str]:
    found = _compiled.get(template)
    if found is None:
        parts, last = [], 0
        for m in _TEMPLATE.finditer(template):
            parts.append(re.escape(template[last : m.start()]))
            # A path parameter never spans a `/`, nor the `:verb` after it.
            parts.append(f"(?P<{m.group(1)}>[^/:]+)")
            last = m.end()
        parts.append(re.escape(template[last:]))
        found = re.compile("".join(parts))
        _compiled[template] = found
    return found


def check_table(routes: Sequence[Route]) -> None:
    """Refuse a table with two routes for one method and path, or undocumented parameters."""
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.method, route.path)
        if key in seen:
            raise ValueError(f"two routes for {route.method} {route.path}")
        seen.add(key)
        in_path = set(_TEMPLATE.findall(route.path))
        declared = {p.name for p in route.params if p.location == "path"}
        if in_path != declared:
            raise ValueError(f"{route.method} {route.path}: path parameters {sorted(in_path)}")
