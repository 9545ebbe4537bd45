"""The HTTP API against the real app and a real service: every route, typed 4xx, auth, limits."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from gateway import wire
from gateway.api import IP_BURST, PARTICIPANT_BURST
from gateway.bundle import verify_bundle
from gateway.ledger import NoteVerifier, merkle, verify_checkpoint
from tests.gateway.api.helpers import ADMIN, Api, assert_typed, open_api
from tests.gateway.contracts.helpers import Board, Party
from tests.gateway.node.helpers import CAR, PARKING, World

ROOT = Path(__file__).resolve().parents[3]


def register(
    api: Api, party: Party, by: Party | None = None, roles: list[str] | None = None
) -> Any:
    args = {"public_key": party.pk, "name": party.name[:16], "roles": roles or ["operator"]}
    return api.tx((by or party).tx("engine", "register", args, int(time.time())))


# ---- service info, checkpoints, metrics -------------------------------------------------------


def test_health_gateway_checkpoint_and_metrics(api: Api) -> None:
    h = api.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["ble"] == "off"
    info = api.get("/v1/gateway").json()
    assert info["vkey"].startswith(info["origin"] + "+")
    assert info["ble"] == {"mode": "off", "status": "stopped", "detail": ""}
    cp = api.get("/v1/checkpoint")
    assert cp.status_code == 200 and cp.headers["content-type"].startswith("text/plain")
    parsed = verify_checkpoint(cp.content, NoteVerifier.from_vkey(info["vkey"]))
    assert parsed.size == info["tree_size"] and parsed.extensions[0].startswith("edgeseal-state ")
    assert api.get("/v1/checkpoint?size=0").status_code == 200
    assert_typed(api.get("/v1/checkpoint?size=999"), 404, "not-found")
    assert_typed(api.get("/v1/checkpoint?size=-1"), 400, "bad-request")
    m = api.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    for name in (
        "edgeseal_ledger_tree_size",
        "edgeseal_ledger_pending",
        "edgeseal_ingest_uploads_total",
        "edgeseal_contract_events_total",
        "edgeseal_http_requests_total",
    ):
        assert f"# TYPE {name} " in m.text
    samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(m.text)
        for s in family.samples
    }
    want = {"route": "/v1/checkpoint", "method": "GET", "status": "404"}
    assert ("edgeseal_http_requests_total", tuple(sorted(want.items()))) in samples


# ---- devices and auth ------------------------------------------------------------------------


def test_enroll_needs_the_operator_token(api: Api) -> None:
    board = Board("api-b1")
    body = {"public_key": board.public_key.hex(), "metadata": {"profile": "x"}}
    assert_typed(api.post("/v1/devices", json=body), 401, "unauthorized")
    bad = {"Authorization": "Bearer nope"}
    assert_typed(api.post("/v1/devices", json=body, headers=bad), 401, "unauthorized")
    r = api.post("/v1/devices", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["device_id"] == board.id
    assert_typed(api.post("/v1/devices", json=body, headers=ADMIN), 409, "already-enrolled")
    zero = {"public_key": "00" * 32}  # not a usable Ed25519 key
    assert_typed(api.post("/v1/devices", json=zero, headers=ADMIN), 400)
    short = {"public_key": "abcd"}
    err = assert_typed(api.post("/v1/devices", json=short, headers=ADMIN), 400, "bad-request")
    assert err["details"]
    status = {"public_key": Board("api-b2").public_key.hex(), "metadata": {"status": "x"}}
    assert_typed(api.post("/v1/devices", json=status, headers=ADMIN), 400, "bad-enrollment")
    devs = api.get("/v1/devices").json()["devices"]
    assert [d["device_id"] for d in devs] == [board.id]
    assert api.get(f"/v1/devices/{board.id}").json()["metadata"] == {"profile": "x"}
    assert_typed(api.get(f"/v1/devices/{'0' * 32}"), 404, "not-found")
    assert_typed(api.get("/v1/devices/xyz"), 400, "bad-request")


def test_revoke(api: Api) -> None:
    board = Board("api-rev")
    api.post("/v1/devices", json={"public_key": board.public_key.hex()}, headers=ADMIN)
    url = f"/v1/devices/{board.id}/revoke"
    assert_typed(api.post(url, json={"reason": "lost"}), 401, "unauthorized")
    r = api.post(url, json={"reason": "lost"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["device_id"] == board.id
    assert api.get(f"/v1/devices/{board.id}").json()["status"] == "revoked"
    assert_typed(api.post(url, json={"reason": "again"}, headers=ADMIN), 409, "already-revoked")
    missing = f"/v1/devices/{'1' * 32}/revoke"
    assert_typed(api.post(missing, json={"reason": "x"}, headers=ADMIN), 404, "not-found")
    assert_typed(api.post(url, json={"reason": ""}, headers=ADMIN), 400, "bad-request")


# ---- entries, proofs, bundles -----------------------------------------------------------------


def test_entries_proofs_and_bundle(api: Api) -> None:
    for i in range(3):
        pk = Board(f"api-e{i}").public_key.hex()
        api.post("/v1/devices", json={"public_key": pk}, headers=ADMIN)
    info = api.wait_integrated()
    size = info["tree_size"]
    assert size == 3
    e = api.get("/v1/entries/1").json()
    assert e["kind"] == "device-enrollment" and e["integrated"] is True
    raw = base64.b64decode(e["base64"])
    assert e["decoded"]["public_key"] == raw[18:50].hex()
    page = api.get("/v1/entries?since=1&limit=5").json()
    assert [x["index"] for x in page["entries"]] == [1, 2] and page["next"] == 3
    assert api.get("/v1/entries?kind=participant-tx").json()["entries"] == []
    assert_typed(api.get("/v1/entries?kind=nope"), 400, "bad-request")
    assert_typed(api.get("/v1/entries?limit=0"), 400, "bad-request")
    assert_typed(api.get("/v1/entries/99"), 404, "not-found")
    assert_typed(api.get("/v1/entries/-1"), 400, "bad-request")
    assert_typed(api.get("/v1/entries/abc"), 400, "bad-request")

    cp = verify_checkpoint(api.get("/v1/checkpoint").content, NoteVerifier.from_vkey(info["vkey"]))
    proof = api.get(f"/v1/proof/inclusion?index=1&size={size}").json()
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    merkle.verify_inclusion(merkle.leaf_hash(raw), 1, size, hashes, cp.root)
    assert api.get("/v1/proof/inclusion?index=2").json()["size"] == size
    assert_typed(api.get("/v1/proof/inclusion?index=3&size=3"), 400, "bad-range")
    assert_typed(api.get("/v1/proof/inclusion?index=0&size=50"), 400, "bad-range")
    assert_typed(api.get("/v1/proof/inclusion"), 400, "bad-request")
    old_cp = verify_checkpoint(
        api.get("/v1/checkpoint?size=0").content, NoteVerifier.from_vkey(info["vkey"])
    )
    # No consistency proof from the empty tree (RFC 9162 2.1.4, as transparency-dev/merkle):
    # a client checks the size-0 checkpoint's root is MTH({}) instead (merkle.verify_extends).
    assert_typed(api.get(f"/v1/proof/consistency?old=0&new={size}"), 400, "bad-range")
    assert old_cp.size == 0
    merkle.verify_extends(0, size, [], old_cp.root, cp.root)
    cons = api.get("/v1/proof/consistency?old=2").json()
    assert cons["new"] == size
    assert_typed(api.get("/v1/proof/consistency?old=4&new=3"), 400, "bad-range")

    doc = api.get("/v1/bundle/1").json()
    assert verify_bundle(doc, info["vkey"]).index == 1
    assert_typed(api.get("/v1/bundle/50"), 404, "not-found")


def test_bundle_of_an_entry_not_yet_integrated_is_409(tmp_path: Path) -> None:
    for api in open_api(tmp_path, batch_interval_ms=600_000):
        api.post("/v1/devices", json={"public_key": Board("nb").public_key.hex()}, headers=ADMIN)
        assert api.get("/v1/gateway").json()["pending"] == 1
        assert_typed(api.get("/v1/bundle/0"), 409, "not-integrated")


# ---- transactions and contracts --------------------------------------------------------------


def test_transactions_accepted_rejected_and_malformed(api: Api) -> None:
    op = Party("api-op")
    r = register(api, op)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["index"] == 0 and body["events"][0]["causes"] == [0]
    got = api.get(f"/v1/transactions/{body['tx_hash']}").json()
    assert got["index"] == 0 and got["events"] == [e["index"] for e in body["events"]]
    assert_typed(api.get(f"/v1/transactions/{'0' * 64}"), 404, "not-found")
    assert_typed(api.get("/v1/transactions/zz"), 400, "bad-request")
    size = api.get("/v1/gateway").json()["sequenced_size"]
    # a valid transaction the contracts refuse: 422, nothing appended
    stranger = Party("api-stranger")
    err = assert_typed(register(api, stranger), 422, "unknown-participant")
    assert err["error"] == "ContractError"
    assert api.get("/v1/gateway").json()["sequenced_size"] == size
    # malformed
    bad = api.post("/v1/transactions", json={"payload": "!!!!"})
    assert_typed(bad, 400, "bad-base64")
    junk = base64.b64encode(b"\x01" + b"\x00" * 64 + b"{}").decode()
    assert_typed(api.post("/v1/transactions", json={"payload": junk}), 400, "tx-malformed")
    assert_typed(api.post("/v1/transactions", json={}), 400, "bad-request")
    assert_typed(api.post("/v1/transactions", content=b"not json"), 400, "bad-request")
    old = op.tx("engine", "tick", {}, int(time.time()) - 3600)
    assert_typed(api.tx(old), 400, "tx-clock-skew")
    assert api.get("/v1/participants").json()["participants"][op.pk]["roles"] == ["operator"]


def test_contract_views(api: Api) -> None:
    world = World()
    api.run(world.setup(api.service))
    bay = world.bays[0]
    api.run(api.service.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now + 60)]))
    api.run(api.service.sequencer.deliver(bay.device_id, [world.departure(bay, world.now + 7200)]))
    api.wait_integrated()
    contracts = api.get("/v1/contracts").json()["contracts"]
    assert [c["id"] for c in contracts] == [PARKING] and contracts[0]["type"] == "parking"
    full = api.get(f"/v1/contracts/{PARKING}").json()
    assert full["params"]["grace_s"] == 600 and "data" in full
    sessions = api.get(f"/v1/contracts/{PARKING}/sessions").json()
    assert len(sessions["sessions"]) == 1
    assert CAR.hex() in str(sessions["wallets"])
    receipts = api.get(f"/v1/contracts/{PARKING}/receipts").json()["events"]
    assert [e["type"] for e in receipts] == ["charged"]
    doc = api.get(f"/v1/bundle/{receipts[0]['index']}").json()
    vkey = api.get("/v1/gateway").json()["vkey"]
    assert verify_bundle(doc, vkey).causes
    evs = api.get(f"/v1/contract-events?contract={PARKING}&type=session-opened").json()
    assert len(evs["events"]) == 1 and evs["next"] == evs["events"][0]["index"]
    later = api.get(f"/v1/contract-events?since={evs['next']}&type=session-opened").json()
    assert later["events"] == []
    for view in ("lots", "lots/x/trace", "products/x", "pond", "collateral", "intervals"):
        assert_typed(api.get(f"/v1/contracts/{PARKING}/{view}"), 409, "wrong-contract-type")
    assert_typed(api.get(f"/v1/contracts/{PARKING}/settlements"), 409, "wrong-contract-type")
    for view in ("", "/lots", "/pond", "/collateral", "/intervals", "/sessions", "/receipts"):
        assert_typed(api.get(f"/v1/contracts/nope{view}"), 404, "not-found")
    events = api.get("/v1/events").json()
    assert "events" in events and "next" in events
    assert api.get("/v1/events?alarms_only=true").json()["events"] == []


def test_contract_views_of_each_type(api: Api) -> None:
    """Create one contract of every other type and read its view."""
    from tests.gateway.contracts.test_collateral import PARAMS as COLL
    from tests.gateway.contracts.test_energy import PARAMS as ENERGY
    from tests.gateway.contracts.test_fishfarm import PARAMS as FISH

    op = Party("api-views-op")
    agri_params = {"certifiers": [op.pk]}
    roles = ["operator", "grower", "lender", "market_operator", "farmer", "borrower"]
    roles += ["grid_operator", "insurer"]
    assert register(api, op, roles=roles).status_code == 201
    other = Party("api-views-borrower")
    assert register(api, other, by=op, roles=["borrower"]).status_code == 201
    now = int(time.time())
    for cid, typ, params in (
        ("farm", "agri", agri_params),
        ("pond", "fishfarm", {**FISH, "farmer": op.pk}),
        ("lien", "collateral", {**COLL, "borrower": other.pk}),
        ("grid", "energy", {**ENERGY, "grid_operator": op.pk}),
    ):
        r = api.tx(op.tx("engine", "create", {"id": cid, "type": typ, "params": params}, now))
        assert r.status_code == 201, r.text
    assert api.get("/v1/contracts/farm/lots").json() == {"lots": {}}
    assert_typed(api.get("/v1/contracts/farm/lots/none/trace"), 404, "not-found")
    assert api.get("/v1/contracts/farm/products/0123").json() == {"lots": []}
    pond = api.get("/v1/contracts/pond/pond").json()
    assert pond["score_bp"] == 0 and pond["loan"]["status"] == "none"
    assert api.get("/v1/contracts/lien/collateral").json()["lien"] == "active"
    assert api.get("/v1/contracts/grid/intervals").json()["intervals"] == {}
    assert api.get("/v1/contracts/grid/settlements").json()["events"] == []


# ---- rate limits and request hygiene --------------------------------------------------------


def test_participant_rate_limit(api: Api) -> None:
    op = Party("api-rl-op")
    assert register(api, op).status_code == 201
    codes = []
    now = int(time.time())
    for _ in range(PARTICIPANT_BURST + 5):
        codes.append(api.tx(op.tx("engine", "tick", {}, now, nonce=0)).status_code)  # replayed
    assert codes[: PARTICIPANT_BURST - 1] == [422] * (PARTICIPANT_BURST - 1)
    assert codes[-1] == 429
    r = api.tx(op.tx("engine", "tick", {}, now, nonce=0))
    assert_typed(r, 429, "rate-limited")
    assert int(r.headers["Retry-After"]) >= 1


def test_ip_rate_limit_for_unauthenticated_writes(api: Api) -> None:
    codes = [
        api.post("/v1/transactions", json={"payload": "AAAA"}).status_code
        for _ in range(IP_BURST + 3)
    ]
    assert codes[0] == 400 and codes[-1] == 429
    assert_typed(api.post("/v1/devices", json={"public_key": "00" * 32}, headers=ADMIN), 429)


def test_bad_requests_are_typed(api: Api) -> None:
    assert_typed(api.get("/v1/nope"), 404, "not-found")
    r = api.c.delete("/v1/checkpoint")
    assert r.status_code == 405 and r.json()["error"] == "RequestError"
    big = api.post(
        "/v1/transactions", content=b"x" * 70_000, headers={"content-type": "application/json"}
    )
    assert_typed(big, 413, "too-large")
    assert_typed(api.get("/v1/proof/consistency?old=x"), 400, "bad-request")


def test_writes_while_stopping_are_503(api: Api) -> None:
    api.service.phase = "stopping"
    try:
        r = api.post("/v1/devices", json={"public_key": Board("x").public_key.hex()}, headers=ADMIN)
        assert_typed(r, 503, "unavailable")
        assert api.get("/healthz").status_code == 503
    finally:
        api.service.phase = "running"


# ---- the schema and the docs ------------------------------------------------------------------


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Yield every APIRoute of an app's routes, also those of included routers."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):  # FastAPI >= 0.16x keeps included routers whole
            yield from api_routes(r.original_router.routes)


def test_openapi_lists_every_route_and_docs_describe_them(api: Api) -> None:
    schema = api.get("/openapi.json").json()
    paths = set(schema["paths"])
    routes = {
        (m, r.path)
        for r in api_routes(api.c.app.routes)  # type: ignore[attr-defined]
        if r.include_in_schema
        for m in r.methods
    }
    assert {p for _, p in routes} == paths
    for must in (
        "/v1/checkpoint",
        "/v1/gateway",
        "/v1/entries/{index}",
        "/v1/proof/inclusion",
        "/v1/proof/consistency",
        "/v1/bundle/{index}",
        "/v1/devices",
        "/v1/transactions",
        "/healthz",
        "/metrics",
    ):
        assert must in paths
    docs = (ROOT / "docs" / "api.md").read_text()
    table = set(re.findall(r"^\| (GET|POST) \| `([^`]+)` \|", docs, re.M))
    assert routes == table, (routes - table, table - routes)


def test_device_records_through_the_service_show_up(api: Api) -> None:
    board = Board("api-rec")
    api.post("/v1/devices", json={"public_key": board.public_key.hex()}, headers=ADMIN)
    rec = board.record(int(time.time()), [(1, 0, 2500)])[1:]
    assert api.run(api.service.sequencer.deliver(board.device_id, [rec])) == 1
    api.wait_integrated()
    entries = api.get("/v1/entries?kind=device-record").json()["entries"]
    assert entries[0]["decoded"]["device_id"] == board.id
    assert entries[0]["decoded"]["kind"] == wire.KIND_NAMES[wire.READING]
    assert api.get(f"/v1/devices/{board.id}").json()["last_seq"] == 1
