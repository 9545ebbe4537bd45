"""Evidence of a misbehaving gateway: the JSON file a replica exports, and its offline check.

Anyone holding the gateway's vkey can check a file with `edgeseal replica check-evidence FILE
--key VKEY` (`check_evidence`): it trusts nothing in the file but the signatures it verifies.
Format "edgeseal-replica-evidence/v1", one JSON object:

    format, kind, origin, vkey, detected_at (ISO 8601 UTC), detail (text)
    checkpoints   the gateway-signed checkpoint notes the claim rests on (text)

and per kind:

- "fork": two signed checkpoints that no consistency proof can join (c2sp.org/tlog-checkpoint:
  "A log MUST not sign any checkpoint which is inconsistent with any checkpoint it previously
  signed"). checkpoints = [old, new], old size <= new size; `proof` = {old_size, new_size,
  old_root_in_new_tree (base64), consistency (base64 hashes)}: an RFC 9162 2.1.4 proof that the
  new tree's prefix of old_size leaves has a root other than the old checkpoint's. Equal sizes
  need no proof: two roots for one size.
- "state-conflict": two signed checkpoints of the same tree (size and root) with different
  contract state lines (gateway.contracts.engine.extension_line).
- "tile-mismatch": tiles (or an entry bundle) served for a signed checkpoint that do not hash
  to its root. `tiles` = {path: base64 as served}, `failed` = the path that fails (or "edge":
  the right-edge tiles together), `bundle` = {path, base64} when an entry bundle does not match
  its verified level-0 tile. Served bytes are not signed: the file shows they contradict the
  signed root; that the gateway served them rests on the replica's word (or a transport log).
- "state-mismatch" / "event-mismatch": the signed checkpoint's state line is not what the
  contracts compute from the log, or the log holds contract events the contracts do not emit.
  `entries` = every entry [0, size) as a gzip-compressed, base64 C2SP entry bundle stream; the
  check recomputes the root from them (so they are the log's entries) and replays them.
- "anchor-fork": the gateway anchored a head on an EVM chain (gateway/anchor/) that is not a
  head of the tree it signed for the replica. checkpoints = [the replica's signed checkpoint];
  `anchor` = {chain_id, contract, tx_hash (0x hex), size, root (base64), state_hash (hex)}:
  the Anchored event the chain holds; `proof` = {size, root_in_tree (base64), consistency
  (base64 hashes)}: an RFC 9162 2.1.4 proof that the signed tree's prefix of that size has
  another root (none when the sizes are equal: then the root or the state line differs).
  That the chain holds the anchor is checkable by anyone with a node of that chain (the
  transaction is public); the offline check says so instead of trusting the file for it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import time
from dataclasses import dataclass
from typing import Any

from gateway.contracts import Engine, extension_line
from gateway.contracts.engine import EXTENSION_PREFIX
from gateway.errors import ContractError, EdgesealError, ProofError
from gateway.ledger import merkle
from gateway.ledger.note import Checkpoint, NoteVerifier, verify_checkpoint
from gateway.ledger.tiles import TileBuilder
from gateway.replica.tiles import (
    TILE_WIDTH,
    TileMismatch,
    TileRef,
    TileTree,
    bundle_for,
    decode_bundle,
    encode_bundle,
    leaf_hashes,
    parse_tile_path,
)

FORMAT = "edgeseal-replica-evidence/v1"
KINDS = (
    "fork", "state-conflict", "tile-mismatch", "state-mismatch", "event-mismatch", "anchor-fork",
)  # fmt: skip
# why: evidence of a state mismatch carries the whole log; 1 GiB (decompressed) bounds what a
# hostile file can make the checker inflate while holding millions of records.
MAX_ENTRIES_BYTES = 1 << 30


class EvidenceError(EdgesealError):
    """The file does not prove what it claims (malformed, unsigned, or the claim does not hold)."""

    kind = "EvidenceError"


@dataclass(frozen=True)
class Confirmed:
    """A checked claim: its kind and what it shows, in one sentence."""

    kind: str
    summary: str


def b64(data: bytes) -> str:
    """Return standard base64 text of data."""
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EvidenceError("bad-evidence", f"{what} is not base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise EvidenceError("bad-evidence", f"{what} is not base64") from None


def state_lines(cp: Checkpoint) -> list[str]:
    """Return the checkpoint's contract state extension lines ("edgeseal-state <hex>")."""
    return [x for x in cp.extensions if x.startswith(EXTENSION_PREFIX + " ")]


