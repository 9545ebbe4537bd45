"""Participant transactions: canonical JSON, Ed25519 signing and verification (no server imports).

The one implementation of the transaction format of docs/contracts.md, used by the contract
engine (gateway.contracts.tx re-exports it) and by participants' tools (gateway.client, the
`edgeseal participant` commands) alike; it imports nothing of the node, the API or the ledger
store. In short: the body is canonical JSON (UTF-8, sorted keys, no whitespace, integers only,
strings in NFC, no duplicate keys); every signer signs `TX_DOMAIN || body`; the entry payload is
`n_sigs (u8) || n_sigs x 64-byte signatures || body`, signer 0 being `participant` and signers
1.. the `cosigners` in body order.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from gateway.bounds import MAX_JSON_DEPTH, json_depth
from gateway.errors import ContractError, SignatureError, TxError
from gateway.wire import check_public_key

TX_DOMAIN = b"edgeseal/v1/tx\n"
TX_VERSION = 1
SIGNATURE_BYTES = 64
# why: a handover needs two signers; four leaves room for a notary/witness without unbounded work.
MAX_SIGNERS = 4
# why: every JSON implementation (JavaScript included) holds integers up to 2^53 - 1 exactly.
MAX_SAFE_INT = 2**53 - 1
# why: bounds the engine's parse and verify work per entry; contract args are small.
MAX_BODY_BYTES = 16384
BODY_KEYS = frozenset(
    {"v", "participant", "cosigners", "nonce", "contract", "action", "args", "time_s"}
)
_L = 2**252 + 27742317777372353535851937790883648493


def _check_value(value: Any, path: str) -> None:
    """Return None if value holds only canonical-JSON types; raise ContractError otherwise."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise TxError("tx-int-range", f"{path}: integer outside +-(2^53-1)")
        return
    if isinstance(value, float):
        raise TxError("tx-float", f"{path}: floats are not allowed, use scaled integers")
    if isinstance(value, str):
        if unicodedata.normalize("NFC", value) != value:
            raise TxError("tx-not-canonical", f"{path}: string is not in NFC")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TxError("tx-malformed", f"{path}: object keys must be strings")
            _check_value(key, f"{path}.{key}")
            _check_value(item, f"{path}.{key}")
        return
    raise TxError("tx-malformed", f"{path}: {type(value).__name__} is not a JSON type")


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 JSON of value (sorted keys, no whitespace, ints only, NFC).

    Raises ContractError("tx-float" / "tx-int-range" / "tx-not-canonical" / "tx-malformed") for
    a value that has no canonical form.
    """
    _check_value(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TxError("tx-not-canonical", f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_float(text: str) -> Any:
    raise TxError("tx-float", f"number {text} is not an integer")


def _reject_constant(text: str) -> Any:
    raise TxError("tx-float", f"{text} is not allowed")


def parse_canonical(data: bytes) -> Any:
    """Return the value of canonical JSON bytes; raise ContractError unless data is canonical."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TxError("tx-malformed", "body is not UTF-8") from None
    if json_depth(text) > MAX_JSON_DEPTH:  # before json.loads, which recurses (a hostile log)
        raise TxError("tx-malformed", f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except ValueError as exc:
        if isinstance(exc, ContractError):
            raise
        raise TxError("tx-malformed", "body is not JSON") from None
    if canonical_json(value) != data:
        raise TxError("tx-not-canonical", "body is not in canonical form")
    return value


@dataclass(frozen=True)
class Tx:
    """A decoded, signature-checked participant transaction (docs/contracts.md, Transactions)."""

    participant: str  # hex Ed25519 public key of the sender (signer 0), who owns the nonce
    cosigners: tuple[str, ...]  # hex public keys of further signers, in body order
    nonce: int
    contract: str
    action: str
    args: dict[str, Any]
    time_s: int  # claimed by the sender; the admission layer bounds the skew
    body: bytes
    signatures: tuple[bytes, ...]
    tx_hash: str  # hex SHA-256 of body: what a sender asks about

    @property
    def signers(self) -> tuple[str, ...]:
        """Return every signer's hex public key: the participant, then the cosigners."""
        return (self.participant, *self.cosigners)


def _is_hex_key(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _check_body(body: Any) -> None:
    """Raise ContractError("tx-malformed") unless body has exactly the fields of docs/contracts.md."""
    if not isinstance(body, dict):
        raise TxError("tx-malformed", "body must be a JSON object")
    keys = set(body)
    if keys != BODY_KEYS:
        missing = sorted(BODY_KEYS - keys)
        extra = sorted(keys - BODY_KEYS)
        raise TxError("tx-malformed", f"body fields: missing {missing}, unexpected {extra}")
    if body["v"] != TX_VERSION or isinstance(body["v"], bool):
        raise TxError("tx-malformed", f"v must be {TX_VERSION}")
    if not _is_hex_key(body["participant"]):
        raise TxError("tx-malformed", "participant must be 64 lowercase hex digits")
    cos = body["cosigners"]
    if not isinstance(cos, list) or not all(_is_hex_key(c) for c in cos):
        raise TxError("tx-malformed", "cosigners must be a list of 64-hex-digit keys")
    if len(set(cos) | {body["participant"]}) != len(cos) + 1:
        raise TxError("tx-malformed", "signers must be distinct")
    if len(cos) + 1 > MAX_SIGNERS:
        raise TxError("tx-malformed", f"at most {MAX_SIGNERS} signers")
    for name in ("nonce", "time_s"):
        value = body[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TxError("tx-malformed", f"{name} must be a non-negative integer")
    for name in ("contract", "action"):
        value = body[name]
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise TxError("tx-malformed", f"{name} must be a string of 1..64 characters")
    if not isinstance(body["args"], dict):
        raise TxError("tx-malformed", "args must be a JSON object")


def _verify(signature: bytes, message: bytes, public_key_hex: str) -> None:
    public_key = bytes.fromhex(public_key_hex)
    try:
        check_public_key(public_key)
    except SignatureError:
        raise TxError("tx-bad-public-key", f"{public_key_hex[:16]}... is not usable") from None
    if int.from_bytes(signature[32:], "little") >= _L:
        raise TxError("tx-bad-signature", f"signature of {public_key_hex[:16]}... is invalid")
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        raise TxError(
            "tx-bad-signature", f"signature of {public_key_hex[:16]}... is invalid"
        ) from None


def decode_tx(payload: bytes) -> Tx:
    """Return the Tx in a KIND_PARTICIPANT_TX payload, every signature verified.

    Raises ContractError: "tx-unsigned" (no signature), "tx-malformed", "tx-not-canonical",
    "tx-float", "tx-int-range", "tx-signature-count", "tx-bad-public-key", "tx-bad-signature".
    Nonces and registration are the engine's business (they need state).
    """
    payload = bytes(payload)
    if not payload:
        raise TxError("tx-malformed", "empty transaction payload")
    n_sigs = payload[0]
    if n_sigs == 0:
        raise TxError("tx-unsigned", "the transaction carries no signature")
    if n_sigs > MAX_SIGNERS:
        raise TxError("tx-malformed", f"at most {MAX_SIGNERS} signers")
    start = 1 + n_sigs * SIGNATURE_BYTES
    if len(payload) <= start:
        raise TxError("tx-malformed", "transaction payload is truncated")
    body = payload[start:]
    if len(body) > MAX_BODY_BYTES:
        raise TxError("tx-malformed", f"body exceeds {MAX_BODY_BYTES} bytes")
    value = parse_canonical(body)
    _check_body(value)
    signers = [value["participant"], *value["cosigners"]]
    if len(signers) != n_sigs:
        raise TxError("tx-signature-count", f"{n_sigs} signatures for {len(signers)} signers")
    signatures = tuple(
        payload[1 + i * SIGNATURE_BYTES : 1 + (i + 1) * SIGNATURE_BYTES] for i in range(n_sigs)
    )
    message = TX_DOMAIN + body
    for sig, signer in zip(signatures, signers, strict=True):
        _verify(sig, message, signer)
    return Tx(
        participant=value["participant"],
        cosigners=tuple(value["cosigners"]),
        nonce=value["nonce"],
        contract=value["contract"],
        action=value["action"],
        args=value["args"],
        time_s=value["time_s"],
        body=body,
        signatures=signatures,
        tx_hash=hashlib.sha256(body).hexdigest(),
    )


def parse_body(body: bytes) -> dict[str, Any]:
    """Return the fields of an unsigned transaction body (what a cosigner is asked to sign).

    Raises ContractError as decode_tx does for the body: "tx-malformed", "tx-not-canonical",
    "tx-float", "tx-int-range". Signatures are not involved: a body is checked before signing.
    """
    if len(body) > MAX_BODY_BYTES:
        raise TxError("tx-malformed", f"body exceeds {MAX_BODY_BYTES} bytes")
    value = parse_canonical(body)
    _check_body(value)
    return value


def assemble_payload(body: bytes, signatures: dict[str, bytes]) -> bytes:
    """Return the KIND_PARTICIPANT_TX payload of body with each signer's signature (signers in
    body order: participant, then cosigners), every signature verified.

    Raises ContractError as decode_tx does, "tx-signature-count" if a signer's is missing.
    """
    fields = parse_body(body)
    signers = [fields["participant"], *fields["cosigners"]]
    missing = [s[:16] + "..." for s in signers if s not in signatures]
    if missing:
        raise TxError("tx-signature-count", f"no signature yet of {', '.join(missing)}")
    if any(len(signatures[s]) != SIGNATURE_BYTES for s in signers):
        raise TxError("tx-malformed", f"a signature is not {SIGNATURE_BYTES} bytes")
    payload = bytes((len(signers),)) + b"".join(signatures[s] for s in signers) + body
    decode_tx(payload)  # verifies every signature
    return payload


def tx_body(
    participant: str,
    nonce: int,
    contract: str,
    action: str,
    args: dict[str, Any],
    time_s: int,
    cosigners: Sequence[str] = (),
) -> bytes:
    """Return the canonical body bytes of a transaction (no signatures)."""
    return canonical_json(
        {
            "v": TX_VERSION,
            "participant": participant,
            "cosigners": list(cosigners),
            "nonce": nonce,
            "contract": contract,
            "action": action,
            "args": args,
            "time_s": time_s,
        }
    )


def sign_payload(body: bytes, keys: Sequence[SigningKey]) -> bytes:
    """Return the KIND_PARTICIPANT_TX payload of body signed by keys (sender first)."""
    sigs = b"".join(key.sign(TX_DOMAIN + body).signature for key in keys)
    return bytes((len(keys),)) + sigs + body


def make_tx(
    keys: Sequence[SigningKey],
    nonce: int,
    contract: str,
    action: str,
    args: dict[str, Any],
    time_s: int,
) -> bytes:
    """Return a signed KIND_PARTICIPANT_TX payload; keys[0] sends, keys[1:] cosign.

    Precondition: at least one key. Raises ContractError if args have no canonical form.
    """
    hexes = [bytes(k.verify_key).hex() for k in keys]
    body = tx_body(hexes[0], nonce, contract, action, args, time_s, hexes[1:])
    return sign_payload(body, keys)
