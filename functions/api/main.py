"""The engineers' interface: the REST API under /v1, its OpenAPI document, and the dashboard."""

from __future__ import annotations

import flask
import functions_framework
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from fleetops.api.app import default_api


@functions_framework.http
def api(request: flask.Request) -> Response:
    return default_api().handle(request)


@functions_framework.errorhandler(NotFound)
def outside_the_routes(error: NotFound) -> Response:
    # functions-framework's own routing refuses a few paths (one with a newline in
    # it) before `api` runs: those get the API's answer too, not an HTML page.
    return default_api().handle(flask.request)
