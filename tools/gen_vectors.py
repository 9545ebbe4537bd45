"""Writes tests/vectors/records.json: the wire format v1 vectors, from a third, independent encoder.

This encoder is deliberately separate from firmware/wire.py and gateway/wire.py (struct-based, signs
with PyNaCl) so that the vectors test both implementations against docs/wire-format.md rather than
against each other.

    python tools/gen_vectors.py --check   # exit 1 if the file on disk differs from what this writes
    python tools/gen_vectors.py --write   # rewrite it, then exit 1 if anything changed
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = ROOT / "tests" / "vectors"

VERSION = 1
READING, HEARTBEAT, EVENT, KEY_ROTATION, CHAIN_SEGMENT = 1, 2, 3, 4, 5
BRK_JOURNAL_LOST, BRK_FLASH_FAULT, BRK_REFLASH, BRK_GATEWAY_BEHIND = 1, 2, 3, 4
TIME_SYNCED = 0x01
GENESIS_TAG = b"edgeseal/v1/genesis"
VECTOR_KEY_TAG = b"edgeseal vector key "

# The channel registry of docs/wire-format.md: id -> (name, unit, scale, width, min, max).
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
CHANNELS = {
    1: ("temperature", "degC", -2, "i32", -27315, 200000),
    2: ("humidity", "%RH", -2, "i32", 0, 10000),
    3: ("dissolved_oxygen", "mg/L", -2, "i32", 0, 10000),
    4: ("ph", "pH", -3, "i32", 0, 14000),
    5: ("ammonia", "mg/L", -3, "i32", 0, 1000000),
    6: ("energy", "Wh", 0, "i32", 0, I32_MAX),
    7: ("power", "W", -3, "i32", I32_MIN, I32_MAX),
    8: ("latitude", "deg", -7, "i32", -900000000, 900000000),
    9: ("longitude", "deg", -7, "i32", -1800000000, 1800000000),
    10: ("occupancy", "bool", 0, "i32", 0, 1),
    11: ("vehicle_commitment", "sha256/128", 0, "b16", None, None),
    12: ("weight", "kg", -3, "i32", 0, I32_MAX),
    13: ("tamper", "bool", 0, "i32", 0, 1),
    14: ("battery", "V", -3, "i32", 0, 100000),
    15: ("voltage", "V", -3, "i32", I32_MIN, I32_MAX),
    16: ("current", "A", -3, "i32", I32_MIN, I32_MAX),
    17: ("magnetic_field", "uT", -2, "i32", I32_MIN, I32_MAX),
    18: ("distance", "m", -3, "i32", 0, 100000),
    19: ("turbidity", "NTU", -1, "i32", 0, 100000),
    20: ("rssi", "dBm", 0, "i32", -127, 20),
    21: ("event_code", "code", 0, "i32", 1, 65535),
    22: ("event_arg", "count", 0, "i32", I32_MIN, I32_MAX),
    23: ("journal_depth", "records", 0, "i32", 0, I32_MAX),
    24: ("uptime", "s", 0, "i32", 0, I32_MAX),
    25: ("new_public_key", "ed25519", 0, "b32", None, None),
    26: ("break_reason", "code", 0, "i32", 1, 255),
    27: ("held_seq", "seq", 0, "i32", 0, I32_MAX),
}
Value = tuple[int, int, int | bytes]  # (type id, channel, payload): one entry of a record's values


def seed_for(name: str, tag: bytes = VECTOR_KEY_TAG) -> bytes:
    """Return a deterministic 32-byte Ed25519 seed for a named key: SHA-256(tag || name)."""
    return hashlib.sha256(tag + name.encode()).digest()


def device_id(public_key: bytes) -> bytes:
    """Return SHA-256(public key)[0:16]."""
    return hashlib.sha256(public_key).digest()[:16]


def genesis_hash(dev_id: bytes) -> bytes:
    """Return SHA-256("edgeseal/v1/genesis" || device_id)."""
    return hashlib.sha256(GENESIS_TAG + dev_id).digest()


def encode_value(type_id: int, channel: int, value: int | bytes) -> bytes:
    """Return one encoded value without range checks (negative vectors need bad ones)."""
    width = CHANNELS[type_id][3] if type_id in CHANNELS else "i32"
    if width == "i32":
        assert isinstance(value, int)
        return struct.pack(">BBi", type_id, channel, value)
    assert isinstance(value, bytes)
    return struct.pack(">BB", type_id, channel) + value


def pack_body(
    kind: int,
    flags: int,
    dev_id: bytes,
    seq: int,
    boot: int,
    time_s: int,
    prev_hash: bytes,
    values: Sequence[Value],
    version: int = VERSION,
) -> bytes:
    """Return the body bytes of a record (no validation): the 64-byte header, then the values."""
    head = struct.pack(
        ">BBB16sIII32sB", version, kind, flags, dev_id, seq, boot, time_s, prev_hash, len(values)
    )
    return head + b"".join(encode_value(t, c, v) for t, c, v in values)


def encode_body(f: dict) -> bytes:
    """Return the body bytes for the fields dict f (hex strings for bytes; no validation)."""
    return pack_body(
        f["kind"],
        f["flags"],
        bytes.fromhex(f["device_id"]),
        f["seq"],
        f["boot"],
        f["time_s"],
        bytes.fromhex(f["prev_hash"]),
        [(t, c, bytes.fromhex(v) if isinstance(v, str) else v) for t, c, v in f["values"]],
        f.get("version", VERSION),
    )


def record_hash(body: bytes) -> bytes:
    """Return SHA-256(body): the record's identity and its successor's prev_hash."""
    return hashlib.sha256(body).digest()


def seal(body: bytes, key: SigningKey, signed: bool) -> bytes:
    """Return the record bytes: body, then key's Ed25519 signature of it if signed."""
    return body + (key.sign(body).signature if signed else b"")


