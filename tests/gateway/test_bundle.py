"""Proof bundles (format 2): every kind round-trips as canonical bytes; any tampering, down to one
bit anywhere in a bundle file, is rejected with a typed reason; a wrong key fails."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.bundle import (
    BundleError,
    build_bundle,
    encode_bundle,
    verify_bundle,
    verify_bundle_bytes,
)
from gateway.errors import EdgesealError
from gateway.ledger import Ledger, NoteSigner
from gateway.node import Node
from gateway.publish.cosignature import CosignatureSigner
from gateway.publish.policy import WitnessPolicy, parse_policy
from tests.gateway.node.helpers import PARKING, World, make_settings, started
from tests.gateway.simboard import SimBoard


class Built:
    """A populated ledger (read-only) with the indexes of interesting entries."""

    def __init__(self, ledger: Ledger, devices: dict[bytes, tuple[bytes, int]], vkey: str) -> None:
        self.ledger = ledger
        self.devices = devices
        self.vkey = vkey
        self.by_kind: dict[str, list[int]] = {}
        self.unsigned: list[int] = []
        self.rotated: list[int] = []
        self.charged: int | None = None

    def bundle(self, index: int) -> dict[str, Any]:
        """Return the bundle of entry index against the latest checkpoint (JSON round trip)."""
        return json.loads(self.bundle_bytes(index))

    def bundle_bytes(self, index: int) -> bytes:
        """Return the canonical bytes of the bundle of entry index (what the API serves)."""
        return encode_bundle(build_bundle(self.ledger, index, self.devices.get))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("bundle")
    settings = make_settings(tmp)
    sim = SimBoard("bundle-sim", sign_every=3)

    async def populate() -> Node:
        service = await started(settings)
        world = World()
        try:
            await world.setup(service)
            bay = world.bays[0]
            await service.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now + 60)])
            await service.sequencer.deliver(bay.device_id, [world.departure(bay, world.now + 7200)])
            await service.sequencer.enroll(sim.public_key, {"profile": "sim"})
            for _ in range(5):
                sim.reading()
            sim.rotate_key(hashlib.sha256(b"bundle-sim new key").digest())
            sim.reading(signed=True)
            await service.sequencer.deliver(sim.device_id, sim.upload(None))
        finally:
            await service.stop()
        return service

    service = asyncio.run(populate())
    devices = {d.device_id: (d.first_key, d.enrolled_index) for d in service.reads.devices()}
    ledger = Ledger.open_readonly(str(settings.ledger_path))
    b = Built(ledger, devices, ledger.vkey)
    from gateway import wire

    for index, entry in ledger.entries():
        kind = {1: "record", 2: "tx", 3: "event", 4: "enrollment"}[entry[0]]
        b.by_kind.setdefault(kind, []).append(index)
        if entry[0] == 1:
            rec = wire.decode_record(entry[1:])
            if rec.device_id == sim.device_id:
                (b.rotated if rec.seq > 5 else b.unsigned).append(index)
        if entry[0] == 3 and json.loads(entry[1:])["type"] == "charged":
            b.charged = index
    yield b
    ledger.close()


def test_every_kind_verifies(built: Built) -> None:
    for kind in ("record", "tx", "event", "enrollment"):
        for index in built.by_kind[kind][:6]:
            res = verify_bundle(built.bundle(index), built.vkey)
            assert res.index == index and res.size == built.ledger.tree_size
            assert res.origin in res.summary()


def test_unsigned_record_is_authenticated_by_its_successors(built: Built) -> None:
    unsigned = [i for i in built.unsigned if not built.bundle(i)["decoded"]["signature"]]
    assert unsigned
    doc = built.bundle(unsigned[0])
    assert doc["signature_material"]["successors"]
    assert "hash-chain links" in verify_bundle(doc, built.vkey).detail
    doc["signature_material"]["successors"] = []
    with pytest.raises(BundleError, match="no signed successor"):
        verify_bundle(doc, built.vkey)


def test_record_after_key_rotation_carries_the_rotation(built: Built) -> None:
    index = built.rotated[-1]
    doc = built.bundle(index)
    assert len(doc["signature_material"]["rotations"]) == 1
    verify_bundle(doc, built.vkey)
    doc["signature_material"]["rotations"] = []  # the first key did not sign it
    with pytest.raises(EdgesealError, match="bad-signature"):
        verify_bundle(doc, built.vkey)


def test_event_bundle_proves_its_causes(built: Built) -> None:
    assert built.charged is not None
    doc = built.bundle(built.charged)
    assert doc["decoded"]["contract"] == PARKING
    res = verify_bundle(doc, built.vkey)
    assert list(res.causes) == doc["decoded"]["causes"]
    assert "replaying the log" in res.detail
    assert set(doc["signature_material"]) == {"type", "causes"}  # no free-text note (format 2)


def _flip_b64(text: str) -> str:
    data = bytearray(base64.b64decode(text))
    data[len(data) // 2] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def _set(path: tuple[Any, ...], value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        obj = doc
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value(obj[path[-1]])

    return mutate


def _checkpoint_text(cp: str, fn: Callable[[list[str]], None]) -> str:
    lines = cp.split("\n")
    fn(lines)
    return "\n".join(lines)


def _bump_size(lines: list[str]) -> None:
    lines[1] = str(int(lines[1]) + 1)


def _change_ext(lines: list[str]) -> None:
    lines[3] = lines[3][:-1] + ("0" if lines[3][-1] != "0" else "1")


TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "version 1": _set(("version",), lambda v: 1),
    "version 3": _set(("version",), lambda v: 3),
    "extra field": lambda d: d.__setitem__("extra", 1),
    "missing field": lambda d: d.pop("decoded"),
    "entry.index": _set(("entry", "index"), lambda v: v + 1),
    "entry.kind": _set(("entry", "kind"), lambda v: "participant-tx"),
    "entry.base64": _set(("entry", "base64"), _flip_b64),
    "entry.base64 not canonical": _set(("entry", "base64"), lambda v: v + "="),
    "decoded": _set(("decoded", "seq"), lambda v: v + 1),
    "signature_material.public_key": _set(
        ("signature_material", "public_key"), lambda v: "00" * 32
    ),
    "signature_material.signature": _set(("signature_material", "signature"), lambda v: "ab"),
    "signature_material.type": _set(("signature_material", "type"), lambda v: "participant-tx"),
    "inclusion.index": _set(("inclusion", "index"), lambda v: v + 1),
    "inclusion.size": _set(("inclusion", "size"), lambda v: v - 1),
    "inclusion.hashes": _set(("inclusion", "hashes"), lambda v: [_flip_b64(v[0]), *v[1:]]),
    "inclusion.hashes dropped": _set(("inclusion", "hashes"), lambda v: v[1:]),
    "checkpoint size": _set(("checkpoint",), lambda v: _checkpoint_text(v, _bump_size)),
    "checkpoint extension": _set(("checkpoint",), lambda v: _checkpoint_text(v, _change_ext)),
    "checkpoint signature": _set(("checkpoint",), lambda v: v[:-10] + "AAAAAAAAA\n"),
    "anchor": _set(("anchor",), lambda v: {"chain": "x"}),
}


@pytest.mark.parametrize("what", sorted(TAMPER))
def test_tampering_with_a_record_bundle_is_rejected(built: Built, what: str) -> None:
    signed = [i for i in built.by_kind["record"] if built.bundle(i)["decoded"]["signature"]]
    doc = built.bundle(signed[0])
    verify_bundle(copy.deepcopy(doc), built.vkey)
    TAMPER[what](doc)
    with pytest.raises(EdgesealError) as info:
        verify_bundle(doc, built.vkey)
    assert info.value.code and info.value.message


TX_TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "signers": _set(("signature_material", "signers"), lambda v: [*v, "11" * 32]),
    "signatures": _set(("signature_material", "signatures"), lambda v: ["00" * 64]),
    "tx_hash": _set(("signature_material", "tx_hash"), lambda v: "00" * 32),
    "decoded body": _set(("decoded", "body", "nonce"), lambda v: v + 1),
    "entry bytes": _set(("entry", "base64"), _flip_b64),
}


@pytest.mark.parametrize("what", sorted(TX_TAMPER))
def test_tampering_with_a_transaction_bundle_is_rejected(built: Built, what: str) -> None:
    doc = built.bundle(built.by_kind["tx"][0])
    TX_TAMPER[what](doc)
    with pytest.raises(EdgesealError):
        verify_bundle(doc, built.vkey)


def test_tampering_with_an_event_cause_is_rejected(built: Built) -> None:
    assert built.charged is not None
    doc = built.bundle(built.charged)
    doc["signature_material"]["causes"] = doc["signature_material"]["causes"][1:]
    with pytest.raises(BundleError, match="proven causes"):
        verify_bundle(doc, built.vkey)
    doc = built.bundle(built.charged)
    doc["signature_material"]["causes"][0]["inclusion"]["hashes"] = []
    with pytest.raises(BundleError, match="cause does not verify"):
        verify_bundle(doc, built.vkey)


def test_wrong_vkey_fails(built: Built) -> None:
    other = NoteSigner.generate(built.ledger.origin).vkey
    doc = built.bundle(built.by_kind["record"][0])
    with pytest.raises(BundleError, match="checkpoint does not verify"):
        verify_bundle(doc, other)
    with pytest.raises(BundleError, match="verifier key"):
        verify_bundle(doc, "not a vkey")


def test_entry_not_yet_integrated_has_no_bundle(built: Built) -> None:
    first = built.ledger.checkpoint_at(0)
    with pytest.raises(BundleError, match="not-integrated|not covered"):
        build_bundle(built.ledger, 0, built.devices.get, first)


def test_bundle_file_is_self_contained(built: Built, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(built.bundle_bytes(built.by_kind["record"][0]))
    verify_bundle_bytes(path.read_bytes(), built.vkey)


# ---- format 2: canonical bytes, strictness, every bit covered ---------------------------------


def _samples(built: Built) -> dict[str, int]:
    """Return one log index per kind of bundle the bit-flip and mutation tests cover."""
    records = built.by_kind["record"]
    signed = [i for i in records if built.bundle(i)["decoded"]["signature"]]
    unsigned = [i for i in built.unsigned if not built.bundle(i)["decoded"]["signature"]]
    assert built.charged is not None and signed and unsigned
    return {
        "signed record": signed[0],
        "unsigned record": unsigned[0],
        "rotated record": built.rotated[-1],
        "participant tx": built.by_kind["tx"][0],
        "enrollment": built.by_kind["enrollment"][0],
        "event with causes": built.charged,
    }


def test_every_kind_verifies_as_canonical_bytes(built: Built) -> None:
    for what, index in _samples(built).items():
        data = built.bundle_bytes(index)
        assert encode_bundle(json.loads(data)) == data, what
        assert b" " not in data.split(b'"checkpoint":')[0], what  # no insignificant whitespace
        assert verify_bundle_bytes(data, built.vkey).index == index, what


def _flip_positions(n_bytes: int, rng: random.Random, max_bits: int) -> list[int]:
    """Return bit positions to flip: every bit of a small file, else a sample of max_bits (plus
    every bit of the first and last 8 bytes)."""
    total = 8 * n_bytes
    if total <= max_bits:
        return list(range(total))
    edges = [*range(64), *range(total - 64, total)]
    return sorted(set(edges) | set(rng.sample(range(total), max_bits)))


# why: every bit of the smallest bundle (an enrollment: ~1.3 KB, ~10,000 flips) and a fixed
# sample of the larger ones keep this test at a few seconds. EDGESEAL_FLIP_EVERY_BIT=1 flips
# every bit of every sample (about a minute).
MAX_FLIPPED_BITS = 12_000
SAMPLED_BITS = 2_000
FLIP_EVERY_BIT = bool(os.environ.get("EDGESEAL_FLIP_EVERY_BIT"))


@pytest.mark.parametrize(
    "what",
    [
        "enrollment",
        "signed record",
        "unsigned record",
        "rotated record",
        "participant tx",
        "event with causes",
    ],
)
def test_any_single_bit_flip_fails_with_a_typed_error(built: Built, what: str) -> None:
    data = built.bundle_bytes(_samples(built)[what])
    verify_bundle_bytes(data, built.vkey)
    rng = random.Random(f"bit flips of {what}")
    budget = MAX_FLIPPED_BITS if what == "enrollment" else SAMPLED_BITS
    if FLIP_EVERY_BIT:
        budget = 8 * len(data)
    positions = _flip_positions(len(data), rng, budget)
    if what == "enrollment":
        assert len(positions) == 8 * len(data)  # every byte of one whole bundle
    codes: dict[str, int] = {}
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(EdgesealError) as info:
            verify_bundle_bytes(bytes(flipped), built.vkey)
        assert info.value.code != "internal", (bit, info.value)
        codes[info.value.code] = codes.get(info.value.code, 0) + 1
    assert len(codes) > 3, codes  # refused by many different checks, not one catch-all


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


def _encode(fn: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    """Return a bytes mutation that edits the parsed bundle and re-encodes it canonically."""

    def mutate(data: bytes) -> bytes:
        doc = json.loads(data)
        fn(doc)
        return encode_bundle(doc)

    return mutate


def _sm(key: str, value: Callable[[Any], Any]) -> Callable[[bytes], bytes]:
    return _encode(_set(("signature_material", key), value))


def _extra_signature_line(data: bytes) -> bytes:
    doc = json.loads(data)
    other = NoteSigner.generate("witness.example/w1")
    sig = base64.b64encode(other.key_id + other.sign(b"x")).decode()
    doc["checkpoint"] += f"\u2014 witness.example/w1 {sig}\n"
    return encode_bundle(doc)


def _duplicate_signature_line(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["checkpoint"] += doc["checkpoint"].rstrip("\n").rsplit("\n", 1)[1] + "\n"
    return encode_bundle(doc)


# (sample, mutation of the canonical bytes, expected code): issue 14 item 9's list and more
MUTATIONS: dict[str, tuple[str, Callable[[bytes], bytes], str]] = {
    "free-text note on an event": (
        "event with causes",
        _encode(_set(("signature_material",), lambda v: {**v, "note": "causes prove it"})),
        "bad-bundle",
    ),
    "decoded 6 -> 6.0": (
        "signed record",
        lambda d: _replace_once(d, b'"boot":1,', b'"boot":1.0,'),
        "not-integer",
    ),
    "decoded 1 -> true": (
        "signed record",
        lambda d: _replace_once(d, b'"boot":1,', b'"boot":true,'),
        "decoded-mismatch",
    ),
    "decoded true -> 1": (
        "signed record",
        lambda d: _replace_once(d, b'"time_synced":true', b'"time_synced":1'),
        "decoded-mismatch",
    ),
    "decoded extra field": (
        "participant tx",
        _encode(_set(("decoded",), lambda v: {**v, "comment": "paid"})),
        "decoded-mismatch",
    ),
    "version 2.0": (
        "enrollment",
        lambda d: _replace_once(d, b'"version":2}', b'"version":2.0}'),
        "not-integer",
    ),
    "version 1": (
        "enrollment",
        lambda d: _replace_once(d, b'"version":2}', b'"version":1}'),
        "bad-version",
    ),  # fmt: skip
    "version 1e0": (
        "enrollment",
        lambda d: _replace_once(d, b'"version":2}', b'"version":2e0}'),
        "not-integer",
    ),  # fmt: skip
    "duplicate key": (
        "enrollment",
        lambda d: _replace_once(d, b'{"anchor":null,', b'{"anchor":null,"anchor":null,'),
        "duplicate-key",
    ),
    "whitespace": ("enrollment", lambda d: d.replace(b'","', b'", "', 1), "not-canonical"),
    "trailing newline": ("enrollment", lambda d: d + b"\n", "not-canonical"),
    "keys out of order": (
        "enrollment",
        lambda d: b'{"version":2,' + d[1:].replace(b',"version":2}', b"}"),
        "not-canonical",
    ),
    "escaped character": (
        "enrollment",
        lambda d: _replace_once(d, b'"anchor"', b'"\\u0061nchor"'),
        "not-canonical",
    ),
    "NaN": (
        "enrollment",
        lambda d: _replace_once(d, b'"anchor":null', b'"anchor":NaN'),
        "non-finite",
    ),  # fmt: skip
    "Infinity": (
        "enrollment",
        lambda d: _replace_once(d, b'"version":2}', b'"version":Infinity}'),
        "non-finite",
    ),  # fmt: skip
    "uppercase hex key": (
        "signed record",
        _sm("public_key", lambda v: v.upper()),
        "bad-hex",
    ),
    "successor on a signed record": (
        "signed record",
        _sm("successors", lambda v: [base64.b64encode(b"\x01" * 64).decode()]),
        "extra-successor",
    ),
    "reordered causes": (
        "event with causes",
        _sm("causes", lambda v: v[::-1]),
        "bad-cause",
    ),
    "a cause twice": (
        "event with causes",
        _sm("causes", lambda v: [*v, v[0]]),
        "bad-cause",
    ),
    "an unknown key's signature in the checkpoint": (
        "enrollment",
        _extra_signature_line,
        "bad-checkpoint",
    ),
    "the gateway's signature twice": (
        "enrollment",
        _duplicate_signature_line,
        "bad-checkpoint",
    ),
    "extra field in entry": (
        "enrollment",
        _encode(_set(("entry",), lambda v: {**v, "leaf_hash": "x"})),
        "bad-bundle",
    ),
    "tx_hash as uppercase": (
        "participant tx",
        _sm("tx_hash", lambda v: v.upper()),
        "material-mismatch",
    ),
}


@pytest.mark.parametrize("what", sorted(MUTATIONS))
def test_strict_mutations_are_refused(built: Built, what: str) -> None:
    sample, mutate, code = MUTATIONS[what]
    data = built.bundle_bytes(_samples(built)[sample])
    bad = mutate(data)
    assert bad != data
    with pytest.raises(EdgesealError) as info:
        verify_bundle_bytes(bad, built.vkey)
    assert info.value.code == code, info.value


def test_extra_successor_after_the_signed_one_is_refused(built: Built) -> None:
    index = _samples(built)["unsigned record"]
    doc = built.bundle(index)
    successors = doc["signature_material"]["successors"]
    closing = base64.b64decode(successors[-1])
    following = [
        e[1:]
        for i, e in built.ledger.entries(index + 1)
        if e[0] == 1 and e[4:20] == closing[3:19] and e[1:] not in map(base64.b64decode, successors)
    ]
    assert following
    successors.append(base64.b64encode(following[0]).decode())
    with pytest.raises(BundleError) as info:
        verify_bundle_bytes(encode_bundle(doc), built.vkey)
    assert info.value.code == "extra-successor"


def test_type_confusion_is_refused_in_a_parsed_bundle_too(built: Built) -> None:
    """The dict API (no bytes to check) compares as canonical JSON: 6 != 6.0, 1 != true."""
    doc = built.bundle(_samples(built)["signed record"])
    for key, value in (("seq", float(doc["decoded"]["seq"])), ("boot", True)):
        bad = copy.deepcopy(doc)
        bad["decoded"][key] = value
        with pytest.raises(BundleError, match="decoded-mismatch"):
            verify_bundle(bad, built.vkey)
    bad = copy.deepcopy(doc)
    bad["version"] = 2.0
    with pytest.raises(BundleError, match="bad-version"):
        verify_bundle(bad, built.vkey)
    bad["version"] = float("nan")
    with pytest.raises(BundleError, match="not-canonical"):
        verify_bundle(bad, built.vkey)


# ---- format 3: cosignature lines of the witnesses, checked against a policy -----------------

WITNESSES = [CosignatureSigner(NoteSigner.generate(f"witness{i}.example")) for i in range(3)]
STRANGER = CosignatureSigner(NoteSigner.generate("stranger.example"))


def _policy(built: Built) -> WitnessPolicy:
    """Return a 2-of-3 tlog-policy over WITNESSES for the built ledger's log."""
    lines = [f"log {built.vkey}"]
    lines += [f"witness W{i} {w.vkey}" for i, w in enumerate(WITNESSES)]
    return parse_policy("\n".join([*lines, "group g 2 W0 W1 W2", "quorum g"]) + "\n")