def base(kind: str, verifier: NoteVerifier, detail: str, notes: list[bytes]) -> dict[str, Any]:
    """Return the fields every evidence file has."""
    return {
        "format": FORMAT,
        "kind": kind,
        "origin": verifier.name,
        "vkey": verifier.vkey,
        "detected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "detail": detail,
        "checkpoints": [n.decode("utf-8") for n in notes],
    }


def fork(
    verifier: NoteVerifier,
    old: bytes,
    new: bytes,
    old_root_in_new: bytes,
    proof: list[bytes],
    detail: str,
) -> dict[str, Any]:
    """Return "fork" evidence: old and new notes (old size <= new size) and the proof."""
    doc = base("fork", verifier, detail, [old, new])
    o, n = verify_checkpoint(old, verifier), verify_checkpoint(new, verifier)
    doc["proof"] = {
        "old_size": o.size,
        "new_size": n.size,
        "old_root_in_new_tree": b64(old_root_in_new),
        "consistency": [b64(h) for h in proof],
    }
    return doc


def anchor_fork(
    verifier: NoteVerifier,
    note: bytes,
    root_in_tree: bytes,
    proof: list[bytes],
    anchor: dict[str, Any],
) -> dict[str, Any]:
    """Return "anchor-fork" evidence: the replica's signed checkpoint note, the anchored head
    (`anchor`, module doc) and the signed tree's root at that size with its proof."""
    doc = base("anchor-fork", verifier, "", [note])
    doc["anchor"] = anchor
    doc["proof"] = {
        "size": anchor["size"],
        "root_in_tree": b64(root_in_tree),
        "consistency": [b64(h) for h in proof],
    }
    return doc


def entries_field(entries: list[bytes]) -> dict[str, Any]:
    """Return the `entries` field: every entry as a gzip-compressed C2SP bundle stream."""
    return {
        "encoding": "c2sp-entry-bundle+gzip+base64",
        "count": len(entries),
        "data": b64(gzip.compress(encode_bundle(entries), 6, mtime=0)),
    }


# ---- checking ---------------------------------------------------------------------------------


