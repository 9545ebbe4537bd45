"""The durable transparency log: SQLite (WAL) store of entries, tiles and signed checkpoints.

Life of an entry:

1. ``Ledger.append([(kind, payload), ...])`` validates every entry, assigns consecutive
   indexes (the sequencer) and commits them in one transaction with synchronous=FULL. It
   returns the indexes only after that commit, so an acknowledged entry survives a crash
   or power cut. Bad input raises WireError and stores nothing.
2. Integration extends the Merkle tree over the sequenced entries, writes the changed
   tiles (gateway/ledger/tiles.py) and a signed C2SP checkpoint in one transaction. It
   runs when MAX_BATCH_ENTRIES entries are pending (checked after each append) or when
   ``tick()`` finds the oldest pending entry older than BATCH_INTERVAL_MS, and on
   ``integrate()``. Until then an entry is sequenced but not provable.
3. Proofs (``prove_inclusion``, ``prove_consistency``) read O(log n) tiles, at most one per
   8 tree levels plus the right edge, never recompute subtrees and keep working after a
   restart; an LRU of tiles makes repeated proofs cheap.
4. With a ``TrustedCheckpoint`` (gateway/ledger/trusted.py) the newest checkpoint is also
   kept in a file outside the database, written after each integration commit; ``open``
   refuses a ledger that does not extend it (a lost WAL, an older copy, another history).

Schema (docs/ledger.md):

    meta(key TEXT PRIMARY KEY, value)         schema, origin, vkey, tree_size (integrated)
    entry(idx INTEGER PRIMARY KEY, data BLOB) entry bytes: kind || payload
    tile(level, idx, hashes BLOB, PRIMARY KEY(level, idx))   post-order node hashes
    checkpoint(size INTEGER PRIMARY KEY, note BLOB)           signed checkpoint notes

A ledger is written by one process (the gateway); readers (audit, proof servers) may open
it concurrently with ``Ledger.open_readonly``. Within a process a Ledger may be shared by
threads (e.g. ``asyncio.to_thread(ledger.append, ...)`` so the fsync does not block the event
loop): its public methods hold one lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from functools import wraps
from typing import Any, TypeVar

from gateway.errors import ProofError, WireError
from gateway.ledger import merkle
from gateway.ledger.entries import KINDS, MAX_ENTRY_BYTES
from gateway.ledger.merkle import HASH_SIZE
from gateway.ledger.note import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    sign_checkpoint,
    verify_checkpoint,
)
from gateway.ledger.tiles import TileBuilder, node_location
from gateway.ledger.trusted import TrustedCheckpoint

log = logging.getLogger("edgeseal.ledger")

SCHEMA_VERSION = 1
# why: integrating costs one transaction and one signature; 4096 entries (~1 s of a busy
# fleet) keeps that overhead < 1% while a checkpoint is never more than one batch behind.
MAX_BATCH_ENTRIES = 4096
# why: bounds how long a quiet gateway leaves sequenced entries unprovable.
BATCH_INTERVAL_MS = 1000
# why: 256 tiles x 16 KB = 4 MB of RAM holds every tile above level 0 up to 2**24 leaves,
# so a warm proof reads at most the one bottom tile it needs.
MAX_CACHED_TILES = 256
# why: integration after a restart reads pending entries in chunks to bound memory.
INTEGRATE_CHUNK_ENTRIES = 65536
# why: SQLite's default (1000 pages, 4 MB) copies the WAL into the database, with two more
# fsyncs, every ~25 commits of 1000 entries; 16384 pages (64 MB of WAL at most) makes those
# stalls 16x rarer at a bounded disk cost.
WAL_AUTOCHECKPOINT_PAGES = 16384

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS entry(idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tile(level INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " hashes BLOB NOT NULL, PRIMARY KEY(level, idx))",
    "CREATE TABLE IF NOT EXISTS checkpoint(size INTEGER PRIMARY KEY, note BLOB NOT NULL)",
)

ExtensionLines = Callable[[int, bytes], Sequence[str]]
_KIND_PREFIX = {kind: bytes((kind,)) for kind in KINDS}


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Return `method` run under the ledger's lock (one SQLite connection, many threads)."""

    @wraps(method)
    def wrapper(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _now_ms() -> float:
    return time.monotonic() * 1000.0


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """Return a connection in autocommit mode (explicit BEGIN/COMMIT), WAL, synchronous=FULL.

    readonly opens with mode=ro so nothing can be changed through it.
    """
    if readonly:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RuntimeError(f"SQLite refused WAL mode for {path} (got {mode})")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _create_or_check_meta(
    conn: sqlite3.Connection,
    path: str,
    origin: str,
    signer: NoteSigner,
    extension_lines: ExtensionLines | None,
    trusted: TrustedCheckpoint | None,
) -> None:
    """Create the schema, meta and the signed size-0 checkpoint of a new log, or check that the
    existing log is this key's. Returns None; raises ValueError (another key or schema) or
    StartupRefused (no log in the file while the checkpoint file says there was one).

    Precondition: inside the caller's BEGIN IMMEDIATE (the caller commits or rolls back).
    """
    for statement in SCHEMA:
        conn.execute(statement)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta:
        if meta.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"{path}: unsupported ledger schema {meta.get('schema')!r}")
        if meta.get("origin") != origin or meta.get("vkey") != signer.vkey:
            raise ValueError(f"{path} belongs to log {meta.get('vkey')!r}, not this key")
        return
    if trusted is not None and trusted.exists():  # e.g. the WAL that held everything was lost
        trusted.refuse_missing_ledger("a database that holds no log")
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)",
        [("schema", SCHEMA_VERSION), ("origin", origin), ("vkey", signer.vkey), ("tree_size", 0)],
    )
    lines = extension_lines(0, merkle.EMPTY_ROOT) if extension_lines else ()
    empty = Checkpoint(origin, 0, merkle.EMPTY_ROOT, tuple(lines))
    conn.execute(
        "INSERT INTO checkpoint(size, note) VALUES (0, ?)", (sign_checkpoint(empty, signer),)
    )


