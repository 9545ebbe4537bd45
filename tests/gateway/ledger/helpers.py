"""Test helpers: device keys and wire-format v1 record chains (docs/wire-format.md), built by hand."""

import hashlib
import struct

import nacl.signing

from gateway import wire
from gateway.ledger.entries import KIND_DEVICE_RECORD, enrollment_entry

_HEADER = struct.Struct(">BBB16sIII32sB")


class Device:
    """A simulated board: a deterministic Ed25519 key and its hash-chain tip."""

    def __init__(self, n: int) -> None:
        self.key = nacl.signing.SigningKey(hashlib.sha256(b"device-%d" % n).digest())
        self.public_key = bytes(self.key.verify_key)
        self.device_id = wire.device_id_for(self.public_key)
        self.seq = 0
        self.tip = wire.genesis_hash(self.device_id)

    def enrollment(self) -> tuple[int, bytes]:
        """Return the (kind, payload) enrollment entry of this device."""
        return enrollment_entry(self.device_id, self.public_key, {"board": "esp32", "n": 1})

    def record(self, value: int, signed: bool) -> bytes:
        """Return the next reading record (temperature = value) and advance the chain."""
        self.seq += 1
        body = _HEADER.pack(
            1, wire.READING, 1, self.device_id, self.seq, 3, 1_700_000_000 + self.seq, self.tip, 1
        ) + struct.pack(">BBi", 1, 0, value)
        self.tip = hashlib.sha256(body).digest()
        return body + (self.key.sign(body).signature if signed else b"")

    def records(self, count: int, sign_every: int = 1) -> list[tuple[int, bytes]]:
        """Return `count` record entries; every sign_every-th (and the last) is signed."""
        out = []
        for i in range(count):
            signed = (i + 1) % sign_every == 0 or i == count - 1
            out.append((KIND_DEVICE_RECORD, self.record(2000 + i, signed)))
        return out
