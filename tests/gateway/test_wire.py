"""Gateway wire format v1: the shared vectors, the registry against the spec, and the chain rules."""

import json
import re
from pathlib import Path

import pytest

from gateway import wire
from gateway.errors import ChainError, SignatureError, WireError

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "records.json").read_text())
KEYS = VECTORS["keys"]
ERRORS = {"WireError": WireError, "SignatureError": SignatureError, "ChainError": ChainError}


def _pk(name: str) -> bytes:
    return bytes.fromhex(KEYS[name]["public_key"])


@pytest.mark.parametrize("vec", VECTORS["positive"], ids=lambda v: v["name"])
def test_positive_vector_decodes_to_its_fields(vec):
    rec = wire.decode_record(bytes.fromhex(vec["hex"]))
    f = vec["fields"]
    assert (rec.version, rec.kind, rec.flags) == (1, f["kind"], f["flags"])
    assert rec.device_id.hex() == f["device_id"]
    assert (rec.seq, rec.boot, rec.time_s) == (f["seq"], f["boot"], f["time_s"])
    assert rec.prev_hash.hex() == f["prev_hash"]
    want = [(t, c, bytes.fromhex(v) if isinstance(v, str) else v) for t, c, v in f["values"]]
    assert [tuple(v) for v in rec.values] == want
    assert rec.record_hash.hex() == vec["record_hash"]
    assert rec.signed == vec["signed"]
    assert rec.raw.hex() == vec["hex"]


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS["positive"] if v["signed"]], ids=lambda v: v["name"]
)
def test_positive_signed_vector_verifies(vec):
    rec = wire.decode_record(bytes.fromhex(vec["hex"]))
    wire.verify_signature(rec, _pk(vec["key"]))


def test_device_ids_and_genesis_match_the_vector_keys():
    for k in KEYS.values():
        pk = bytes.fromhex(k["public_key"])
        assert wire.device_id_for(pk).hex() == k["device_id"]
        assert wire.genesis_hash(wire.device_id_for(pk)).hex() == k["genesis_hash"]


@pytest.mark.parametrize("vec", VECTORS["negative"], ids=lambda v: v["name"])
def test_negative_vector_is_rejected_with_its_code(vec):
    raw = bytes.fromhex(vec["hex"])
    with pytest.raises(ERRORS[vec["error"]]) as exc:
        rec = wire.decode_record(raw)
        wire.verify_signature(rec, _pk(vec["key"]))
    assert type(exc.value) is ERRORS[vec["error"]]
    assert exc.value.code == vec["code"]


@pytest.mark.parametrize("vec", VECTORS["chains"], ids=lambda v: v["name"])
def test_chain_vector(vec):
    pk = _pk(vec["key"])
    chain = wire.DeviceChain(wire.device_id_for(pk), pk)
    accepted = []
    records = [wire.decode_record(bytes.fromhex(h)) for h in vec["records"]]
    for i, rec in enumerate(records + [None]):
        if "error" in vec and i == vec["at"]:  # at == len(records): finish() raises
            before = (chain.last_seq, chain.last_hash, list(chain.pending), chain.detached_at)
            with pytest.raises(ERRORS[vec["error"]]) as exc:
                chain.push(rec) if rec is not None else chain.finish()
            assert exc.value.code == vec["code"]
            assert (
                chain.last_seq,
                chain.last_hash,
                list(chain.pending),
                chain.detached_at,
            ) == before
            return
        if rec is not None:
            accepted += chain.push(rec)
    chain.finish()
    assert len(accepted) == vec["accepted"]
    assert len(chain.pending) == vec["pending"]
    assert accepted == [records[i] for i in vec.get("accepted_at", range(vec["accepted"]))]
    breaks = [
        {
            "seq": b.seq,
            "reason": b.reason,
            "held_seq": b.held_seq,
            "missing": [b.missing_from, b.missing_to],
            "orphaned": b.orphaned,
        }
        for b in chain.breaks
    ]
    assert breaks == vec.get("breaks", [])


def test_registry_matches_the_vectors_and_the_spec_table():
    assert [c._asdict() for c in wire.CHANNELS.values()] == VECTORS["channels"]
    rows = re.findall(
        r"^\| (\d+) \| (\w+) \| (\S+) \| (-?\d+) \| (i32|b16|b32) \| (\S+) \| (\S+) \|$",
        (ROOT / "docs" / "wire-format.md").read_text(),
        re.M,
    )
    assert len(rows) == len(wire.CHANNELS)
    for id_, name, unit, scale, width, lo, hi in rows:
        ch = wire.CHANNELS[int(id_)]
        assert (ch.name, ch.unit, ch.scale, ch.width) == (name, unit, int(scale), width)
        assert str(ch.min if ch.min is not None else "-") == lo
        assert str(ch.max if ch.max is not None else "-") == hi


def test_key_rotation_switches_the_chain_key():
    vec = next(v for v in VECTORS["positive"] if v["name"] == "key-rotation")
    rec = wire.decode_record(bytes.fromhex(vec["hex"]))
    pk = _pk("c")
    chain = wire.DeviceChain(rec.device_id, pk, last_seq=6, last_hash=rec.prev_hash)
    assert chain.push(rec) == [rec]
    assert chain.public_key == rec.value(wire.Ch.NEW_PUBLIC_KEY)


def test_small_order_and_non_canonical_public_keys_are_rejected():
    identity = (1).to_bytes(32, "little")
    order2 = (2**255 - 20).to_bytes(32, "little")  # y = -1
    non_canonical = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1
    for bad in (identity, order2, bytes(32), non_canonical, b"\x01" * 31):
        with pytest.raises(SignatureError) as exc:
            wire.check_public_key(bad)
        assert exc.value.code == "bad-public-key"
    wire.check_public_key(_pk("a"))


def test_unsigned_run_is_bounded(monkeypatch):
    monkeypatch.setattr(wire, "MAX_PENDING_UNSIGNED", 1)
    vec = VECTORS["chains"][0]
    pk = _pk(vec["key"])
    chain = wire.DeviceChain(wire.device_id_for(pk), pk)
    first, second = (wire.decode_record(bytes.fromhex(h)) for h in vec["records"][:2])
    assert chain.push(first) == []
    with pytest.raises(SignatureError) as exc:
        chain.push(second)
    assert exc.value.code == "unsigned-run"
    assert chain.pending == [first]


def test_record_of_another_device_is_rejected():
    vec = VECTORS["positive"][0]
    rec = wire.decode_record(bytes.fromhex(vec["hex"]))
    chain = wire.DeviceChain(wire.device_id_for(_pk("b")), _pk("b"))
    with pytest.raises(SignatureError) as exc:
        chain.push(rec)
    assert exc.value.code == "wrong-device"


def test_to_json_view():
    rec = wire.decode_record(bytes.fromhex(VECTORS["positive"][0]["hex"]))
    view = rec.to_json()
    assert view["kind"] == "reading" and view["seq"] == 0
    assert view["values"][0] == {
        "type": "temperature",
        "channel": 0,
        "unit": "degC",
        "raw": 2575,
        "scale": -2,
    }
