"""Proof bundles: one JSON document per log entry that a third party checks offline.

A bundle holds the entry bytes, a decoded view, the entry's signature material, its RFC 9162
inclusion proof and the signed C2SP checkpoint it is proven against (docs/api.md, Proof bundle).
`verify_bundle` needs nothing but the document and the gateway's verifier key; it imports only
gateway.ledger.merkle/note/entries, gateway.wire, gateway.errors and nacl (never the store), so it
can be copied out with them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from gateway import wire
from gateway.errors import BundleError, EdgesealError, NotIntegrated
from gateway.ledger import merkle, note
from gateway.ledger.entries import (
    KIND_CONTRACT_EVENT,
    KIND_DEVICE_ENROLLMENT,
    KIND_DEVICE_RECORD,
    KIND_NAMES,
    KIND_PARTICIPANT_TX,
    decode_enrollment,
    decode_entry,
)

BUNDLE_VERSION = 1
BUNDLE_KEYS = frozenset(
    {"version", "entry", "decoded", "signature_material", "inclusion", "checkpoint", "anchor"}
)
TX_DOMAIN = b"edgeseal/v1/tx\n"  # docs/contracts.md: what every transaction signer signs
TX_SIGNATURE_BYTES = 64
# why: an unsigned record waits for a signed successor; the board signs at least the newest
# record of every upload, so the successor is close. This bounds the forward scan of the log.
MAX_CHAIN_SCAN_ENTRIES = 100_000
# why: an event names a handful of causes (a breach: first and last reading); a bound keeps a
# hostile or buggy bundle from making the verifier recurse through the whole log.
MAX_CAUSES = 64
EVENT_NOTE = (
    "A contract event is an output of the contract engine: its causes are proven here with "
    "their own signatures and inclusion proofs; that the event is exactly what the contracts "
    "compute from the log is checked by replaying the log (edgeseal audit, Engine.audit)."
)
_L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order (RFC 8032)


class LedgerView(Protocol):
    """What building a bundle needs from the log (gateway.ledger.Ledger has it)."""

    @property
    def tree_size(self) -> int: ...

    def entry(self, index: int) -> bytes: ...

    def entries(self, start: int = 0, end: int | None = None) -> Any: ...

    def prove_inclusion(self, index: int, size: int) -> list[bytes]: ...

    def checkpoint(self) -> bytes: ...


# ---- shared helpers ------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Return standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    """Return the bytes of canonical base64 text; raise BundleError("bad-base64")."""
    if not isinstance(text, str):
        raise BundleError("bad-base64", f"{what} is not a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("bad-base64", f"{what} is not valid base64") from None
    if b64(data) != text:
        raise BundleError("bad-base64", f"{what} is not canonical base64")
    return data


def split_tx(payload: bytes) -> tuple[list[bytes], bytes, dict[str, Any]]:
    """Return (signatures, body, parsed body) of a participant-tx payload; raise BundleError."""
    if not payload or not 1 <= payload[0] <= 4:
        raise BundleError("bad-tx", "transaction must carry 1..4 signatures")
    n = payload[0]
    start = 1 + n * TX_SIGNATURE_BYTES
    if len(payload) <= start:
        raise BundleError("bad-tx", "transaction payload is truncated")
    sigs = [payload[1 + i * 64 : 1 + (i + 1) * 64] for i in range(n)]
    body = payload[start:]
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BundleError("bad-tx", "transaction body is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise BundleError("bad-tx", "transaction body is not a JSON object")
    return sigs, body, value


def tx_signers(body: dict[str, Any]) -> list[str]:
    """Return [participant] + cosigners of a parsed transaction body; raise BundleError."""
    participant, cosigners = body.get("participant"), body.get("cosigners")
    if not isinstance(participant, str) or not isinstance(cosigners, list):
        raise BundleError("bad-tx", "transaction body lacks participant/cosigners")
    if not all(isinstance(c, str) for c in cosigners):
        raise BundleError("bad-tx", "cosigners must be strings")
    return [participant, *cosigners]


def decode_view(entry: bytes) -> dict[str, Any]:
    """Return a JSON-friendly decoded view of entry bytes; {"error": {...}} if they do not decode."""
    try:
        kind, payload = decode_entry(entry)
        if kind == KIND_DEVICE_RECORD:
            return wire.decode_record(payload).to_json()
        if kind == KIND_DEVICE_ENROLLMENT:
            enr = decode_enrollment(payload)
            return {
                "device_id": enr.device_id.hex(),
                "public_key": enr.public_key.hex(),
                "metadata": enr.metadata,
            }
        if kind == KIND_PARTICIPANT_TX:
            sigs, body, value = split_tx(payload)
            return {
                "signers": tx_signers(value),
                "signatures": [s.hex() for s in sigs],
                "tx_hash": hashlib.sha256(body).hexdigest(),
                "body": value,
            }
        value = json.loads(payload.decode("utf-8"))
        if not isinstance(value, dict):
            raise BundleError("bad-event", "event is not a JSON object")
        return value
    except EdgesealError as exc:
        return {"error": exc.to_dict()}
    except (UnicodeDecodeError, ValueError) as exc:
        return {"error": {"error": "WireError", "code": "undecodable", "message": str(exc)}}


# ---- building --------------------------------------------------------------------------------


DeviceLookup = Callable[[bytes], "tuple[bytes, int] | None"]


def build_bundle(
    ledger: LedgerView,
    index: int,
    device_lookup: DeviceLookup,
    checkpoint_note: bytes | None = None,
) -> dict[str, Any]:
    """Return the proof bundle of log entry `index` against the latest checkpoint.

    device_lookup(device_id) returns (first public key, enrollment index) or None. Raises
    BundleError("not-integrated") if the entry is not yet covered by the checkpoint.
    """
    cp_note = checkpoint_note if checkpoint_note is not None else ledger.checkpoint()
    cp = note.parse_checkpoint(note.parse_note(cp_note)[0])
    if not 0 <= index < cp.size:
        raise NotIntegrated(
            "not-integrated", f"entry {index} is not covered by the checkpoint of size {cp.size}"
        )
    entry = ledger.entry(index)
    kind = entry[0]
    bundle: dict[str, Any] = {
        "version": BUNDLE_VERSION,
        "entry": {"index": index, "kind": KIND_NAMES[kind], "base64": b64(entry)},
        "decoded": decode_view(entry),
        "signature_material": _material(ledger, index, entry, device_lookup, cp_note, cp.size),
        "inclusion": {
            "index": index,
            "size": cp.size,
            "hashes": [b64(h) for h in ledger.prove_inclusion(index, cp.size)],
        },
        "checkpoint": cp_note.decode("utf-8"),
        "anchor": None,
    }
    return bundle


def _material(
    ledger: LedgerView,
    index: int,
    entry: bytes,
    device_lookup: DeviceLookup,
    cp_note: bytes,
    size: int,
) -> dict[str, Any]:
    kind, payload = entry[0], entry[1:]
    if kind == KIND_DEVICE_RECORD:
        return _record_material(ledger, index, payload, device_lookup, size)
    if kind == KIND_PARTICIPANT_TX:
        sigs, body, value = split_tx(payload)
        return {
            "type": "participant-tx",
            "signers": tx_signers(value),
            "signatures": [s.hex() for s in sigs],
            "tx_hash": hashlib.sha256(body).hexdigest(),
        }
    if kind == KIND_DEVICE_ENROLLMENT:
        enr = decode_enrollment(payload)
        return {
            "type": "device-enrollment",
            "device_id": enr.device_id.hex(),
            "public_key": enr.public_key.hex(),
        }
    assert kind == KIND_CONTRACT_EVENT
    causes = json.loads(payload.decode("utf-8"))["causes"][:MAX_CAUSES]
    return {
        "type": "contract-event",
        "causes": [build_bundle(ledger, int(c), device_lookup, cp_note) for c in causes],
        "note": EVENT_NOTE,
    }


def _record_material(
    ledger: LedgerView, index: int, payload: bytes, device_lookup: DeviceLookup, size: int
) -> dict[str, Any]:
    rec = wire.decode_record(payload)
    found = device_lookup(rec.device_id)
    if found is None:
        raise BundleError("unknown-device", f"device {rec.device_id.hex()} is not enrolled")
    first_key, enrolled_index = found
    dev = rec.device_id
    rotations: list[str] = []
    for _, e in ledger.entries(enrolled_index, index):
        # entry = kind || version || record kind || flags || device id (16) || ...
        if e[0] == KIND_DEVICE_RECORD and e[2] == wire.KEY_ROTATION and e[4:20] == dev:
            rotations.append(b64(e[1:]))
    successors: list[str] = []
    if not rec.signed:
        end = min(size, index + 1 + MAX_CHAIN_SCAN_ENTRIES)
        for _, e in ledger.entries(index + 1, end):
            if e[0] == KIND_DEVICE_RECORD and e[4:20] == dev:
                successors.append(b64(e[1:]))
                if wire.decode_record(e[1:]).signed:
                    break
    return {
        "type": "device-record",
        "device_id": dev.hex(),
        "public_key": first_key.hex(),
        "signature": rec.signature.hex() if rec.signature else None,
        "successors": successors,
        "rotations": rotations,
    }


# ---- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """What a verified bundle proves: the entry at index is in the log of origin at size."""

    index: int
    kind: str
    size: int
    origin: str
    root_b64: str
    detail: str
    causes: tuple[int, ...] = ()

    def summary(self) -> str:
        """Return a one-paragraph human summary."""
        text = (
            f"OK: entry {self.index} ({self.kind}) is in the log {self.origin} "
            f"at tree size {self.size} (root {self.root_b64}); {self.detail}"
        )
        if self.causes:
            text += f"; causes proven: {', '.join(str(c) for c in self.causes)}"
        return text


def _field(obj: Any, key: str, typ: type, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise BundleError("bad-bundle", f"{where} lacks {key!r}")
    value = obj[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise BundleError("bad-bundle", f"{where}.{key} must be {typ.__name__}")
    return value


def _hex(value: Any, n_bytes: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * n_bytes:
        raise BundleError("bad-bundle", f"{what} must be {2 * n_bytes} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BundleError("bad-bundle", f"{what} is not hex") from None


def verify_bundle(bundle: Any, vkey: str) -> Verified:
    """Return what the bundle proves after checking all of it against the verifier key vkey.

    Raises BundleError (or the ProofError/SignatureError/WireError of the failing check) with
    a message naming the first thing that does not verify.
    """
    try:
        verifier = note.NoteVerifier.from_vkey(vkey)
    except (ValueError, EdgesealError) as exc:
        raise BundleError("bad-vkey", f"the verifier key is not usable: {exc}") from None
    return _verify(bundle, verifier, depth=0)


def _verify(bundle: Any, verifier: note.NoteVerifier, depth: int) -> Verified:
    if not isinstance(bundle, dict):
        raise BundleError("bad-bundle", "a bundle is a JSON object")
    extra = set(bundle) - BUNDLE_KEYS
    missing = BUNDLE_KEYS - set(bundle)
    if extra or missing:
        raise BundleError(
            "bad-bundle", f"bundle fields: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    if bundle["version"] != BUNDLE_VERSION or isinstance(bundle["version"], bool):
        raise BundleError("bad-version", f"unsupported bundle version {bundle['version']!r}")
    if bundle["anchor"] is not None:
        raise BundleError("anchor-unsupported", "this verifier cannot check an anchor yet")

    # 1. the checkpoint: signed by the gateway key
    cp_text = _field(bundle, "checkpoint", str, "bundle")
    try:
        cp = note.verify_checkpoint(cp_text.encode("utf-8"), verifier)
    except (EdgesealError, ValueError) as exc:
        raise BundleError(
            "bad-checkpoint", f"checkpoint does not verify with {verifier.name}: {exc}"
        ) from None

    # 2. the entry and its inclusion proof against the checkpoint's root
    ent = _field(bundle, "entry", dict, "bundle")
    if set(ent) != {"index", "kind", "base64"}:
        raise BundleError("bad-bundle", "entry fields must be index, kind, base64")
    index = _field(ent, "index", int, "entry")
    entry = unb64(_field(ent, "base64", str, "entry"), "entry.base64")
    if not entry or entry[0] not in KIND_NAMES:
        raise BundleError("bad-entry", "entry bytes have no known kind")
    kind = KIND_NAMES[entry[0]]
    if ent["kind"] != kind:
        raise BundleError("bad-entry", f"entry.kind says {ent['kind']!r}, the bytes say {kind!r}")
    inc = _field(bundle, "inclusion", dict, "bundle")
    if set(inc) != {"index", "size", "hashes"}:
        raise BundleError("bad-bundle", "inclusion fields must be index, size, hashes")
    if _field(inc, "index", int, "inclusion") != index:
        raise BundleError("index-mismatch", "inclusion.index differs from entry.index")
    if _field(inc, "size", int, "inclusion") != cp.size:
        raise BundleError("size-mismatch", "inclusion.size differs from the checkpoint size")
    hashes = [unb64(h, "inclusion hash") for h in _field(inc, "hashes", list, "inclusion")]
    try:
        merkle.verify_inclusion(merkle.leaf_hash(entry), index, cp.size, hashes, cp.root)
    except EdgesealError as exc:
        raise BundleError(
            "bad-inclusion", f"inclusion proof of entry {index} fails at size {cp.size}: {exc}"
        ) from None

    # 3. the decoded view must be what the bytes say
    if bundle["decoded"] != decode_view(entry):
        raise BundleError("decoded-mismatch", "decoded view differs from the entry bytes")

    # 4. the entry's own signatures
    sm = _field(bundle, "signature_material", dict, "bundle")
    detail, causes = _verify_material(entry, sm, cp_text, verifier, depth)
    return Verified(index, kind, cp.size, cp.origin, b64(cp.root), detail, causes)


def _expect(sm: dict[str, Any], keys: set[str], typ: str) -> None:
    if sm.get("type") != typ or set(sm) != keys | {"type"}:
        raise BundleError(
            "bad-signature-material", f"signature_material must be a {typ} with {sorted(keys)}"
        )


def _verify_material(
    entry: bytes, sm: dict[str, Any], cp_text: str, verifier: note.NoteVerifier, depth: int
) -> tuple[str, tuple[int, ...]]:
    kind, payload = entry[0], entry[1:]
    if kind == KIND_DEVICE_RECORD:
        return _verify_record(payload, sm), ()
    if kind == KIND_PARTICIPANT_TX:
        return _verify_tx(payload, sm), ()
    if kind == KIND_DEVICE_ENROLLMENT:
        _expect(sm, {"device_id", "public_key"}, "device-enrollment")
        enr = decode_enrollment(payload)
        if sm["device_id"] != enr.device_id.hex() or sm["public_key"] != enr.public_key.hex():
            raise BundleError("material-mismatch", "signature_material differs from the entry")
        if wire.device_id_for(enr.public_key) != enr.device_id:
            raise BundleError("wrong-device", "device id is not SHA-256(public key)[0:16]")
        return f"enrollment of device {enr.device_id.hex()} (self-certifying id)", ()
    return _verify_event(payload, sm, cp_text, verifier, depth)


def _verify_record(payload: bytes, sm: dict[str, Any]) -> str:
    _expect(
        sm,
        {"device_id", "public_key", "signature", "successors", "rotations"},
        "device-record",
    )
    rec = wire.decode_record(payload)
    if sm["device_id"] != rec.device_id.hex():
        raise BundleError("material-mismatch", "signature_material.device_id differs from record")
    key = _hex(sm["public_key"], 32, "public_key")
    if wire.device_id_for(key) != rec.device_id:
        raise BundleError("wrong-device", "the public key's device id is not the record's")
    want_sig = rec.signature.hex() if rec.signature else None
    if sm["signature"] != want_sig:
        raise BundleError("material-mismatch", "signature_material.signature differs from record")
    if not isinstance(sm["rotations"], list) or not isinstance(sm["successors"], list):
        raise BundleError("bad-signature-material", "rotations and successors must be lists")
    for i, text in enumerate(sm["rotations"]):
        rot = wire.decode_record(unb64(text, f"rotation {i}"))
        if rot.device_id != rec.device_id or rot.kind != wire.KEY_ROTATION or rot.seq >= rec.seq:
            raise BundleError("bad-rotation", f"rotation {i} is not an earlier rotation of device")
        wire.verify_signature(rot, key)
        new_key = rot.value(wire.Ch.NEW_PUBLIC_KEY)
        assert isinstance(new_key, bytes)
        key = new_key
    if rec.signed:
        wire.verify_signature(rec, key)
        return (
            f"device record seq {rec.seq} of device {rec.device_id.hex()} signed by the device key"
        )
    chain = wire.DeviceChain(rec.device_id, key, None, rec.prev_hash)
    chain.push(rec)
    for i, text in enumerate(sm["successors"]):
        nxt = wire.decode_record(unb64(text, f"successor {i}"))
        if chain.push(nxt):
            return (
                f"device record seq {rec.seq} of device {rec.device_id.hex()} authenticated by "
                f"the signed record seq {nxt.seq} through {i + 1} hash-chain links"
            )
    raise BundleError("unauthenticated", "unsigned record has no signed successor in the bundle")


def _verify_tx(payload: bytes, sm: dict[str, Any]) -> str:
    _expect(sm, {"signers", "signatures", "tx_hash"}, "participant-tx")
    sigs, body, value = split_tx(payload)
    signers = tx_signers(value)
    if len(signers) != len(sigs):
        raise BundleError("bad-tx", f"{len(sigs)} signatures for {len(signers)} signers")
    if sm["signers"] != signers or sm["signatures"] != [s.hex() for s in sigs]:
        raise BundleError("material-mismatch", "signature_material differs from the transaction")
    if sm["tx_hash"] != hashlib.sha256(body).hexdigest():
        raise BundleError("material-mismatch", "signature_material.tx_hash is not SHA-256(body)")
    for signer, sig in zip(signers, sigs, strict=True):
        public_key = _hex(signer, 32, "signer key")
        wire.check_public_key(public_key)
        if int.from_bytes(sig[32:], "little") >= _L:
            raise BundleError("bad-signature", f"signature of {signer[:16]}... is not canonical")
        try:
            crypto_sign_open(sig + TX_DOMAIN + body, public_key)
        except BadSignatureError:
            raise BundleError(
                "bad-signature", f"signature of {signer[:16]}... does not verify"
            ) from None
    return f"participant transaction {hashlib.sha256(body).hexdigest()} signed by {len(signers)}"


def _verify_event(
    payload: bytes, sm: dict[str, Any], cp_text: str, verifier: note.NoteVerifier, depth: int
) -> tuple[str, tuple[int, ...]]:
    _expect(sm, {"causes", "note"}, "contract-event")
    if depth > 0:
        raise BundleError("bad-bundle", "an event's cause cannot be an event")
    try:
        event = json.loads(payload.decode("utf-8"))
        named = sorted({int(c) for c in event["causes"]})
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise BundleError("bad-event", "event payload lacks a causes list") from None
    if not isinstance(sm["causes"], list) or len(sm["causes"]) > MAX_CAUSES:
        raise BundleError("bad-signature-material", f"causes must be a list of <= {MAX_CAUSES}")
    proven: list[int] = []
    for cause in sm["causes"]:
        if not isinstance(cause, dict) or cause.get("checkpoint") != cp_text:
            raise BundleError("bad-cause", "every cause must be proven against the same checkpoint")
        try:
            res = _verify(cause, verifier, depth + 1)
        except EdgesealError as exc:
            raise BundleError("bad-cause", f"cause does not verify: {exc}") from None
        proven.append(res.index)
    if sorted(proven) != named[:MAX_CAUSES] or len(set(proven)) != len(proven):
        raise BundleError("bad-cause", "the proven causes are not exactly the ones the event names")
    detail = (
        f"contract event {event.get('type')!r} of contract {event.get('contract')!r}; "
        f"its content is checked by replaying the log (edgeseal audit)"
    )
    return detail, tuple(sorted(proven))