def check_evidence(doc: Any, verifier: NoteVerifier) -> Confirmed:
    """Return what the evidence proves about the log of `verifier`; raise EvidenceError if it
    proves nothing (malformed, notes not signed by that key, or the claim does not hold)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EvidenceError("bad-evidence", f"not an {FORMAT} document")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise EvidenceError("bad-evidence", f"unknown evidence kind {kind!r}")
    texts = doc.get("checkpoints")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise EvidenceError("bad-evidence", "checkpoints must be a list of notes")
    try:
        notes = [verify_checkpoint(t.encode("utf-8"), verifier) for t in texts]
    except ProofError as exc:
        raise EvidenceError("unsigned", f"a checkpoint does not verify: {exc.message}") from None
    try:
        if kind in ("fork", "state-conflict"):
            return _check_two(kind, notes, doc)
        if kind == "tile-mismatch":
            return _check_tiles(notes[0], doc)
        if kind == "anchor-fork":
            return _check_anchor(notes[0], doc)
        return _check_replay(kind, notes[0], doc)
    except (ProofError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        if isinstance(exc, EvidenceError):
            raise
        raise EvidenceError("bad-evidence", f"the evidence does not hold: {exc}") from None


def _check_two(kind: str, notes: list[Checkpoint], doc: dict[str, Any]) -> Confirmed:
    if len(notes) != 2:
        raise EvidenceError("bad-evidence", f"{kind} evidence needs two checkpoints")
    old, new = notes
    if kind == "state-conflict":
        if (old.size, old.root) != (new.size, new.root) or state_lines(old) == state_lines(new):
            raise EvidenceError("not-proven", "the checkpoints are not one tree with two states")
        return Confirmed(kind, f"the log signed two contract states for tree size {old.size}")
    if old.size > new.size:
        raise EvidenceError("bad-evidence", "the first checkpoint must be the smaller tree")
    if old.size == new.size:
        if old.root == new.root:
            raise EvidenceError("not-proven", "the two checkpoints have the same root")
        return Confirmed(kind, f"the log signed two different roots for tree size {old.size}")
    proof = doc["proof"]
    if proof["old_size"] != old.size or proof["new_size"] != new.size:
        raise EvidenceError("bad-evidence", "the proof's sizes are not the checkpoints' sizes")
    prefix_root = _unb64(proof["old_root_in_new_tree"], "old_root_in_new_tree")
    hashes = [_unb64(h, "consistency hash") for h in proof["consistency"]]
    merkle.verify_extends(old.size, new.size, hashes, prefix_root, new.root)  # ProofError if not
    if prefix_root == old.root:
        raise EvidenceError("not-proven", "the new tree extends the old one: no fork")
    return Confirmed(
        kind,
        f"the log's tree of size {new.size} does not extend its own checkpoint of size "
        f"{old.size}: a fork (the two signed checkpoints are inconsistent)",
    )


def _check_anchor(cp: Checkpoint, doc: dict[str, Any]) -> Confirmed:
    anchor, proof = doc["anchor"], doc["proof"]
    size = anchor["size"]
    if type(size) is not int or not 0 < size <= cp.size or proof["size"] != size:
        raise EvidenceError("bad-evidence", "the anchored size is not one of the signed tree's")
    anchored_root = _unb64(anchor["root"], "anchor.root")
    state_hex = anchor["state_hash"]
    if not isinstance(state_hex, str) or len(bytes.fromhex(state_hex)) != 32:
        raise EvidenceError("bad-evidence", "anchor.state_hash is not 32 bytes of hex")
    ours = _unb64(proof["root_in_tree"], "root_in_tree")
    if size == cp.size:
        if ours != cp.root:
            raise EvidenceError("bad-evidence", "root_in_tree is not the checkpoint's root")
        lines = state_lines(cp)
        state_ok = lines == [f"{EXTENSION_PREFIX} {state_hex}"] or (not lines and not any(
            bytes.fromhex(state_hex)))  # fmt: skip
    else:
        hashes = [_unb64(h, "consistency hash") for h in proof["consistency"]]
        merkle.verify_extends(size, cp.size, hashes, ours, cp.root)  # ProofError if not
        state_ok = True  # the signed checkpoint says nothing of the state at another size
    if ours == anchored_root and state_ok:
        raise EvidenceError("not-proven", "the anchored head is a head of the signed tree")
    what = "root" if ours != anchored_root else "contract state"
    return Confirmed(
        "anchor-fork",
        f"the log signed a tree of size {cp.size} whose {what} at size {size} is not the one "
        f"anchored in transaction {anchor['tx_hash']} on chain {anchor['chain_id']} (contract "
        f"{anchor['contract']}): two histories, if that transaction is on the chain (not "
        "checked offline: look it up with any node of that chain)",
    )


def _check_tiles(cp: Checkpoint, doc: dict[str, Any]) -> Confirmed:
    if not isinstance(doc.get("tiles"), dict):
        raise EvidenceError("bad-evidence", "tiles must be an object of path: base64")
    served: dict[TileRef, bytes] = {
        parse_tile_path(str(path).removeprefix("tile/")): _unb64(data, str(path))
        for path, data in doc["tiles"].items()
    }

    def fetch(ref: TileRef) -> bytes:
        if ref not in served:
            raise EvidenceError("bad-evidence", f"the evidence lacks {ref.path()}")
        return served[ref]

    tree = TileTree(cp.size, cp.root, fetch)
    failed = str(doc["failed"])
    try:
        tree.check_edge()
        if failed != "edge":
            ref = parse_tile_path(failed.removeprefix("tile/"))
            if ref.level is not None:
                tree.tile(ref)
            else:
                bundle = doc["bundle"]
                if bundle["path"] != failed:
                    raise EvidenceError("bad-evidence", "bundle.path is not the failed path")
                if ref.index * TILE_WIDTH >= cp.size or ref != bundle_for(ref.index, cp.size):
                    raise EvidenceError("bad-evidence", "the bundle is not one of this tree's")
                data = _unb64(bundle["base64"], "bundle")
                try:
                    entries = decode_bundle(data, ref.count)
                except ProofError:
                    return Confirmed("tile-mismatch", f"{failed} is not a well-formed bundle")
                if not tree.bundle_matches(ref, leaf_hashes(entries)):
                    return Confirmed(
                        "tile-mismatch",
                        f"{failed} holds entries that do not hash to the verified tiles "
                        f"of the signed tree of size {cp.size}",
                    )
                raise EvidenceError("not-proven", f"{failed} matches its tile")
    except TileMismatch as exc:
        return Confirmed(
            "tile-mismatch", f"served tiles contradict the signed root of size {cp.size}: {exc}"
        )
    raise EvidenceError("not-proven", "the tiles hash to the signed root")


def _decode_entries(field: Any) -> list[bytes]:
    if not isinstance(field, dict) or field.get("encoding") != "c2sp-entry-bundle+gzip+base64":
        raise EvidenceError("bad-evidence", "entries must be a c2sp-entry-bundle+gzip+base64")
    raw = _unb64(field["data"], "entries")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            data = f.read(MAX_ENTRIES_BYTES + 1)
    except (OSError, EOFError):
        raise EvidenceError("bad-evidence", "entries are not gzip") from None
    if len(data) > MAX_ENTRIES_BYTES:
        raise EvidenceError("bad-evidence", "entries are too large")
    count = field["count"]
    if not isinstance(count, int):
        raise EvidenceError("bad-evidence", "entries.count is not an integer")
    return decode_bundle(data, count)


def _check_replay(kind: str, cp: Checkpoint, doc: dict[str, Any]) -> Confirmed:
    entries = _decode_entries(doc["entries"])
    if len(entries) != cp.size:
        raise EvidenceError("bad-evidence", f"{len(entries)} entries for a tree of {cp.size}")
    builder = TileBuilder()
    builder.extend(merkle.leaf_hash(e) for e in entries)
    if builder.root() != cp.root:
        raise EvidenceError("bad-evidence", "the entries are not the signed tree's entries")
    try:
        state, _ = Engine().audit(enumerate(entries))
    except ContractError as exc:
        return Confirmed(
            "event-mismatch",
            f"the signed log of size {cp.size} holds contract events its contracts do not emit "
            f"({exc.message})",
        )
    if kind == "event-mismatch":
        raise EvidenceError("not-proven", "every contract event in the log is the expected one")
    line = extension_line(state)
    if state_lines(cp) == [line]:
        raise EvidenceError("not-proven", "the checkpoint's state line is what replay computes")
    return Confirmed(
        "state-mismatch",
        f"the checkpoint of size {cp.size} says {state_lines(cp) or 'no state'}; replaying its "
        f"{cp.size} entries gives {line!r}",
    )


def load(path: str) -> Any:
    """Return the JSON document in the file at path; EvidenceError if it is not JSON."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise EvidenceError("bad-evidence", f"{path}: {exc}") from None


def dumps(doc: dict[str, Any]) -> bytes:
    """Return the file's bytes: sorted keys, indented, final newline."""
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode("utf-8")
