"""The replica's durable copy of the gateway's log: one SQLite file in the ledger's own schema.

The tables the gateway's ledger has (gateway.ledger.store: meta, entry, tile, checkpoint), so
that `Ledger.open_readonly` serves proofs, entries and bundles from the copy exactly as the
gateway serves them from its own; plus the replica's alarms. The replica writes it, the gateway
code only reads it. Writes (WAL, synchronous=FULL, one transaction each) keep this invariant:

- meta.tree_size = n and checkpoint rows hold only gateway-signed checkpoints that the replica
  verified (signature, consistency, tiles, entries, replayed state); n moves only with the
  commit of the checkpoint of size n and the tiles of that tree (`commit_checkpoint`).
- entry rows [n, sequenced) are entries verified against the tiles of a newer checkpoint whose
  sync a crash interrupted (`add_entries`, committed without an fsync: a power cut may drop
  them, never the verified prefix); the next sync checks them again against the checkpoint it
  syncs to and drops them if they do not match (`truncate`).
- full tiles beyond n may be stored early (`add_tiles`): a full tile never changes, and a
  partial one is a prefix of it (gateway.ledger.tiles), so TileBuilder.resume(n) still works.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.ledger.store import SCHEMA as LEDGER_SCHEMA  # the one schema of a ledger file
from gateway.ledger.store import SCHEMA_VERSION, connect
from gateway.ledger.tiles import TileBuilder

REPLICA_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replica_alarm(id INTEGER PRIMARY KEY, at_s REAL NOT NULL,"
    " kind TEXT NOT NULL, detail TEXT NOT NULL, evidence TEXT NOT NULL)",
)


class ReplicaStore:
    """The writer of a replica's ledger file (module doc). One thread uses it at a time."""

    def __init__(self, path: str, origin: str, vkey: str) -> None:
        """Open or create the file at path for the log (origin, vkey).

        Raises ValueError if the file holds another log (origin or key) or another schema.
        """
        self.path = path
        self._conn = connect(path)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in (*LEDGER_SCHEMA, *REPLICA_SCHEMA):
                conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                conn.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("schema", SCHEMA_VERSION), ("origin", origin), ("vkey", vkey)]
                    + [("tree_size", 0)],
                )
            elif meta.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"{path}: unsupported ledger schema {meta.get('schema')!r}")
            elif meta.get("origin") != origin or meta.get("vkey") != vkey:
                raise ValueError(f"{path} replicates the log {meta.get('vkey')!r}, not {vkey!r}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise

    def close(self) -> None:
        """Close the file (everything committed stays)."""
        self._conn.close()

    # ---- reading --------------------------------------------------------------------------

    @property
    def tree_size(self) -> int:
        """Return n, the size of the newest verified checkpoint (0 for a new replica)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()
        return int(row[0])

    @property
    def sequenced_size(self) -> int:
        """Return how many entries are stored (>= tree_size: module doc)."""
        row = self._conn.execute("SELECT MAX(idx) FROM entry").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def checkpoint(self) -> bytes | None:
        """Return the newest verified checkpoint note, or None before the first sync."""
        row = self._conn.execute(
            "SELECT note FROM checkpoint ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else bytes(row[0])

    def entries(self, start: int, end: int) -> list[bytes]:
        """Return the stored entries [start, end), in order (fewer if not all are stored)."""
        rows = self._conn.execute(
            "SELECT data FROM entry WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def builder(self) -> TileBuilder:
        """Return a TileBuilder continuing the stored tree of tree_size leaves."""
        return TileBuilder.resume(self.tree_size, self._read_tile)

    def _read_tile(self, level: int, index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hashes FROM tile WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        return None if row is None else bytes(row[0])

    # ---- writing --------------------------------------------------------------------------

    def _write(
        self,
        statements: Iterable[tuple[str, Sequence[Any] | list[Sequence[Any]]]],
        durable: bool = True,
    ) -> None:
        """Run (sql, params) statements in one transaction; a list of tuples runs executemany.

        durable=False commits without an fsync (synchronous=NORMAL: in WAL mode the file stays
        consistent, a power cut may undo the commit); the next durable commit syncs it too.
        """
        conn = self._conn
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                if isinstance(params, list):
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def add_entries(self, start: int, entries: Sequence[bytes], tiles: list[Any]) -> None:
        """Store verified entries [start, start + len) and full tiles (level, index, blob) in
        one transaction, without an fsync: entries past tree_size can always be fetched again,
        and the checkpoint's commit (durable) syncs them. Precondition: start == sequenced_size."""
        rows = [(start + i, e) for i, e in enumerate(entries)]
        self._write(
            [
                ("INSERT INTO entry(idx, data) VALUES (?, ?)", rows),
                ("INSERT OR REPLACE INTO tile(level, idx, hashes) VALUES (?, ?, ?)", tiles),
            ],
            durable=False,
        )

    def commit_checkpoint(self, size: int, note: bytes, tiles: list[Any]) -> None:
        """Make the verified checkpoint of `size` the replica's tree: its tiles (level, index,
        blob), tree_size and the note, in one transaction. Precondition: entries [0, size)
        are stored and verified against it."""
        self._write(
            [
                ("INSERT OR REPLACE INTO tile(level, idx, hashes) VALUES (?, ?, ?)", tiles),
                ("UPDATE meta SET value = ? WHERE key = 'tree_size'", (size,)),
                ("INSERT OR REPLACE INTO checkpoint(size, note) VALUES (?, ?)", (size, note)),
            ]
        )

    def replace_note(self, size: int, note: bytes) -> None:
        """Replace the stored note of size (the same checkpoint with more cosignatures)."""
        self._write([("UPDATE checkpoint SET note = ? WHERE size = ?", (note, size))])

    def truncate(self, size: int) -> None:
        """Drop stored entries from index size on. Precondition: size >= tree_size."""
        if size < self.tree_size:
            raise ValueError("verified entries are never dropped")
        self._write([("DELETE FROM entry WHERE idx >= ?", (size,))])

    # ---- alarms -----------------------------------------------------------------------------

    def add_alarm(self, kind: str, detail: str, evidence: str) -> None:
        """Record an alarm: kind, what happened, the evidence file's path."""
        self._write(
            [
                (
                    "INSERT INTO replica_alarm(at_s, kind, detail, evidence) VALUES (?, ?, ?, ?)",
                    (time.time(), kind, detail, evidence),
                )
            ]
        )

    def alarms(self) -> list[dict[str, Any]]:
        """Return every recorded alarm, oldest first."""
        rows = self._conn.execute(
            "SELECT id, at_s, kind, detail, evidence FROM replica_alarm ORDER BY id"
        ).fetchall()
        return [
            {"id": r[0], "at_s": r[1], "kind": r[2], "detail": r[3], "evidence": r[4]} for r in rows
        ]
