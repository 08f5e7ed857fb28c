"""The endpoints of /v1 and the route table that dispatches to them.

`core_routes()` is the table of instances, requests, operations and dead letters;
`fleetops.api.control_handlers.control_routes()` adds rollouts, automation and
maintenance beside it, and `default_routes()` concatenates them; the OpenAPI
document follows.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import uuid
from importlib import resources
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fleetops.api import models
from fleetops.api.auth import Role
from fleetops.api.routing import (
    Answer,
    ApiError,
    Call,
    Param,
    Reply,
    Route,
    bad_request,
    bool_param,
    conflict,
    enum_param,
    int_param,
    not_found,
    string_param,
)
from fleetops.contract.errors import PermanentError
from fleetops.contract.names import TOPIC_REQUESTS
from fleetops.contract.pubsub import encode_binary
from fleetops.contract.requests import (
    INSTANCE_ID_PATTERN,
    InstanceRequested,
    describe_validation_error,
    new_request_event,
    parse_request,
)
from fleetops.domain.decisions import DecisionError
from fleetops.domain.model import Health, Instance, InstanceState, OperationStatus
from fleetops.services.control import ControlDeps, approve_operation, cancel_operation
from fleetops.services.dead_letter_store import (
    DeadLetterNotFound,
    ReplayRefused,
    list_dead_letters,
    replay_dead_letter,
)
from fleetops.services.requests import operation_id_for

SOURCE_PREFIX = "//fleetops/api/"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
LABEL_PATTERN = r"^[^:]{1,63}:.{0,63}$"
IDEMPOTENCY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
RECENT_OPERATIONS = 10
RECENT_HISTORY = 50

logger = logging.getLogger("fleetops.api")

M = TypeVar("M", bound=BaseModel)


def json_reply(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, model=model, headers=headers or {})


def json_object(call: Call) -> dict[str, Any]:
    """The body as a JSON object: 415 for another media type, 400 when it is not one."""
    if call.content_type != "application/json":
        raise ApiError(415, "unsupported-media-type", "the body must be application/json")
    try:
        data = json.loads(call.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", "malformed-json") from exc
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object", "invalid-request")
    return data


def read_body(call: Call, model: type[M]) -> M:
    """The body as `model`, strictly (what the document says and no more); 400 names the field."""
    json_object(call)
    try:
        return model.model_validate_json(call.body, strict=True)
    except ValidationError as exc:
        raise bad_request(describe_validation_error(exc), "invalid-request") from exc


# ------------------------------------------------------------------ instances


def list_instances(call: Call) -> Reply:
    p = call.params
    state: InstanceState | None = p["state"]
    health: Health | None = p["health"]
    labels = [_label(v) for v in p["label"]]
    text: str | None = p["q"]
    found = call.deps.store.list_instances(include_deleted=state is InstanceState.DELETED)
    chosen = [
        i
        for i in found
        if (state is None or i.state is state)
        and (health is None or i.health is health)
        and all(i.labels.get(k) == v for k, v in labels)
        and (text is None or _mentions(i, text))
    ]
    return json_reply(
        models.InstanceList(instances=[models.InstanceOut.from_domain(i) for i in chosen])
    )


def _mentions(instance: Instance, text: str) -> bool:
    needle = text.lower()
    fields = [
        instance.id,
        instance.customer,
        instance.region,
        instance.version,
        instance.endpoint,
        *(f"{k}:{v}" for k, v in instance.labels.items()),
    ]
    return any(needle in f.lower() for f in fields if f)


def _label(value: str) -> tuple[str, str]:
    key, _, label = value.partition(":")
    return key, label


def get_instance(call: Call) -> Reply:
    instance_id: str = call.params["id"]
    store = call.deps.store
    instance = store.get_instance(instance_id)
    if instance is None:
        raise not_found(f"instance {instance_id} does not exist")
    ops = store.list_operations(instance=instance_id, limit=RECENT_OPERATIONS)
    history = store.instance_history(instance_id, limit=RECENT_HISTORY)
    return json_reply(
        models.InstanceDetail(
            instance=models.InstanceOut.from_domain(instance),
            operations=[models.OperationOut.from_domain(o) for o in ops],
            history=[models.HistoryOut.from_domain(h) for h in history],
        )
    )


# ------------------------------------------------------------------ requests


def submit_request(call: Call) -> Reply:
    data = json_object(call)
    for name in models.SET_BY_THE_API:
        if name in data:
            raise bad_request(
                f"field '{name}' is set by the API to the authenticated caller and cannot be given",
                "invalid-request",
            )
    principal = call.principal
    data["requested_by"] = principal
    source = SOURCE_PREFIX + principal
    key: str | None = call.params["Idempotency-Key"]
    event = new_request_event(data, source=source, event_id=_event_id(key, data))
    try:
        # parse_request names an unknown action best, but reads only a string there.
        if isinstance(data.get("action"), str):
            parse_request(event)
        # Strict: the document says `dry_run` is a boolean, so "true" is refused here
        # although the requests function would read it as true.
        InstanceRequested.model_validate_json(json.dumps(data), strict=True)
    except PermanentError as exc:
        raise bad_request(exc.reason, exc.code) from exc
    except ValidationError as exc:
        raise bad_request(describe_validation_error(exc), "invalid-request") from exc
    stricter = models.stricter_than_the_contract(data)
    if stricter is not None:
        raise bad_request(stricter, "invalid-request")
    body, attributes = encode_binary(event)
    try:
        call.deps.publisher.publish(TOPIC_REQUESTS, body, attributes)
    except Exception as exc:
        logger.exception("publishing a request to %s failed", TOPIC_REQUESTS)
        raise ApiError(
            503,
            "unavailable",
            f"the request could not be published to {TOPIC_REQUESTS}; try again",
            {"Retry-After": "2"},
        ) from exc
    op_id = operation_id_for(source, event.id)
    href = f"/v1/operations/{op_id}"
    logger.info(
        "published a request for %s on behalf of %s",
        data.get("instance"),
        principal,
        extra={"operation": op_id, "instance": data.get("instance"), "topic": TOPIC_REQUESTS},
    )
    return json_reply(models.Accepted(operation=op_id, href=href), 202, {"Location": href})


def _event_id(key: str | None, data: dict[str, Any]) -> str:
    """A retried request with the same Idempotency-Key and body names the same operation."""
    if key is None:
        return str(uuid.uuid4())
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "idem-" + hashlib.sha256(f"{key}\n{canonical}".encode()).hexdigest()[:32]


# ------------------------------------------------------------------ operations


def list_operations(call: Call) -> Reply:
    p = call.params
    found = call.deps.store.list_operations(
        instance=p["instance"], status=p["status"], limit=p["limit"]
    )
    return json_reply(
        models.OperationList(operations=[models.OperationOut.from_domain(o) for o in found])
    )


def get_operation(call: Call) -> Reply:
    op_id: str = call.params["id"]
    op = call.deps.store.get_operation(op_id)
    if op is None:
        raise not_found(f"operation {op_id} does not exist")
    return json_reply(models.OperationOut.from_domain(op))


def _control(call: Call) -> ControlDeps:
    return ControlDeps(call.deps.store, call.deps.publisher, call.deps.now)


def approve(call: Call) -> Reply:
    op_id: str = call.params["id"]
    if call.deps.store.get_operation(op_id) is None:
        raise not_found(f"operation {op_id} does not exist")
    try:
        op = approve_operation(op_id, call.principal, _control(call))
    except DecisionError as exc:
        raise conflict(str(exc)) from exc
    logger.info("%s approved %s", call.principal, op_id, extra={"operation": op_id})
    return json_reply(models.OperationOut.from_domain(op))


def cancel(call: Call) -> Reply:
    op_id: str = call.params["id"]
    if call.deps.store.get_operation(op_id) is None:
        raise not_found(f"operation {op_id} does not exist")
    try:
        op = cancel_operation(op_id, call.principal, _control(call))
    except DecisionError as exc:
        raise conflict(str(exc)) from exc
    logger.info("%s cancelled %s", call.principal, op_id, extra={"operation": op_id})
    return json_reply(models.OperationOut.from_domain(op))


# ------------------------------------------------------------------ dead letters


def dead_letters(call: Call) -> Reply:
    found = list_dead_letters(
        call.deps.dead_letters, limit=call.params["limit"], replayed=call.params["replayed"]
    )
    return json_reply(
        models.DeadLetterList(dead_letters=[models.DeadLetterOut.from_domain(d) for d in found])
    )


def dead_letter(call: Call) -> Reply:
    letter_id: str = call.params["id"]
    letter = call.deps.dead_letters.get(letter_id)
    if letter is None:
        raise not_found(f"dead letter {letter_id} does not exist")
    return json_reply(models.DeadLetterOut.from_domain(letter))


def replay(call: Call) -> Reply:
    letter_id: str = call.params["id"]
    deps = call.deps
    try:
        letter = replay_dead_letter(
            letter_id, call.principal, deps.dead_letters, deps.publisher, deps.now
        )
    except DeadLetterNotFound as exc:
        raise not_found(str(exc)) from exc
    except ReplayRefused as exc:
        raise conflict(str(exc)) from exc
    except Exception as exc:
        logger.exception("replaying dead letter %s failed", letter_id)
        raise ApiError(
            503, "unavailable", f"dead letter {letter_id} could not be replayed now; try again"
        ) from exc
    logger.info(
        "%s replayed dead letter %s to %s",
        call.principal,
        letter_id,
        letter.original_topic,
        extra={"topic": letter.original_topic},
    )
    return json_reply(models.DeadLetterOut.from_domain(letter))


# ------------------------------------------------------------------ the caller, the page


def whoami(call: Call) -> Reply:
    caller = call.caller
    if caller is None:
        raise ApiError(401, "unauthenticated", "this endpoint needs a bearer token")
    return json_reply(models.CallerOut(principal=caller.principal, role=caller.role))


def _static(name: str) -> bytes:
    return resources.files("fleetops.api").joinpath("static", name).read_bytes()


def dashboard(call: Call) -> Reply:
    page = _static("index.html")
    token = call.api.dashboard_viewer_token
    # Only for a local stack: anyone who can load the page can read with this token.
    meta = f'<meta name="fleetops-viewer-token" content="{_attribute(token)}">' if token else ""
    page = page.replace(b"<!--fleetops-viewer-token-->", meta.encode())
    return Reply(body=page, content_type="text/html; charset=utf-8")


def _attribute(value: str) -> str:
    return html.escape(value, quote=True)


def asset(call: Call) -> Reply:
    name: str = call.params["name"]
    return Reply(body=_static(name), content_type=f"{ASSETS[name]}; charset=utf-8")


# ------------------------------------------------------------------ the table

_ERRORS = {
    400: "a parameter or the body is invalid; the message names it",
    401: "no bearer token, or one that is not valid",
    403: "the caller's role is not enough",
    404: "no such resource",
    409: "the resource is not in a state that allows this; the message says why",
    415: "the body is not application/json",
    503: "a backing service is out of reach for now; try again",
}


def error_answers(*statuses: int) -> tuple[Answer, ...]:
    return tuple(Answer(s, _ERRORS[s], models.ErrorBody) for s in statuses)


def path_id(name: str, what: str, pattern: str = ID_PATTERN, max_length: int = 128) -> Param:
    return string_param(name, "path", what, pattern=pattern, max_length=max_length, required=True)


def _asset_param() -> Param:
    names = sorted(ASSETS)

    def parse(value: str) -> str:
        if value not in ASSETS:
            raise ValueError(f"{value!r} is not one of: {', '.join(names)}")
        return value

    return Param(
        "name", "path", "a file of the dashboard", {"type": "string", "enum": names}, parse
    )


def core_routes() -> list[Route]:
    instance_id = path_id("id", "instance id", INSTANCE_ID_PATTERN, 40)
    op_id = path_id("id", "operation id")
    letter_id = path_id("id", "dead letter id")
    read = error_answers(400, 401, 403)
    return [
        Route(
            "GET",
            "/v1/instances",
            "listInstances",
            "The fleet's instances, filtered",
            list_instances,
            Role.VIEWER,
            "instances",
            (Answer(200, "the instances, by id", models.InstanceList), *read),
            (
                enum_param("state", InstanceState, "only instances in this state"),
                enum_param("health", Health, "only instances of this health"),
                string_param(
                    "label",
                    "query",
                    "only instances with this label, as key:value; repeat for all of several",
                    pattern=LABEL_PATTERN,
                    max_length=127,
                    repeated=True,
                ),
                string_param(
                    "q",
                    "query",
                    "only instances whose id, customer, region, version, "
                    "endpoint or labels contain this text (any case)",
                    max_length=200,
                ),
            ),
            description="Deleted instances are left out unless state=deleted is asked for.",
        ),
        Route(
            "GET",
            "/v1/instances/{id}",
            "getInstance",
            "One instance, its recent operations and its history",
            get_instance,
            Role.VIEWER,
            "instances",
            (Answer(200, "the instance", models.InstanceDetail), *read, *error_answers(404)),
            (instance_id,),
        ),
        Route(
            "POST",
            "/v1/requests",
            "submitRequest",
            "Request an operation: publishes fleetops.instance.requested for the caller",
            submit_request,
            Role.OPERATOR,
            "requests",
            (
                Answer(
                    202,
                    "published; the operation will be recorded under this id",
                    models.Accepted,
                    headers={"Location": "the operation's href"},
                ),
                *read,
                *error_answers(415, 503),
            ),
            (
                string_param(
                    "Idempotency-Key",
                    "header",
                    "retrying with the same key and the same body names the same operation",
                    pattern=IDEMPOTENCY_PATTERN,
                    max_length=128,
                ),
            ),
            body_schema=models.request_body_schema,
            description=(
                "The event's source is //fleetops/api/<caller> and requested_by is the "
                "caller. A valid request that cannot be carried out is still accepted: "
                "its operation ends rejected, with the reason."
            ),
        ),
        Route(
            "GET",
            "/v1/operations",
            "listOperations",
            "Operations, newest first",
            list_operations,
            Role.VIEWER,
            "operations",
            (Answer(200, "the operations", models.OperationList), *read),
            (
                string_param(
                    "instance",
                    "query",
                    "only this instance's",
                    pattern=INSTANCE_ID_PATTERN,
                    min_length=3,
                    max_length=40,
                ),
                enum_param("status", OperationStatus, "only operations with this status"),
                int_param("limit", "at most this many", minimum=1, maximum=500, default=50),
            ),
        ),
        Route(
            "GET",
            "/v1/operations/{id}",
            "getOperation",
            "One operation: its steps, attempts, timings and history",
            get_operation,
            Role.VIEWER,
            "operations",
            (Answer(200, "the operation", models.OperationOut), *read, *error_answers(404)),
            (op_id,),
        ),
        Route(
            "POST",
            "/v1/operations/{id}:approve",
            "approveOperation",
            "Approve an operation awaiting approval (not by its requester)",
            approve,
            Role.ADMIN,
            "operations",
            (
                Answer(200, "approved: queued or running now", models.OperationOut),
                *read,
                *error_answers(404, 409),
            ),
            (op_id,),
        ),
        Route(
            "POST",
            "/v1/operations/{id}:cancel",
            "cancelOperation",
            "Cancel: at once if not started, else at the next step boundary with rollback",
            cancel,
            Role.OPERATOR,
            "operations",
            (
                Answer(200, "cancelled, or cancel requested", models.OperationOut),
                *read,
                *error_answers(404, 409),
            ),
            (op_id,),
        ),
        Route(
            "GET",
            "/v1/dead-letters",
            "listDeadLetters",
            "Messages that reached fleetops-dead-letter, newest first",
            dead_letters,
            Role.VIEWER,
            "dead-letters",
            (Answer(200, "the dead letters", models.DeadLetterList), *read),
            (
                int_param("limit", "at most this many", minimum=1, maximum=500, default=50),
                bool_param("replayed", "only those replayed (true) or not yet (false)"),
            ),
        ),
        Route(
            "GET",
            "/v1/dead-letters/{id}",
            "getDeadLetter",
            "One dead letter, with its data and attributes",
            dead_letter,
            Role.VIEWER,
            "dead-letters",
            (Answer(200, "the dead letter", models.DeadLetterOut), *read, *error_answers(404)),
            (letter_id,),
        ),
        Route(
            "POST",
            "/v1/dead-letters/{id}:replay",
            "replayDeadLetter",
            "Publish the original message again to its topic, once",
            replay,
            Role.OPERATOR,
            "dead-letters",
            (
                Answer(200, "replayed", models.DeadLetterOut),
                *read,
                *error_answers(404, 409, 503),
            ),
            (letter_id,),
            description=(
                "Republishes the original data and attributes, without the fleetops-* and "
                "CloudPubSubDeadLetter* attributes dead-lettering added. A letter is "
                "replayed at most once."
            ),
        ),
        Route(
            "GET",
            "/v1/me",
            "whoAmI",
            "Who the token belongs to, and their role",
            whoami,
            Role.VIEWER,
            "caller",
            (Answer(200, "the caller", models.CallerOut), *error_answers(401, 403)),
        ),
        Route(
            "GET",
            "/v1/openapi.json",
            "openApi",
            "This document",
            _openapi,
            None,
            "meta",
            (Answer(200, "the OpenAPI 3.1 document"),),
        ),
        Route(
            "GET",
            "/",
            "dashboard",
            "The dashboard (its data calls need a token)",
            dashboard,
            None,
            "dashboard",
            (Answer(200, "the page", content_types=("text/html",)),),
        ),
        Route(
            "GET",
            "/assets/{name}",
            "dashboardAsset",
            "The dashboard's stylesheet and script",
            asset,
            None,
            "dashboard",
            (
                Answer(200, "the file", content_types=tuple(sorted(set(ASSETS.values())))),
                *error_answers(400, 404),
            ),
            (_asset_param(),),
        ),
    ]


def _openapi(call: Call) -> Reply:
    from fleetops.api.openapi import document

    return Reply(body=json.dumps(document(call.api.routes), indent=1).encode())


def default_routes() -> list[Route]:
    # Imported here: the control table builds on this module's helpers.
    from fleetops.api.control_handlers import control_routes

    return core_routes() + control_routes()