class Device:
    """A vector device: key, id and its chain head."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.key = SigningKey(seed_for(name))
        self.public_key = bytes(self.key.verify_key)
        self.id = device_id(self.public_key)
        self.head = genesis_hash(self.id)

    def record(
        self,
        kind: int,
        seq: int,
        values: list,
        signed: bool,
        boot: int = 3,
        time_s: int = 1795000000,
        flags: int = TIME_SYNCED,
        signer: SigningKey | None = None,
        advance: bool = True,
    ) -> tuple[dict, bytes]:
        """Return (fields, record bytes) chained onto this device's head."""
        fields = {
            "kind": kind,
            "flags": flags,
            "device_id": self.id.hex(),
            "seq": seq,
            "boot": boot,
            "time_s": time_s,
            "prev_hash": self.head.hex(),
            "values": values,
        }
        body = encode_body(fields)
        raw = seal(body, signer or self.key, signed)
        if advance:
            self.head = record_hash(body)
        return fields, raw


def positive(name: str, dev: Device, fields: dict, raw: bytes, signed: bool, note: str) -> dict:
    """Return a positive vector entry."""
    body_len = len(raw) - (64 if signed else 0)
    return {
        "name": name,
        "note": note,
        "key": dev.name,
        "fields": fields,
        "signed": signed,
        "record_hash": record_hash(raw[:body_len]).hex(),
        "hex": raw.hex(),
    }


def negative(name: str, dev: Device, raw: bytes, error: str, code: str, note: str) -> dict:
    """Return a negative vector entry: decoding or verifying with dev's key must fail so."""
    return {
        "name": name,
        "note": note,
        "key": dev.name,
        "error": error,
        "code": code,
        "hex": raw.hex(),
    }


