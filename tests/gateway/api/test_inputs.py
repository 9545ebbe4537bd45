"""Hostile input through the routes (issue 14): integers past int64, deep transaction payloads,
device metadata of the wrong shape (also metadata logged before the shape was enforced), lot
ids outside their charset. Each gets a typed 4xx and changes no state; no read ever 500s."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

import gateway.ledger.entries as entries
import gateway.registry as registry
from gateway.bounds import MAX_INT64, MAX_METADATA_BYTES
from gateway.bundle import verify_bundle
from gateway.contracts.tx import sign_payload
from tests.gateway.api.helpers import ADMIN, Api, assert_typed, open_api
from tests.gateway.contracts.helpers import Board, Party

TOO_BIG = MAX_INT64 + 1
INT_PARAMETERS = [
    "/v1/checkpoint?size={n}",
    "/v1/entries?since={n}",
    "/v1/entries/{n}",
    "/v1/proof/inclusion?index={n}",
    "/v1/proof/inclusion?index=0&size={n}",
    "/v1/proof/consistency?old={n}",
    "/v1/proof/consistency?old=0&new={n}",
    "/v1/bundle/{n}",
    "/v1/events?since={n}",
    "/v1/contract-events?since={n}",
    "/v1/entries?limit={n}",
]


def sequenced(api: Api) -> int:
    """Return the ledger's sequenced size (what a hostile write must not change)."""
    return api.get("/v1/gateway").json()["sequenced_size"]


@pytest.mark.parametrize("template", INT_PARAMETERS)
def test_integers_past_int64_are_a_typed_400(api: Api, template: str) -> None:
    assert_typed(api.get(template.format(n=TOO_BIG)), 400, "bad-request")
    assert_typed(api.get(template.format(n=-TOO_BIG)), 400, "bad-request")
    at_the_edge = api.get(template.format(n=MAX_INT64))  # in range: answered, never a 500
    assert at_the_edge.status_code in (200, 400, 404), at_the_edge.text


def test_a_deeply_nested_transaction_is_refused_before_any_signature(api: Api) -> None:
    size = sequenced(api)
    party = Party("inputs-deep")
    for levels in (40, 1200):
        body = b'{"args":' + b"[" * levels + b"]" * levels + b"}"
        payload = base64.b64encode(sign_payload(body, [party.key])).decode()
        r = api.post("/v1/transactions", json={"payload": payload})
        body_text = assert_typed(r, 400, "tx-malformed")["message"]
        assert "nested deeper than" in body_text
    assert sequenced(api) == size


def nested(levels: int) -> dict[str, Any]:
    """Return metadata nested `levels` objects deep."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_metadata_of_the_wrong_shape_is_refused(api: Api) -> None:
    size = sequenced(api)
    key = Board("inputs-meta").public_key.hex()
    h = {"content-type": "application/json", **ADMIN}
    cases = {
        "too-deep": '{"a":' * 300 + "{}" + "}" * 300,  # refused before FastAPI parses it
        "non-finite": '{"x": NaN}',
        "not-integer": '{"x": 1.5}',
        "bad-metadata": json.dumps(nested(5)),
    }
    for code, meta in cases.items():
        text = f'{{"public_key": "{key}", "metadata": {meta}}}'
        assert_typed(api.post("/v1/devices", content=text.encode(), headers=h), 400, code)
    for meta_value in ({"k" * 65: 1}, {"n": 2**63}, {"big": "x" * MAX_METADATA_BYTES}):
        r = api.post("/v1/devices", json={"public_key": key, "metadata": meta_value}, headers=ADMIN)
        assert_typed(r, 400, "bad-metadata")
    assert sequenced(api) == size
    r = api.post("/v1/devices", json={"public_key": key, "metadata": nested(4)}, headers=ADMIN)
    assert r.status_code == 201, r.text


def reads_of(api: Api, board: Board, index: int) -> dict[str, Any]:
    """Return every read that shows the board's enrollment, each asserted 200."""
    out = {}
    for url in (
        "/v1/devices",
        f"/v1/devices/{board.id}",
        "/v1/entries",
        f"/v1/entries/{index}",
        "/v1/entries?kind=device-enrollment",
    ):
        r = api.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        out[url] = r.json()
    return out


