"""Ledger entries: self-describing bytes `kind || payload`, and the device enrollment payload.

An entry is one kind byte followed by the payload, stored and hashed exactly as is:
leaf_hash = SHA-256(0x00 || kind || payload) (RFC 9162 2.1.1). Kinds:

- 0x01 KIND_DEVICE_RECORD: the exact record bytes received from the board (docs/wire-format.md)
- 0x02 KIND_PARTICIPANT_TX: a participant transaction (contract engine)
- 0x03 KIND_CONTRACT_EVENT: a contract event (contract engine)
- 0x04 KIND_DEVICE_ENROLLMENT: binds a device id to its Ed25519 public key; payload:

      version (1 byte, ENROLLMENT_VERSION = 0x01)
      device_id (16 bytes)
      public_key (32 bytes, Ed25519, RFC 8032)
      metadata (optional, rest of payload): UTF-8 JSON object, sorted keys, separators
               "," and ":", no whitespace, non-ASCII kept as UTF-8 (json.dumps(...,
               sort_keys=True, separators=(",", ":"), ensure_ascii=False)); empty = no metadata

The log is self-contained: an auditor takes device keys from the enrollment entries in it.
Malformed entries raise WireError and are never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.bounds import MAX_JSON_DEPTH, check_metadata, json_depth
from gateway.errors import WireError

KIND_DEVICE_RECORD = 0x01
KIND_PARTICIPANT_TX = 0x02
KIND_CONTRACT_EVENT = 0x03
KIND_DEVICE_ENROLLMENT = 0x04
KINDS = frozenset(
    {KIND_DEVICE_RECORD, KIND_PARTICIPANT_TX, KIND_CONTRACT_EVENT, KIND_DEVICE_ENROLLMENT}
)
KIND_NAMES = {
    KIND_DEVICE_RECORD: "device-record",
    KIND_PARTICIPANT_TX: "participant-tx",
    KIND_CONTRACT_EVENT: "contract-event",
    KIND_DEVICE_ENROLLMENT: "device-enrollment",
}

# why: records are < 247 bytes and transactions small; the bound keeps one append batch's
# memory predictable and matches the 16-bit entry lengths of C2SP tlog-tiles entry bundles.
MAX_ENTRY_BYTES = 65535

ENROLLMENT_VERSION = 0x01
DEVICE_ID_BYTES = 16
PUBLIC_KEY_BYTES = 32
_ENROLLMENT_FIXED = 1 + DEVICE_ID_BYTES + PUBLIC_KEY_BYTES


def encode_entry(kind: int, payload: bytes) -> bytes:
    """Return the entry bytes kind || payload; raises WireError for an unknown kind or size."""
    if kind not in KINDS:
        raise WireError("bad-entry-kind", f"unknown entry kind {kind!r}")
    if not isinstance(payload, bytes | bytearray):
        raise WireError("bad-entry", "entry payload must be bytes")
    if 1 + len(payload) > MAX_ENTRY_BYTES:
        raise WireError("entry-too-large", f"entry exceeds {MAX_ENTRY_BYTES} bytes")
    return bytes((kind,)) + bytes(payload)


def decode_entry(entry: bytes) -> tuple[int, bytes]:
    """Return (kind, payload) of entry bytes; raises WireError if empty, oversized or unknown."""
    if not entry:
        raise WireError("bad-entry", "empty entry")
    if len(entry) > MAX_ENTRY_BYTES:
        raise WireError("entry-too-large", f"entry exceeds {MAX_ENTRY_BYTES} bytes")
    if entry[0] not in KINDS:
        raise WireError("bad-entry-kind", f"unknown entry kind {entry[0]:#04x}")
    return entry[0], bytes(entry[1:])


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 JSON of `value`: sorted keys, no whitespace (DESIGN 4)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Enrollment:
    """A decoded device enrollment: device id, Ed25519 public key, optional metadata."""

    device_id: bytes
    public_key: bytes
    metadata: dict[str, Any] = field(default_factory=dict)


def encode_enrollment(
    device_id: bytes, public_key: bytes, metadata: dict[str, Any] | None = None
) -> bytes:
    """Return the KIND_DEVICE_ENROLLMENT payload (module docstring); raises WireError."""
    if len(device_id) != DEVICE_ID_BYTES:
        raise WireError("bad-enrollment", f"device id must be {DEVICE_ID_BYTES} bytes")
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise WireError("bad-enrollment", f"public key must be {PUBLIC_KEY_BYTES} bytes")
    out = bytes((ENROLLMENT_VERSION,)) + bytes(device_id) + bytes(public_key)
    if metadata:
        if not isinstance(metadata, dict):
            raise WireError("bad-enrollment", "metadata must be a JSON object")
        check_metadata(metadata)  # no code path may store metadata a read cannot render
        out += canonical_json(metadata)
    return out


def readable_metadata(value: Any) -> dict[str, Any]:
    """Return stored metadata as a read may render it: value itself if it has the shape of
    bounds.check_metadata, else {"error": <typed error body>} keeping a top-level string
    "status" and "reason" (what the registry derives from).

    For metadata logged before the shape was enforced (nested hundreds of levels, NaN, floats):
    the log keeps the bytes, every read shows the typed error instead of failing.
    """
    try:
        return check_metadata(value)
    except WireError as exc:
        kept = {}
        if isinstance(value, dict):
            kept = {k: value[k] for k in ("status", "reason") if isinstance(value.get(k), str)}
        return {"error": exc.to_dict(), **kept}


def _too_deep() -> dict[str, Any]:
    """Return readable_metadata's typed error for metadata too deep to parse at all."""
    message = f"metadata is nested deeper than {MAX_JSON_DEPTH} levels"
    return {"error": WireError("bad-metadata", message).to_dict()}


