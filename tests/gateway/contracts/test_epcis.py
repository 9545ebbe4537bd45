"""GS1 EPCIS 2.0 for the tracing contract: every document the agri scenario produces validates
against the EPCIS 2.0 JSON schema (the validator of npm epcis2.js, tools/epcis_validate.mjs),
events get distinct GS1 event hashes (epcis-event-hash-generator), ObjectEvents import as signed
transactions the contract accepts, and hostile EPCIS input gets typed errors."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from epcis_event_hash_generator import hash_generator, json_to_py

from gateway.contracts import decode_event
from gateway.contracts.epcis import (
    CONTEXT,
    MAX_EPCIS_BYTES,
    MAX_IMPORT_EVENTS,
    entry_time_s,
    epcis_document,
    gtin14,
    lot_class,
    lot_from_class,
    parse_epcis,
    transaction_of_event,
    transactions_of_document,
)
from gateway.errors import EpcisError

from .helpers import T0, Log, Party
from .test_agri import CARRIER, CERT, GROWER, RETAILER, lot_args, scenario

C = "agri-1"
ROOT = Path(__file__).resolve().parents[3]
BASE = "http://gw.example:8000/"


def validate(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the epcis2.js validator's verdict on each document (one node process)."""
    out = subprocess.run(
        ["node", str(ROOT / "tools" / "epcis_validate.mjs")],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def events_with_index(log: Log, contract: str) -> list[dict[str, Any]]:
    """Return the contract's events in log, each with its log index (as the API serves them)."""
    return [
        {**decode_event(e), "index": i}
        for i, e in enumerate(log.entries)
        if e[0] == 0x03 and decode_event(e)["contract"] == contract
    ]


def document(log: Log, contract: str = C, created_s: int = T0) -> dict[str, Any]:
    """Return the EPCIS document of contract in log, dated created_s."""
    return epcis_document(
        contract, log.state["contracts"][contract], events_with_index(log, contract),
        lambda i: entry_time_s(log.entries[i]), created_s=created_s, bundle_base=BASE,
        log_origin="edgeseal.example/gateway/test",
    )  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Log:
    log = Log()
    scenario(log)
    return log


def test_every_document_of_the_agri_scenario_validates(world: Log) -> None:
    # replay the scenario entry by entry: the document after each step, and the final one
    replay, docs = Log(), []
    for entry in world.entries:
        if entry[0] == 0x03:
            continue  # events are outputs: the replay appends its own
        replay.add(entry)
        if C in replay.state["contracts"]:
            docs.append(document(replay))
    # and a recall that reaches every derived lot
    replay.ok(CERT.tx(C, "recall", {"lot": "L1", "reason": "contamination"}, T0 + 3000))
    docs.append(document(replay))
    results = validate(docs)
    assert all(r["success"] for r in results), [r["errors"] for r in results if not r["success"]]
    assert len(docs) > 20 and len(docs[-1]["epcisBody"]["eventList"]) == 13


def test_a_broken_document_fails_the_schema(world: Log) -> None:
    doc = document(world)
    broken = copy.deepcopy(doc)
    del broken["epcisBody"]["eventList"][0]["eventTime"]
    undeclared = copy.deepcopy(doc)
    undeclared["epcisBody"]["eventList"][0]["unknownField"] = 1
    bad_uom = copy.deepcopy(doc)
    breach = next(e for e in bad_uom["epcisBody"]["eventList"] if "sensorElementList" in e)
    breach["sensorElementList"][0]["sensorReport"][0]["value"] = "hot"
    assert [r["success"] for r in validate([broken, undeclared, bad_uom])] == [False] * 3


def test_the_mapping_of_each_contract_event(world: Log) -> None:
    doc = document(world)
    assert doc["@context"][0] == "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    events = doc["epcisBody"]["eventList"]
    steps = [(e["type"], e["bizStep"]) for e in events]
    assert steps.count(("ObjectEvent", "commissioning")) == 3
    assert steps.count(("TransformationEvent", "repackaging")) == 2
    assert ("TransformationEvent", "assembling") in steps
    for e in events:  # each event names its log entry and links to its proof bundle
        index = e["edgeseal:logIndex"]
        assert world.entries[index][0] == 0x03
        assert e["edgeseal:proofBundle"] == f"{BASE}v1/bundle/{index}"
        assert decode_event(world.entries[index])["causes"] == e["edgeseal:causes"]
    first = events[0]
    assert first["action"] == "ADD" and first["quantityList"] == [
        {"epcClass": "urn:edgeseal:agri-1:lot:L1", "quantity": 100}
    ]
    assert first["eventTime"] == "2027-01-15T00:00:00Z"  # the transaction's signed time_s
    handover = next(e for e in events if e["bizStep"] == "accepting")
    assert handover["sourceList"][0]["source"].endswith(GROWER.pk)
    assert handover["destinationList"][0]["destination"].endswith(CARRIER.pk)
    merge = next(e for e in events if e["bizStep"] == "assembling")
    assert {q["epcClass"].rsplit(":", 1)[1] for q in merge["inputQuantityList"]} == {"L1b", "L1a2"}
    assert merge["outputQuantityList"] == [{"epcClass": lot_class(C, "M1", "x"), "quantity": 70}]
    breach = next(e for e in events if e["bizStep"] == "sensor_reporting")
    report = breach["sensorElementList"][0]["sensorReport"][0]
    assert (report["type"], report["value"], report["uom"]) == ("Temperature", 10.0, "CEL")
    assert breach["disposition"] == "non_conformant" and breach["eventTime"].endswith("40:01Z")
    recall = next(e for e in events if e.get("disposition") == "recalled")
    assert recall["edgeseal:reason"] == "pesticide residue"
    assert next(e for e in events if e["bizStep"] == "retail_selling")["disposition"] == (
        "retail_sold"
    )


def test_gs1_identifiers_where_the_codes_are_gs1() -> None:
    assert gtin14("4006381333931") == "04006381333931" and gtin14("04012345") is None
    log = Log()
    from .helpers import setup

    setup(log, {"grower": (GROWER, ["grower"])})
    log.ok(GROWER.tx("engine", "create", {"id": "gs1", "type": "agri", "params": {"certifiers": [CERT.pk]}}, T0))  # fmt: skip
    args = lot_args("LOT-7", 5, code="4006381333931", origin="4012345000009")
    log.ok(GROWER.tx("gs1", "register-lot", args, T0))
    (event,) = document(log, "gs1")["epcisBody"]["eventList"]
    assert event["quantityList"][0]["epcClass"] == "https://id.gs1.org/01/04006381333931/10/LOT-7"
    assert event["bizLocation"] == {"id": "https://id.gs1.org/414/4012345000009"}
    assert validate([document(log, "gs1")])[0]["success"]
    assert lot_from_class("https://id.gs1.org/01/04006381333931/10/LOT-7") == (
        "LOT-7",
        "04006381333931",
    )
    # the LGTIN class URN of the same GTIN (company prefix 4006381, item reference 033393)
    assert lot_from_class("urn:epc:class:lgtin:4006381.033393.LOT-7") == ("LOT-7", "04006381333931")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the generator's importlib use
def test_gs1_event_hashes_are_distinct_and_stable(world: Log) -> None:
    def hashes(doc: dict[str, Any]) -> list[str]:
        events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(doc))
        return hash_generator.epcis_hashes_from_events(events)

    doc = document(world)
    first = hashes(doc)
    assert len(first) == len(doc["epcisBody"]["eventList"]) == len(set(first))
    assert all(h.startswith("ni:///sha-256;") for h in first)
    assert hashes(document(world, created_s=T0 + 999)) == first  # the event, not the document
    changed = copy.deepcopy(doc)
    changed["epcisBody"]["eventList"][0]["quantityList"][0]["quantity"] = 101
    assert hashes(changed)[0] != first[0] and hashes(changed)[1:] == first[1:]


