"""Offline audit of a ledger file: recompute everything from the entries and compare.

``audit(path, vkey, published)`` opens the SQLite file read-only and checks, in one pass:

1. entry indexes are contiguous from 0, every entry is stored as a BLOB and has a known kind;
2. the Merkle tree recomputed from the entries (RFC 9162 2.1.1) equals every stored tile,
   hash by hash, and no unexpected tile is stored;
3. every stored checkpoint is signed by the log key (C2SP signed-note), names the log's
   origin, and its root equals the recomputed root at its size; successive checkpoints
   are consistent, checked with a consistency proof built from the stored tiles
   (RFC 9162 2.1.4); the newest checkpoint covers the integrated tree size;
4. device enrollments are well formed (device id = SHA-256(public key)[0:16]) and every
   device record decodes, belongs to an enrolled device, extends its device's hash chain
   and is authenticated by a signature (its own or a signed successor's), per
   gateway.wire.DeviceChain;
5. every *published* checkpoint (a file holding a signed note published earlier: a copy kept
   by a participant, a witness, the gateway's own durable copy) verifies with the log key and
   the ledger still extends it: its size is at most the tree size, its root is the root at its
   size (RFC 9162 2.1.4 consistency from it to the current tree, from the stored tiles) and the
   ledger still stores that checkpoint. This is what finds a ledger rolled back to an older
   consistent prefix, or a deleted checkpoint, which look healthy from the inside.

Every problem becomes a Finding naming the first entry index it affects (or the checkpoint
size, or the published file); the report's first_bad_index is the smallest. The key to check
checkpoints with should come from outside the file (``vkey``); without it the vkey stored in the
file is used and the report says so. The audit never raises for a bad file: garbage, an empty or
truncated file, a directory, values of the wrong SQLite type, non-UTF-8 notes and deeply nested
JSON all become findings.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.bounds import MAX_INT64, check_int
from gateway.errors import ChainError, EdgesealError, ProofError
from gateway.ledger import merkle
from gateway.ledger.entries import (
    KIND_DEVICE_ENROLLMENT,
    KIND_DEVICE_RECORD,
    KINDS,
    decode_enrollment,
)
from gateway.ledger.merkle import EMPTY_ROOT, HASH_SIZE
from gateway.ledger.note import Checkpoint, NoteVerifier, parse_note, verify_checkpoint
from gateway.ledger.store import SCHEMA_VERSION, connect
from gateway.ledger.tiles import (
    TILE_BYTES,
    TILE_HEIGHT,
    TileBuilder,
    node_location,
    tile_position_node,
)

# why: the first findings locate tampering; thousands more after one break add nothing.
MAX_FINDINGS = 100
# why: entries are hashed and fed to the tree builder in chunks of this size.
AUDIT_CHUNK_ENTRIES = 4096
# why: a signed checkpoint is a few hundred bytes (origin, size, root, extension lines and at
# most 100 signature lines, Go's note.Open limit): 64 KiB holds any of them, and a larger
# --checkpoint file is refused before it is read whole.
MAX_PUBLISHED_NOTE_BYTES = 64 * 1024
# why: a tree of at most 2^63 leaves (MAX_INT64) has 64 levels, 8 per tile: a tile level above
# this addresses no node, and shifting by it would build huge integers.
MAX_TILE_LEVEL = 64 // TILE_HEIGHT
# why: a value from a hostile file is quoted in a message at most this long.
MAX_QUOTED_CHARS = 40

NodeReader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Finding:
    """One audit failure: a stable code, a message and where it is."""

    code: str
    message: str
    index: int | None = None  # first entry index affected
    checkpoint_size: int | None = None  # the checkpoint concerned, if any
    published: str | None = None  # the published checkpoint file concerned, if any

    def __str__(self) -> str:
        where = []
        if self.published is not None:
            where.append(f"published checkpoint {self.published}")
        if self.index is not None:
            where.append(f"index {self.index}")
        if self.checkpoint_size is not None:
            where.append(f"checkpoint size {self.checkpoint_size}")
        return f"{', '.join(where) or 'ledger'}: {self.code}: {self.message}"


@dataclass
class PublishedCheck:
    """One published checkpoint given to the audit: its file name, its tree size once read, and
    whether the audit got to check it (it cannot when the ledger itself is unreadable)."""

    name: str
    size: int | None = None
    checked: bool = False
    codes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True if the checkpoint was checked and the ledger extends it."""
        return self.checked and not self.codes


