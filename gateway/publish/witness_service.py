"""The witness's service layer: parse an add-checkpoint request, check it, cosign, persist.

Implements C2SP tlog-witness "add-checkpoint" (c2sp.org/tlog-witness) with Ed25519
cosignature/v1 cosignatures (c2sp.org/tlog-cosignature) over C2SP checkpoints
(c2sp.org/tlog-checkpoint) with RFC 9162 2.1.4 consistency proofs. The HTTP routes
(gateway.publish.witness_server) only move bytes; every decision is here, and every rejection
is a WitnessError whose `status` is the one the spec prescribes:

    400 malformed request, or old size > checkpoint size              ("bad-request", "bad-old-size")
    403 no signature by a trusted key of the origin, or one that fails ("unsigned", "bad-signature")
    404 checkpoint origin not in the logs file                         ("unknown-log")
    409 old size is not the size last cosigned (body: that size)       ("conflict")
    413 body over MAX_REQUEST_BYTES                                    ("too-large")
    422 bad consistency proof, size-0 root not MTH({}), equal sizes
        with another root, proof not empty from old size 0             ("bad-proof")

Checks run in that spec order: parse, origin, signature, sizes, then (atomically with the
update, gateway.publish.witness_state) the stored size and the proof.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.bounds import MAX_BODY_BYTES, MAX_INT64, check_int
from gateway.errors import EdgesealError, ProofError
from gateway.ledger.merkle import EMPTY_ROOT, HASH_SIZE, verify_extends
from gateway.ledger.note import (
    SIG_PREFIX,
    Checkpoint,
    NoteSignature,
    UnverifiedNoteError,
    open_note,
    parse_checkpoint,
    parse_note,
)
from gateway.publish.cosignature import CosignatureSigner
from gateway.publish.witness_logs import KnownLog
from gateway.publish.witness_state import LogState, WitnessState

# why: tlog-witness: "The client MUST NOT send more than 63 consistency proof lines" (a proof
# between trees of up to 2**63 leaves has at most 63 hashes, RFC 9162 2.1.4).
MAX_PROOF_HASHES = 63
# why: 63 proof lines (45 bytes each) and a checkpoint with dozens of Ed25519 signature lines are
# under 12 KiB; the API's 64 KiB body limit (gateway.bounds) leaves room for long extension lines.
MAX_REQUEST_BYTES = MAX_BODY_BYTES
OLD_PREFIX = "old "
SIZE_CONTENT_TYPE = "text/x.tlog.size"  # tlog-witness, add-checkpoint, 409 response

logger = logging.getLogger("edgeseal.witness")

STATUS_BY_CODE = {
    "bad-request": 400,
    "bad-old-size": 400,
    "unsigned": 403,
    "bad-signature": 403,
    "unknown-log": 404,
    "not-cosigned": 404,
    "conflict": 409,
    "too-large": 413,
    "bad-proof": 422,
}


class WitnessError(EdgesealError):
    """A rejected witness request; `status` follows tlog-witness (STATUS_BY_CODE), and a
    "conflict" carries the witness's latest cosigned size in `size`."""

    kind = "WitnessError"

    def __init__(self, code: str, message: str, size: int | None = None) -> None:
        super().__init__(code, message)
        self.status = STATUS_BY_CODE[code]
        self.size = size


def _bad(message: str) -> WitnessError:
    return WitnessError("bad-request", message)


def _int_error(code: str, message: str) -> EdgesealError:
    return WitnessError("bad-request", f"{code}: {message}")


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint body: old size, proof hashes, the checkpoint note's bytes."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


def parse_decimal(text: str, what: str) -> int:
    """Return the int of ASCII decimal `text` with no leading zeroes ("0" alone allowed), in
    [0, 2**63 - 1] (gateway.bounds.check_int); raise WitnessError("bad-request")."""
    if (
        not 0 < len(text) <= len(str(MAX_INT64))
        or not text.isascii()
        or not text.isdigit()
        or (text[0] == "0" and text != "0")
    ):
        raise _bad(f"{what} is not canonical ASCII decimal")
    return check_int(int(text), what, _int_error, 0, MAX_INT64)


