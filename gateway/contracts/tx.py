"""Participant transactions in the contract engine: the format of gateway.txformat, and the entry.

The format (canonical JSON bodies, Ed25519 signatures, the payload layout; docs/contracts.md)
lives in one module, gateway.txformat, which participants' tools import without the engine or
the ledger; this module re-exports it for the engine and adds `tx_entry`, which wraps a payload
as a KIND_PARTICIPANT_TX ledger entry.
"""

from __future__ import annotations

from gateway.ledger.entries import KIND_PARTICIPANT_TX
from gateway.txformat import (
    BODY_KEYS,
    MAX_BODY_BYTES,
    MAX_SAFE_INT,
    MAX_SIGNERS,
    SIGNATURE_BYTES,
    TX_DOMAIN,
    TX_VERSION,
    Tx,
    canonical_json,
    decode_tx,
    make_tx,
    parse_canonical,
    sign_payload,
    tx_body,
)

__all__ = [
    "BODY_KEYS",
    "KIND_PARTICIPANT_TX",
    "MAX_BODY_BYTES",
    "MAX_SAFE_INT",
    "MAX_SIGNERS",
    "SIGNATURE_BYTES",
    "TX_DOMAIN",
    "TX_VERSION",
    "Tx",
    "canonical_json",
    "decode_tx",
    "make_tx",
    "parse_canonical",
    "sign_payload",
    "tx_body",
    "tx_entry",
]


def tx_entry(payload: bytes) -> bytes:
    """Return the ledger entry bytes (kind byte || payload) of a transaction payload."""
    return bytes((KIND_PARTICIPANT_TX,)) + payload
