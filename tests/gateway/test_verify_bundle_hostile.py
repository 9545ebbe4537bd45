"""`edgeseal verify-bundle` on hostile input (issue 14 item 8): never a traceback, always
"FAILED: <code>: <reason>" and exit 1.

The hostile bundles here are self-signed: the attacker runs a log of its own (its own key) holding
entries the real gateway would never accept (an event whose causes are 1e400 or Infinity, JSON
nested thousands deep, bytes that are not UTF-8), builds a bundle by hand and hands over the
file with its own vkey. The signature and the inclusion proof check out; what follows must fail
with a typed reason.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.bounds import MAX_BUNDLE_BYTES
from gateway.bundle import BUNDLE_VERSION, decode_view, encode_bundle
from gateway.cli import EXIT_FAILED, main
from gateway.ledger import Ledger, NoteSigner
from gateway.ledger.entries import (
    KIND_CONTRACT_EVENT,
    KIND_DEVICE_ENROLLMENT,
    KIND_NAMES,
    KIND_PARTICIPANT_TX,
)

DEEP = 5_000  # far past Python's recursion limit (1000) and bounds.MAX_JSON_DEPTH (32)


def _self_signed(tmp_path: Path, kind: int, payload: bytes, material: Any) -> tuple[Path, str]:
    """Return (a hand-made bundle file of one entry in a log of the attacker's own, its vkey)."""
    signer = NoteSigner.generate()
    with Ledger.open(str(tmp_path / "hostile.db"), signer) as led:
        led.append([(kind, payload)])
        cp = led.integrate()
        entry = led.entry(0)
        decoded = decode_view(entry)  # what the verifier derives, unless the bytes do not decode
        doc = {
            "version": BUNDLE_VERSION,
            "entry": {
                "index": 0,
                "kind": KIND_NAMES[kind],
                "base64": base64.b64encode(entry).decode(),
            },  # fmt: skip
            "decoded": {} if "error" in decoded else decoded,
            "signature_material": material,
            "inclusion": {"index": 0, "size": 1, "hashes": []},
            "checkpoint": cp.decode(),
            "anchor": None,
        }
    path = tmp_path / "hostile.json"
    path.write_bytes(encode_bundle(doc))
    return path, signer.vkey


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], code: str) -> str:
    assert main(argv) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("verify-bundle: FAILED: ") and "Traceback" not in err, err
    assert code in err, err
    return err


EVENT = {"type": "contract-event", "causes": []}
HOSTILE_ENTRIES = {
    "causes [1e400]": (KIND_CONTRACT_EVENT, b'{"causes":[1e400]}', EVENT, "bad-event"),
    "causes [Infinity]": (KIND_CONTRACT_EVENT, b'{"causes":[Infinity]}', EVENT, "bad-event"),
    "causes [NaN]": (KIND_CONTRACT_EVENT, b'{"causes":[NaN]}', EVENT, "bad-event"),
    "causes [true]": (KIND_CONTRACT_EVENT, b'{"causes":[true]}', EVENT, "not-integer"),
    "causes [-1]": (KIND_CONTRACT_EVENT, b'{"causes":[-1]}', EVENT, "out-of-range"),
    "deep event": (
        KIND_CONTRACT_EVENT,
        b'{"causes":[],"data":' + b"[" * DEEP + b"]" * DEEP + b"}",
        EVENT,
        "bad-event",
    ),
    "event not UTF-8": (KIND_CONTRACT_EVENT, b'{"causes":[\xff]}', EVENT, "bad-event"),
    "deep transaction body": (
        KIND_PARTICIPANT_TX,
        b"\x01" + b"\x00" * 64 + b"[" * DEEP + b"]" * DEEP,
        {"type": "participant-tx", "signers": [], "signatures": [], "tx_hash": ""},
        "bad-tx",
    ),
    "deep enrollment metadata": (
        KIND_DEVICE_ENROLLMENT,
        b"\x01" + b"\x00" * 48 + b'{"a":' + b"[" * DEEP + b"]" * DEEP + b"}",
        {"type": "device-enrollment", "device_id": "", "public_key": ""},
        "mismatch",
    ),
}