def _event(**fields: Any) -> dict[str, Any]:
    base = {"type": "ObjectEvent", "eventTime": "2027-01-15T00:00:00Z",
            "eventTimeZoneOffset": "+00:00", "action": "OBSERVE"}  # fmt: skip
    return {**base, **fields}


def _qty(lot: str, quantity: int | None = None) -> list[dict[str, Any]]:
    element: dict[str, Any] = {"epcClass": f"urn:edgeseal:{C}:lot:{lot}"}
    if quantity is not None:
        element["quantity"] = quantity
    return [element]


def test_exported_commissioning_imports_as_the_same_registration(world: Log) -> None:
    events = document(world)["epcisBody"]["eventList"]
    commissioning = [e for e in events if e.get("bizStep") == "commissioning"]
    imported = transactions_of_document(
        {**document(world), "epcisBody": {"eventList": commissioning}}
    )
    assert imported[0] == ("register-lot", lot_args("L1", 100))


def test_partner_object_events_become_transactions_the_contract_accepts() -> None:
    log = Log()
    from .helpers import setup

    setup(log, {"g": (GROWER, ["grower"]), "c": (CARRIER, ["carrier"]),
                "r": (RETAILER, ["retailer"]), "cert": (CERT, ["certifier"])})  # fmt: skip
    log.ok(GROWER.tx("engine", "create", {"id": C, "type": "agri", "params": {"certifiers": [CERT.pk]}}, T0))  # fmt: skip
    partner = {
        "@context": CONTEXT,  # the edgeseal: prefix of the ilmd field
        "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2027-01-15T00:00:00Z",
        "epcisBody": {"eventList": [
            _event(action="ADD", bizStep="https://ref.gs1.org/cbv/BizStep-commissioning",
                   quantityList=[{"epcClass": "https://id.gs1.org/01/04006381333931/10/P1",
                                  "quantity": 40.0}],
                   bizLocation={"id": "https://id.gs1.org/414/4012345000009"},
                   ilmd={"edgeseal:product": "pears"}),
            _event(bizStep="receiving",
                   quantityList=[{"epcClass": "urn:epc:class:lgtin:4006381.033393.P1"}],
                   destinationList=[{"type": "possessing_party",
                                     "destination": f"urn:edgeseal:participant:{CARRIER.pk}"}]),
        ]},
    }  # fmt: skip
    assert validate([partner])[0]["success"]
    (register, args), (handover, hargs) = transactions_of_document(partner)
    assert (register, handover) == ("register-lot", "handover")
    assert args == {"lot": "P1", "product": "pears", "code": "04006381333931", "quantity": 40,
                    "origin": "https://id.gs1.org/414/4012345000009"}  # fmt: skip
    log.ok(GROWER.tx(C, register, args, T0 + 10))
    log.ok(GROWER.tx(C, handover, hargs, T0 + 20, cosigners=(CARRIER,)))
    log.ok(CARRIER.tx(C, "handover", {"lot": "P1", "to": RETAILER.pk}, T0 + 30, cosigners=(RETAILER,)))  # fmt: skip
    # EPCIS 1.x URN vocabulary (not valid in 2.0 documents) is understood too
    sell = transaction_of_event(
        _event(bizStep="urn:epcglobal:cbv:bizstep:retail_selling", quantityList=_qty("P1"))
    )
    assert sell == ("sell", {"lot": "P1"})
    recall = transaction_of_event(_event(disposition="recalled", quantityList=_qty("P1")))
    assert recall[0] == "recall" and recall[1]["lot"] == "P1"
    log.ok(CERT.tx(C, *recall, T0 + 40))
    assert log.reject(RETAILER.tx(C, *sell, T0 + 50)).startswith("lot-recalled")
    assert log.data(C)["lots"]["P1"]["custodian"] == RETAILER.pk


