"""The CLI's backends: through the API (in-process, over a WSGI transport) and direct."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from werkzeug.test import Client

from fleetops import documents, runtime
from fleetops.adapters import firestore_dead_letters
from fleetops.api.auth import Role
from fleetops.cli.backend import (
    ApiBackend,
    BackendError,
    DirectBackend,
    backend_from_env,
)
from fleetops.contract.names import TOPIC_REQUESTS
from fleetops.local.processes import free_port
from tests.unit.test_api_endpoints import LETTER, ApiHarness

URL = "http://api.test"


class WsgiAdapter(BaseAdapter):
    """Serves `requests` calls from a WSGI app, in-process."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.sent: list[requests.PreparedRequest] = []

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        self.sent.append(request)
        parts = urlsplit(str(request.url))
        answer = self.client.open(
            parts.path,
            method=str(request.method),
            query_string=parts.query,
            headers=dict(request.headers),
            data=request.body,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.reason = answer.status.split(" ", 1)[1]
        response._content = answer.data
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None


def backend_for(harness: ApiHarness, token: str) -> tuple[ApiBackend, WsgiAdapter]:
    session = requests.Session()
    adapter = WsgiAdapter(harness.client)
    session.mount(URL, adapter)
    return ApiBackend(URL + "/", token, session), adapter


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[ApiHarness, dict[str, str]]:
    harness = ApiHarness(tmp_path)
    return harness, harness.seed()


def same(a: Any, b: Any) -> bool:
    return bool(documents.operation_to_doc(a) == documents.operation_to_doc(b))


def test_reads_through_the_api_give_the_stores_own_values(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, ids = seeded
    backend, _ = backend_for(harness, harness.tokens.viewer.token)
    store = harness.fleet.store
    assert backend.list_instances() == store.list_instances()
    view = backend.get_instance("acme-1")
    assert view is not None
    assert view.instance == store.get_instance("acme-1")
    assert [o.id for o in view.operations] == [
        o.id for o in store.list_operations(instance="acme-1")
    ]
    assert view.history == store.instance_history("acme-1", limit=50)
    assert backend.get_instance("nope-1") is None
    listed = backend.list_operations(limit=10)
    assert all(same(a, b) for a, b in zip(listed, store.list_operations(limit=10), strict=True))
    pending = backend.get_operation(ids["pending"])
    assert pending is not None
    assert same(pending, store.get_operation(ids["pending"]))
    assert backend.get_operation("op-0000000000000000") is None
    assert [d.id for d in backend.list_dead_letters()] == [LETTER]
    assert backend.principal == "viewer@local"


def test_deleted_instances_are_listed_only_when_asked(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, _ = seeded
    harness.fleet.clock.advance(timedelta(seconds=5))
    harness.fleet.request({"instance": "beta-2", "action": "delete", "requested_by": "x"})
    op = harness.fleet.store.list_operations(instance="beta-2", limit=1)[0]
    harness.fleet.approve(op.id, approver="y")
    harness.fleet.drain()
    backend, _ = backend_for(harness, harness.tokens.viewer.token)
    assert [i.id for i in backend.list_instances()] == ["acme-1"]
    assert [i.id for i in backend.list_instances(include_deleted=True)] == ["acme-1", "beta-2"]


def test_writes_through_the_api_are_recorded_as_the_tokens_principal(
    seeded: tuple[ApiHarness, dict[str, str]],
) -> None:
    harness, ids = seeded
    operator, adapter = backend_for(harness, harness.tokens.operator.token)
    op_id = operator.submit_request(
        {"instance": "acme-1", "action": "snapshot", "requested_by": "someone-else"}
    )
    assert adapter.sent[-1].headers["Idempotency-Key"]
    assert harness.process_requests() == [op_id]
    recorded = harness.fleet.store.get_operation(op_id)
    assert recorded is not None
    assert recorded.requested_by == "operator@local"
    admin, _ = backend_for(harness, harness.tokens.admin.token)
    assert admin.approve(ids["pending"]).approved_by == "admin@local"
    with pytest.raises(BackendError, match="not awaiting approval"):
        admin.approve(ids["pending"])
    with pytest.raises(BackendError) as denied:
        operator.approve(ids["pending"])
    assert str(denied.value) == (
        "approving an operation needs the admin role; you are operator@local (operator)"
    )
    with pytest.raises(BackendError, match="is already succeeded"):
        operator.cancel(op_id)
    replayed = operator.replay_dead_letter(LETTER)
    assert replayed.replayed_by == "operator@local"
    assert len(harness.fleet.publisher.on(TOPIC_REQUESTS)) == 1
    with pytest.raises(BackendError, match="already replayed"):
        operator.replay_dead_letter(LETTER)


def test_api_errors_become_one_sentence(seeded: tuple[ApiHarness, dict[str, str]]) -> None:
    harness, _ = seeded
    forged, _ = backend_for(harness, "fo_" + "z" * 43)
    with pytest.raises(BackendError) as caught:
        forged.list_instances()
    assert str(caught.value) == (
        "the API refused the token in FLEETOPS_API_TOKEN: the bearer token is not valid"
    )
    operator, _ = backend_for(harness, harness.tokens.operator.token)
    with pytest.raises(BackendError, match="field 'version' is required for action upgrade"):
        operator.submit_request({"instance": "acme-1", "action": "upgrade"})


def test_an_api_that_does_not_answer_is_one_sentence() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError) as caught:
        ApiBackend(url, "token").list_instances()
    assert str(caught.value) == f"cannot reach the fleetops API at {url}: is `fleetops up` running?"


def test_the_environment_chooses_the_backend() -> None:
    direct = DirectBackend(principal="me@here")
    assert backend_from_env({}, direct=lambda who: direct) is direct
    chosen = backend_from_env({"FLEETOPS_API_URL": URL, "FLEETOPS_API_TOKEN": "sekrit-value"})
    assert isinstance(chosen, ApiBackend)
    assert chosen.url == URL
    assert "sekrit" not in repr(chosen)
    with pytest.raises(BackendError, match="FLEETOPS_API_TOKEN is not"):
        backend_from_env({"FLEETOPS_API_URL": URL})


@pytest.fixture
def direct(
    seeded: tuple[ApiHarness, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> tuple[ApiHarness, dict[str, str], DirectBackend]:
    harness, ids = seeded
    monkeypatch.setattr(runtime, "state_store", lambda: harness.fleet.store)
    monkeypatch.setattr(runtime, "publisher", lambda: harness.fleet.publisher)
    monkeypatch.setattr(runtime, "utc_now", harness.fleet.clock.now)
    monkeypatch.setattr(firestore_dead_letters, "default_store", lambda: harness.letters)
    return harness, ids, DirectBackend(principal="alice@laptop")


def test_the_direct_backend_does_what_the_cli_did(
    direct: tuple[ApiHarness, dict[str, str], DirectBackend],
) -> None:
    harness, ids, backend = direct
    op_id = backend.submit_request({"instance": "acme-1", "action": "restart"})
    [published] = harness.fleet.publisher.on(TOPIC_REQUESTS)
    assert published.attributes["ce-source"] == "//fleetops/cli/alice@laptop"
    assert harness.process_requests() == [op_id]
    assert harness.fleet.store.get_operation(op_id).requested_by == "alice@laptop"  # type: ignore[union-attr]
    view = backend.get_instance("acme-1")
    assert view is not None
    assert view.instance.id == "acme-1"
    assert backend.get_instance("nope-1") is None
    assert backend.approve(ids["pending"]).approved_by == "alice@laptop"
    with pytest.raises(BackendError, match="not awaiting approval"):
        backend.approve(ids["pending"])
    assert backend.replay_dead_letter(LETTER).replayed_by == "alice@laptop"
    with pytest.raises(BackendError, match="already replayed"):
        backend.replay_dead_letter(LETTER)
    assert [d.id for d in backend.list_dead_letters()] == [LETTER]


def test_both_backends_see_the_same_fleet(
    direct: tuple[ApiHarness, dict[str, str], DirectBackend],
) -> None:
    harness, _, backend = direct
    through_api, _ = backend_for(harness, harness.tokens.viewer.token)
    assert through_api.list_instances() == backend.list_instances()
    ops: Mapping[str, Any] = {o.id: o for o in backend.list_operations()}
    assert all(same(o, ops[o.id]) for o in through_api.list_operations())
    direct_view = backend.get_instance("beta-2")
    assert direct_view is not None
    assert direct_view.decisions == []
    # The API does not serve remediation decisions: None says so, rather than an empty list.
    assert through_api.get_instance("beta-2") == replace(direct_view, decisions=None)


def test_roles_matter_through_the_backend_too(seeded: tuple[ApiHarness, dict[str, str]]) -> None:
    harness, _ = seeded
    viewer, _ = backend_for(harness, harness.token(Role.VIEWER))
    with pytest.raises(BackendError) as caught:
        viewer.submit_request({"instance": "acme-1", "action": "restart"})
    assert str(caught.value) == (
        "requesting an operation needs the operator role; you are viewer@local (viewer)"
    )