def build() -> dict:
    """Return the whole vector document."""
    a, b, c = Device("a"), Device("b"), Device("c")
    pos: list[dict] = []
    neg: list[dict] = []
    chains: list[dict] = []

    temp_rh = [[1, 0, 2575], [2, 0, 6150], [1, 1, -1012]]
    f, r_signed = a.record(READING, 0, temp_rh, True)
    pos.append(positive("reading-signed", a, f, r_signed, True, "first record: prev_hash=genesis"))
    f, r_unsigned = a.record(READING, 1, [[1, 0, 2600]], False, time_s=1795000060)
    pos.append(
        positive("reading-unsigned", a, f, r_unsigned, False, "authentic once a successor is")
    )
    f, r_hb = a.record(HEARTBEAT, 2, [[14, 0, 3712], [23, 0, 1], [24, 0, 86400]], True)
    pos.append(positive("heartbeat-signed", a, f, r_hb, True, "closes the chain of the upload"))
    f, r_hb0 = a.record(HEARTBEAT, 9, [], False, boot=4, time_s=12, flags=0)
    pos.append(positive("heartbeat-empty-unsynced", a, f, r_hb0, False, "seq gap after reboot"))
    f, r_ev = a.record(EVENT, 10, [[21, 0, 2], [22, 0, 17]], True, boot=4, time_s=40, flags=0)
    pos.append(positive("event-overflow", a, f, r_ev, True, "journal overflow, 17 dropped"))

    edges = [
        [1, 0, -27315],
        [1, 1, 200000],
        [7, 0, I32_MIN],
        [8, 0, -900000000],
        [9, 0, 1800000000],
        [20, 0, -127],
        [11, 0, hashlib.sha256(b"salt" + b"vehicle-42").digest()[:16].hex()],
    ]
    f, r_edge = b.record(READING, 4294967295, edges, True, boot=4294967295, time_s=4294967295)
    pos.append(positive("reading-edge-values", b, f, r_edge, True, "every bound at its limit"))
    many = [[1, ch, ch * 100] for ch in range(16)]
    f, r_many = b.record(READING, 5, many, True)  # a fresh chain walk is not needed here
    pos.append(positive("reading-max-values", b, f, r_many, True, "16 values, body 160 bytes"))

    rot_key = SigningKey(seed_for("c-rotated"))
    f, r_rot = c.record(KEY_ROTATION, 7, [[25, 0, bytes(rot_key.verify_key).hex()]], True)
    pos.append(positive("key-rotation", c, f, r_rot, True, "signed by the old key"))

    seg_dev = Device("s")
    seg_dev.head = hashlib.sha256(b"a record the gateway never saw").digest()
    f, r_seg = seg_dev.record(CHAIN_SEGMENT, 41, [[26, 0, BRK_GATEWAY_BEHIND], [27, 0, 40]], True)
    pos.append(
        positive("chain-segment", seg_dev, f, r_seg, True, "gateway behind; board holds seq 40")
    )
    seg_dev.head = genesis_hash(seg_dev.id)
    f, r_seg0 = seg_dev.record(CHAIN_SEGMENT, 70, [[26, 0, BRK_JOURNAL_LOST]], True, flags=0)
    pos.append(
        positive("chain-segment-nothing-held", seg_dev, f, r_seg0, True, "prev_hash=genesis")
    )

    # Negative vectors, named by their mutation.
    flip = bytearray(r_signed)
    flip[-1] ^= 0x01
    neg.append(
        negative("sig-bit-flip", a, bytes(flip), "SignatureError", "bad-signature", "last sig bit")
    )
    flip = bytearray(r_signed)
    flip[69] ^= 0x01  # temperature 25.75 -> 25.74: still well-formed
    neg.append(
        negative("body-bit-flip", a, bytes(flip), "SignatureError", "bad-signature", "value bit")
    )
    neg.append(
        negative("truncated", a, r_signed[:50], "WireError", "truncated", "cut in the header")
    )
    neg.append(
        negative("truncated-values", a, r_signed[:70], "WireError", "truncated", "cut in a value")
    )
    neg.append(
        negative(
            "truncated-signature",
            a,
            r_signed[:-1],
            "WireError",
            "bad-signature-length",
            "last signature byte missing",
        )
    )
    neg.append(
        negative(
            "trailing-garbage", a, r_signed + b"\x00", "WireError", "trailing-garbage", "one byte"
        )
    )
    neg.append(
        negative(
            "trailing-garbage-unsigned",
            a,
            r_unsigned + b"\xff\xff\xff",
            "WireError",
            "bad-signature-length",
            "3 bytes after an unsigned body",
        )
    )
    neg.append(negative("empty", a, b"", "WireError", "empty", "no bytes"))
    neg.append(
        negative("bad-version", a, b"\x02" + r_signed[1:], "WireError", "bad-version", "version 2")
    )
    neg.append(
        negative(
            "bad-kind", a, r_signed[:1] + b"\x06" + r_signed[2:], "WireError", "bad-kind", "kind 6"
        )
    )
    neg.append(
        negative(
            "reserved-flags",
            a,
            r_signed[:2] + b"\x81" + r_signed[3:],
            "WireError",
            "reserved-flags",
            "bit 7 set",
        )
    )

    def one_off(name: str, values: list, code: str, note: str, kind: int = READING) -> None:
        _, raw = a.record(kind, 100, values, True, advance=False)
        neg.append(negative(name, a, raw, "WireError", code, note))

    one_off("value-overflow", [[2, 0, 10001]], "value-overflow", "humidity 100.01 %")
    one_off("value-underflow", [[1, 0, -27316]], "value-overflow", "below absolute zero")
    one_off("unknown-channel", [[200, 0, 1]], "unknown-channel", "type 200")
    one_off(
        "duplicate-channel", [[1, 0, 1], [1, 0, 2]], "duplicate-channel", "temperature ch0 twice"
    )
    one_off("reading-without-values", [], "kind-rules", "a reading must carry a value")
    one_off("event-without-code", [[22, 0, 1]], "kind-rules", "event needs event_code", EVENT)
    one_off("rotation-extra-value", [[25, 0, "00" * 32], [1, 0, 1]], "kind-rules", "", KEY_ROTATION)
    commitments = [[11, ch, "ab" * 16] for ch in range(7)]
    one_off("too-large", commitments, "too-large", "7 commitments: 190-byte body")
    too_many = bytearray(a.record(READING, 100, [[1, 0, 1]], False, advance=False)[1])
    too_many[63] = 17
    too_many += b"\x01\x01\x00\x00\x00\x01" * 16
    neg.append(
        negative("too-many-values", a, bytes(too_many), "WireError", "too-many-values", "17")
    )
    one_off("segment-without-reason", [[27, 0, 5]], "kind-rules", "", CHAIN_SEGMENT)
    one_off("segment-extra-value", [[26, 0, 1], [1, 0, 1]], "kind-rules", "", CHAIN_SEGMENT)
    one_off("reason-outside-segment", [[1, 0, 1], [26, 0, 1]], "kind-rules", "segment only")
    one_off("break-reason-zero", [[26, 0, 0]], "value-overflow", "codes start at 1", CHAIN_SEGMENT)
    _, unsigned_seg = seg_dev.record(CHAIN_SEGMENT, 71, [[26, 0, 1]], False, advance=False)
    neg.append(
        negative("segment-unsigned", seg_dev, unsigned_seg, "SignatureError", "unsigned", "")
    )
    _, unsigned_rot = c.record(KEY_ROTATION, 8, [[25, 0, "11" * 32]], False, advance=False)
    neg.append(
        negative(
            "rotation-unsigned", c, unsigned_rot, "SignatureError", "unsigned", "must be signed"
        )
    )
    _, wrong = a.record(READING, 100, [[1, 0, 1]], True, signer=b.key, advance=False)
    neg.append(
        negative("wrong-key", a, wrong, "SignatureError", "bad-signature", "signed by key b")
    )
    noncanon = bytearray(r_signed)
    s = int.from_bytes(noncanon[-32:], "little") + 2**252 + 27742317777372353535851937790883648493
    noncanon[-32:] = s.to_bytes(32, "little")
    neg.append(
        negative(
            "non-canonical-s",
            a,
            bytes(noncanon),
            "SignatureError",
            "non-canonical-signature",
            "S+L",
        )
    )

    # Chains: per-device sequences as they arrive at the gateway, from a fresh high-water mark.
    d = Device("d")
    _, d0 = d.record(READING, 1, [[1, 0, 1]], False)
    _, d1 = d.record(READING, 2, [[1, 0, 2]], False)
    _, d2 = d.record(HEARTBEAT, 3, [], True)
    _, d3 = d.record(READING, 5, [[1, 0, 3]], False)
    chains.append(
        {
            "name": "chain-signed-successor",
            "key": "d",
            "note": "two unsigned records authenticated by a signed heartbeat; the last one waits",
            "records": [x.hex() for x in (d0, d1, d2, d3)],
            "accepted": 3,
            "pending": 1,
        }
    )
    e = Device("e")
    _, e0 = e.record(READING, 1, [[1, 0, 1]], True)
    _, e1_bad = e.record(READING, 2, [[1, 0, 2]], True, advance=False)
    bad_prev = bytearray(e1_bad[:-64])
    bad_prev[31] ^= 0x01
    e1_bad = bytes(bad_prev) + e.key.sign(bytes(bad_prev)).signature
    chains.append(
        {
            "name": "chain-break",
            "key": "e",
            "note": "second record's prev_hash has a bit flipped (and is re-signed): it waits for a "
            "chain_segment that never comes, so the end of the upload (at = len) is a chain-break",
            "records": [e0.hex(), e1_bad.hex()],
            "error": "ChainError",
            "code": "chain-break",
            "at": 2,
        }
    )
    g = Device("g")
    _, g0 = g.record(READING, 5, [[1, 0, 1]], True)
    _, g1 = g.record(READING, 5, [[1, 0, 2]], True)
    chains.append(
        {
            "name": "replayed-seq",
            "key": "g",
            "note": "a correctly chained and signed record that reuses seq 5",
            "records": [g0.hex(), g1.hex()],
            "error": "ChainError",
            "code": "replayed-seq",
            "at": 1,
        }
    )

    chains += segment_chains()
    keys = {}
    for dev in (a, b, c, d, e, g, seg_dev, Device("h"), Device("k"), Device("m")):
        keys[dev.name] = {
            "seed": seed_for(dev.name).hex(),
            "public_key": dev.public_key.hex(),
            "device_id": dev.id.hex(),
            "genesis_hash": genesis_hash(dev.id).hex(),
        }
    channels = [
        {"id": i, "name": n, "unit": u, "scale": s, "width": w, "min": lo, "max": hi}
        for i, (n, u, s, w, lo, hi) in sorted(CHANNELS.items())
    ]
    return {
        "spec": "docs/wire-format.md",
        "version": VERSION,
        "generator": "tools/gen_vectors.py",
        "keys": keys,
        "channels": channels,
        "positive": pos,
        "negative": neg,
        "chains": chains,
    }


