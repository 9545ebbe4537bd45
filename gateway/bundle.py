"""Proof bundles (formats 2, 3 and 4): one canonical JSON document per log entry, checked offline.

A bundle holds the entry bytes, a decoded view, the entry's signature material, its RFC 9162
inclusion proof (2.1.3) and the signed C2SP checkpoint it is proven against (docs/api.md, Proof
bundle). `verify_bundle_bytes` needs nothing but the file's bytes and the gateway's verifier key;
this module imports only gateway.bounds/errors/wire, gateway.ledger.merkle/note/entries and nacl
(never the store), so it can be copied out with them.

Strict by design (docs/api.md, Proof bundle: "Canonical and strict"): a bundle is exactly one
byte string, the canonical serialisation of its value (`encode_bundle`: sorted keys, no
insignificant whitespace, UTF-8, integers only), and the verifier refuses anything else:
duplicate keys, non-integer numbers, bytes that are not canonical, a field it does not check, a
value that differs from what it derives from the entry bytes, a successor after the signed one
that closes the chain, causes out of the event's order, a checkpoint signature it does not check.
So any change to a bundle file, down to one bit, fails verification with a typed BundleError (or
the ProofError/SignatureError/WireError of the failing check).

Format 3 (a gateway with a witness policy, docs/witness.md) is format 2 whose checkpoint may
carry, after the gateway's signature line, C2SP cosignature/v1 lines of witnesses
(c2sp.org/tlog-cosignature). Given the policy (gateway.publish.policy.WitnessPolicy), the
verifier checks every such line and the quorum; without it, it checks their form only and reports
the "witness-quorum" check as not checked, never as verified. Each check a verification made is
named in Verified.checks.

Format 4 (a gateway that anchors its checkpoints on an EVM chain, docs/anchoring.md) is format 3
whose checkpoint may carry zero or more cosignature lines and whose "anchor" is the anchor
section of gateway.anchor.bundled: an anchored checkpoint that holds the entry, its RFC 9162
consistency proof to the bundle's checkpoint and the chain evidence (block header, receipt
proof). It is checked offline here (gateway.anchor.bundled, imported only for such a bundle: it
needs rlp, trie and eth-utils); that the block is canonical and final needs the chain
(`edgeseal verify-bundle --rpc`), and is reported as "anchor-canonical: not-checked" otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from gateway import bounds, wire
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

if TYPE_CHECKING:
    from gateway.publish.policy import WitnessPolicy

# 2: canonical bytes, no `note` in an event's material, causes in the event's order, successors
# end at the first signed record, one checkpoint signature (format 1 verifiers refuse these).
BUNDLE_VERSION = 2
# 3: as 2, and the checkpoint may carry witness cosignature lines after the gateway's signature.
BUNDLE_VERSION_WITNESSED = 3
# 4: as 3 (zero or more cosignature lines), and a non-null "anchor" section (the top-level bundle
# only: its causes carry version 4 and a null anchor, the anchored tree holds them too).
BUNDLE_VERSION_ANCHORED = 4
BUNDLE_VERSIONS = (BUNDLE_VERSION, BUNDLE_VERSION_WITNESSED, BUNDLE_VERSION_ANCHORED)
# cosignature/v1: a signature line's bytes after the 4-byte key id: timestamp (8) || Ed25519 (64)
COSIGNATURE_TAIL_BYTES = 8 + 64
BUNDLE_MEDIA_TYPE = "application/json"
BUNDLE_KEYS = frozenset(
    {"version", "entry", "decoded", "signature_material", "inclusion", "checkpoint", "anchor"}
)
TX_DOMAIN = b"edgeseal/v1/tx\n"  # docs/contracts.md: what every transaction signer signs
TX_SIGNATURE_BYTES = 64
# why: without an index (a standalone ledger file) an unsigned record's signed successor is found
# by scanning forward; the board signs at least the newest record of every upload, so it is
# close. This bounds that scan.
MAX_CHAIN_SCAN_ENTRIES = 100_000
# why: an event names a handful of causes (a breach: first and last reading); a bound keeps a
# hostile or buggy bundle from making the verifier recurse through the whole log. An event with
# more causes gets a bundle proving its first MAX_CAUSES (the summary says so).
MAX_CAUSES = 64
# why: an RFC 9162 inclusion proof has at most one hash per tree level; 2^64 leaves is 64 levels.
MAX_PROOF_HASHES = 64
# What a bug in the verifier would raise on a hostile input; _guarded turns it into a BundleError.
_UNTYPED = (ValueError, TypeError, LookupError, ArithmeticError, AttributeError, RecursionError)
_L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order (RFC 8032)


class LedgerView(Protocol):
    """What building a bundle needs from the log (gateway.ledger.Ledger has it)."""

    @property
    def tree_size(self) -> int: ...

    def entry(self, index: int) -> bytes: ...

    def entries(self, start: int = 0, end: int | None = None) -> Any: ...

    def prove_inclusion(self, index: int, size: int) -> list[bytes]: ...

    def checkpoint(self) -> bytes: ...


class DeviceChains(Protocol):
    """Where a device's key rotations and signed successors are (gateway.node.index.LogIndex)."""

    def rotations(self, device_id: bytes, since: int, before: int) -> Sequence[int]:
        """Return the log indexes of the device's key-rotation records in [since, before)."""
        ...

    def successors(self, device_id: bytes, after: int, size: int) -> Sequence[int] | None:
        """Return the log indexes of the device's records after `after` up to and including the
        first signed one, all below size; None if no signed record below size closes them."""
        ...