def _witnessed(built: Built, index: int, signers: list[CosignatureSigner]) -> bytes:
    """Return the canonical format-3 bundle of index against the latest checkpoint cosigned by
    `signers` (their cosignature/v1 lines after the gateway's signature line)."""
    cp = built.ledger.checkpoint()
    text = cp.decode().split("\n\n")[0] + "\n"
    note = cp + "".join(s.cosign(text, 1_700_000_000 + i) for i, s in enumerate(signers)).encode()
    return encode_bundle(build_bundle(built.ledger, index, built.devices.get, note))


def test_format_3_checks_the_quorum_only_with_a_policy(built: Built) -> None:
    policy = _policy(built)
    for what in ("enrollment", "event with causes"):
        data = _witnessed(built, _samples(built)[what], WITNESSES[:2])
        assert json.loads(data)["version"] == 3
        checked = verify_bundle_bytes(data, built.vkey, policy).check("witness-quorum")
        assert checked is not None and checked.status == "ok" and "W0, W1" in checked.detail
        unchecked = verify_bundle_bytes(data, built.vkey).check("witness-quorum")
        assert unchecked is not None and unchecked.status == "not-checked"
    # format 2 keeps verifying; against a policy it has no quorum
    data = built.bundle_bytes(_samples(built)["enrollment"])
    assert json.loads(data)["version"] == 2
    assert verify_bundle_bytes(data, built.vkey).check("witness-quorum").status == "not-checked"  # type: ignore[union-attr]
    with pytest.raises(BundleError, match="no-quorum"):
        verify_bundle_bytes(data, built.vkey, policy)