def segment_chains() -> list[dict]:
    """Return chain vectors of chain_segment records (docs/wire-format.md, Chain segments).

    Device h: a signed chain to seq 3, then a journal loss: a segment at seq 9 whose prev_hash is
    genesis is accepted, and so is the record after it; then the same break forged by key b
    (refused), a segment at a seq already used (refused) and an unsigned record across a break.
    """
    out = []
    h = Device("h")
    _, h1 = h.record(READING, 1, [[1, 0, 1]], False)
    _, h3 = h.record(HEARTBEAT, 3, [], True)
    lost = h.head
    h.head = genesis_hash(h.id)
    _, h9 = h.record(CHAIN_SEGMENT, 9, [[26, 0, BRK_JOURNAL_LOST]], True, flags=0)
    _, h10 = h.record(READING, 10, [[1, 0, 2]], True)
    out.append(
        {
            "name": "segment-after-journal-loss",
            "key": "h",
            "note": "the board lost seqs 4..8 and its head: the signed segment restarts the chain",
            "records": [x.hex() for x in (h1, h3, h9, h10)],
            "accepted": 4,
            "pending": 0,
            "breaks": [
                {
                    "seq": 9,
                    "reason": BRK_JOURNAL_LOST,
                    "held_seq": None,
                    "missing": [4, 8],
                    "orphaned": 0,
                }
            ],
        }
    )
    h.head = genesis_hash(h.id)
    forged_key = SigningKey(seed_for("b"))
    _, forged = h.record(CHAIN_SEGMENT, 9, [[26, 0, 1]], True, signer=forged_key, advance=False)
    _, low = h.record(CHAIN_SEGMENT, 3, [[26, 0, 1]], True, advance=False)
    h.head = lost
    _, unsigned = h.record(READING, 9, [[1, 0, 2]], True, advance=False)
    unsigned_brk = bytearray(unsigned[:-64])
    unsigned_brk[31] ^= 0x01
    _, second = h.record(READING, 10, [[1, 0, 3]], False, advance=False)  # links to lost
    for name, rec, err, code, note, at in (
        ("segment-forged", forged, "SignatureError", "bad-signature", "signed by key b", 2),
        ("segment-seq-not-above", low, "ChainError", "replayed-seq", "seq 3 is the head's", 2),
        ("break-without-segment", bytes(unsigned_brk), "ChainError", "chain-break", "at end", 3),
        ("second-break-in-a-run", bytes(unsigned_brk), "ChainError", "chain-break", "", 3),
    ):
        records = [h1.hex(), h3.hex(), rec.hex()] + ([second.hex()] if at == 3 else [])
        if name == "break-without-segment":
            records = records[:3]
        out.append(
            {
                "name": name,
                "key": "h",
                "note": note,
                "records": records,
                "error": err,
                "code": code,
                "at": at,
            }
        )
    k = Device("k")
    _, k0 = k.record(READING, 1, [[1, 0, 1]], True)
    k0_head = k.head
    _, k1 = k.record(READING, 2, [[1, 0, 2]], False)
    k.head = k0_head  # the board lost seq 2 to a flash fault and continues from seq 1
    _, k5 = k.record(CHAIN_SEGMENT, 5, [[26, 0, BRK_FLASH_FAULT], [27, 0, 1]], True)
    out.append(
        {
            "name": "segment-orphans-pending",
            "key": "k",
            "note": "unsigned seq 2 waits; the segment continues from seq 1: seq 2 is orphaned",
            "records": [k0.hex(), k1.hex(), k5.hex()],
            "accepted": 2,
            "pending": 0,
            "accepted_at": [0, 2],
            "breaks": [
                {
                    "seq": 5,
                    "reason": BRK_FLASH_FAULT,
                    "held_seq": 1,
                    "missing": [2, 4],
                    "orphaned": 1,
                }
            ],
        }
    )
    out += detached_run_chains()
    return out