def old_enrollment_entry(
    device_id: bytes, public_key: bytes, metadata: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    """Return the enrollment entry as the encoder wrote it before metadata was checked."""
    fixed = bytes((entries.ENROLLMENT_VERSION,)) + device_id + public_key
    return entries.KIND_DEVICE_ENROLLMENT, fixed + entries.canonical_json(metadata or {})


def old_decode_enrollment(payload: bytes) -> entries.Enrollment:
    """Return the enrollment as the decoder read it before (metadata as parsed, unchecked)."""
    fixed = 1 + entries.DEVICE_ID_BYTES + entries.PUBLIC_KEY_BYTES
    return entries.Enrollment(
        payload[1 : 1 + entries.DEVICE_ID_BYTES],
        payload[1 + entries.DEVICE_ID_BYTES : fixed],
        json.loads(payload[fixed:]),
    )


def test_metadata_logged_before_the_check_is_read_as_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finding: such metadata was accepted (201), then every read including it was a 500,
    also after a restart, and a NaN made the entry's bundle fail verification."""
    boards = {"deep": Board("inputs-old-deep"), "nan": Board("inputs-old-nan")}
    metas = {"deep": nested(300), "nan": {"x": float("nan"), "site": "barn"}}
    indexes = {}
    with monkeypatch.context() as old_code:  # the codec before the shape was enforced
        old_code.setattr(registry, "enrollment_entry", old_enrollment_entry)
        old_code.setattr(registry, "decode_enrollment", old_decode_enrollment)
        for api in open_api(tmp_path):
            for name, board in boards.items():
                coro = api.service.sequencer.enroll(board.public_key, metas[name])
                indexes[name] = api.run(coro)
                reads_of(api, board, indexes[name])  # before a restart too
    for api in open_api(tmp_path):  # after a restart
        api.wait_integrated()
        vkey = api.get("/v1/gateway").json()["vkey"]
        for name, board in boards.items():
            got = reads_of(api, board, indexes[name])
            device = got[f"/v1/devices/{board.id}"]
            assert device["metadata"]["error"]["code"] == "bad-metadata", device
            decoded = got[f"/v1/entries/{indexes[name]}"]["decoded"]
            assert decoded["metadata"]["error"]["code"] == "bad-metadata"
            if name == "nan":  # parsed: the registry's status is kept (too deep: not parsed)
                assert decoded["metadata"]["status"] == "active"
            bundle = api.get(f"/v1/bundle/{indexes[name]}")
            assert bundle.status_code == 200, bundle.text[:300]
            verify_bundle(bundle.json(), vkey)
            # the device can still be revoked
            r = api.post(f"/v1/devices/{board.id}/revoke", json={"reason": "x"}, headers=ADMIN)
            assert r.status_code == 200, r.text
        assert api.get("/v1/devices").status_code == 200


def test_lot_ids_outside_the_charset_are_a_typed_400_on_the_trace_route(api: Api) -> None:
    # ("a/b" never reaches the route: the server decodes %2F, so the path has one more segment)
    for bad in ("L%201", "x" * 65, "l%C3%B6s", "a%25b"):
        r = api.get(f"/v1/contracts/agri-1/lots/{bad}/trace")
        assert_typed(r, 400, "bad-request")
    assert_typed(api.get("/v1/contracts/agri-1/lots/L1.a:b-c_d/trace"), 404, "not-found")


def test_an_agri_lot_with_a_slash_is_refused_and_nothing_is_appended(api: Api) -> None:
    op = Party("inputs-agri-op")
    now = int(time.time())
    reg = {"public_key": op.pk, "name": "op", "roles": ["operator", "grower"]}
    assert api.tx(op.tx("engine", "register", reg, now)).status_code == 201
    create = {"id": "farm-x", "type": "agri", "params": {"certifiers": [op.pk]}}
    assert api.tx(op.tx("engine", "create", create, now)).status_code == 201
    size = sequenced(api)
    args = {"lot": "a/b", "product": "p", "code": "c", "quantity": 1, "origin": "o"}
    r = api.tx(op.tx("farm-x", "register-lot", args, now))
    assert_typed(r, 422, "bad-lot-id")
    assert sequenced(api) == size
