"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fleetops.api.routing import Answer, Route

REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearer"
VERSION = "1.0.0"

DESCRIPTION = """\
Read the fleet, request operations, approve and cancel them, replay dead letters, roll
changes out in waves, and steer automation and maintenance.

Every endpoint under /v1 except this document needs `Authorization: Bearer <token>`:
on the local stack, a token from the file `fleetops up` writes (FLEETOPS_API_TOKENS_FILE);
on Google Cloud, a Google identity token for the API's audience. Roles: `viewer` reads;
`operator` also requests, cancels, replays, starts and steers rollouts, pauses automation
and resets remediation; `admin` also approves, resumes automation, changes its limits and
steers maintenance.

Errors are `{"error": {"code": ..., "message": ...}}`, the message one sentence naming
the field or the reason.
"""


def _merge(into: dict[str, Any], definitions: dict[str, Any]) -> None:
    for name, schema in definitions.items():
        if name in into and into[name] != schema:
            raise ValueError(f"two different schemas are both called {name}")
        into[name] = schema


def _content(answer: Answer) -> dict[str, Any]:
    if answer.model is not None:
        schema: dict[str, Any] = {"$ref": REF.format(model=answer.model.__name__)}
    elif answer.content_types == ("application/json",):
        schema = {"type": "object"}
    else:
        schema = {"type": "string"}
    return {content_type: {"schema": schema} for content_type in answer.content_types}


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    role = f"Needs the role `{route.role.value}`." if route.role else "Public: no token needed."
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": " ".join(part for part in (route.description, role) if part),
        "tags": [route.tag],
        "responses": {},
    }
    if route.role is not None:
        operation["x-fleetops-role"] = route.role.value
    if route.params:
        operation["parameters"] = [p.openapi() for p in route.params]
    if route.body_schema is not None:
        body, definitions = route.body_schema(REF)
        _merge(schemas, definitions)
        name = str(body.get("title") or f"{route.operation_id}Body")
        _merge(schemas, {name: body})
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}},
        }
    for answer in route.answers:
        described: dict[str, Any] = {"description": answer.description}
        described["content"] = _content(answer)
        if answer.headers:
            described["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in answer.headers.items()
            }
        operation["responses"][str(answer.status)] = described
    operation["security"] = [{SECURITY_SCHEME: []}] if route.role else []
    return operation


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """Every route of the table, with every model its answers and bodies use."""
    used: list[type[BaseModel]] = []
    for route in routes:
        for answer in route.answers:
            if answer.model is not None and answer.model not in used:
                used.append(answer.model)
    _, top = models_json_schema([(m, "serialization") for m in used], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetops API",
            "version": VERSION,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(r.tag for r in routes)],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "a local token (FLEETOPS_API_TOKENS_FILE) or a Google identity token"
                    ),
                }
            },
        },
    }
