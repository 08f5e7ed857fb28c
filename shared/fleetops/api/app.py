"""The API as a WSGI application: authenticate, check the role, parse, dispatch, answer JSON.

`Api.handle` takes a werkzeug request (functions-framework passes Flask's) and
returns a response; `Api` itself is a WSGI app, which is how tests drive it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from fleetops import log
from fleetops.api import models
from fleetops.api.auth import (
    AuthConfigurationError,
    Authenticator,
    AuthUnavailable,
    Caller,
    Role,
    authenticator_from_env,
    bearer_token,
)
from fleetops.api.handlers import default_routes
from fleetops.api.routing import ApiError, Call, Reply, Route, check_table
from fleetops.ports import Publisher, SchedulerJobs, StateStore
from fleetops.services.dead_letter_store import DeadLetterStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("fleetops.api")


@dataclass(frozen=True)
class ApiDeps:
    store: StateStore
    publisher: Publisher
    dead_letters: DeadLetterStore
    now: Callable[[], datetime]
    # The maintenance tick's scheduler jobs; None where the API cannot reach a scheduler.
    jobs: SchedulerJobs | None = None


class _Options(Exception):
    """An OPTIONS request: answered with the methods the path allows."""

    def __init__(self, allow: str) -> None:
        super().__init__(allow)
        self.allow = allow


class _Once:
    """A value built on first use, once, even with concurrent requests."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: Any = None
        self._built = False

    def get(self) -> Any:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._value = self._build()
                    self._built = True
        return self._value


class Api:
    def __init__(
        self,
        deps: Callable[[], ApiDeps],
        authenticator: Callable[[], Authenticator],
        *,
        routes: Sequence[Route] | None = None,
        dashboard_viewer_token: str | None = None,
    ) -> None:
        self.routes: Sequence[Route] = list(routes if routes is not None else default_routes())
        check_table(self.routes)
        self.dashboard_viewer_token = dashboard_viewer_token
        self._deps = _Once(deps)
        self._authenticator = _Once(authenticator)

    def deps(self) -> ApiDeps:
        built: ApiDeps = self._deps.get()
        return built

    # ---------------------------------------------------------------- WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        began = time.monotonic()
        caller: Caller | None = None
        try:
            route, path_params = self._route(request.method, request.path)
            if route.role is not None:
                caller = self._authenticate(request)
                self._check_role(route.role, route, caller)
            params = self._params(route, request, path_params)
            mimetype = request.mimetype or ""
            reply = route.handler(Call(self, caller, params, request.get_data(), mimetype))
            response = _response(reply)
        except _Options as options:
            response = Response(b"", status=204, headers={"Allow": options.allow})
        except ApiError as error:
            response = _error(error)
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            response = _error(ApiError(500, "internal", "the API failed; see its logs"))
        if request.method == "HEAD":
            response.set_data(b"")
        log.configure()
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        # The path only: never the query string or headers, where a token could be.
        logger.log(
            level,
            "%s %s %d %s %.0fms",
            request.method,
            request.path,
            response.status_code,
            caller.principal if caller else "-",
            (time.monotonic() - began) * 1000,
        )
        return response

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        matching = [(r, m) for r in self.routes if (m := r.match(path)) is not None]
        if not matching:
            raise ApiError(404, "not-found", f"there is no endpoint at {path}")
        wanted = "GET" if method == "HEAD" else method
        for route, params in matching:
            if route.method == wanted:
                return route, params
        allowed = {r.method for r, _ in matching} | {"OPTIONS"}
        if "GET" in allowed:
            allowed.add("HEAD")
        if method == "OPTIONS":
            raise _Options(", ".join(sorted(allowed)))
        raise ApiError(
            405,
            "method-not-allowed",
            f"{path} answers {', '.join(sorted(allowed))}, not {method}",
            {"Allow": ", ".join(sorted(allowed))},
        )

    def _authenticate(self, request: Request) -> Caller:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise ApiError(
                401,
                "unauthenticated",
                "this endpoint needs an Authorization: Bearer <token> header",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            authenticator: Authenticator = self._authenticator.get()
            caller = authenticator.authenticate(token)
        except AuthConfigurationError as exc:
            logger.error("authentication is not configured: %s", exc)
            raise ApiError(503, "auth-not-configured", str(exc)) from exc
        except AuthUnavailable as exc:
            logger.warning("%s", exc)
            raise ApiError(503, "unavailable", str(exc), {"Retry-After": "5"}) from exc
        if caller is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the bearer token is not valid",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return caller

    def _check_role(self, needed: Role, route: Route, caller: Caller) -> None:
        if caller.role is None:
            raise ApiError(403, "permission-denied", f"{caller.principal} has no fleetops role")
        if not caller.role.allows(needed):
            raise ApiError(
                403,
                "permission-denied",
                f"{caller.principal} is {caller.role.value}; {route.method} {route.path} "
                f"needs {needed.value}",
            )

    def _params(self, route: Route, request: Request, path: dict[str, str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for param in route.params:
            if param.location == "path":
                values = [path[param.name]]
            elif param.location == "query":
                values = request.args.getlist(param.name)
            else:
                values = request.headers.getlist(param.name)
            found[param.name] = param.read(values)
        return found


def _response(reply: Reply) -> Response:
    if reply.model is not None:
        body = reply.model.model_dump_json().encode()
        content_type = "application/json"
    else:
        body, content_type = reply.body, reply.content_type
    response = Response(body, status=reply.status, content_type=content_type)
    for name, value in reply.headers.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _error(error: ApiError) -> Response:
    body = models.ErrorBody(
        error=models.ErrorDetail(code=error.code, message=error.message)
    ).model_dump_json()
    response = Response(body, status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


def deps_from_environment() -> ApiDeps:
    from fleetops import runtime
    from fleetops.adapters.firestore_dead_letters import default_store

    return ApiDeps(
        runtime.state_store(),
        runtime.publisher(),
        default_store(),
        runtime.utc_now,
        runtime.scheduler_jobs(),
    )


@cache
def default_api() -> Api:
    """The API of this process, configured from the environment on first use."""
    log.configure()
    return Api(
        deps_from_environment,
        authenticator_from_env,
        dashboard_viewer_token=os.environ.get("FLEETOPS_DASHBOARD_VIEWER_TOKEN") or None,
    )