def detached_run_chains() -> list[dict]:
    """Return chain vectors of a detached run: the gateway lacks seqs 2..3 (restored an older
    ledger); the board still holds 4..6 (a key rotation among them) and closes with a segment
    signed by the new key, which vouches for the run; without it the run is a chain-break."""
    m = Device("m")
    _, m1 = m.record(READING, 1, [[1, 0, 1]], True)
    m.record(READING, 2, [[1, 0, 2]], True)
    m.record(READING, 3, [[1, 0, 3]], True)
    _, m4 = m.record(READING, 4, [[1, 0, 4]], True)
    new_key = SigningKey(seed_for("m-rotated"))
    _, m5 = m.record(KEY_ROTATION, 5, [[25, 0, bytes(new_key.verify_key).hex()]], True)
    _, m6 = m.record(READING, 6, [[1, 0, 6]], False)
    values = [[26, 0, BRK_GATEWAY_BEHIND], [27, 0, 6]]
    _, m7 = m.record(CHAIN_SEGMENT, 7, values, True, signer=new_key, advance=False)
    _, m7_old = m.record(CHAIN_SEGMENT, 7, values, True, advance=False)
    run = [m1.hex(), m4.hex(), m5.hex(), m6.hex()]
    return [
        {
            "name": "segment-vouches-detached-run",
            "key": "m",
            "note": "seqs 2..3 missing; 4..6 wait after the break; the segment signed by the "
            "rotated key accepts them",
            "records": run + [m7.hex()],
            "accepted": 5,
            "pending": 0,
            "breaks": [
                {
                    "seq": 7,
                    "reason": BRK_GATEWAY_BEHIND,
                    "held_seq": 6,
                    "missing": [2, 3],
                    "orphaned": 0,
                }
            ],
        },
        {
            "name": "detached-run-old-key-segment",
            "key": "m",
            "note": "the segment is signed by the key the run rotated away from",
            "records": run + [m7_old.hex()],
            "error": "SignatureError",
            "code": "bad-signature",
            "at": 4,
        },
    ]