DeviceLookup = Callable[[bytes], "tuple[bytes, int] | None"]
# anchor_for(index, size): the anchor section of entry index for a bundle against the checkpoint
# of that size (gateway.anchor.bundled.anchor_section), or None if no final anchor covers it.
AnchorFor = Callable[[int, int], "dict[str, Any] | None"]


# ---- shared helpers ------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Return standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    """Return the bytes of canonical base64 text; raise BundleError("bad-base64")."""
    if not isinstance(text, str) or not text.isascii():
        raise BundleError("bad-base64", f"{what} is not a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("bad-base64", f"{what} is not valid base64") from None
    if b64(data) != text:
        raise BundleError("bad-base64", f"{what} is not canonical base64")
    return data


def encode_bundle(bundle: Any) -> bytes:
    """Return the canonical bytes of a bundle value: UTF-8 JSON, sorted keys, no whitespace.

    The one serialisation a bundle has (the API serves exactly these bytes). Raises
    BundleError("not-canonical") for a value JSON cannot hold (NaN, a lone surrogate, a non-JSON
    type, nesting past Python's recursion limit).
    """
    try:
        text = json.dumps(
            bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise BundleError(
            "not-canonical", f"the bundle has no canonical JSON form: {exc}"
        ) from None


def _bundle_error(code: str, message: str) -> EdgesealError:
    return BundleError(code, message)


def _json_strict(data: bytes, what: str, code: str) -> Any:
    """Return strict JSON data (bounds.loads_strict: no floats, no duplicates, bounded depth);
    raise BundleError(code)."""

    def error(_code: str, message: str) -> EdgesealError:
        return BundleError(code, message)

    return bounds.loads_strict(data, what, error, max_bytes=bounds.MAX_BODY_BYTES)


def split_tx(payload: bytes) -> tuple[list[bytes], bytes, dict[str, Any]]:
    """Return (signatures, body, parsed body) of a participant-tx payload; raise BundleError."""
    if not payload or not 1 <= payload[0] <= 4:
        raise BundleError("bad-tx", "transaction must carry 1..4 signatures")
    n = payload[0]
    start = 1 + n * TX_SIGNATURE_BYTES
    if len(payload) <= start:
        raise BundleError("bad-tx", "transaction payload is truncated")
    sigs = [bytes(payload[1 + i * 64 : 1 + (i + 1) * 64]) for i in range(n)]
    body = bytes(payload[start:])
    value = _json_strict(body, "transaction body", "bad-tx")
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


def event_causes(payload: bytes, index: int) -> list[int]:
    """Return the causes a contract-event payload names, in its order; raise BundleError.

    Each cause is an earlier log index (0 <= cause < index), named once.
    """
    event = _json_strict(payload, "event", "bad-event")
    causes = event.get("causes") if isinstance(event, dict) else None
    if not isinstance(causes, list):
        raise BundleError("bad-event", "event payload lacks a causes list")
    for cause in causes:
        bounds.check_int(cause, "event cause", _bundle_error, 0, index - 1)
    if len(set(causes)) != len(causes):
        raise BundleError("bad-event", "event names a cause twice")
    return causes


def _decode(entry: bytes) -> dict[str, Any]:
    """Return the decoded view of entry bytes; raise the typed error if they do not decode."""
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
    value = _json_strict(payload, "event", "bad-event")
    if not isinstance(value, dict):
        raise BundleError("bad-event", "event is not a JSON object")
    return value


def decode_view(entry: bytes) -> dict[str, Any]:
    """Return a JSON-friendly decoded view of entry bytes; {"error": {...}} if they do not decode."""
    try:
        return _decode(entry)
    except EdgesealError as exc:
        return {"error": exc.to_dict()}


# ---- building --------------------------------------------------------------------------------


class ScanChains:
    """DeviceChains found by scanning the log: for a standalone ledger file without an index.

    O(entries since the device's enrollment) reads per bundle; a running gateway passes its
    LogIndex instead (O(log n)).
    """

    def __init__(self, ledger: LedgerView) -> None:
        """Scan `ledger`."""
        self._ledger = ledger

    def rotations(self, device_id: bytes, since: int, before: int) -> list[int]:
        """Return the indexes of the device's key rotations in [since, before), in log order."""
        out = []
        for i, e in self._ledger.entries(since, before):
            # entry = kind || version || record kind || flags || device id (16) || ...
            if e[0] == KIND_DEVICE_RECORD and e[2] == wire.KEY_ROTATION and e[4:20] == device_id:
                out.append(i)
        return out

    def successors(self, device_id: bytes, after: int, size: int) -> list[int] | None:
        """Return the indexes of the device's records after `after` up to the first signed one
        below min(size, after + 1 + MAX_CHAIN_SCAN_ENTRIES); None if none is signed."""
        out = []
        end = min(size, after + 1 + MAX_CHAIN_SCAN_ENTRIES)
        for i, e in self._ledger.entries(after + 1, end):
            if e[0] == KIND_DEVICE_RECORD and e[4:20] == device_id:
                out.append(i)
                if wire.decode_record(e[1:]).signed:
                    return out
        return None


def build_bundle(
    ledger: LedgerView,
    index: int,
    device_lookup: DeviceLookup,
    checkpoint_note: bytes | None = None,
    chains: DeviceChains | None = None,
    anchor_for: AnchorFor | None = None,
) -> dict[str, Any]:
    """Return the proof bundle of log entry `index` against the latest checkpoint (or
    checkpoint_note); `encode_bundle` gives its canonical bytes.

    The format is 4 (BUNDLE_VERSION_ANCHORED) if anchor_for(index, size) gives an anchor
    section; else it follows the checkpoint: 3 (BUNDLE_VERSION_WITNESSED) if its note carries
    cosignature lines after the gateway's signature, else 2.

    device_lookup(device_id) returns (first public key, enrollment index) or None; chains finds
    key rotations and signed successors (default: ScanChains over the ledger). Reads the entry,
    its RFC 9162 2.1.3 inclusion proof, and only the entries the bundle carries (with a LogIndex
    as chains). Raises NotIntegrated("not-integrated") if the checkpoint does not cover the entry
    (or an unsigned record's signed successor) yet, BundleError for an entry that has none.
    """
    cp_note = checkpoint_note if checkpoint_note is not None else ledger.checkpoint()
    cp_body, cp_sigs = note.parse_note(cp_note)
    cp = note.parse_checkpoint(cp_body)
    version = BUNDLE_VERSION_WITNESSED if len(cp_sigs) > 1 else BUNDLE_VERSION
    if not 0 <= index < cp.size:
        raise NotIntegrated(
            "not-integrated", f"entry {index} is not covered by the checkpoint of size {cp.size}"
        )
    entry = ledger.entry(index)
    anchor = anchor_for(index, cp.size) if anchor_for is not None else None
    if anchor is not None:
        version = BUNDLE_VERSION_ANCHORED
    ctx = _Build(ledger, device_lookup, cp_note, cp.size, chains or ScanChains(ledger), version)
    return ctx.bundle(index, entry, anchor)


@dataclass(frozen=True)
class _Build:
    ledger: LedgerView
    device_lookup: DeviceLookup
    cp_note: bytes
    size: int
    chains: DeviceChains
    version: int = BUNDLE_VERSION

    def bundle(
        self, index: int, entry: bytes, anchor: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "version": self.version,
            "entry": {"index": index, "kind": KIND_NAMES[entry[0]], "base64": b64(entry)},
            "decoded": _decode(entry),
            "signature_material": self.material(index, entry),
            "inclusion": {
                "index": index,
                "size": self.size,
                "hashes": [b64(h) for h in self.ledger.prove_inclusion(index, self.size)],
            },
            "checkpoint": self.cp_note.decode("utf-8"),
            "anchor": anchor,
        }

    def material(self, index: int, entry: bytes) -> dict[str, Any]:
        kind, payload = entry[0], entry[1:]
        if kind == KIND_DEVICE_RECORD:
            return self.record_material(index, payload)
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
        causes = event_causes(payload, index)[:MAX_CAUSES]
        return {
            "type": "contract-event",
            "causes": [self.bundle(c, self.ledger.entry(c)) for c in causes],
        }

    def record_material(self, index: int, payload: bytes) -> dict[str, Any]:
        rec = wire.decode_record(payload)
        found = self.device_lookup(rec.device_id)
        if found is None:
            raise BundleError("unknown-device", f"device {rec.device_id.hex()} is not enrolled")
        first_key, enrolled_index = found
        dev = rec.device_id
        rotations = self.chains.rotations(dev, enrolled_index, index)
        successors: Sequence[int] = []
        if not rec.signed:
            found_successors = self.chains.successors(dev, index, self.size)
            if found_successors is None:
                raise NotIntegrated(
                    "not-integrated",
                    f"the signed record that authenticates entry {index} is not covered by the "
                    f"checkpoint of size {self.size} yet",
                )
            successors = found_successors
        return {
            "type": "device-record",
            "device_id": dev.hex(),
            "public_key": first_key.hex(),
            "signature": rec.signature.hex() if rec.signature else None,
            "successors": [b64(self.ledger.entry(i)[1:]) for i in successors],
            "rotations": [b64(self.ledger.entry(i)[1:]) for i in rotations],
        }


# ---- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check a verification made: its name, "ok" or "not-checked", and what it found."""

    name: str
    status: str
    detail: str

    def line(self) -> str:
        """Return "<name>: <status> (<detail>)"."""
        return f"{self.name}: {self.status} ({self.detail})"


@dataclass(frozen=True)
class Verified:
    """What a verified bundle proves: the entry at index is in the log of origin at size.

    checks: every check made, by name (checkpoint-signature, witness-quorum, inclusion,
    decoded-view, entry-signature, causes, then the anchor's: anchor-checkpoint,
    anchor-consistency, anchor-format, anchor-header, anchor-transaction, anchor-receipt-proof,
    anchor-receipt-status, anchor-log, anchor-canonical); a check that could not be made is
    "not-checked". anchor_evidence: a format 4 bundle's verified chain evidence (for the online
    check, gateway.anchor.evidence.verify_anchor_online), else None.
    """

    index: int
    kind: str
    size: int
    origin: str
    root_b64: str
    detail: str
    causes: tuple[int, ...] = ()
    checks: tuple[Check, ...] = ()
    anchor_evidence: dict[str, Any] | None = None

    def check(self, name: str) -> Check | None:
        """Return the check of that name, or None if it was not part of this verification."""
        return next((c for c in self.checks if c.name == name), None)

    def summary(self) -> str:
        """Return a one-paragraph human summary."""
        text = (
            f"OK: entry {self.index} ({self.kind}) is in the log {self.origin} "
            f"at tree size {self.size} (root {self.root_b64}); {self.detail}"
        )
        if self.causes:
            text += f"; causes proven: {', '.join(str(c) for c in self.causes)}"
        quorum = self.check("witness-quorum")
        if quorum is not None:
            text += f"; witness quorum: {quorum.status} ({quorum.detail})"
        anchor = self.check("anchor")
        if anchor is not None:
            text += f"; anchor: {anchor.status} ({anchor.detail})"
        return text


def verify_bundle_bytes(data: bytes, vkey: str, policy: WitnessPolicy | None = None) -> Verified:
    """Return what the bundle file `data` proves after checking all of it against vkey (and the
    witness quorum of `policy`, if given: a bundle short of it fails with "no-quorum").

    The strict path for files and API responses: data must be at most bounds.MAX_BUNDLE_BYTES of
    strict JSON (no duplicate keys, no floats or NaN, bounded depth) and exactly the canonical
    serialisation of its value (encode_bundle). Raises BundleError (codes of gateway.bounds,
    "not-canonical", or those of verify_bundle) and never anything untyped.
    """
    verifier = _verifier(vkey)
    data = bytes(data)
    doc = bounds.loads_strict(data, "bundle", _bundle_error, max_bytes=bounds.MAX_BUNDLE_BYTES)
    if encode_bundle(doc) != data:
        raise BundleError("not-canonical", "the bundle is not in canonical form (docs/api.md)")
    return _guarded(doc, verifier, policy)


def verify_bundle(bundle: Any, vkey: str, policy: WitnessPolicy | None = None) -> Verified:
    """Return what a parsed bundle value proves after checking all of it against vkey.

    Duplicate keys cannot be seen in a parsed value: files and API responses go through
    verify_bundle_bytes. Raises BundleError (or the ProofError/SignatureError/WireError of the
    failing check) with a message naming the first thing that does not verify.
    """
    verifier = _verifier(vkey)
    encode_bundle(bundle)  # a value with no canonical form (NaN, a non-JSON type) is refused
    return _guarded(bundle, verifier, policy)


def _verifier(vkey: Any) -> note.NoteVerifier:
    try:
        return note.NoteVerifier.from_vkey(vkey)
    except (ValueError, TypeError, AttributeError, EdgesealError) as exc:
        raise BundleError("bad-vkey", f"the verifier key is not usable: {exc}") from None


def _guarded(
    bundle: Any, verifier: note.NoteVerifier, policy: WitnessPolicy | None = None
) -> Verified:
    """Return _verify(bundle); turn an untyped failure (a bug) into BundleError("internal")."""
    try:
        return _verify(bundle, verifier, depth=0, policy=policy)
    except EdgesealError:
        raise
    except _UNTYPED as exc:
        raise BundleError(
            "internal", f"the verifier failed on this input ({type(exc).__name__}): {exc}"
        ) from None


def _same(a: Any, b: Any) -> bool:
    """Return True if a and b have the same canonical JSON (so 6 != 6.0 and 1 != true)."""
    return encode_bundle(a) == encode_bundle(b)


def _object(value: Any, keys: set[str] | frozenset[str], where: str) -> dict[str, Any]:
    """Return value if it is a JSON object with exactly `keys`; raise BundleError("bad-bundle")."""
    if not isinstance(value, dict):
        raise BundleError("bad-bundle", f"{where} must be a JSON object")
    if set(value) != set(keys):
        extra, missing = sorted(set(value) - set(keys)), sorted(set(keys) - set(value))
        raise BundleError("bad-bundle", f"{where} fields: missing {missing}, unexpected {extra}")
    return value


def _int(value: Any, what: str, lo: int = 0, hi: int = bounds.MAX_INT64) -> int:
    return bounds.check_int(value, what, _bundle_error, lo, hi)


def _hex(value: Any, n_bytes: int, what: str) -> bytes:
    """Return the bytes of lowercase hex `value` of n_bytes; raise BundleError("bad-hex")."""
    if not isinstance(value, str) or len(value) != 2 * n_bytes:
        raise BundleError("bad-hex", f"{what} must be {2 * n_bytes} hex digits")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BundleError("bad-hex", f"{what} is not hex") from None
    if raw.hex() != value:
        raise BundleError("bad-hex", f"{what} must be lowercase hex")
    return raw


def _checkpoint(text: Any, verifier: note.NoteVerifier, version: int) -> note.Checkpoint:
    """Return the checkpoint of a bundle's note: format 2, exactly one signature, the gateway's;
    format 3, the gateway's first, then one or more well-formed cosignature/v1 lines
    (_cosignature_lines): the format follows the note, so no bit of `version` is free; format 4
    (which the anchor section fixes instead), the gateway's first, then zero or more."""
    if not isinstance(text, str):
        raise BundleError("bad-checkpoint", "checkpoint must be the signed note text")
    try:
        raw = text.encode("utf-8")
        sigs = note.parse_note(raw)[1]
        if version == BUNDLE_VERSION and len(sigs) != 1:
            raise BundleError("bad-checkpoint", "the checkpoint must carry one signature")
        if version == BUNDLE_VERSION_WITNESSED and len(sigs) < 2:
            raise BundleError("bad-checkpoint", "a format 3 checkpoint carries cosignatures")
        first = sigs[0]
        if first.name != verifier.name or first.key_id != verifier.key_id:
            raise BundleError(
                "bad-checkpoint",
                f"checkpoint does not verify with {verifier.name}: its first signature is not "
                "by this key",
            )
        _cosignature_lines(sigs[1:], verifier)
        return note.verify_checkpoint(raw, verifier)
    except BundleError:
        raise
    except (EdgesealError, ValueError) as exc:
        raise BundleError(
            "bad-checkpoint", f"checkpoint does not verify with {verifier.name}: {exc}"
        ) from None


def _cosignature_lines(sigs: Sequence[note.NoteSignature], verifier: note.NoteVerifier) -> None:
    """Raise BundleError("bad-checkpoint") unless every line after the gateway's is shaped as a
    cosignature/v1 (4-byte key id, 8-byte timestamp, 64-byte signature), none is by the
    gateway's key name, and no (name, key id) appears twice. Their signatures are checked only
    against a policy (_witness_check)."""
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        if len(sig.signature) != COSIGNATURE_TAIL_BYTES or sig.name == verifier.name:
            raise BundleError("bad-checkpoint", f"the line of {sig.name!r} is not a cosignature")
        if (sig.name, sig.key_id) in seen:
            raise BundleError("bad-checkpoint", f"two cosignatures by {sig.name!r}")
        seen.add((sig.name, sig.key_id))


def _witness_check(cp_text: str, policy: WitnessPolicy | None) -> Check:
    """Return the "witness-quorum" check of a checkpoint note.

    Without a policy the cosignature lines are reported as not checked. With one, every
    cosignature line must be a policy witness's and verify (tlog-cosignature), and the quorum
    must hold (tlog-policy); raises BundleError ("unknown-cosigner", "bad-cosignature",
    "no-quorum") otherwise.
    """
    n_lines = len(note.parse_note(cp_text.encode("utf-8"))[1]) - 1
    if policy is None:
        return Check("witness-quorum", "not-checked", f"{n_lines} cosignature line(s), no policy")
    result = policy.check(cp_text.encode("utf-8"))
    if result.invalid:
        names = ", ".join(result.invalid)
        raise BundleError("bad-cosignature", f"the cosignature of {names} does not verify")
    if result.log_origin is None and policy.logs:
        raise BundleError("no-quorum", f"checkpoint refused by the policy: {result.reason}")
    # the first line is the gateway's (_checkpoint): unknown to a policy that lists no logs
    unknown = result.unknown_lines - (0 if policy.logs else 1)
    if unknown:
        raise BundleError(
            "unknown-cosigner", f"{unknown} cosignature(s) by no witness of the policy"
        )
    if not result.ok:
        raise BundleError(
            "no-quorum",
            f"cosigned by {result.cosigned_by or 'no witness'}: {result.summary}; {result.reason}",
        )
    names = ", ".join(result.cosigned_by) or "none required"
    return Check("witness-quorum", "ok", f"{result.summary} cosigned by {names}")


def _verify(
    bundle: Any,
    verifier: note.NoteVerifier,
    depth: int,
    policy: WitnessPolicy | None = None,
    parent_version: int | None = None,
) -> Verified:
    _object(bundle, BUNDLE_KEYS, "bundle")
    version = bundle["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version not in BUNDLE_VERSIONS:
        raise BundleError("bad-version", f"unsupported bundle version {version!r}")
    if parent_version is not None and version != parent_version:
        raise BundleError("bad-version", "a cause must have its event bundle's version")
    anchor = bundle["anchor"]
    if depth == 0 and version == BUNDLE_VERSION_ANCHORED:
        if anchor is None:
            raise BundleError("bad-anchor", "a format 4 bundle carries an anchor section")
    elif anchor is not None:
        raise BundleError("bad-anchor", "only a format 4 bundle carries an anchor (a cause never)")

    # 1. the checkpoint: signed by the gateway key first; format 3: witnesses' cosignatures
    cp_text = bundle["checkpoint"]
    cp = _checkpoint(cp_text, verifier, version)
    checks = [Check("checkpoint-signature", "ok", f"signed by {verifier.name}")]
    if depth == 0:  # causes carry the same checkpoint text: checked once, here
        checks.append(_witness_check(cp_text, policy))

    # 2. the entry and its RFC 9162 2.1.3 inclusion proof against the checkpoint's root
    ent = _object(bundle["entry"], {"index", "kind", "base64"}, "entry")
    index = _int(ent["index"], "entry.index")
    entry = unb64(ent["base64"], "entry.base64")
    if not entry or entry[0] not in KIND_NAMES:
        raise BundleError("bad-entry", "entry bytes have no known kind")
    kind = KIND_NAMES[entry[0]]
    if not _same(ent["kind"], kind):
        raise BundleError("bad-entry", f"entry.kind says {ent['kind']!r}, the bytes say {kind!r}")
    inc = _object(bundle["inclusion"], {"index", "size", "hashes"}, "inclusion")
    if not _same(inc["index"], index):
        raise BundleError("index-mismatch", "inclusion.index differs from entry.index")
    if not _same(inc["size"], cp.size):
        raise BundleError("size-mismatch", "inclusion.size differs from the checkpoint size")
    if not isinstance(inc["hashes"], list) or len(inc["hashes"]) > MAX_PROOF_HASHES:
        raise BundleError("bad-inclusion", f"inclusion.hashes must be <= {MAX_PROOF_HASHES}")
    hashes = [unb64(h, "inclusion hash") for h in inc["hashes"]]
    try:
        merkle.verify_inclusion(merkle.leaf_hash(entry), index, cp.size, hashes, cp.root)
    except EdgesealError as exc:
        raise BundleError(
            "bad-inclusion", f"inclusion proof of entry {index} fails at size {cp.size}: {exc}"
        ) from None

    checks.append(Check("inclusion", "ok", f"entry {index} in the tree of size {cp.size}"))

    # 3. the decoded view must be what the bytes say (compared as canonical JSON)
    if not _same(bundle["decoded"], _decode(entry)):
        raise BundleError("decoded-mismatch", "decoded view differs from the entry bytes")
    checks.append(Check("decoded-view", "ok", "equals the entry bytes' decoding"))

    # 4. the entry's own signatures
    sm = bundle["signature_material"]
    detail, causes = _verify_material(index, entry, sm, cp_text, verifier, depth, version)
    checks.append(Check("entry-signature", "ok", detail))
    if causes:
        checks.append(Check("causes", "ok", f"{len(causes)} cause(s) proven"))

    # 5. format 4: the anchor section, offline (the chain's word on the block needs --rpc)
    evidence = None
    if depth == 0 and anchor is not None:
        checks.extend(_anchor_checks(anchor, index, cp, verifier))
        evidence = anchor["evidence"]
    elif depth == 0:
        checks.append(Check("anchor", "not-checked", "the bundle carries no anchor"))
    root = b64(cp.root)
    return Verified(index, kind, cp.size, cp.origin, root, detail, causes, tuple(checks), evidence)


def _anchor_checks(
    section: Any, index: int, cp: note.Checkpoint, verifier: note.NoteVerifier
) -> list[Check]:
    """Return the checks of a format 4 bundle's anchor section (docs/anchoring.md, Proof
    bundles): each of gateway.anchor.bundled.verify_anchor_section's as "anchor-<name>", then
    "anchor" (ok) and "anchor-canonical" (not-checked: it needs the chain). Raises
    BundleError("bad-anchor") naming the first check that fails.
    """
    from gateway.anchor.bundled import verify_anchor_section  # rlp, trie: format 4 only

    checks = []
    for name, ok, detail in verify_anchor_section(section, index, cp, verifier):
        label = name if name.startswith("anchor") else f"anchor-{name}"
        label = "anchor-checkpoint" if name == "anchored-checkpoint" else label
        if not ok:
            raise BundleError("bad-anchor", f"{label}: {detail}")
        checks.append(Check(label, "ok", detail))
    ev = section["evidence"]
    where = f"chain {ev['chain_id']}, contract {ev['contract']}, block {ev['block_number']}"
    checks.append(Check("anchor", "ok", f"{checks[0].detail}: anchored on {where}"))
    checks.append(
        Check("anchor-canonical", "not-checked", "that the block is canonical and final needs "
              "the chain (edgeseal verify-bundle --rpc URL)")
    )  # fmt: skip
    return checks


def _material(sm: Any, keys: set[str], typ: str) -> dict[str, Any]:
    if not isinstance(sm, dict) or not _same(sm.get("type"), typ):
        raise BundleError("bad-signature-material", f"signature_material must be a {typ}")
    return _object(sm, keys | {"type"}, "signature_material")


def _verify_material(
    index: int,
    entry: bytes,
    sm: Any,
    cp_text: str,
    verifier: note.NoteVerifier,
    depth: int,
    version: int = BUNDLE_VERSION,
) -> tuple[str, tuple[int, ...]]:
    kind, payload = entry[0], entry[1:]
    if kind == KIND_DEVICE_RECORD:
        return _verify_record(payload, sm), ()
    if kind == KIND_PARTICIPANT_TX:
        return _verify_tx(payload, sm), ()
    if kind == KIND_DEVICE_ENROLLMENT:
        _material(sm, {"device_id", "public_key"}, "device-enrollment")
        enr = decode_enrollment(payload)
        want = {"device_id": enr.device_id.hex(), "public_key": enr.public_key.hex()}
        if not _same(sm, {"type": "device-enrollment", **want}):
            raise BundleError("material-mismatch", "signature_material differs from the entry")
        if wire.device_id_for(enr.public_key) != enr.device_id:
            raise BundleError("wrong-device", "device id is not SHA-256(public key)[0:16]")
        return f"enrollment of device {enr.device_id.hex()} (self-certifying id)", ()
    return _verify_event(index, payload, sm, cp_text, verifier, depth, version)


def _current_key(rec: wire.Record, key: bytes, rotations: Any) -> bytes:
    """Return the device key after the bundle's rotations (each an earlier signed key rotation
    of the device, in seq order, signed by the key before it); raise on the first bad one."""
    if not isinstance(rotations, list):
        raise BundleError("bad-signature-material", "rotations must be a list")
    last_seq = -1
    for i, text in enumerate(rotations):
        rot = wire.decode_record(unb64(text, f"rotation {i}"))
        if (
            rot.device_id != rec.device_id
            or rot.kind != wire.KEY_ROTATION
            or not last_seq < rot.seq < rec.seq
            or rot.signature is None
        ):
            raise BundleError("bad-rotation", f"rotation {i} is not an earlier rotation of device")
        wire.verify_signature(rot, key)
        new_key = rot.value(wire.Ch.NEW_PUBLIC_KEY)
        if not isinstance(new_key, bytes):
            raise BundleError("bad-rotation", f"rotation {i} carries no new key")
        wire.check_public_key(new_key)
        key, last_seq = new_key, rot.seq
    return key


def _verify_record(payload: bytes, sm: Any) -> str:
    keys = {"device_id", "public_key", "signature", "successors", "rotations"}
    _material(sm, keys, "device-record")
    rec = wire.decode_record(payload)
    if not _same(sm["device_id"], rec.device_id.hex()):
        raise BundleError("material-mismatch", "signature_material.device_id differs from record")
    key = _hex(sm["public_key"], 32, "public_key")
    if wire.device_id_for(key) != rec.device_id:
        raise BundleError("wrong-device", "the public key's device id is not the record's")
    if not _same(sm["signature"], rec.signature.hex() if rec.signature else None):
        raise BundleError("material-mismatch", "signature_material.signature differs from record")
    key = _current_key(rec, key, sm["rotations"])
    successors = sm["successors"]
    if not isinstance(successors, list):
        raise BundleError("bad-signature-material", "successors must be a list")
    if rec.signed:
        if successors:
            raise BundleError("extra-successor", "a signed record needs no successors")
        wire.verify_signature(rec, key)
        return (
            f"device record seq {rec.seq} of device {rec.device_id.hex()} signed by the device key"
        )
    chain = wire.DeviceChain(rec.device_id, key, None, rec.prev_hash)
    chain.push(rec)
    for i, text in enumerate(successors):
        nxt = wire.decode_record(unb64(text, f"successor {i}"))
        if chain.push(nxt):
            if i != len(successors) - 1:
                raise BundleError(
                    "extra-successor", "successors must end at the first signed record"
                )
            return (
                f"device record seq {rec.seq} of device {rec.device_id.hex()} authenticated by "
                f"the signed record seq {nxt.seq} through {i + 1} hash-chain links"
            )
    raise BundleError("unauthenticated", "unsigned record has no signed successor in the bundle")


def _verify_tx(payload: bytes, sm: Any) -> str:
    _material(sm, {"signers", "signatures", "tx_hash"}, "participant-tx")
    sigs, body, value = split_tx(payload)
    signers = tx_signers(value)
    if len(signers) != len(sigs):
        raise BundleError("bad-tx", f"{len(sigs)} signatures for {len(signers)} signers")
    tx_hash = hashlib.sha256(body).hexdigest()
    want = {"signers": signers, "signatures": [s.hex() for s in sigs], "tx_hash": tx_hash}
    if not _same(sm, {"type": "participant-tx", **want}):
        raise BundleError("material-mismatch", "signature_material differs from the transaction")
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
    return f"participant transaction {tx_hash} signed by {len(signers)}"


def _verify_event(
    index: int,
    payload: bytes,
    sm: Any,
    cp_text: str,
    verifier: note.NoteVerifier,
    depth: int,
    version: int = BUNDLE_VERSION,
) -> tuple[str, tuple[int, ...]]:
    _material(sm, {"causes"}, "contract-event")
    if depth > 0:
        raise BundleError("bad-bundle", "an event's cause cannot be an event")
    named = event_causes(payload, index)
    want = named[:MAX_CAUSES]
    if not isinstance(sm["causes"], list) or len(sm["causes"]) != len(want):
        raise BundleError("bad-cause", "the proven causes are not exactly the ones the event names")
    for cause, expected in zip(sm["causes"], want, strict=True):
        if not isinstance(cause, dict) or not _same(cause.get("checkpoint"), cp_text):
            raise BundleError("bad-cause", "every cause must be proven against the same checkpoint")
        try:
            res = _verify(cause, verifier, depth + 1, parent_version=version)
        except EdgesealError as exc:
            raise BundleError("bad-cause", f"cause does not verify: {exc}") from None
        if res.index != expected:
            raise BundleError("bad-cause", "the proven causes are not in the event's order")
    event = _decode(bytes((KIND_CONTRACT_EVENT,)) + payload)
    detail = (
        f"contract event {event.get('type')!r} of contract {event.get('contract')!r}; "
        f"its content is checked by replaying the log (edgeseal audit)"
    )
    if len(named) > len(want):
        detail += f"; {len(want)} of its {len(named)} causes are in the bundle"
    return detail, tuple(want)