def _deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


HOSTILE_BYTES = [
    (b"\xff\xfe", "epcis-not-json"),
    (b"{", "epcis-not-json"),
    (b'{"type": NaN}', "epcis-not-json"),
    (b'{"type": "EPCISDocument", "type": "ObjectEvent"}', "epcis-not-json"),
    (_deep(100), "epcis-not-json"),
    (b" " * (MAX_EPCIS_BYTES + 1), "epcis-too-large"),
]

HOSTILE_DOCS: list[tuple[Any, str]] = [
    ([], "epcis-not-a-document"),
    ({"type": "EPCISDocument"}, "epcis-not-a-document"),
    ({"type": "EPCISDocument", "epcisBody": {"eventList": {}}}, "epcis-not-a-document"),
    ({"type": "EPCISDocument", "epcisBody": {"eventList": []}}, "epcis-empty"),
    (
        {"type": "EPCISDocument", "epcisBody": {"eventList": [1] * (MAX_IMPORT_EVENTS + 1)}},
        "epcis-too-many",
    ),  # fmt: skip
    ({"type": "EPCISQueryDocument", "epcisBody": {}}, "epcis-not-a-document"),
    ({"type": 7}, "epcis-not-a-document"),
    (_event(type="TransformationEvent"), "epcis-unsupported"),
    (_event(bizStep="shipping", quantityList=_qty("L1")), "epcis-unmapped"),
    (_event(action="DELETE", bizStep="decommissioning"), "epcis-unmapped"),
    (_event(bizStep=["x"]), "epcis-bad-field"),
    (
        _event(bizStep="retail_selling", epcList=["https://id.gs1.org/01/04006381333931/21/1"]),
        "epcis-unsupported",
    ),  # fmt: skip
    (_event(bizStep="retail_selling", quantityList=[]), "epcis-bad-field"),
    (_event(bizStep="retail_selling", quantityList=_qty("L1") * 2), "epcis-bad-field"),
    (
        _event(bizStep="retail_selling", quantityList=[{"epcClass": "urn:x:y"}]),
        "epcis-bad-epc-class",
    ),  # fmt: skip
    (
        _event(bizStep="retail_selling", quantityList=[{"epcClass": "x" * 10_000}]),
        "epcis-bad-epc-class",
    ),  # fmt: skip
    (
        _event(
            bizStep="retail_selling",
            quantityList=[{"epcClass": "https://id.gs1.org/01/04006381333932/10/L"}],
        ),
        "epcis-bad-epc-class",
    ),  # fmt: skip  (wrong check digit)
    (
        _event(
            action="ADD",
            bizStep="commissioning",
            quantityList=_qty("L", 1.5),
            ilmd={"edgeseal:product": "p", "edgeseal:code": "c", "edgeseal:origin": "o"},
        ),
        "epcis-bad-quantity",
    ),  # fmt: skip
    (
        _event(
            action="ADD",
            bizStep="commissioning",
            quantityList=_qty("L", -1),
            ilmd={"edgeseal:product": "p", "edgeseal:code": "c", "edgeseal:origin": "o"},
        ),
        "epcis-bad-quantity",
    ),  # fmt: skip
    (
        _event(
            action="ADD",
            bizStep="commissioning",
            quantityList=_qty("L", 10**13),
            ilmd={"edgeseal:product": "p", "edgeseal:code": "c", "edgeseal:origin": "o"},
        ),
        "epcis-bad-quantity",
    ),  # fmt: skip
    (
        _event(
            action="ADD",
            bizStep="commissioning",
            quantityList=_qty("L", True),
            ilmd={"edgeseal:product": "p", "edgeseal:code": "c", "edgeseal:origin": "o"},
        ),
        "epcis-bad-quantity",
    ),  # fmt: skip
    (
        _event(action="ADD", bizStep="commissioning", quantityList=_qty("L", 1)),
        "epcis-bad-field",
    ),  # fmt: skip  (no product, code or origin)
    (
        _event(
            action="ADD",
            bizStep="commissioning",
            quantityList=_qty("L", 1),
            ilmd={"edgeseal:product": "p", "edgeseal:code": "c", "edgeseal:origin": "o" * 129},
        ),
        "epcis-bad-field",
    ),  # fmt: skip
    (_event(bizStep="accepting", quantityList=_qty("L")), "epcis-bad-field"),
    (
        _event(
            bizStep="accepting",
            quantityList=_qty("L"),
            destinationList=[{"type": "possessing_party", "destination": "urn:x"}],
        ),
        "epcis-bad-field",
    ),  # fmt: skip
    (
        _event(disposition="recalled", quantityList=_qty("L"), **{"edgeseal:reason": 5}),
        "epcis-bad-field",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("data", "code"), HOSTILE_BYTES, ids=[c for _, c in HOSTILE_BYTES])
def test_hostile_bytes_get_typed_errors(data: bytes, code: str) -> None:
    with pytest.raises(EpcisError) as exc:
        transactions_of_document(parse_epcis(data))
    assert exc.value.code == code and exc.value.status == 400


@pytest.mark.parametrize(
    ("doc", "code"), HOSTILE_DOCS, ids=[str(i) for i in range(len(HOSTILE_DOCS))]
)
def test_hostile_documents_get_typed_errors(doc: Any, code: str) -> None:
    with pytest.raises(EpcisError) as exc:
        transactions_of_document(doc)
    assert exc.value.code == code, exc.value


def test_the_route_serves_a_valid_document(tmp_path: Path) -> None:
    """GET /v1/contracts/{id}/epcis on a started gateway: transactions submitted over the API."""
    import time

    from tests.gateway.api.helpers import assert_typed, open_api
    from tests.gateway.contracts.helpers import next_nonce

    def submit(api: Any, party: Party, action: str, args: dict[str, Any], *cos: Party) -> None:
        entry = party.tx("engine" if action in ("register", "create") else "route", action,
                         args, int(time.time()), cosigners=cos, nonce=next_nonce())  # fmt: skip
        assert api.tx(entry).status_code == 201

    for api in open_api(tmp_path):
        op = Party("operator-route")
        submit(api, op, "register", {"public_key": op.pk, "name": "op", "roles": ["operator"]})
        for party, role in ((GROWER, "grower"), (CARRIER, "carrier"), (RETAILER, "retailer")):
            submit(api, op, "register", {"public_key": party.pk, "name": role, "roles": [role]})
        submit(api, GROWER, "create", {"id": "route", "type": "agri", "params": {"certifiers": [op.pk]}})  # fmt: skip
        submit(api, GROWER, "register-lot", lot_args("R1", 10))
        submit(api, GROWER, "register-lot", lot_args("R2", 10))
        submit(api, GROWER, "handover", {"lot": "R1", "to": CARRIER.pk}, CARRIER)
        submit(api, CARRIER, "split", {"lot": "R1", "into": [{"lot": "R1a", "quantity": 4}, {"lot": "R1b", "quantity": 6}]})  # fmt: skip
        submit(api, CARRIER, "handover", {"lot": "R1a", "to": RETAILER.pk}, RETAILER)
        submit(api, RETAILER, "sell", {"lot": "R1a"})
        submit(api, op, "recall", {"lot": "R2", "reason": "test"})
        api.wait_integrated()
        resp = api.get("/v1/contracts/route/epcis")
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert validate([doc])[0]["success"]
        events = doc["epcisBody"]["eventList"]
        assert len(events) == 7
        link = events[0]["edgeseal:proofBundle"]
        assert link.endswith(f"/v1/bundle/{events[0]['edgeseal:logIndex']}")
        bundle = api.get(link[link.index("/v1/") :])
        assert (
            bundle.status_code == 200
            and json.loads(bundle.content)["entry"]["index"] == (events[0]["edgeseal:logIndex"])
        )
        assert base64.b64decode(json.loads(bundle.content)["entry"]["base64"])[0] == 0x03
        assert_typed(api.get("/v1/contracts/nope/epcis"), 404, "not-found")


def _random_world(rng: Any, n: int) -> Log:
    """Return a log of an agri contract with random lots, handovers, splits, merges, sales and
    recalls (ids over the whole lot-id charset, GTIN and free-text codes, GLN and text origins)."""
    from .helpers import setup

    log = Log()
    setup(log, {"g": (GROWER, ["grower"]), "c": (CARRIER, ["carrier", "grower"]),
                "r": (RETAILER, ["retailer"]), "cert": (CERT, ["certifier"])})  # fmt: skip
    cid = f"rand-{n}"
    log.ok(GROWER.tx("engine", "create", {"id": cid, "type": "agri", "params": {"certifiers": [CERT.pk]}}, T0))  # fmt: skip
    charset = "ABCxyz019._:-"
    codes = ["4006381333931", "04012345", "96385074", "614141000036", "Äpfel-Elstar"]
    origins = ["4012345000009", "NL-Betuwe", "Ferme de l'Été", "https://id.gs1.org/414/4012345000009"]  # fmt: skip
    lots: dict[str, tuple[Party, int]] = {}
    t = T0
    for step in range(12):
        t += 60
        active = sorted(lots)
        choice = rng.randrange(5) if active else 0
        if choice == 0 or len(active) < 2:
            lot = "".join(rng.choice(charset) for _ in range(rng.randint(1, 12))) + str(step)
            qty = rng.randint(2, 10**6)
            args = {"lot": lot, "product": rng.choice(["äpple", "pear 🍐", "x"]),
                    "code": rng.choice(codes), "quantity": qty, "origin": rng.choice(origins)}  # fmt: skip
            log.ok(GROWER.tx(cid, "register-lot", args, t))
            lots[lot] = (GROWER, qty)
        elif choice == 1:
            lot = rng.choice(active)
            owner, qty = lots[lot]
            to = CARRIER if owner is GROWER else GROWER
            log.ok(owner.tx(cid, "handover", {"lot": lot, "to": to.pk}, t, cosigners=(to,)))
            lots[lot] = (to, qty)
        elif choice == 2:
            lot = rng.choice(active)
            owner, qty = lots.pop(lot)
            cut = rng.randint(1, qty - 1)
            parts = [(f"{lot}.a", cut), (f"{lot}.b", qty - cut)]
            into = [{"lot": p, "quantity": q} for p, q in parts if len(p) <= 64]
            if len(into) < 2:
                lots[lot] = (owner, qty)
                continue
            log.ok(owner.tx(cid, "split", {"lot": lot, "into": into}, t))
            lots.update({p: (owner, q) for p, q in parts})
        elif choice == 3:
            owner = rng.choice([GROWER, CARRIER])
            mine = [lot for lot in active if lots[lot][0] is owner]
            if len(mine) < 2:
                continue
            pair = rng.sample(mine, 2)
            into = f"m{step}"
            log.ok(owner.tx(cid, "merge", {"lots": pair, "into": into}, t))
            lots[into] = (owner, sum(lots.pop(p)[1] for p in pair))
        else:
            lot = rng.choice(active)
            log.ok(CERT.tx(cid, "recall", {"lot": lot, "reason": "random recall ✓"}, t))
            lots.pop(lot)
    return log


def test_random_agri_histories_give_valid_documents() -> None:
    import random

    rng = random.Random(20261207)
    docs = []
    for n in range(25):
        log = _random_world(rng, n)
        docs.append(document(log, f"rand-{n}"))
    results = validate(docs)
    assert all(r["success"] for r in results), [
        r["errors"][:3] for r in results if not r["success"]
    ]
    types = {e["bizStep"] for d in docs for e in d["epcisBody"]["eventList"]}
    assert types >= {"commissioning", "accepting", "repackaging", "assembling", "holding"}