def _parse_hash(line: str) -> bytes:
    """Return the 32 bytes of a canonical standard-base64 proof line; raise bad-request."""
    try:
        raw = base64.b64decode(line.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise _bad("a consistency proof line is not base64") from None
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode() != line:
        raise _bad("a consistency proof line is not one canonical base64 SHA-256 hash")
    return raw


def parse_request(body: bytes) -> AddCheckpoint:
    """Return the parsed add-checkpoint body; raise WitnessError ("bad-request", "too-large").

    tlog-witness, add-checkpoint: "an old size line, zero or more consistency proof lines, and
    an empty line, followed by a checkpoint"; each line ends in U+000A; at most 63 proof lines.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise WitnessError("too-large", f"body is over {MAX_REQUEST_BYTES} bytes")
    end = body.find(b"\n\n")
    if end < 0:
        raise _bad("no empty line ends the old size and proof lines")
    try:
        header = body[:end].decode("ascii")
    except UnicodeDecodeError:
        raise _bad("old size and proof lines must be ASCII") from None
    lines = header.split("\n")
    if len(lines) > 1 + MAX_PROOF_HASHES:
        raise _bad(f"more than {MAX_PROOF_HASHES} consistency proof lines")
    if not lines[0].startswith(OLD_PREFIX):
        raise _bad("the first line must be 'old <size>'")
    old_size = parse_decimal(lines[0][len(OLD_PREFIX) :], "old size")
    proof = tuple(_parse_hash(line) for line in lines[1:])
    return AddCheckpoint(old_size, proof, body[end + 2 :])


def note_origin(note: bytes) -> str:
    """Return the first line of a well-formed note (its origin if a checkpoint); bad-request."""
    try:
        text, _ = parse_note(note)
    except ProofError as exc:
        raise _bad(f"checkpoint note: {exc.message}") from None
    return text.split("\n", 1)[0]


def signature_line(sig: NoteSignature) -> str:
    """Return the note signature line of a parsed signature (signed-note format)."""
    return f"{SIG_PREFIX}{sig.name} {base64.b64encode(sig.key_id + sig.signature).decode()}\n"


def open_checkpoint(note: bytes, log: KnownLog) -> tuple[Checkpoint, str, str]:
    """Return (checkpoint, its exact signed text, the verified log signature lines) of a note
    signed by `log`.

    tlog-witness, add-checkpoint: verify "against the public key(s) it trusts for the checkpoint
    origin", "ignore signatures from unknown keys", 403 if "no signature from a trusted key for
    the origin is present, or a signature line's key name and ID match a trusted key but the
    signature itself fails to verify". Raises WitnessError 403 ("unsigned", "bad-signature")
    or 400 ("bad-request") for a note or checkpoint text that does not parse.
    """
    try:
        opened = open_note(note, log.verifiers)
    except UnverifiedNoteError:
        raise WitnessError("unsigned", f"no signature by a key of {log.origin!r}") from None
    except ProofError as exc:
        if exc.code == "bad-note":
            raise _bad(f"checkpoint note: {exc.message}") from None
        raise WitnessError("bad-signature", exc.message) from None
    try:
        checkpoint = parse_checkpoint(opened.text)
    except ProofError as exc:
        raise _bad(f"checkpoint: {exc.message}") from None
    return checkpoint, opened.text, "".join(signature_line(s) for s in opened.verified)


def check_consistency(state: LogState, request: AddCheckpoint, checkpoint: Checkpoint) -> None:
    """Return None if `checkpoint` may follow `state` given the request's old size and proof.

    Precondition: request.old_size <= checkpoint.size. tlog-witness, add-checkpoint: 409 if the
    old size is not the latest cosigned size (0 if none); 422 if a size-0 checkpoint's root is
    not the empty tree's (RFC 9162 2.1.1: SHA-256 of the empty string), if a proof from old size
    0 is not empty, if equal sizes have different roots, or if the RFC 9162 2.1.4.2 consistency
    proof from (old size, stored root) to the checkpoint does not verify.
    """
    if request.old_size != state.size:
        raise WitnessError(
            "conflict", f"old size {request.old_size} is not the cosigned size", state.size
        )
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        raise WitnessError("bad-proof", "a size-0 checkpoint must have the empty tree's root")
    try:
        verify_extends(state.size, checkpoint.size, request.proof, state.root, checkpoint.root)
    except ProofError as exc:
        raise WitnessError("bad-proof", exc.message) from None


class WitnessService:
    """One witness: its cosigning key, the logs it witnesses and its durable state."""

    def __init__(
        self,
        signer: CosignatureSigner,
        logs: Mapping[str, KnownLog],
        state: WitnessState,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.logs = dict(logs)
        self.state = state
        self._clock_s = clock_s
        self._by_origin_hash = {hashlib.sha256(o.encode()).hexdigest(): o for o in self.logs}

    def add_checkpoint(self, body: bytes) -> str:
        """Return the cosignature line(s) for an add-checkpoint body after persisting the state.

        tlog-witness, add-checkpoint; raises WitnessError with the spec's status (module doc).
        The returned line is an Ed25519 cosignature/v1 by this witness over the whole tree
        (tlog-cosignature), timestamped now (never zero).
        """
        request = parse_request(body)
        origin = note_origin(request.note)
        log = self.logs.get(origin)
        if log is None:
            raise WitnessError("unknown-log", f"this witness does not witness {origin[:200]!r}")
        checkpoint, text, log_lines = open_checkpoint(request.note, log)
        if request.old_size > checkpoint.size:
            raise WitnessError("bad-old-size", "old size is larger than the checkpoint size")
        lines: list[str] = []

        def decide(state: LogState) -> tuple[int, bytes, bytes, int]:
            check_consistency(state, request, checkpoint)
            now_s = max(1, int(self._clock_s()))
            lines.append(self.signer.cosign(text, now_s))
            note = (text + "\n" + log_lines + lines[0]).encode()
            return checkpoint.size, checkpoint.root, note, now_s

        try:
            self.state.update(origin, EMPTY_ROOT, decide)
        except WitnessError as exc:
            # tlog-witness: the witness MAY log it, "as it might be proof of log misbehavior"
            if exc.status == 422:
                logger.warning(
                    "inconsistent checkpoint of %s (%s), kept as evidence:\n%s",
                    origin,
                    exc.message,
                    request.note.decode("utf-8", "replace"),
                )
            raise
        except ValueError as exc:  # the state's own guard: a second root or a smaller size
            raise WitnessError("bad-proof", str(exc)) from None
        return "".join(lines)

    def checkpoint(self, origin_hash_hex: str) -> bytes:
        """Return the latest cosigned checkpoint of the log whose SHA-256(origin) is given.

        tlog-witness, "Monitor Retrieval Mechanism": the checkpoint with the log's verified
        signature(s) and this witness's cosignature; WitnessError 404 ("not-cosigned") if the
        log is unknown or was never cosigned.
        """
        origin = self._by_origin_hash.get(origin_hash_hex)
        stored = None if origin is None else self.state.latest(origin, EMPTY_ROOT).note
        if stored is None:
            raise WitnessError("not-cosigned", "no cosigned checkpoint for this log")
        return stored
