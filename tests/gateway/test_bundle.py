"""Proof bundles: every kind round-trips; any tampering is rejected with a reason; wrong key fails."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.bundle import BundleError, build_bundle, verify_bundle
from gateway.errors import EdgesealError
from gateway.ledger import Ledger, NoteSigner
from gateway.node import Node
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
        doc = build_bundle(self.ledger, index, self.devices.get)
        return json.loads(json.dumps(doc))


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
    assert "replaying the log" in doc["signature_material"]["note"]


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
    "version": _set(("version",), lambda v: 2),
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
    path.write_text(json.dumps(built.bundle(built.by_kind["record"][0])))
    verify_bundle(json.loads(path.read_text()), built.vkey)