@pytest.mark.parametrize("what", sorted(HOSTILE_ENTRIES))
def test_self_signed_hostile_bundles_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    kind, payload, material, code = HOSTILE_ENTRIES[what]
    path, vkey = _self_signed(tmp_path, kind, payload, material)
    _fails(["verify-bundle", str(path), "--key", vkey], capsys, code)


HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, "too-deep"),
    "deeply nested object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "too-deep"),
    "empty file": (b"", "bad-json"),
    "binary": (bytes(range(256)) * 4, "bad-json"),
    "a number": (b"1e400", "not-integer"),
    "Infinity": (b"Infinity", "non-finite"),
    "duplicate keys": (b'{"a":1,"a":1}', "duplicate-key"),
    "a lone surrogate": (b'{"a":"\\ud800"}', "not-canonical"),
    "a list": (b"[]", "bad-bundle"),
    "canonical but empty": (b"{}", "bad-bundle"),
}


@pytest.mark.parametrize("what", sorted(HOSTILE_FILES))
def test_hostile_files_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    data, code = HOSTILE_FILES[what]
    path = tmp_path / "b.json"
    path.write_bytes(data)
    _fails(["verify-bundle", str(path), "--key", NoteSigner.generate().vkey], capsys, code)


def test_hostile_key_files_and_paths_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_bytes(b"{}")
    binary_key = tmp_path / "key.bin"
    binary_key.write_bytes(b"\xff\xfe\x00\x01" * 8)
    _fails(["verify-bundle", str(bundle), "--key", str(binary_key)], capsys, "bad-vkey")
    huge_key = tmp_path / "key.huge"
    huge_key.write_bytes(b"a" * 100_000)
    _fails(["verify-bundle", str(bundle), "--key", str(huge_key)], capsys, "bad-vkey")
    _fails(["verify-bundle", str(bundle), "--key", "not+a+vkey\udcff"], capsys, "bad-vkey")
    _fails(["verify-bundle", str(tmp_path), "--key", "x"], capsys, "cannot read")
    large = tmp_path / "large.json"
    with large.open("wb") as f:
        f.truncate(MAX_BUNDLE_BYTES + 1)  # sparse: no disk used
    _fails(["verify-bundle", str(large), "--key", "x"], capsys, "over the limit")


def _witnessed_file(tmp_path: Path, cosigners: int) -> tuple[Path, str, Path]:
    """Return (a format-3 enrollment bundle of the attacker's own log cosigned by `cosigners`
    of three witnesses, its vkey, a 2-of-3 policy file over those witnesses)."""
    from gateway.bundle import build_bundle
    from gateway.publish.cosignature import CosignatureSigner

    signer = NoteSigner.generate("edgeseal.example/gateway/hostile")
    witnesses = [CosignatureSigner(NoteSigner.generate(f"w{i}.example")) for i in range(3)]
    from gateway.ledger.entries import encode_enrollment
    from gateway.wire import device_id_for

    device_key = NoteSigner.generate().public_key
    payload = encode_enrollment(device_id_for(device_key), device_key, {"board": "w"})
    with Ledger.open(str(tmp_path / "w.db"), signer) as led:
        led.append([(KIND_DEVICE_ENROLLMENT, payload)])
        cp = led.integrate()
        text = cp.decode().split("\n\n")[0] + "\n"
        lines = "".join(w.cosign(text, 1_700_000_000) for w in witnesses[:cosigners])
        doc = build_bundle(led, 0, lambda _d: None, cp + lines.encode())
    path = tmp_path / "w.json"
    path.write_bytes(encode_bundle(doc))
    policy = tmp_path / "policy.txt"
    members = " ".join(f"W{i}" for i in range(3))
    policy.write_text(
        "".join(f"witness W{i} {w.vkey}\n" for i, w in enumerate(witnesses))
        + f"group g 2 {members}\nquorum g\n"
    )
    return path, signer.vkey, policy