def test_format_3_short_of_quorum_or_with_strangers_fails(built: Built) -> None:
    policy, index = _policy(built), _samples(built)["enrollment"]
    short = _witnessed(built, index, WITNESSES[:1])  # k - 1 cosignatures
    with pytest.raises(BundleError, match="no-quorum"):
        verify_bundle_bytes(short, built.vkey, policy)
    assert verify_bundle_bytes(short, built.vkey).check("witness-quorum").status == "not-checked"  # type: ignore[union-attr]
    stranger = _witnessed(built, index, [*WITNESSES[:2], STRANGER])
    with pytest.raises(BundleError, match="unknown-cosigner"):
        verify_bundle_bytes(stranger, built.vkey, policy)
    # a cosignature over another checkpoint (a forged or replayed line) is refused by name
    doc = json.loads(_witnessed(built, index, WITNESSES[:2]))
    other = WITNESSES[2].cosign("another\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", 5)
    doc["checkpoint"] += other
    with pytest.raises(BundleError, match="bad-cosignature"):
        verify_bundle_bytes(encode_bundle(doc), built.vkey, policy)


def test_format_3_any_single_bit_flip_fails_against_the_policy(built: Built) -> None:
    policy = _policy(built)
    data = _witnessed(built, _samples(built)["enrollment"], WITNESSES)
    verify_bundle_bytes(data, built.vkey, policy)
    start = data.index(b'"checkpoint":')
    end = data.index(b'","decoded"') if b'","decoded"' in data else len(data)
    rng = random.Random("format 3 bit flips")
    # every bit of the checkpoint (with its cosignatures), a sample of the rest
    cp_bits = list(range(8 * start, 8 * min(end, start + 2000)))
    positions = sorted(set(cp_bits) | set(_flip_positions(len(data), rng, SAMPLED_BITS)))
    if FLIP_EVERY_BIT:
        positions = list(range(8 * len(data)))
    codes: dict[str, int] = {}
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(EdgesealError) as info:
            verify_bundle_bytes(bytes(flipped), built.vkey, policy)
        assert info.value.code != "internal", (bit, info.value)
        codes[info.value.code] = codes.get(info.value.code, 0) + 1
    assert {"bad-cosignature", "bad-checkpoint"} <= set(codes), codes


