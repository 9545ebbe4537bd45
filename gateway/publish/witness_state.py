"""The witness's durable state: per log, the latest cosigned checkpoint (size, root, note).

SQLite in WAL mode with synchronous=FULL: a cosignature is returned only after the commit that
records it is on disk (tlog-witness, add-checkpoint: "The witness MUST persist the new checkpoint
before responding"). Every update runs in one BEGIN IMMEDIATE transaction that reads the stored
size, lets the caller check the request against it, and writes with a compare-and-swap on that
size (`UPDATE ... WHERE size = ?`): the check and the update are atomic ("checking the old size
against the latest checkpoint and persisting the new checkpoint must be performed atomically"),
across threads of one process (a lock) and across processes (SQLite's write lock).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

DB_NAME = "witness.db"
# why: concurrent writers (threads or a second process) wait on SQLite's lock this long before a
# request fails with 503; one update is well under a millisecond plus one fsync.
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_state (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note BLOB NOT NULL,
    updated_unix INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS cosigned_root (
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    PRIMARY KEY (origin, size)
) STRICT;
"""


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint the witness cosigned for one log (size 0 and MTH({}) if none)."""

    size: int
    root: bytes
    note: bytes | None


class StaleState(RuntimeError):
    """The compare-and-swap found another size than the one read: a bug or a foreign writer."""


def connect(path: str) -> sqlite3.Connection:
    """Return a connection to the witness database at `path` (WAL, synchronous=FULL, schema)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    return conn


class WitnessState:
    """The per-log state of one witness, in `<data dir>/witness.db`."""

    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self._conn = connect(os.path.join(data_dir, DB_NAME))
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (pending nothing: every update commits before returning)."""
        with self._lock:
            self._conn.close()

    def latest(self, origin: str, empty_root: bytes) -> LogState:
        """Return the stored state of `origin`, or LogState(0, empty_root, None) if none."""
        with self._lock:
            row = self._conn.execute(
                "SELECT size, root, note FROM log_state WHERE origin = ?", (origin,)
            ).fetchone()
        if row is None:
            return LogState(0, empty_root, None)
        return LogState(int(row[0]), bytes(row[1]), bytes(row[2]))

    def update(
        self,
        origin: str,
        empty_root: bytes,
        decide: Callable[[LogState], tuple[int, bytes, bytes, int]],
    ) -> None:
        """Atomically read the state of `origin`, call decide(state) and store what it returns.

        decide returns (size, root, note, updated_unix) to store, or raises to store nothing (its
        exception propagates after a rollback). Raises StaleState if the compare-and-swap on
        the size read fails, and ValueError if decide would store a second root for a size
        this witness cosigned before (the table cosigned_root: one root per size, ever).
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT size, root, note FROM log_state WHERE origin = ?", (origin,)
                ).fetchone()
                state = (
                    LogState(0, empty_root, None)
                    if row is None
                    else LogState(int(row[0]), bytes(row[1]), bytes(row[2]))
                )
                size, root, note, now_s = decide(state)
                self._write(origin, state, row is None, (size, root, note, now_s))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _write(
        self, origin: str, old: LogState, new_log: bool, new: tuple[int, bytes, bytes, int]
    ) -> None:
        """Write the new state with a compare-and-swap on old.size; inside update's transaction."""
        size, root, note, now_s = new
        if size < old.size:
            raise ValueError("the witness never goes back to a smaller size")
        prior = self._conn.execute(
            "SELECT root FROM cosigned_root WHERE origin = ? AND size = ?", (origin, size)
        ).fetchone()
        if prior is not None and bytes(prior[0]) != root:
            raise ValueError(f"size {size} was cosigned with another root")
        if prior is None:
            self._conn.execute(
                "INSERT INTO cosigned_root (origin, size, root) VALUES (?, ?, ?)",
                (origin, size, root),
            )
        if new_log:
            self._conn.execute(
                "INSERT INTO log_state (origin, size, root, note, updated_unix)"
                " VALUES (?, ?, ?, ?, ?)",
                (origin, size, root, note, now_s),
            )
            return
        cursor = self._conn.execute(
            "UPDATE log_state SET size = ?, root = ?, note = ?, updated_unix = ?"
            " WHERE origin = ? AND size = ?",
            (size, root, note, now_s, origin, old.size),
        )
        if cursor.rowcount != 1:
            raise StaleState(f"log {origin!r} changed under the transaction")
