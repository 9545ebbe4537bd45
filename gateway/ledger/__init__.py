"""The transparency ledger: entries, RFC 9162 Merkle log in SQLite, C2SP checkpoints, audit.

Modules: entries (entry kinds and the enrollment payload), merkle (hashing, proofs and
their verification, no store needed), tiles (how interior hashes are stored), note (C2SP
signed notes, checkpoints and the gateway key), store (Ledger: the durable log), audit
(offline re-verification of a ledger file). docs/ledger.md describes the whole.
"""

from gateway.ledger.entries import (
    KIND_CONTRACT_EVENT,
    KIND_DEVICE_ENROLLMENT,
    KIND_DEVICE_RECORD,
    KIND_PARTICIPANT_TX,
    Enrollment,
    decode_enrollment,
    decode_entry,
    encode_enrollment,
    encode_entry,
    enrollment_entry,
)
from gateway.ledger.merkle import (
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from gateway.ledger.note import (
    Checkpoint,
    KeyFileError,
    NoteSigner,
    NoteVerifier,
    load_or_create_signer,
    parse_checkpoint,
    verify_checkpoint,
)
from gateway.ledger.store import BATCH_INTERVAL_MS, MAX_BATCH_ENTRIES, Ledger

__all__ = [
    "BATCH_INTERVAL_MS",
    "KIND_CONTRACT_EVENT",
    "KIND_DEVICE_ENROLLMENT",
    "KIND_DEVICE_RECORD",
    "KIND_PARTICIPANT_TX",
    "MAX_BATCH_ENTRIES",
    "Checkpoint",
    "Enrollment",
    "KeyFileError",
    "Ledger",
    "NoteSigner",
    "NoteVerifier",
    "decode_enrollment",
    "decode_entry",
    "encode_enrollment",
    "encode_entry",
    "enrollment_entry",
    "leaf_hash",
    "load_or_create_signer",
    "node_hash",
    "parse_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