def test_format_3_without_a_policy_never_claims_the_cosignatures(built: Built) -> None:
    """A flipped bit inside a cosignature's signature cannot be seen without the witness keys:
    the verifier then says "not-checked" for the quorum, never "ok"."""
    data = _witnessed(built, _samples(built)["enrollment"], WITNESSES[:2])
    doc = json.loads(data)
    lines = doc["checkpoint"].split("\n")
    name, sig = lines[-2].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    lines[-2] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
    doc["checkpoint"] = "\n".join(lines)
    tampered = encode_bundle(doc)
    result = verify_bundle_bytes(tampered, built.vkey)
    assert result.check("witness-quorum").status == "not-checked"  # type: ignore[union-attr]
    assert "not-checked" in result.summary()
    with pytest.raises(BundleError, match="bad-cosignature"):
        verify_bundle_bytes(tampered, built.vkey, _policy(built))


def test_only_a_format_4_bundle_carries_an_anchor_and_never_in_a_cause(built: Built) -> None:
    """Format 4 (tests/gateway/anchor/test_bundle_anchor.py builds real ones on anvil): the
    version and the anchor section go together, and a cause never has one."""
    assert built.charged is not None
    doc = built.bundle(built.charged)
    assert verify_bundle(copy.deepcopy(doc), built.vkey).check("anchor").status == "not-checked"  # type: ignore[union-attr]
    doc["signature_material"]["causes"][0]["anchor"] = {"checkpoint": doc["checkpoint"]}
    with pytest.raises(BundleError, match="cause does not verify.*only a format 4"):
        verify_bundle(doc, built.vkey)
    doc = built.bundle(built.charged)
    doc["version"] = 4
    for cause in doc["signature_material"]["causes"]:
        cause["version"] = 4
    with pytest.raises(BundleError, match="carries an anchor section") as info:
        verify_bundle(doc, built.vkey)
    assert info.value.code == "bad-anchor"
