"""Offline audit of a ledger file: recompute everything from the entries and compare.

``audit(path, vkey)`` opens the SQLite file read-only and checks, in one pass:

1. entry indexes are contiguous from 0 and every entry has a known kind;
2. the Merkle tree recomputed from the entries (RFC 9162 2.1.1) equals every stored tile,
   hash by hash, and no unexpected tile is stored;
3. every stored checkpoint is signed by the log key (C2SP signed-note), names the log's
   origin, and its root equals the recomputed root at its size; successive checkpoints
   are consistent, checked with a consistency proof built from the stored tiles
   (RFC 9162 2.1.4); the newest checkpoint covers the integrated tree size;
4. device enrollments are well formed (device id = SHA-256(public key)[0:16]) and every
   device record decodes, belongs to an enrolled device, extends its device's hash chain
   and is authenticated by a signature (its own or a signed successor's), per
   gateway.wire.DeviceChain.

Every problem becomes a Finding naming the first entry index it affects (or the checkpoint
size); the report's first_bad_index is the smallest. The key to check checkpoints with
should come from outside the file (``vkey``); without it the vkey stored in the file is used
and the report says so.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field

from gateway.errors import EdgesealError, ProofError
from gateway.ledger import merkle
from gateway.ledger.entries import (
    KIND_DEVICE_ENROLLMENT,
    KIND_DEVICE_RECORD,
    KINDS,
    decode_enrollment,
)
from gateway.ledger.merkle import EMPTY_ROOT, HASH_SIZE
from gateway.ledger.note import NoteVerifier, verify_checkpoint
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


@dataclass(frozen=True)
class Finding:
    """One audit failure: a stable code, a message and where it is."""

    code: str
    message: str
    index: int | None = None  # first entry index affected
    checkpoint_size: int | None = None  # the checkpoint concerned, if any

    def __str__(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"index {self.index}")
        if self.checkpoint_size is not None:
            where.append(f"checkpoint size {self.checkpoint_size}")
        return f"{', '.join(where) or 'ledger'}: {self.code}: {self.message}"


@dataclass
class AuditReport:
    """What audit() checked and found."""

    path: str
    origin: str = ""
    vkey: str = ""
    vkey_from_file: bool = False
    tree_size: int = 0
    entries: int = 0
    checkpoints: int = 0
    device_records: int = 0
    devices: int = 0
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
        big = 1 << 62
        return sorted(
            self.findings,
            key=lambda f: (
                f.index if f.index is not None else big,
                f.checkpoint_size if f.checkpoint_size is not None else big,
            ),
        )


class _Audit:
    def __init__(self, path: str, vkey: str | None) -> None:
        self.report = AuditReport(path)
        self.vkey_arg = vkey
        self.conn: sqlite3.Connection | None = None

    def add(
        self, code: str, message: str, index: int | None = None, size: int | None = None
    ) -> None:
        if len(self.report.findings) >= MAX_FINDINGS:
            self.report.truncated = True
            return
        self.report.findings.append(Finding(code, message, index, size))

    # ------------------------------------------------------------------ run

    def run(self) -> AuditReport:
        try:
            self.conn = connect(self.report.path, readonly=True)
        except (OSError, sqlite3.Error) as exc:
            self.add("unreadable", f"cannot open ledger: {exc}")
            return self.report
        try:
            self._run(self.conn)
        except sqlite3.DatabaseError as exc:
            self.add("corrupt-database", f"SQLite error: {exc}")
        finally:
            self.conn.close()
        return self.report

    def _run(self, conn: sqlite3.Connection) -> None:
        r = self.report
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            self.add("bad-meta", f"no meta table: {exc}")
            return
        if meta.get("schema") != SCHEMA_VERSION:
            self.add("bad-meta", f"unsupported schema {meta.get('schema')!r}")
            return
        r.origin = str(meta.get("origin"))
        tree_size = meta.get("tree_size")
        if not isinstance(tree_size, int) or tree_size < 0:
            self.add("bad-meta", f"tree_size {tree_size!r} is not a size")
            return
        r.tree_size = tree_size
        verifier = self._verifier(str(meta.get("vkey")))
        if verifier is None:
            return
        if verifier.name != r.origin:
            self.add("bad-meta", f"origin {r.origin!r} is not the log key name {verifier.name!r}")

        checkpoints = conn.execute(
            "SELECT size, CAST(note AS BLOB) FROM checkpoint ORDER BY size"
        ).fetchall()
        r.checkpoints = len(checkpoints)
        wanted_roots = {
            int(s) for s, _ in checkpoints if isinstance(s, int) and 0 <= s <= tree_size
        }
        wanted_roots.add(tree_size)
        roots: dict[int, bytes] = {0: EMPTY_ROOT} if 0 in wanted_roots else {}

        builder = TileBuilder()
        expected_tiles: set[tuple[int, int]] = set()
        devices = _DeviceAudit(self)
        pending: list[bytes] = []
        expect = 0
        for idx, data in conn.execute("SELECT idx, CAST(data AS BLOB) FROM entry ORDER BY idx"):
            if idx != expect:
                self.add(
                    "missing-entry", f"entry {expect} is missing (next stored is {idx})", expect
                )
                break
            data = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else b""
            expect += 1
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
        self._checkpoints(checkpoints, verifier, roots, tree_size)

    def _verifier(self, stored_vkey: str) -> NoteVerifier | None:
        r = self.report
        try:
            stored = NoteVerifier.from_vkey(stored_vkey)
        except ProofError as exc:
            stored = None
            if self.vkey_arg is None:
                self.add("bad-meta", f"stored vkey is unusable: {exc.message}")
                return None
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
        if stored is None or stored.vkey != given.vkey:
            self.add("vkey-mismatch", "the vkey stored in the ledger is not the given one")
        return given

    # ---------------------------------------------------------------- tree

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
                "SELECT CAST(hashes AS BLOB) FROM tile WHERE level = ? AND idx = ?",
                (tile_level, tile_index),
            ).fetchone()
            first_leaf = tile_index << (TILE_HEIGHT * (tile_level + 1))
            if row is None:
                self.add(
                    "missing-tile", f"tile ({tile_level}, {tile_index}) is missing", first_leaf
                )
                continue
            stored = bytes(row[0]) if isinstance(row[0], bytes | bytearray | memoryview) else b""
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
                if isinstance(tile_level, int) and isinstance(tile_index, int) and tile_level >= 0:
                    first = tile_index << (TILE_HEIGHT * (tile_level + 1))
                self.add(
                    "unexpected-tile",
                    f"tile ({tile_level}, {tile_index}) is beyond the tree size",
                    first,
                )

    # ---------------------------------------------------------- checkpoints

    def _node_reader(self):
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
                cache[key] = bytes(row[0]) if row is not None else b""
            h = cache[key][offset : offset + HASH_SIZE]
            if len(h) != HASH_SIZE:
                raise ProofError("missing-node", f"node ({level}, {index}) is not stored")
            return h

        return node_at

    def _checkpoints(
        self,
        checkpoints: list[tuple[int, bytes]],
        verifier: NoteVerifier,
        roots: dict[int, bytes],
        tree_size: int,
    ) -> None:
        node_at = self._node_reader()
        previous: tuple[int, bytes] | None = None
        for size, note in checkpoints:
            if not isinstance(size, int) or not 0 <= size <= tree_size:
                self.add("bad-checkpoint", f"checkpoint size {size!r} is beyond the tree", None)
                continue
            try:
                cp = verify_checkpoint(bytes(note), verifier)
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
                    proof = merkle.prove_consistency(size1, size, node_at)
                    merkle.verify_consistency(size1, size, proof, root1, cp.root)
                except ProofError as exc:
                    self.add(
                        "inconsistent-checkpoints",
                        f"checkpoints {size1} -> {size}: {exc.message}",
                        size=size,
                    )
            previous = (size, cp.root)
        if not checkpoints or checkpoints[-1][0] != tree_size:
            self.add("bad-checkpoint", "no checkpoint covers the integrated tree", size=tree_size)


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
            self.audit.add(exc.code, f"device {device.hex()}: {exc.message}", idx)
            self.broken.add(device)
            return
        if authentic:
            self.first_unsigned.pop(device, None)
        else:
            self.first_unsigned.setdefault(device, idx)

    def finish(self) -> None:
        for device, idx in self.first_unsigned.items():
            if device not in self.broken:
                self.audit.add(
                    "unsigned-tail",
                    f"device {device.hex()}: unsigned records never closed by a signed one",
                    idx,
                )


def audit(path: str, vkey: str | None = None) -> AuditReport:
    """Return the AuditReport of the ledger at `path`; never modifies the file.

    `vkey` is the log's verifier key obtained out of band (C2SP vkey form); None trusts the
    vkey stored in the file (report.vkey_from_file is then True).
    """
    return _Audit(path, vkey).run()
