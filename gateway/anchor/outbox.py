"""The anchoring outbox: a durable SQLite record (data_dir/anchor.db) of every anchor and its state.

One row per anchored checkpoint (chain id, contract, origin, size), moving through
  pending   decided by the policy; no transaction signed yet
  sent      signed transaction stored (before it is broadcast: a crash re-sends the same one)
  included  its receipt is in block (number, hash); a reorg that drops it moves it back to sent
  final     the block is final (the `finalized` tag or the configured depth); evidence stored
  superseded  terminal: the contract refused it, or a newer head was anchored first
Every change is one committed transaction (WAL, synchronous=FULL), so a restart resumes where
the last one stopped and re-sending is idempotent (the same signed transaction, or none).
Used from one worker thread at a time; a lock makes the status reads from the event loop safe.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.anchor.chain import Head

PENDING, SENT, INCLUDED, FINAL, SUPERSEDED = "pending", "sent", "included", "final", "superseded"
STATES = (PENDING, SENT, INCLUDED, FINAL, SUPERSEDED)
OPEN_STATES = (PENDING, SENT, INCLUDED)  # not yet final: the service keeps watching them
OUTBOX_FILE = "anchor.db"
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anchors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    state_hash BLOB NOT NULL,
    note BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{s}'" for s in STATES)})),
    prev_size INTEGER,
    tx_hash BLOB,
    raw_tx BLOB,
    block_number INTEGER,
    block_hash BLOB,
    gas_used INTEGER,
    evidence TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_s REAL NOT NULL,
    updated_s REAL NOT NULL,
    UNIQUE (chain_id, contract, origin, size)
);
"""


@dataclass(frozen=True)
class Anchor:
    """One outbox row (module doc)."""

    id: int
    origin: str
    head: Head
    note: bytes
    state: str
    prev_size: int | None
    tx_hash: bytes | None
    raw_tx: bytes | None
    block_number: int | None
    block_hash: bytes | None
    gas_used: int | None
    evidence: dict[str, Any] | None
    attempts: int
    error: str | None
    created_s: float
    updated_s: float  # the last change of state (for a sent row: when its transaction was signed)


_COLUMNS = (
    "id, origin, size, root, state_hash, note, state, prev_size, tx_hash, raw_tx, block_number, "
    "block_hash, gas_used, evidence, attempts, error, created_s, updated_s"
)


def _row(r: tuple[Any, ...]) -> Anchor:
    """Return the Anchor of a SELECT _COLUMNS row."""
    return Anchor(
        id=r[0],
        origin=r[1],
        head=Head(r[2], bytes(r[3]), bytes(r[4])),
        note=bytes(r[5]),
        state=r[6],
        prev_size=r[7],
        tx_hash=None if r[8] is None else bytes(r[8]),
        raw_tx=None if r[9] is None else bytes(r[9]),
        block_number=r[10],
        block_hash=None if r[11] is None else bytes(r[11]),
        gas_used=r[12],
        evidence=None if r[13] is None else json.loads(r[13]),
        attempts=r[14],
        error=r[15],
        created_s=r[16],
        updated_s=r[17],
    )


