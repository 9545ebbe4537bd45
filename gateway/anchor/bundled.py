"""The anchor section of a proof bundle: build it from the outbox, verify it offline.

A bundle proves entry `index` against a checkpoint C (gateway/bundle.py). Its "anchor" section,
when the entry is covered by a final anchor, is
  {"checkpoint": the anchored checkpoint note A (text) with the gateway's signature line only
                 (witness cosignatures are left out: every byte is then checked with the log's
                 key alone), with size(A) > index,
   "consistency": [base64 hashes], RFC 9162 2.1.4 proof from size(A) to size(C) (empty if equal),
   "evidence": the anchor evidence of A (gateway/anchor/evidence.py)}
and it proves that the log's prefix holding the entry was anchored on the chain, in a block the
verifier can look up, and that C extends it: the operator cannot later show a history without
the entry without forking what the chain holds (which the contract refuses).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from gateway.anchor.evidence import Check, verify_anchor_evidence
from gateway.anchor.outbox import Outbox
from gateway.errors import EdgesealError
from gateway.ledger import merkle
from gateway.ledger.note import Checkpoint, NoteVerifier, parse_note, verify_checkpoint

SECTION_KEYS = frozenset({"checkpoint", "consistency", "evidence"})
MAX_CONSISTENCY_HASHES = 128  # RFC 9162: at most ~2 log2(size) hashes; 2^64 leaves


def anchor_section(
    outbox: Outbox,
    origin: str,
    index: int,
    bundle_size: int,
    prove_consistency: Callable[[int, int], list[bytes]],
) -> dict[str, Any] | None:
    """Return the anchor section for entry `index` of a bundle against the checkpoint of size
    bundle_size, or None if no final anchor of origin covers the entry within that size.

    prove_consistency is the ledger's (Ledger.prove_consistency); precondition index < size.
    """
    anchor = outbox.final_covering(origin, index)
    if anchor is None or anchor.head.size > bundle_size or anchor.evidence is None:
        return None
    size = anchor.head.size
    proof = prove_consistency(size, bundle_size) if size < bundle_size else []
    return {
        "checkpoint": gateway_signed(anchor.note).decode("utf-8"),
        "consistency": [base64.b64encode(h).decode("ascii") for h in proof],
        "evidence": anchor.evidence,
    }


def gateway_signed(note: bytes) -> bytes:
    """Return a signed note with only its first signature line (the gateway's: a witnessed
    checkpoint carries the gateway's signature first, then the cosignatures; C2SP signed-note
    lets a note carry any subset of its signatures)."""
    body, _, sigs = note.partition(b"\n\n")
    return body + b"\n\n" + sigs.split(b"\n", 1)[0] + b"\n"


def verify_anchor_section(
    section: Any, index: int, checkpoint: Checkpoint, verifier: NoteVerifier
) -> list[Check]:
    """Return the checks of a bundle's anchor section for entry `index` proven against
    `checkpoint` (already verified by the caller), the log's verifier key given: "anchored-
    checkpoint" (signed by the log, covers the entry), "anchor-consistency" (RFC 9162 2.1.4.2:
    checkpoint extends it), then verify_anchor_evidence's checks. The section holds iff every
    check is ok; never raises on bad input.
    """
    try:
        if not isinstance(section, dict) or set(section) != SECTION_KEYS:
            raise ValueError(f"the anchor section needs exactly {sorted(SECTION_KEYS)}")
        note, hashes = section["checkpoint"], section["consistency"]
        if not isinstance(note, str) or not isinstance(hashes, list):
            raise ValueError("checkpoint must be text and consistency a list")
        if len(hashes) > MAX_CONSISTENCY_HASHES or not all(isinstance(h, str) for h in hashes):
            raise ValueError("consistency is not a list of base64 hashes")
        proof = [base64.b64decode(h, validate=True) for h in hashes]
        if any(
            base64.b64encode(p).decode("ascii") != h for p, h in zip(proof, hashes, strict=True)
        ):
            raise ValueError("consistency hashes are not canonical base64")
        if len(parse_note(note.encode("utf-8"))[1]) != 1:
            raise ValueError("the anchored checkpoint carries one signature, the log's")
        anchored = verify_checkpoint(note.encode("utf-8"), verifier)
    except (ValueError, binascii.Error, EdgesealError) as exc:
        return [("anchored-checkpoint", False, str(exc))]
    if anchored.size <= index:
        return [("anchored-checkpoint", False, f"size {anchored.size} does not hold {index}")]
    checks: list[Check] = [("anchored-checkpoint", True, f"size {anchored.size} holds {index}")]
    try:
        merkle.verify_consistency(
            anchored.size, checkpoint.size, proof, anchored.root, checkpoint.root
        )
    except EdgesealError as exc:
        return [*checks, ("anchor-consistency", False, str(exc))]
    checks.append(("anchor-consistency", True, f"size {checkpoint.size} extends it"))
    try:
        return checks + verify_anchor_evidence(section["evidence"], anchored)
    except RecursionError:  # pyrlp decodes nested lists recursively: a hostile node nests deep
        return [*checks, ("format", False, "an RLP item of the evidence is nested too deep")]
