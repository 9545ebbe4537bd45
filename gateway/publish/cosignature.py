"""C2SP tlog-cosignature, the Ed25519 `cosignature/v1` type: a witness's signature on a checkpoint.

Format (c2sp.org/tlog-cosignature, "Format" and "Ed25519 signed message"):

- key id = SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4]  (0x04, not the
  0x01 of a log's note key: the algorithm byte of cosignature/v1);
- vkey (signed-note "Verifier keys" with signature type 0x04):
  "<name>+<key id, 8 lowercase hex>+<base64(0x04 || public key)>";
- signature line: "\u2014 <name> <base64(key id || timestamp (u64 big-endian) || Ed25519 sig)>\\n"
  (the `timestamped_signature` structure, RFC 8446 3.3 serialisation);
- signed message: "cosignature/v1\\ntime <timestamp, decimal>\\n" || the whole checkpoint note
  body (origin, size, root and extension lines, with the final newline, no signature lines).

The witness's key file is the ordinary signed-note signer key of gateway.ledger.note (the
Ed25519 seed); `CosignatureSigner` derives the cosignature/v1 key id from it, so one key file
format and one key generator serve the log and the witness. A witness key must not also be used
as a log key (the spec: distinct public keys per cosigner; ours: distinct key files).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from gateway.bounds import MAX_INT64
from gateway.errors import ProofError
from gateway.ledger.note import SIG_PREFIX, NoteSigner, valid_key_name

ALG_COSIGNATURE_V1 = 0x04  # c2sp.org/tlog-cosignature: key id algorithm byte of Ed25519 cosigs
HEADER = "cosignature/v1\n"
TIMESTAMP_BYTES = 8
ED25519_SIGNATURE_BYTES = 64
# key id (4) || timestamp (8) || signature (64): the decoded payload of a cosignature line
COSIGNATURE_BYTES = 4 + TIMESTAMP_BYTES + ED25519_SIGNATURE_BYTES


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """Return SHA-256(name || 0x0A || 0x04 || public_key)[:4] (tlog-cosignature, "Format")."""
    return hashlib.sha256(
        name.encode() + b"\n" + bytes((ALG_COSIGNATURE_V1,)) + public_key
    ).digest()[:4]


def signed_message(checkpoint_text: str, timestamp_s: int) -> bytes:
    """Return the cosignature/v1 signed message for checkpoint note text and a POSIX time.

    tlog-cosignature, "Ed25519 signed message": the header line, "time <decimal>", then the
    checkpoint body. Requires 0 <= timestamp_s <= 2**63 - 1 and text ending in a newline.
    """
    if not 0 <= timestamp_s <= MAX_INT64:
        raise ValueError("cosignature timestamp must be in [0, 2**63 - 1]")
    if not checkpoint_text.endswith("\n"):
        raise ValueError("checkpoint text must end with a newline")
    return f"{HEADER}time {timestamp_s}\n{checkpoint_text}".encode()


class CosignatureSigner:
    """A witness's cosignature/v1 signer: its name and an Ed25519 key (from a note key file)."""

    def __init__(self, signer: NoteSigner) -> None:
        self.name = signer.name
        self.public_key = signer.public_key
        self.key_id = cosignature_key_id(self.name, self.public_key)
        self._signer = signer

    @property
    def vkey(self) -> str:
        """Return the witness vkey "<name>+<hex key id>+<base64(0x04 || public key)>"."""
        data = base64.b64encode(bytes((ALG_COSIGNATURE_V1,)) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{data}"

    def cosign(self, checkpoint_text: str, timestamp_s: int) -> str:
        """Return the cosignature line ("\u2014 name base64(...)\\n") over the checkpoint text.

        Requires 1 <= timestamp_s <= 2**63 - 1: tlog-witness, add-checkpoint: "The cosignature
        MUST NOT omit the timestamp, i.e. the timestamp MUST NOT be zero."
        """
        if timestamp_s < 1:
            raise ValueError("a witness cosignature timestamp must not be zero")
        sig = self._signer.sign(signed_message(checkpoint_text, timestamp_s))
        blob = self.key_id + struct.pack(">Q", timestamp_s) + sig
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's cosignature/v1 public key, for the gateway's witness client and verifiers."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte cosignature/v1 key id of this name and key."""
        return cosignature_key_id(self.name, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Return the verifier of a type-0x04 vkey; ProofError("bad-vkey") if malformed."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not valid_key_name(parts[0]):
            raise ProofError("bad-vkey", "a vkey is name+keyid+key")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (ValueError, binascii.Error):
            raise ProofError("bad-vkey", "vkey key data is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise ProofError("bad-vkey", "vkey is not an Ed25519 cosignature/v1 key (type 0x04)")
        verifier = cls(parts[0], raw[1:])
        if parts[1] != verifier.key_id.hex():
            raise ProofError("bad-vkey", "vkey key id does not match its name and key")
        return verifier

    def verify(self, checkpoint_text: str, line: str) -> int:
        """Return the timestamp of a valid cosignature line by this key on the checkpoint text.

        Raises ProofError("bad-cosignature") if the line is not this key's or does not verify.
        """
        fields = line.rstrip("\n").removeprefix(SIG_PREFIX).split(" ")
        if not line.startswith(SIG_PREFIX) or len(fields) != 2 or fields[0] != self.name:
            raise ProofError("bad-cosignature", "not a cosignature line of this witness")
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except (ValueError, binascii.Error):
            raise ProofError("bad-cosignature", "cosignature is not base64") from None
        if len(blob) != COSIGNATURE_BYTES or blob[:4] != self.key_id:
            raise ProofError("bad-cosignature", "cosignature key id or length does not match")
        (timestamp_s,) = struct.unpack(">Q", blob[4:12])
        try:
            message = signed_message(checkpoint_text, timestamp_s)
            nacl.signing.VerifyKey(self.public_key).verify(message, blob[12:])
        except (ValueError, nacl.exceptions.BadSignatureError):
            raise ProofError("bad-cosignature", "cosignature does not verify") from None
        return timestamp_s