def decode_enrollment(payload: bytes) -> Enrollment:
    """Return the Enrollment in a KIND_DEVICE_ENROLLMENT payload; raises WireError.

    Rejects unknown versions, short payloads and metadata that is not canonical JSON. Metadata
    of a shape check_metadata refuses (logged before the shape was enforced: nested hundreds of
    levels, NaN, floats) decodes as readable_metadata's typed error, so that replay and every
    read go on; metadata deeper than MAX_JSON_DEPTH is not even parsed.
    """
    if len(payload) < _ENROLLMENT_FIXED:
        raise WireError("bad-enrollment", "enrollment payload is truncated")
    if payload[0] != ENROLLMENT_VERSION:
        raise WireError("bad-enrollment", f"unknown enrollment version {payload[0]}")
    device_id = bytes(payload[1 : 1 + DEVICE_ID_BYTES])
    public_key = bytes(payload[1 + DEVICE_ID_BYTES : _ENROLLMENT_FIXED])
    rest = bytes(payload[_ENROLLMENT_FIXED:])
    metadata: dict[str, Any] = {}
    if rest:
        try:
            text = rest.decode("utf-8")
            if json_depth(text) > MAX_JSON_DEPTH:  # never parsed (json.loads recurses); tolerated
                return Enrollment(device_id, public_key, _too_deep())
            value = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise WireError("bad-enrollment", "enrollment metadata is not UTF-8 JSON") from None
        if not isinstance(value, dict) or not value or canonical_json(value) != rest:
            raise WireError("bad-enrollment", "enrollment metadata is not canonical JSON")
        metadata = readable_metadata(value)
    return Enrollment(device_id, public_key, metadata)


def enrollment_entry(
    device_id: bytes, public_key: bytes, metadata: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    """Return (KIND_DEVICE_ENROLLMENT, payload), ready for Ledger.append."""
    return KIND_DEVICE_ENROLLMENT, encode_enrollment(device_id, public_key, metadata)