# BLE protocol v1 (docs/ble-protocol.md).
SERVICE_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0000"
INFO_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001"
DATA_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0002"
CONTROL_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0003"
COMPANY_ID = 0xFFFF
FRAME_CHUNK, FRAME_END, FRAME_STATUS = 1, 2, 3
CMD_SEND_FROM, CMD_ACK, CMD_TIME_SYNC, CMD_STOP = 1, 2, 3, 4
NONE_SEQ = 0xFFFFFFFF


def adv_payload(dev_id: bytes, pending: int) -> bytes:
    """Return the 31-byte advertising payload: flags, service UUID, manufacturer data."""
    uuid_le = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
    mfr = struct.pack("<H", COMPANY_ID) + dev_id[:4] + struct.pack(">H", min(pending, 0xFFFF))
    return b"\x02\x01\x06" + bytes([17, 0x07]) + uuid_le + bytes([len(mfr) + 1, 0xFF]) + mfr


def scan_response(dev_id: bytes) -> bytes:
    """Return the scan response: complete local name es-<id prefix>."""
    name = b"es-" + dev_id[:4].hex().encode()
    return bytes([len(name) + 1, 0x09]) + name


def chunk_frames(record: bytes, msg: int, mtu: int) -> list[bytes]:
    """Return the CHUNK frames that carry record at ATT MTU mtu."""
    per = mtu - 3 - 4
    pieces = [record[i : i + per] for i in range(0, len(record), per)]
    return [bytes([FRAME_CHUNK, msg, i, len(pieces)]) + p for i, p in enumerate(pieces)]


def info_bytes(dev: Device, fields: dict) -> bytes:
    """Return the info characteristic value (v2: the connection nonce before board_len)."""
    board = fields["board"].encode()
    return (
        struct.pack(">B16s32s3B", 2, dev.id, dev.public_key, *fields["firmware"])
        + struct.pack(
            ">IIIIIIB",
            fields["journal_depth"],
            fields["first_seq"],
            fields["last_seq"],
            fields["last_acked_seq"],
            fields["boot"],
            fields["time_s"],
            fields["flags"],
        )
        + bytes.fromhex(fields["nonce"])
        + bytes([len(board)])
        + board
    )


