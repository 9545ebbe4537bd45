"""Contract read views come from the contract registry: a new type's views are served with no API
edit, a path two types share is served by each instance's own type, a wrong type is a 409."""

from __future__ import annotations

import base64
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.10 warns that its TestClient still uses httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.contracts import Engine
from gateway.contracts.common import Contract, Ctx, Data, Event, Params, View, ev
from gateway.contracts.engine import DEFAULT_CONTRACTS
from gateway.node import Node
from tests.gateway.contracts.helpers import Party
from tests.gateway.node.helpers import PARKING, PARKING_PARAMS, make_settings


class Tally(Contract):
    """A contract type the API has never heard of: counts "add" transactions."""

    TYPE = "tally"
    ACTIONS = {"add": "add"}
    VIEWS = (
        View("count", "the count", "view_count"),
        View("sessions", "a path parking has too", "view_sessions"),
        View("entries/{key}", "one key", "view_key"),
        View("history", "tally events", event_types=frozenset({"added"})),
    )

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        return {}

    def init(self, params: Params, ctx: Ctx) -> Data:
        return {"n": 0}

    def add(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        data["n"] += 1
        return [ev("added", [ctx.index], n=data["n"])]

    def view_count(self, _cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        return {"n": inst["data"]["n"]}

    def view_sessions(self, cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        return {"tally_sessions": cid}

    def view_key(self, _cid: str, inst: dict[str, Any], key: str) -> dict[str, Any]:
        return {"key": key, "n": inst["data"]["n"]}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    engine = Engine({**DEFAULT_CONTRACTS, "tally": Tally()})
    node = Node(make_settings(tmp_path), engine=engine)
    with TestClient(create_app(node)) as c:
        assert c.portal is not None
        c.portal.call(node.start)
        try:
            yield c
        finally:
            c.portal.call(node.stop)


def _tx(c: TestClient, entry: bytes) -> Any:
    r = c.post("/v1/transactions", json={"payload": base64.b64encode(entry[1:]).decode()})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_new_contract_type_brings_its_own_views(client: TestClient) -> None:
    op = Party("views-op")
    now = int(time.time())
    reg = {"public_key": op.pk, "name": "op", "roles": ["operator", "parking_operator"]}
    _tx(client, op.tx("engine", "register", reg, now))
    _tx(client, op.tx("engine", "create", {"id": "t1", "type": "tally", "params": {}}, now))
    create = {"id": PARKING, "type": "parking", "params": PARKING_PARAMS}
    _tx(client, op.tx("engine", "create", create, now))
    for _ in range(3):
        _tx(client, op.tx("t1", "add", {}, now))

    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/contracts/{contract_id}/count", "/v1/contracts/{contract_id}/history"} <= paths
    assert client.get("/v1/contracts/t1/count").json() == {"n": 3}
    assert client.get("/v1/contracts/t1/entries/abc").json() == {"key": "abc", "n": 3}
    history = client.get("/v1/contracts/t1/history?limit=2").json()
    assert [e["data"]["n"] for e in history["events"]] == [1, 2]
    rest = client.get(f"/v1/contracts/t1/history?since={history['next']}").json()
    assert [e["data"]["n"] for e in rest["events"]] == [3]
    assert client.get("/v1/contracts/t1/history?limit=0").status_code == 400

    # one path, two types: each instance gets its own type's view
    assert client.get("/v1/contracts/t1/sessions").json() == {"tally_sessions": "t1"}
    assert "sessions" in client.get(f"/v1/contracts/{PARKING}/sessions").json()
    wrong = client.get(f"/v1/contracts/{PARKING}/count")
    assert wrong.status_code == 409 and wrong.json()["code"] == "wrong-contract-type"
    assert "is a parking, not tally" in wrong.json()["message"]
    assert client.get("/v1/contracts/nope/count").status_code == 404