def test_verify_bundle_prints_each_check_and_the_witness_quorum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, vkey, policy = _witnessed_file(tmp_path, 2)
    assert main(["verify-bundle", str(path), "--key", vkey, "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    for name in ("checkpoint-signature", "witness-quorum: ok", "inclusion", "entry-signature"):
        assert name in out, out
    assert main(["verify-bundle", str(path), "--key", vkey]) == 0
    assert "witness-quorum: not-checked" in capsys.readouterr().out
    (tmp_path / "short").mkdir()
    short, vkey, policy = _witnessed_file(tmp_path / "short", 1)  # k - 1 cosignatures
    _fails(
        ["verify-bundle", str(short), "--key", vkey, "--policy", str(policy)], capsys, "no-quorum"
    )


def test_verify_bundle_refuses_a_hostile_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, vkey, policy = _witnessed_file(tmp_path, 2)
    for text, code in (("group g 2 a b\nquorum g\n", "unknown-member"), ("\x00", "bad-character")):
        policy.write_text(text)
        argv = ["verify-bundle", str(path), "--key", vkey, "--policy", str(policy)]
        _fails(argv, capsys, f"bad-policy: {code}")
    _fails(
        ["verify-bundle", str(path), "--key", vkey, "--policy", "/nonexistent"],
        capsys,
        "unreadable",
    )


def _nested_rlp(depth: int) -> bytes:
    """Return the RLP of a list nested `depth` deep (built without recursion)."""
    item = b"\xc0"
    for _ in range(depth):
        n = len(item)
        if n <= 55:
            item = bytes([0xC0 + n]) + item
        else:
            length = n.to_bytes((n.bit_length() + 7) // 8, "big")
            item = bytes([0xF7 + len(length)]) + length + item
    return item


def _hostile_anchor(deep_header: bool) -> dict[str, Any]:
    """Return anchor evidence, well formed up to a proof node (or a header that hashes to its
    block hash) nested 20,000 lists deep (60 KB, under the evidence's 64 KB per field): past
    Python's default recursion limit (web3's py_ecc raises it to 100,000 on import)."""
    from eth_utils.crypto import keccak

    deep = _nested_rlp(20_000)
    header = deep if deep_header else _nested_rlp(1)
    return {
        "version": 1, "chain_id": 31337,
        "contract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "tx_hash": "0x" + "11" * 32, "block_number": 1, "block_hash": "0x" + keccak(header).hex(),
        "header_rlp": "0x" + header.hex(), "receipt_index": 0, "log_index": 0,
        "receipt_proof": [] if deep_header else ["0x" + deep.hex()], "tx_proof": [],
    }  # fmt: skip


@pytest.mark.parametrize("deep_header", [False, True], ids=["deep proof node", "deep header"])
def test_a_hostile_anchor_section_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deep_header: bool
) -> None:
    """A self-signed format 4 bundle (the attacker's own log, its checkpoint anchored "at"
    itself) whose evidence nests RLP 20,000 deep fails as bad-anchor, never "internal"."""
    from gateway.ledger.entries import encode_enrollment
    from gateway.wire import device_id_for

    key = NoteSigner.generate().public_key
    payload = encode_enrollment(device_id_for(key), key, {"board": "h"})
    material = {"type": "device-enrollment", "device_id": device_id_for(key).hex(),
                "public_key": key.hex()}  # fmt: skip
    path, vkey = _self_signed(tmp_path, KIND_DEVICE_ENROLLMENT, payload, material)
    doc = json.loads(path.read_bytes())
    doc["version"] = 4
    doc["anchor"] = {
        "checkpoint": doc["checkpoint"], "consistency": [], "evidence": _hostile_anchor(deep_header),
    }  # fmt: skip
    path.write_bytes(encode_bundle(doc))
    err = _fails(["verify-bundle", str(path), "--key", vkey], capsys, "bad-anchor")
    assert "internal" not in err