AUTH_MASTER = bytes(range(0x40, 0x60))  # the fixed test master secret of the auth vectors
LINK_DOMAIN = b"edgeseal/v2/link"
CMD_DOMAIN = b"edgeseal/v2/cmd"
AUTH_TAG_BYTES = 12


def link_key(master: bytes, dev_id: bytes) -> bytes:
    """Return the link key of dev_id under master: HMAC-SHA256(master, domain || device id)."""
    return hmac.new(master, LINK_DOMAIN + dev_id, hashlib.sha256).digest()


def sealed(key: bytes, dev_id: bytes, nonce: bytes, counter: int, command: bytes) -> bytes:
    """Return the v2 control write: command || counter u8 || HMAC-SHA256(...)[0:12]."""
    msg = CMD_DOMAIN + dev_id + nonce + bytes([counter]) + command
    return command + bytes([counter]) + hmac.new(key, msg, hashlib.sha256).digest()[:12]


def build_auth(dev: Device, commands: list[tuple[str, bytes]]) -> dict:
    """Return the authenticated-command vectors of device dev: the writes of one connection in
    order (counters 1, 2, ...) and negatives, each checked after accepting the writes `before`."""
    key = link_key(AUTH_MASTER, dev.id)
    nonce = hashlib.sha256(b"edgeseal vector nonce").digest()[:16]
    other_nonce = hashlib.sha256(b"edgeseal vector nonce 2").digest()[:16]
    writes = [sealed(key, dev.id, nonce, i + 1, c) for i, (_, c) in enumerate(commands)]
    send_from = commands[0][1]

    def flip(data: bytes, at: int) -> bytes:
        out = bytearray(data)
        out[at] ^= 0x01
        return bytes(out)

    other_key = link_key(AUTH_MASTER, bytes(16))
    bad = [
        ("bad-tag", [], flip(writes[0], -1), "bad-tag"),
        ("flipped-command", [], flip(writes[0], 4), "bad-tag"),
        ("flipped-counter", [], flip(writes[0], len(send_from)), "bad-tag"),
        ("replayed-counter", [0], writes[0], "replay"),
        ("stale-counter", [0, 1], writes[0], "replay"),
        ("counter-zero", [], sealed(key, dev.id, nonce, 0, send_from), "replay"),
        ("wrong-nonce", [], sealed(key, dev.id, other_nonce, 1, send_from), "bad-tag"),
        ("wrong-key", [], sealed(other_key, dev.id, nonce, 1, send_from), "bad-tag"),
        ("wrong-device", [], sealed(key, bytes(16), nonce, 1, send_from), "bad-tag"),
        ("truncated", [], writes[0][:-1], "bad-tag"),
        ("tag-only", [], writes[0][-13:], "short"),
        ("empty", [], b"", "short"),
    ]
    return {
        "master": AUTH_MASTER.hex(),
        "key": "a",
        "device_id": dev.id.hex(),
        "link_key": key.hex(),
        "nonce": nonce.hex(),
        "tag_bytes": AUTH_TAG_BYTES,
        "writes": [
            {"name": name, "command": c.hex(), "counter": i + 1, "hex": w.hex()}
            for i, ((name, c), w) in enumerate(zip(commands, writes, strict=True))
        ],
        "bad": [
            {"name": n, "before": before, "hex": w.hex(), "reason": reason}
            for n, before, w, reason in bad
        ],
    }