@dataclass
class AuditReport:
    """What audit() checked and found."""

    path: str
    origin: str = ""
    vkey: str = ""
    vkey_from_file: bool = False
    readable: bool = False  # the file is a ledger whose meta (schema, size, vkey) could be used
    tree_size: int = 0
    entries: int = 0
    checkpoints: int = 0
    device_records: int = 0
    devices: int = 0
    published: list[PublishedCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Return True if nothing was found."""
        return not self.findings

    @property
    def first_bad_index(self) -> int | None:
        """Return the smallest entry index named by a finding, or None."""
        indexes = [f.index for f in self.findings if f.index is not None]
        return min(indexes) if indexes else None

    def sorted_findings(self) -> list[Finding]:
        """Return findings ordered by entry index (those without one last)."""
        big = 1 << 64
        return sorted(
            self.findings,
            key=lambda f: (
                f.index if f.index is not None else big,
                f.checkpoint_size if f.checkpoint_size is not None else big,
            ),
        )


def _blob(value: Any) -> bytes:
    """Return the bytes of an SQLite BLOB value (CAST(x AS BLOB)); b"" for NULL or anything else."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""


def _quote(value: Any) -> str:
    """Return repr(value) cut to MAX_QUOTED_CHARS, for messages about values from the file."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTED_CHARS else text[: MAX_QUOTED_CHARS - 3] + "..."


def _same_checkpoint(stored: bytes, published: bytes, verifier: NoteVerifier) -> bool:
    """Return True if two signed notes are the same checkpoint: byte-identical, or the same text
    with the same signature line by the log key (other signature lines, e.g. witnesses'
    cosignatures, may differ). Ed25519 is deterministic (RFC 8032 5.1.6), so one key signing
    one text gives one signature: a different text at the same size is a second checkpoint."""
    if stored == published:
        return True
    try:
        texts_sigs = [parse_note(note) for note in (stored, published)]
    except ProofError:
        return False
    (text1, sigs1), (text2, sigs2) = texts_sigs

    def log_sig(sigs: Iterable[Any]) -> Any:
        return next(
            (s for s in sigs if (s.name, s.key_id) == (verifier.name, verifier.key_id)), None
        )

    return text1 == text2 and log_sig(sigs1) is not None and log_sig(sigs1) == log_sig(sigs2)


class _Audit:
    """One run of the audit over one file (audit() is the entry point)."""

    def __init__(self, path: str, vkey: str | None, published: Sequence[str]) -> None:
        self.report = AuditReport(path)
        self.vkey_arg = vkey
        self.published_paths = list(published)
        self.conn: sqlite3.Connection | None = None

    def add(
        self,
        code: str,
        message: str,
        index: int | None = None,
        size: int | None = None,
        published: PublishedCheck | None = None,
    ) -> None:
        """Record a finding (at most MAX_FINDINGS; then mark the report truncated)."""
        if published is not None:
            published.codes.append(code)
        if len(self.report.findings) >= MAX_FINDINGS:
            self.report.truncated = True
            return
        name = published.name if published is not None else None
        self.report.findings.append(Finding(code, message, index, size, name))

    # ------------------------------------------------------------------ run

    def run(self) -> AuditReport:
        """Return the report; never raises for a bad ledger or checkpoint file."""
        notes = self._read_published()
        try:
            self.conn = connect(self.report.path, readonly=True)
        except (OSError, sqlite3.Error, ValueError) as exc:  # ValueError: SQLite's message for
            # some damaged files is not UTF-8 (UnicodeDecodeError)
            self.add("unreadable", f"cannot open ledger: {exc}")
            return self.report
        try:
            self._run(self.conn, notes)
        except sqlite3.DatabaseError as exc:
            self.add("corrupt-database", f"SQLite error: {exc}")
        except Exception as exc:  # last resort: a verifier reports, it never crashes
            self.add(
                "audit-error",
                f"the audit stopped at {type(exc).__name__}: {str(exc)[:200]} (an input the "
                "audit does not expect, or a bug in it: please report it)",
            )
        finally:
            self.conn.close()
        return self.report

    def _read_published(self) -> list[tuple[PublishedCheck, bytes]]:
        """Return (check, note bytes) of each readable published checkpoint file; a file that
        cannot be read, or is over MAX_PUBLISHED_NOTE_BYTES, becomes a finding."""
        out: list[tuple[PublishedCheck, bytes]] = []
        for name in self.published_paths:
            check = PublishedCheck(name)
            self.report.published.append(check)
            try:
                with open(name, "rb") as f:
                    note = f.read(MAX_PUBLISHED_NOTE_BYTES + 1)
            except OSError as exc:
                self.add("unreadable", f"cannot read it: {exc.strerror or exc}", published=check)
                continue
            if len(note) > MAX_PUBLISHED_NOTE_BYTES:
                self.add(
                    "too-large",
                    f"over {MAX_PUBLISHED_NOTE_BYTES} bytes: not a signed checkpoint",
                    published=check,
                )
                continue
            out.append((check, note))
        return out

    def _run(self, conn: sqlite3.Connection, notes: list[tuple[PublishedCheck, bytes]]) -> None:
        r = self.report
        found = self._meta(conn)
        if found is None:
            return
        tree_size, verifier = found
        r.readable = True
        checkpoints = [
            (size, kind, _blob(note))
            for size, kind, note in conn.execute(
                "SELECT size, typeof(note), CAST(note AS BLOB) FROM checkpoint ORDER BY size"
            )
        ]
        r.checkpoints = len(checkpoints)
        published = self._open_published(notes, verifier)
        wanted_roots = {
            s for s, _, _ in checkpoints if isinstance(s, int) and 0 <= s <= tree_size
        } | {cp.size for _, cp, _ in published if cp.size <= tree_size}
        wanted_roots.add(tree_size)
        roots = self._entries(conn, tree_size, wanted_roots)
        self._checkpoints(checkpoints, verifier, roots, tree_size)
        stored = {s: note for s, _, note in checkpoints if isinstance(s, int)}
        for check, cp, note in published:
            self._published(check, cp, note, stored, roots, verifier)

    def _meta(self, conn: sqlite3.Connection) -> tuple[int, NoteVerifier] | None:
        """Return (tree size, the verifier to check checkpoints with) from the meta table, or
        None after a finding if the file is not a usable ledger."""
        r = self.report
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            self.add("bad-meta", f"no meta table: {exc}")
            return None
        if meta.get("schema") != SCHEMA_VERSION:
            self.add("bad-meta", f"unsupported schema {_quote(meta.get('schema'))}")
            return None
        r.origin = str(meta.get("origin"))
        try:
            tree_size = check_int(meta.get("tree_size"), "tree_size", ProofError, 0, MAX_INT64)
        except ProofError as exc:
            self.add("bad-meta", f"{exc.message}, not {_quote(meta.get('tree_size'))}")
            return None
        r.tree_size = tree_size
        verifier = self._verifier(meta.get("vkey"))
        if verifier is None:
            return None
        if verifier.name != r.origin:
            self.add(
                "bad-meta", f"origin {_quote(r.origin)} is not the log key name {verifier.name!r}"
            )
        return tree_size, verifier

    def _verifier(self, stored_vkey: Any) -> NoteVerifier | None:
        """Return the --vkey verifier if given (a finding if the stored one differs), else the
        stored one; None after a finding if the one to use is unusable."""
        r = self.report
        try:
            if not isinstance(stored_vkey, str):
                raise ProofError("bad-vkey", f"it is {_quote(stored_vkey)}, not text")
            stored: NoteVerifier | None = NoteVerifier.from_vkey(stored_vkey)
        except ProofError as exc:
            stored = None
            if self.vkey_arg is None:
                self.add("bad-meta", f"stored vkey is unusable: {exc.message}")
                return None
            self.add("vkey-mismatch", f"the vkey stored in the ledger is unusable: {exc.message}")
        if self.vkey_arg is None:
            assert stored is not None
            r.vkey, r.vkey_from_file = stored.vkey, True
            return stored
        try:
            given = NoteVerifier.from_vkey(self.vkey_arg)
        except ProofError as exc:
            self.add("bad-vkey", f"--vkey is unusable: {exc.message}")
            return None
        r.vkey = given.vkey
        if stored is not None and stored.vkey != given.vkey:
            self.add("vkey-mismatch", "the vkey stored in the ledger is not the given one")
        return given

    # ---------------------------------------------------------------- tree

    def _entries(
        self, conn: sqlite3.Connection, tree_size: int, wanted_roots: set[int]
    ) -> dict[int, bytes]:
        """Return {size: root recomputed from the entries} for the wanted sizes reached, after
        checking the entries, the device chains and the stored tiles (findings)."""
        r = self.report
        roots: dict[int, bytes] = {0: EMPTY_ROOT} if 0 in wanted_roots else {}
        builder = TileBuilder()
        expected_tiles: set[tuple[int, int]] = set()
        devices = _DeviceAudit(self)
        pending: list[bytes] = []
        expect = 0
        rows = conn.execute("SELECT idx, typeof(data), CAST(data AS BLOB) FROM entry ORDER BY idx")
        for idx, sql_type, value in rows:
            if idx != expect:
                self.add(
                    "missing-entry",
                    f"entry {expect} is missing (next stored is {_quote(idx)})",
                    expect,
                )
                break
            data = _blob(value)
            expect += 1
            if sql_type != "blob":
                self.add("not-a-blob", f"entry is stored as {sql_type}, not as a BLOB", idx)
            if not data or data[0] not in KINDS:
                self.add("bad-entry-kind", "entry is empty or of unknown kind", idx)
            else:
                devices.entry(idx, data)
            if idx < tree_size:
                pending.append(hashlib.sha256(b"\x00" + data).digest())
                if (
                    len(pending) >= AUDIT_CHUNK_ENTRIES
                    or builder.size + len(pending) in wanted_roots
                ):
                    self._extend(builder, pending, roots, wanted_roots, expected_tiles)
                    pending = []
        self._extend(builder, pending, roots, wanted_roots, expected_tiles)
        r.entries = expect
        if expect < tree_size:
            self.add("missing-entry", f"tree size {tree_size} but only {expect} entries", expect)
        else:
            full = [t for t in builder.drain() if len(t[2]) == TILE_BYTES]
            self._compare_tiles(full + builder.partial_tiles(), expected_tiles, final=True)
            self._unexpected_tiles(conn, expected_tiles)
        devices.finish()
        r.device_records = devices.records
        r.devices = len(devices.chains)
        return roots

    def _extend(
        self,
        builder: TileBuilder,
        leaves: list[bytes],
        roots: dict[int, bytes],
        wanted: set[int],
        expected_tiles: set[tuple[int, int]],
    ) -> None:
        if not leaves:
            return
        builder.extend(leaves)
        if builder.size in wanted:
            roots[builder.size] = builder.root()
        self._compare_tiles(builder.drain(), expected_tiles, final=False)

    def _compare_tiles(
        self, tiles: list[tuple[int, int, bytes]], expected: set[tuple[int, int]], final: bool
    ) -> None:
        assert self.conn is not None
        for tile_level, tile_index, blob in tiles:
            if not final and len(blob) != TILE_BYTES:
                continue  # a partial tile; compared once complete or at the end
            expected.add((tile_level, tile_index))
            row = self.conn.execute(
                "SELECT typeof(hashes), CAST(hashes AS BLOB) FROM tile WHERE level = ? AND idx = ?",
                (tile_level, tile_index),
            ).fetchone()
            first_leaf = tile_index << (TILE_HEIGHT * (tile_level + 1))
            if row is None:
                self.add(
                    "missing-tile", f"tile ({tile_level}, {tile_index}) is missing", first_leaf
                )
                continue
            if row[0] != "blob":
                self.add(
                    "not-a-blob",
                    f"tile ({tile_level}, {tile_index}) is stored as {row[0]}, not as a BLOB",
                    first_leaf,
                )
            stored = _blob(row[1])
            if stored == blob:
                continue
            for pos in range(0, min(len(stored), len(blob)), HASH_SIZE):
                if stored[pos : pos + HASH_SIZE] != blob[pos : pos + HASH_SIZE]:
                    level, index = tile_position_node(tile_level, tile_index, pos // HASH_SIZE)
                    self.add(
                        "bad-node-hash",
                        f"stored hash of node ({level}, {index}) in tile ({tile_level}, "
                        f"{tile_index}) differs from the one recomputed from the entries",
                        index << level,
                    )
                    break
            else:
                self.add(
                    "bad-tile-length",
                    f"tile ({tile_level}, {tile_index}) holds {len(stored)} bytes, "
                    f"expected {len(blob)}",
                    first_leaf,
                )

    def _unexpected_tiles(self, conn: sqlite3.Connection, expected: set[tuple[int, int]]) -> None:
        for tile_level, tile_index in conn.execute("SELECT level, idx FROM tile"):
            if (tile_level, tile_index) not in expected:
                first = None
                if (
                    isinstance(tile_level, int)
                    and isinstance(tile_index, int)
                    and 0 <= tile_level <= MAX_TILE_LEVEL
                    and tile_index >= 0
                ):
                    first = tile_index << (TILE_HEIGHT * (tile_level + 1))
                self.add(
                    "unexpected-tile",
                    f"tile ({_quote(tile_level)}, {_quote(tile_index)}) is beyond the tree size",
                    first,
                )

    # ---------------------------------------------------------- checkpoints

    def _node_reader(self) -> NodeReader:
        """Return node_at(level, index) reading the stored tiles (ProofError if one is absent)."""
        assert self.conn is not None
        conn = self.conn
        cache: dict[tuple[int, int], bytes] = {}

        def node_at(level: int, index: int) -> bytes:
            tile_level, tile_index, offset = node_location(level, index)
            key = (tile_level, tile_index)
            if key not in cache:
                row = conn.execute(
                    "SELECT CAST(hashes AS BLOB) FROM tile WHERE level = ? AND idx = ?", key
                ).fetchone()
                cache[key] = _blob(row[0]) if row is not None else b""
            h = cache[key][offset : offset + HASH_SIZE]
            if len(h) != HASH_SIZE:
                raise ProofError("missing-node", f"node ({level}, {index}) is not stored")
            return h

        return node_at

    @staticmethod
    def _check_extends(
        node_at: NodeReader, size1: int, root1: bytes, size2: int, root2: bytes
    ) -> None:
        """Return None if the tree (size2, root2) extends (size1, root1), with a consistency
        proof built from the stored tiles (RFC 9162 2.1.4.1) and verified (2.1.4.2); the empty
        tree needs no proof, only root1 == MTH({}) (merkle.verify_extends). Raises ProofError.
        """
        proof = merkle.prove_consistency(size1, size2, node_at) if size1 else []
        merkle.verify_extends(size1, size2, proof, root1, root2)

    def _checkpoints(
        self,
        checkpoints: list[tuple[Any, str, bytes]],
        verifier: NoteVerifier,
        roots: dict[int, bytes],
        tree_size: int,
    ) -> None:
        node_at = self._node_reader()
        previous: tuple[int, bytes] | None = None
        for size, sql_type, note in checkpoints:
            if not isinstance(size, int) or not 0 <= size <= tree_size:
                self.add("bad-checkpoint", f"checkpoint size {_quote(size)} is beyond the tree")
                continue
            if sql_type != "blob":
                self.add("not-a-blob", f"note is stored as {sql_type}, not as a BLOB", size=size)
            try:
                cp = verify_checkpoint(note, verifier)
            except ProofError as exc:
                self.add(exc.code, exc.message, size=size)
                continue
            if cp.size != size:
                self.add("bad-checkpoint", f"note is for size {cp.size}", size=size)
                continue
            expected = roots.get(size)
            if expected is not None and cp.root != expected:
                self.add(
                    "root-mismatch",
                    "checkpoint root differs from the root recomputed from the entries",
                    size=size,
                )
            if previous is not None:
                size1, root1 = previous
                try:
                    self._check_extends(node_at, size1, root1, size, cp.root)
                except ProofError as exc:
                    self.add(
                        "inconsistent-checkpoints",
                        f"checkpoints {size1} -> {size}: {exc.message}",
                        size=size,
                    )
            previous = (size, cp.root)
        if not checkpoints or checkpoints[-1][0] != tree_size:
            self.add("bad-checkpoint", "no checkpoint covers the integrated tree", size=tree_size)

    # ------------------------------------------------------- published checkpoints

    def _open_published(
        self, notes: list[tuple[PublishedCheck, bytes]], verifier: NoteVerifier
    ) -> list[tuple[PublishedCheck, Checkpoint, bytes]]:
        """Return (check, checkpoint, note) of each published note that verifies with the log
        key (C2SP signed-note, tlog-checkpoint); the others become findings."""
        out: list[tuple[PublishedCheck, Checkpoint, bytes]] = []
        for check, note in notes:
            check.checked = True
            try:
                cp = verify_checkpoint(note, verifier)
            except ProofError as exc:
                self.add(exc.code, exc.message, published=check)
                continue
            check.size = cp.size
            out.append((check, cp, note))
        return out

    def _published(
        self,
        check: PublishedCheck,
        cp: Checkpoint,
        note: bytes,
        stored: dict[int, bytes],
        roots: dict[int, bytes],
        verifier: NoteVerifier,
    ) -> None:
        """Check that the ledger extends one published checkpoint (module doc, 5); findings."""
        tree_size = self.report.tree_size
        if cp.size > tree_size:
            self.add(
                "ledger-behind-checkpoint",
                f"the ledger's tree has {tree_size} entries, but a checkpoint of size {cp.size} "
                "was published: the ledger was rolled back or truncated",
                size=cp.size,
                published=check,
            )
            return
        expected = roots.get(cp.size)
        if expected is not None and cp.root != expected:
            self.add(
                "root-mismatch",
                "its root differs from the root recomputed from the entries at its size",
                size=cp.size,
                published=check,
            )
        node_at = self._node_reader()
        try:
            current = merkle.root(tree_size, node_at)
            self._check_extends(node_at, cp.size, cp.root, tree_size, current)
        except ProofError as exc:
            self.add(
                "ledger-fork",
                f"the ledger (tree size {tree_size}) does not extend it: {exc.code}: {exc.message}",
                size=cp.size,
                published=check,
            )
        if cp.size not in stored:
            self.add(
                "missing-checkpoint",
                f"the ledger holds no checkpoint of size {cp.size}, which was published: "
                "it was deleted",
                size=cp.size,
                published=check,
            )
        elif not _same_checkpoint(stored[cp.size], note, verifier):
            self.add(
                "checkpoint-differs",
                f"the ledger's checkpoint of size {cp.size} is another one (a second "
                "checkpoint signed for one size)",
                size=cp.size,
                published=check,
            )


class _DeviceAudit:
    """Walks every device's hash chain with gateway.wire primitives (docs/wire-format.md)."""

    def __init__(self, audit: _Audit) -> None:
        from gateway import wire  # the record format; kept local so merkle/note stay light

        self.wire = wire
        self.audit = audit
        self.chains: dict[bytes, wire.DeviceChain] = {}
        self.first_unsigned: dict[bytes, int] = {}
        self.broken: set[bytes] = set()
        self.first_keys: dict[bytes, bytes] = {}
        self.revoked: set[bytes] = set()
        self.records = 0
        self.segments = 0  # chain segments that restarted a chain after records were lost
        self.first_detached: dict[bytes, int] = {}  # entry index of a detached run's first record

    def entry(self, idx: int, data: bytes) -> None:
        kind, payload = data[0], data[1:]
        if kind == KIND_DEVICE_ENROLLMENT:
            self._enrollment(idx, payload)
        elif kind == KIND_DEVICE_RECORD:
            self._record(idx, payload)

    def _enrollment(self, idx: int, payload: bytes) -> None:
        wire = self.wire
        try:
            e = decode_enrollment(payload)
            wire.check_public_key(e.public_key)
        except EdgesealError as exc:
            self.audit.add(exc.code, f"enrollment: {exc.message}", idx)
            return
        if e.device_id != wire.device_id_for(e.public_key):
            self.audit.add("bad-enrollment", "device id is not SHA-256(public key)[0:16]", idx)
            return
        chain = self.chains.get(e.device_id)
        if chain is not None:
            # A later enrollment entry may only revoke (gateway/registry.py): same first key,
            # status "revoked", once. Anything else would re-key a device outside its chain.
            revocation = e.metadata.get("status") == "revoked" and e.device_id not in self.revoked
            if not revocation or e.public_key != self.first_keys[e.device_id]:
                self.audit.add(
                    "duplicate-enrollment", f"device {e.device_id.hex()} enrolled twice", idx
                )
            else:
                self.revoked.add(e.device_id)
            return
        self.chains[e.device_id] = wire.DeviceChain(e.device_id, e.public_key)
        self.first_keys[e.device_id] = e.public_key

    def _record(self, idx: int, payload: bytes) -> None:
        self.records += 1
        try:
            record = self.wire.decode_record(payload)
        except EdgesealError as exc:
            self.audit.add(exc.code, f"device record: {exc.message}", idx)
            return
        device = record.device_id
        if device in self.broken:
            return  # one finding per device: after a break every later record fails too
        chain = self.chains.get(device)
        if chain is None:
            self.audit.add("not-enrolled", f"device {device.hex()} has no earlier enrollment", idx)
            self.broken.add(device)
            return
        if device in self.revoked:
            self.audit.add("revoked-device", f"device {device.hex()} was revoked earlier", idx)
            self.broken.add(device)
            return
        try:
            authentic = chain.push(record)
        except EdgesealError as exc:
            err = exc
            if chain.detached_at is not None:  # the break came first: report it where it is
                err = ChainError("chain-break", "prev_hash does not match the chain")
                idx = self.first_detached[device]
            self.audit.add(err.code, f"device {device.hex()}: {err.message}", idx)
            self.broken.add(device)
            return
        for brk in chain.breaks:  # a signed chain_segment: a gap, not a break
            self.segments += 1
            if brk.orphaned:  # ingest never commits records no signature reaches
                self.audit.add(
                    "unauthenticated",
                    f"device {device.hex()}: {brk.orphaned} unsigned records before the break "
                    f"at seq {brk.seq} are reached by no signed record",
                    idx,
                )
        chain.breaks.clear()
        if authentic:
            self.first_unsigned.pop(device, None)
        else:
            self.first_unsigned.setdefault(device, idx)
            if chain.detached_at == len(chain.pending) - 1:
                self.first_detached[device] = idx

    def finish(self) -> None:
        for device, chain in self.chains.items():
            if chain.detached_at is not None and device not in self.broken:
                self.audit.add(
                    "chain-break",
                    f"device {device.hex()}: prev_hash does not match the chain and no "
                    "chain_segment vouches for the break",
                    self.first_detached[device],
                )
                self.broken.add(device)
        for device, idx in self.first_unsigned.items():
            if device not in self.broken:
                self.audit.add(
                    "unsigned-tail",
                    f"device {device.hex()}: unsigned records never closed by a signed one",
                    idx,
                )


def audit(path: str, vkey: str | None = None, published: Sequence[str] = ()) -> AuditReport:
    """Return the AuditReport of the ledger at `path`; never modifies the file, never raises
    for a bad file.

    `vkey` is the log's verifier key obtained out of band (C2SP vkey form); None trusts the
    vkey stored in the file (report.vkey_from_file is then True). `published` names files that
    each hold a signed checkpoint note published earlier (module doc, 5); each one gets a
    PublishedCheck in report.published.
    """
    return _Audit(path, vkey, published).run()