class Outbox:
    """The anchors of one (chain id, contract) in data_dir/anchor.db (module doc)."""

    def __init__(self, path: Path, chain_id: int, contract: str) -> None:
        """Open (or create) the outbox file; rows of other chains or contracts are kept but
        not seen. contract is compared case-insensitively (stored lower case)."""
        self.path = path
        self.chain_id = chain_id
        self.contract = contract.lower()
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "PRAGMA synchronous=FULL"
        )  # a committed state change survives power loss
        with self._lock, self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def _select(self, where: str, args: tuple[Any, ...] = ()) -> list[Anchor]:
        """Return this chain and contract's rows matching where, by id."""
        sql = (
            f"SELECT {_COLUMNS} FROM anchors WHERE chain_id = ? AND contract = ? AND ({where}) "
            "ORDER BY id"
        )
        with self._lock:
            rows = self._conn.execute(sql, (self.chain_id, self.contract, *args)).fetchall()
        return [_row(r) for r in rows]

    def _update(self, anchor_id: int, **values: Any) -> None:
        """Set columns of one row and its updated_s, in one committed transaction."""
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._lock, self._conn:
            self._conn.execute(
                f"UPDATE anchors SET {cols}, updated_s = ? WHERE id = ?",
                (*values.values(), time.time(), anchor_id),
            )

    def add(self, origin: str, head: Head, note: bytes) -> Anchor | None:
        """Add a pending anchor of head; return it, or None if this size is already in the
        outbox (adding is idempotent)."""
        now = time.time()
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO anchors (chain_id, contract, origin, size, root, "
                "state_hash, note, state, created_s, updated_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (self.chain_id, self.contract, origin, head.size, head.root, head.state_hash,
                 note, PENDING, now, now),
            )  # fmt: skip
            new_id = cur.lastrowid if cur.rowcount else None
        return None if new_id is None else self.get(new_id)

    def get(self, anchor_id: int) -> Anchor:
        """Return the row anchor_id; raise KeyError if there is none."""
        rows = self._select("id = ?", (anchor_id,))
        if not rows:
            raise KeyError(anchor_id)
        return rows[0]

    def open_anchors(self) -> list[Anchor]:
        """Return the pending, sent and included rows, oldest first (nonce order)."""
        return self._select("state IN (?, ?, ?)", OPEN_STATES)

    def anchors(self, origin: str | None = None) -> list[Anchor]:
        """Return every row (of origin, if given), oldest first."""
        if origin is None:
            return self._select("1")
        return self._select("origin = ?", (origin,))

    def newest(self, origin: str) -> Anchor | None:
        """Return the largest anchor of origin that is not superseded, or None."""
        rows = self._select("origin = ? AND state != ?", (origin, SUPERSEDED))
        return max(rows, key=lambda a: a.head.size, default=None)

    def final_covering(self, origin: str, index: int) -> Anchor | None:
        """Return the smallest final anchor of origin whose tree holds entry `index`, or None."""
        rows = self._select("origin = ? AND state = ? AND size > ?", (origin, FINAL, index))
        return min(rows, key=lambda a: a.head.size, default=None)

    def mark_sent(self, anchor_id: int, prev_size: int, tx_hash: bytes, raw_tx: bytes) -> None:
        """Record the signed transaction (before broadcasting it) and move the row to sent."""
        self._update(
            anchor_id, state=SENT, prev_size=prev_size, tx_hash=tx_hash, raw_tx=raw_tx,
            block_number=None, block_hash=None, error=None,
        )  # fmt: skip

    def mark_included(self, anchor_id: int, block_number: int, block_hash: bytes, gas: int) -> None:
        """Record the receipt's block and move the row to included."""
        self._update(
            anchor_id, state=INCLUDED, block_number=block_number, block_hash=block_hash,
            gas_used=gas,
        )  # fmt: skip

    def mark_dropped(self, anchor_id: int) -> None:
        """Move an included row whose block left the canonical chain back to sent."""
        self._update(anchor_id, state=SENT, block_number=None, block_hash=None)

    def mark_final(self, anchor_id: int, evidence: dict[str, Any]) -> None:
        """Store the evidence and move the row to final."""
        self._update(anchor_id, state=FINAL, evidence=json.dumps(evidence, sort_keys=True))

    def mark_pending(self, anchor_id: int, error: str) -> None:
        """Forget the row's transaction (it must be signed again) and count the attempt."""
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE anchors SET state = ?, tx_hash = NULL, raw_tx = NULL, block_number = NULL,"
                " block_hash = NULL, error = ?, attempts = attempts + 1, updated_s = ? WHERE id = ?",
                (PENDING, error, time.time(), anchor_id),
            )

    def mark_superseded(self, anchor_id: int, error: str) -> None:
        """Give the row up (terminal), saying why."""
        self._update(anchor_id, state=SUPERSEDED, error=error)

    def counts(self) -> dict[str, int]:
        """Return the number of rows per state (every state present, zero if none)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, COUNT(*) FROM anchors WHERE chain_id = ? AND contract = ? "
                "GROUP BY state",
                (self.chain_id, self.contract),
            ).fetchall()
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        out.update({s: int(n) for s, n in rows})
        return out