class Ledger:
    """An append-only RFC 9162 log in one SQLite file (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        origin: str,
        verifier: NoteVerifier,
        signer: NoteSigner | None,
        max_batch_entries: int,
        batch_interval_ms: float,
        extension_lines: ExtensionLines | None,
    ) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.origin = origin
        self.verifier = verifier
        self._signer = signer
        self.max_batch_entries = max_batch_entries
        self.batch_interval_ms = batch_interval_ms
        self._extension_lines = extension_lines
        self._tiles: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._tree_size = 0
        self._next_index = 0
        self._pending_leaves: list[bytes] = []  # leaf hashes of [tree_size, next_index) if known
        self._pending_known = False
        self._oldest_pending_ms: float | None = None
        self._builder: TileBuilder | None = None
        self._latest: bytes | None = None
        self._trusted: TrustedCheckpoint | None = None  # advanced after each integration
        self._refresh()

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str,
        signer: NoteSigner,
        origin: str | None = None,
        *,
        max_batch_entries: int = MAX_BATCH_ENTRIES,
        batch_interval_ms: float = BATCH_INTERVAL_MS,
        extension_lines: ExtensionLines | None = None,
        trusted: TrustedCheckpoint | None = None,
    ) -> Ledger:
        """Return the writable ledger at `path`, creating it on first start.

        `origin` defaults to the signer's key name and must equal it (the checkpoint origin
        is the log's key name). An existing ledger must have been created with the same
        origin and key, else ValueError is raised: a log never signs with two keys.
        `extension_lines(size, root)` returns extra checkpoint lines (e.g. a contract state
        hash). Creating writes the schema and the signed size-0 checkpoint in one commit;
        entries sequenced but not integrated before a crash are integrated here.
        `trusted` (the checkpoint file kept outside the database, gateway.ledger.trusted) is
        checked before anything is integrated or signed: a ledger that is missing, empty or
        does not extend it raises StartupRefused (unless the file accepts the loss), and it is
        advanced after every integration.
        """
        if origin is None:
            origin = signer.name
        if origin != signer.name:
            raise ValueError(f"origin {origin!r} must equal the signer key name {signer.name!r}")
        if max_batch_entries < 1 or batch_interval_ms < 0:
            raise ValueError("max_batch_entries must be >= 1 and batch_interval_ms >= 0")
        if trusted is not None and trusted.exists():
            if not os.path.exists(path):
                trusted.refuse_missing_ledger("missing")
            elif os.path.getsize(path) == 0:
                trusted.refuse_missing_ledger("empty (0 bytes)")
        conn = connect(path)
        try:
            conn.execute("BEGIN IMMEDIATE")  # one commit (one fsync) creates everything
            _create_or_check_meta(conn, path, origin, signer, extension_lines, trusted)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        ledger = cls(
            conn,
            origin,
            signer.verifier(),
            signer,
            max_batch_entries,
            batch_interval_ms,
            extension_lines,
        )
        if trusted is not None:
            try:
                trusted.check(ledger)
            except BaseException:
                conn.close()
                raise
            ledger._trusted = trusted
        if ledger.pending:  # after a crash: acknowledged entries become provable at once
            ledger.integrate()
        return ledger

    @classmethod
    def open_readonly(cls, path: str) -> Ledger:
        """Return a read-only view of the ledger at `path` (proofs, entries, checkpoints)."""
        conn = connect(path, readonly=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"{path}: not an edgeseal ledger (schema {meta.get('schema')!r})")
            verifier = NoteVerifier.from_vkey(str(meta["vkey"]))
        except BaseException:
            conn.close()
            raise
        return cls(conn, str(meta["origin"]), verifier, None, MAX_BATCH_ENTRIES, 0, None)

    def close(self) -> None:
        """Close the database; pending (sequenced) entries stay durable and are integrated
        on the next open."""
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh(self) -> None:
        """Reload sizes and the latest checkpoint from the database (other writers)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()
        tree_size = int(row[0]) if row else 0
        row = self._conn.execute("SELECT MAX(idx) FROM entry").fetchone()
        next_index = 0 if row is None or row[0] is None else int(row[0]) + 1
        if tree_size != self._tree_size or next_index != self._next_index:
            self._builder = None
            self._pending_known = False
            self._pending_leaves = []
        self._tree_size = tree_size
        self._next_index = next_index
        if next_index > tree_size and self._oldest_pending_ms is None:
            self._oldest_pending_ms = _now_ms()
        row = self._conn.execute(
            "SELECT note FROM checkpoint ORDER BY size DESC LIMIT 1"
        ).fetchone()
        self._latest = bytes(row[0]) if row else None

    # --------------------------------------------------------------- properties

    @property
    def tree_size(self) -> int:
        """Return the number of integrated leaves (provable, covered by a checkpoint)."""
        return self._tree_size

    @property
    def sequenced_size(self) -> int:
        """Return the number of durably sequenced entries (>= tree_size)."""
        return self._next_index

    @property
    def pending(self) -> int:
        """Return how many sequenced entries wait for integration."""
        return self._next_index - self._tree_size

    @property
    def vkey(self) -> str:
        """Return the log's verifier key in C2SP vkey form."""
        return self.verifier.vkey

    # ------------------------------------------------------------------ writing

    def _require_writer(self) -> NoteSigner:
        if self._signer is None:
            raise PermissionError("this ledger was opened read-only")
        return self._signer

    @_locked
    def append(self, entries: Sequence[tuple[int, bytes]]) -> list[int]:
        """Sequence entries durably and return their indexes, in order.

        Each entry is (kind, payload) with kind in gateway.ledger.entries.KINDS. Returns
        only after the commit (synchronous=FULL), so every returned index survives a
        crash. Raises WireError (nothing stored) for an unknown kind or oversized entry.
        May integrate afterwards if MAX_BATCH_ENTRIES entries are pending.
        """
        self._require_writer()
        if not entries:
            return []
        try:  # fast path: one pass that builds the entry bytes
            datas = [_KIND_PREFIX[kind] + payload for kind, payload in entries]
            valid = all(type(p) is bytes or type(p) is bytearray for _, p in entries)
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid or max(map(len, datas)) > MAX_ENTRY_BYTES:
            self._raise_bad_entry(entries)
        return self._append_raw(datas)

    @staticmethod
    def _raise_bad_entry(entries: Sequence[tuple[int, bytes]]) -> None:
        """Raise the WireError that names the first bad entry (slow path of append)."""
        for i, item in enumerate(entries):
            try:
                kind, payload = item
            except (TypeError, ValueError):
                raise WireError("bad-entry", f"entry {i} is not (kind, payload)") from None
            if kind not in KINDS:
                raise WireError("bad-entry-kind", f"entry {i} has unknown kind {kind!r}")
            if not isinstance(payload, bytes | bytearray):
                raise WireError("bad-entry", f"entry {i} payload is not bytes")
            if len(payload) + 1 > MAX_ENTRY_BYTES:
                raise WireError("entry-too-large", f"entry {i} exceeds {MAX_ENTRY_BYTES} bytes")
        raise WireError("bad-entry", "malformed entries")

    def _append_raw(self, datas: list[bytes]) -> list[int]:
        """Commit already-validated entry bytes; return their indexes."""
        first = self._next_index
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO entry(idx, data) VALUES (?, ?)",
                zip(range(first, first + len(datas)), datas, strict=True),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self._next_index == self._tree_size:
            self._pending_known = True
            self._pending_leaves = []
            self._oldest_pending_ms = _now_ms()
        if self._pending_known:
            sha256 = hashlib.sha256
            self._pending_leaves += [sha256(b"\x00" + d).digest() for d in datas]
        self._next_index = first + len(datas)
        if self.pending >= self.max_batch_entries:
            self.integrate()
        return list(range(first, first + len(datas)))

    def due(self, now_ms: float | None = None) -> bool:
        """Return True if pending entries have waited batch_interval_ms or filled a batch."""
        if not self.pending:
            return False
        if self.pending >= self.max_batch_entries:
            return True
        oldest = self._oldest_pending_ms
        now = _now_ms() if now_ms is None else now_ms
        return oldest is None or now - oldest >= self.batch_interval_ms

    @_locked
    def tick(self, now_ms: float | None = None) -> bytes | None:
        """Integrate if due(); return the new signed checkpoint, or None if nothing was due.

        Call it from a timer every ~batch_interval_ms / 4.
        """
        if self.due(now_ms):
            return self.integrate()
        return None

    @_locked
    def integrate(self, extensions: Sequence[str] | None = None) -> bytes:
        """Integrate every pending entry, sign and store a checkpoint; return it (note bytes).

        One transaction (synchronous=FULL) writes the changed tiles, the new tree size and
        the checkpoint. `extensions` (default: extension_lines(size, root) if given at
        open) become checkpoint extension lines. With nothing pending and no `extensions`,
        returns the latest checkpoint unchanged; with `extensions`, re-signs the current
        size with them (the stored checkpoint for that size is replaced).
        """
        signer = self._require_writer()
        if not self.pending and self._latest is not None and extensions is None:
            return self._latest
        builder = self._builder
        self._builder = None  # given back only on success: on any error, resume from the DB
        if builder is None:
            builder = TileBuilder.resume(self._tree_size, self._read_tile_uncached)
        target = self._next_index
        if self._pending_known and len(self._pending_leaves) == target - self._tree_size:
            builder.extend(self._pending_leaves)
        else:
            start = self._tree_size
            while start < target:
                end = min(target, start + INTEGRATE_CHUNK_ENTRIES)
                rows = self._conn.execute(
                    "SELECT idx, data FROM entry WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (start, end),
                ).fetchall()
                if len(rows) != end - start or (rows and rows[0][0] != start):
                    raise RuntimeError(f"entry indexes are not contiguous in [{start}, {end})")
                sha256 = hashlib.sha256
                builder.extend([sha256(b"\x00" + bytes(r[1])).digest() for r in rows])
                start = end
        root_hash = builder.root()
        if extensions is None:
            extensions = self._extension_lines(target, root_hash) if self._extension_lines else ()
        note = sign_checkpoint(
            Checkpoint(self.origin, target, root_hash, tuple(extensions)), signer
        )
        tiles = builder.drain()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO tile(level, idx, hashes) VALUES (?, ?, ?)", tiles
            )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'tree_size'", (target,))
            conn.execute(
                "INSERT OR REPLACE INTO checkpoint(size, note) VALUES (?, ?)", (target, note)
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for tile_level, tile_index, blob in tiles:
            key = (tile_level, tile_index)
            if key in self._tiles:
                self._tiles[key] = blob
        self._builder = builder
        self._tree_size = target
        self._pending_leaves = []
        self._pending_known = True
        self._oldest_pending_ms = None
        self._latest = note
        if self._trusted is not None:  # after the commit: the file is never ahead of the ledger
            try:
                self._trusted.accept(note, self)
            except OSError as exc:  # the file stays behind (safe): caught up at the next open
                log.error("cannot write the checkpoint file %s: %s", self._trusted.path, exc)
        return note

    # ------------------------------------------------------------------ reading

    @_locked
    def stored_tile(self, tile_level: int, tile_index: int) -> bytes | None:
        """Return the stored hashes of tile (tile_level, tile_index) as written (the tile store
        of gateway.ledger.tiles), or None if that tile is not stored."""
        return self._read_tile_uncached(tile_level, tile_index)

    def _read_tile_uncached(self, tile_level: int, tile_index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hashes FROM tile WHERE level = ? AND idx = ?", (tile_level, tile_index)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _node(self, level: int, index: int) -> bytes:
        """Return the stored hash of complete node (level, index) (RFC 9162 2.1.1)."""
        tile_level, tile_index, offset = node_location(level, index)
        key = (tile_level, tile_index)
        tiles = self._tiles
        blob = tiles.get(key)
        if blob is None or len(blob) < offset + HASH_SIZE:
            blob = self._read_tile_uncached(tile_level, tile_index)
            if blob is None or len(blob) < offset + HASH_SIZE:
                raise ProofError("missing-node", f"node ({level}, {index}) is not stored")
            tiles[key] = blob
            if len(tiles) > MAX_CACHED_TILES:
                tiles.popitem(last=False)
        else:
            tiles.move_to_end(key)
        return blob[offset : offset + HASH_SIZE]

    def _check_size(self, size: int) -> None:
        if size > self._tree_size and self._signer is None:
            self._refresh()
        if not 0 <= size <= self._tree_size:
            raise ProofError(
                "bad-range", f"size {size} is not in [0, {self._tree_size}] (integrated)"
            )

    @_locked
    def root(self, size: int | None = None) -> bytes:
        """Return the root hash at `size` (default: tree_size); 0 <= size <= tree_size."""
        size = self._tree_size if size is None else size
        self._check_size(size)
        return merkle.root(size, self._node)

    @_locked
    def prove_inclusion(self, index: int, size: int) -> list[bytes]:
        """Return the inclusion proof of entry `index` in the tree of `size` leaves.

        RFC 9162 2.1.3.1. Requires 0 <= index < size <= tree_size; ProofError("bad-range")
        otherwise. Check it with merkle.verify_inclusion(leaf_hash(entry(index)), ...).
        """
        self._check_size(size)
        return merkle.prove_inclusion(index, size, self._node)

    @_locked
    def prove_consistency(self, size1: int, size2: int) -> list[bytes]:
        """Return the consistency proof from tree size size1 to size2 (RFC 9162 2.1.4.1).

        Requires 0 <= size1 <= size2 <= tree_size; ProofError("bad-range") otherwise.
        """
        self._check_size(size2)
        return merkle.prove_consistency(size1, size2, self._node)

    @_locked
    def entry(self, index: int) -> bytes:
        """Return the exact bytes of sequenced entry `index` (kind || payload).

        Raises ProofError("bad-range") if no such entry.
        """
        row = self._conn.execute("SELECT data FROM entry WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise ProofError("bad-range", f"no entry at index {index}")
        return bytes(row[0])

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (index, entry bytes) for sequenced entries in [start, end), in order."""
        stop = self._next_index if end is None else end
        while start < stop:
            chunk = min(stop, start + INTEGRATE_CHUNK_ENTRIES)
            with self._lock:
                rows = self._conn.execute(
                    "SELECT idx, data FROM entry WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (start, chunk),
                ).fetchall()
            for idx, data in rows:
                yield int(idx), bytes(data)
            start = chunk

    @_locked
    def checkpoint(self) -> bytes:
        """Return the latest signed checkpoint note (C2SP tlog-checkpoint)."""
        if self._signer is None:
            self._refresh()
        if self._latest is None:
            raise ProofError("bad-range", "the ledger has no checkpoint yet")
        return self._latest

    @_locked
    def checkpoint_at(self, size: int) -> bytes:
        """Return the stored signed checkpoint for tree `size`; ProofError if none."""
        row = self._conn.execute("SELECT note FROM checkpoint WHERE size = ?", (size,)).fetchone()
        if row is None:
            raise ProofError("bad-range", f"no checkpoint at size {size}")
        return bytes(row[0])

    def checkpoints(self) -> Iterator[tuple[int, bytes]]:
        """Yield (size, signed note) of every stored checkpoint, by increasing size."""
        with self._lock:
            rows = self._conn.execute("SELECT size, note FROM checkpoint ORDER BY size").fetchall()
        for size, note in rows:
            yield int(size), bytes(note)

    def verify_own_checkpoint(self, note: bytes) -> Checkpoint:
        """Return the Checkpoint in `note` after checking it with this log's key."""
        return verify_checkpoint(note, self.verifier)