def build_ble(records: dict) -> dict:
    """Return the BLE vector document; records are the positive record vectors by name."""
    a = Device("a")
    frames = []
    for name, msg in (
        ("reading-signed", 0),
        ("reading-max-values", 7),
        ("heartbeat-empty-unsynced", 255),
    ):
        raw = bytes.fromhex(records[name]["hex"])
        for mtu in (23, 185, 247):
            frames.append(
                {
                    "record": name,
                    "msg": msg,
                    "mtu": mtu,
                    "frames": [f.hex() for f in chunk_frames(raw, msg, mtu)],
                }
            )
    info_fields = {
        "firmware": [0, 1, 0],
        "journal_depth": 12,
        "first_seq": 40,
        "last_seq": 51,
        "last_acked_seq": 39,
        "boot": 3,
        "time_s": 1795000000,
        "flags": 1,
        "nonce": hashlib.sha256(b"edgeseal vector nonce").digest()[:16].hex(),
        "board": "cold-chain-logger",
    }
    empty_fields = dict(info_fields, journal_depth=0, first_seq=NONE_SEQ, last_seq=NONE_SEQ,
                        last_acked_seq=NONE_SEQ, boot=1, time_s=5, flags=0, board="",
                        nonce="00" * 16)  # fmt: skip
    return {
        "spec": "docs/ble-protocol.md",
        "generator": "tools/gen_vectors.py",
        "uuids": {
            "service": SERVICE_UUID,
            "info": INFO_UUID,
            "data": DATA_UUID,
            "control": CONTROL_UUID,
        },
        "company_id": COMPANY_ID,
        "advertising": [
            {
                "key": "a",
                "pending": p,
                "adv": adv_payload(a.id, p).hex(),
                "scan_response": scan_response(a.id).hex(),
            }
            for p in (0, 12, 70000)
        ],
        "info": [
            {"key": "a", "fields": info_fields, "hex": info_bytes(a, info_fields).hex()},
            {"key": "a", "fields": empty_fields, "hex": info_bytes(a, empty_fields).hex()},
        ],
        "chunks": frames,
        "frames": [
            {"name": "end-all-sent", "hex": struct.pack(">BBII", FRAME_END, 0, 51, 12).hex()},
            {"name": "end-limit", "hex": struct.pack(">BBII", FRAME_END, 1, 45, 12).hex()},
            {"name": "end-empty", "hex": struct.pack(">BBII", FRAME_END, 2, NONE_SEQ, 0).hex()},
            {
                "name": "status-ack-ok",
                "hex": struct.pack(">BBBI", FRAME_STATUS, CMD_ACK, 0, 0).hex(),
            },
            {
                "name": "status-bad-command",
                "hex": struct.pack(">BBBI", FRAME_STATUS, 0x7F, 1, 0).hex(),
            },
        ],
        "commands": [
            {"name": "send-from", "hex": struct.pack(">BIH", CMD_SEND_FROM, 40, 0).hex()},
            {"name": "send-from-limit", "hex": struct.pack(">BIH", CMD_SEND_FROM, 40, 5).hex()},
            {"name": "ack", "hex": struct.pack(">BI", CMD_ACK, 51).hex()},
            {"name": "time-sync", "hex": struct.pack(">BI", CMD_TIME_SYNC, 1795000000).hex()},
            {"name": "stop", "hex": bytes([CMD_STOP]).hex()},
        ],
        "auth": build_auth(
            a,
            [
                ("send-from", struct.pack(">BIH", CMD_SEND_FROM, 40, 0)),
                ("ack", struct.pack(">BI", CMD_ACK, 51)),
                ("time-sync", struct.pack(">BI", CMD_TIME_SYNC, 1795000000)),
                ("stop", bytes([CMD_STOP])),
            ],
        ),
        "bad_commands": [
            {"name": "empty", "hex": "", "status": 1},
            {"name": "unknown-opcode", "hex": "7f00000001", "status": 1},
            {"name": "ack-short", "hex": struct.pack(">BH", CMD_ACK, 51).hex(), "status": 1},
            {
                "name": "send-from-long",
                "hex": struct.pack(">BIHB", CMD_SEND_FROM, 1, 0, 0).hex(),
                "status": 1,
            },
        ],
    }


def render() -> dict[str, str]:
    """Return {file name: exact text} for every vector file."""
    records = build()
    by_name = {v["name"]: v for v in records["positive"]}
    docs = {"records.json": records, "ble.json": build_ble(by_name)}
    return {name: json.dumps(doc, indent=1, sort_keys=True) + "\n" for name, doc in docs.items()}


def main(argv: list[str] | None = None) -> int:
    """Check or write the vectors; return 1 if the file differs from the generator's output."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare only")
    mode.add_argument("--write", action="store_true", help="rewrite, then fail if it changed")
    args = ap.parse_args(argv)
    status = 0
    for name, text in render().items():
        out = VECTORS_DIR / name
        old = out.read_text() if out.exists() else None
        if args.write:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        if old != text:
            print(
                f"{out.relative_to(ROOT)}: differs from tools/gen_vectors.py output",
                file=sys.stderr,
            )
            status = 1
        else:
            print(f"{out.relative_to(ROOT)}: up to date")
    return status


if __name__ == "__main__":
    sys.exit(main())
