"""Ingest: verify a board's upload, sequence authentic records into the ledger, and say what to ack.

One upload = the records a board sent after SEND_FROM (docs/ble-protocol.md). For each record:
decode (WireError), check it belongs to the uploading device, drop exact duplicates on
(device, seq), keep a different record under a used (device, seq) as clone/rollback evidence,
extend the device's hash chain (gateway.wire.DeviceChain: signatures, chain links, seq order),
record seq gaps as events. Authentic records are appended to the ledger in one durable commit;
only then does deliver() return the seq the board may delete up to (DESIGN 3: nothing acked is
ever lost). Unsigned records that wait for a signed successor are not acked: the board keeps them
and sends them again with the next upload.

Derived state (registry, the (device, seq) index, events) lives in a separate SQLite file that
is rebuilt from the log: after every append, and at start-up for anything the log has that the
derived state has not seen yet (a crash between the two commits loses nothing). The file records
the log prefix it was derived from (its size and the leaf hash of its last entry). At start-up an
unreadable file is moved aside and rebuilt; a file derived from entries the log no longer holds
means acknowledged records were lost (e.g. a deleted WAL): start-up is refused
(StartupRefused "acked-data-lost") unless the operator accepts the loss, and then the file is
moved aside, rebuilt from the log and the loss is recorded as an alarm (EV_ACKED_DATA_LOST).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway import wire
from gateway.errors import ChainError, EdgesealError, SignatureError, StartupRefused, WireError
from gateway.ledger import Ledger, leaf_hash
from gateway.ledger.entries import KIND_DEVICE_ENROLLMENT, KIND_DEVICE_RECORD, decode_entry
from gateway.registry import DeviceRegistry

# Event kinds (stable strings, exposed by the API). Alarms need an operator; the rest inform.
EV_UNKNOWN_DEVICE = "unknown-device"
EV_REVOKED_DEVICE = "revoked-device"
EV_MALFORMED = "malformed-record"
EV_WRONG_DEVICE = "wrong-device"
EV_BAD_SIGNATURE = "bad-signature"
EV_CHAIN_BREAK = "chain-break"
EV_CLONE = "clone-or-rollback"
EV_SEQ_GAP = "seq-gap"
EV_DUPLICATE = "duplicate"
EV_ACKED_DATA_LOST = "acked-data-lost"  # the operator started on a log that lost acked entries
EV_CHAIN_SEGMENT = "chain-segment"  # a board restarted its chain: records it held are missing
ALARMS = frozenset(
    {
        EV_BAD_SIGNATURE,
        EV_CHAIN_BREAK,
        EV_CLONE,
        EV_WRONG_DEVICE,
        EV_MALFORMED,
        EV_ACKED_DATA_LOST,
        EV_CHAIN_SEGMENT,
    }
)
log = logging.getLogger("edgeseal.ingest")

# Rebuilding derived state reads the log in chunks of this many entries: bounded memory on a Pi.
CATCH_UP_CHUNK_ENTRIES = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) ;
CREATE TABLE IF NOT EXISTS record_index(
    device_id BLOB NOT NULL, seq INTEGER NOT NULL, entry_index INTEGER NOT NULL,
    PRIMARY KEY(device_id, seq)) WITHOUT ROWID ;
CREATE TABLE IF NOT EXISTS event(
    id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, alarm INTEGER NOT NULL,
    device_id BLOB, seq INTEGER, detail TEXT NOT NULL, evidence BLOB) ;
"""


@dataclass(frozen=True)
class UploadResult:
    """What one deliver() did: the ack to send (None = send no ack) and the counts."""

    ack_seq: int | None
    committed: int
    duplicates: int
    pending: int
    rejected: int
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class Event:
    """An ingest event (gap, duplicate, clone evidence, rejection...)."""

    id: int
    time_ms: int
    kind: str
    alarm: bool
    device_id: bytes | None
    seq: int | None
    detail: str
    evidence: bytes | None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-friendly view (evidence in hex)."""
        return {
            "id": self.id,
            "time_ms": self.time_ms,
            "kind": self.kind,
            "alarm": self.alarm,
            "device_id": self.device_id.hex() if self.device_id else None,
            "seq": self.seq,
            "detail": self.detail,
            "evidence": self.evidence.hex() if self.evidence else None,
        }


def open_state(path: str) -> sqlite3.Connection:
    """Return a connection to the derived-state database (WAL; NORMAL sync: it is rebuildable)
    with its schema. Raises sqlite3.DatabaseError if the file is not a usable database."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        conn.execute("SELECT value FROM meta WHERE key = 'through'").fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


def move_aside(path: str, reason: str) -> str:
    """Rename the SQLite file at `path` (and its -wal, -shm) to `<path>.<reason>-<unix time>`;
    return the new name of the main file. Files that do not exist are skipped."""
    aside = f"{path}.{reason}-{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def derived_from(conn: sqlite3.Connection) -> tuple[int, bytes | None]:
    """Return (number of log entries the derived state was built from, leaf hash of the last
    of them or None if not recorded) (RFC 9162 2.1.1 leaf hash)."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    leaf = meta.get("through_leaf")
    return int(meta.get("through", 0)), bytes(leaf) if leaf is not None else None


class Ingest:
    """Verifies uploads and sequences them into the ledger (see the module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        state_path: str,
        clock_ms: Callable[[], int] | None = None,
        *,
        accept_loss: bool = False,
        losses: Iterable[str] = (),
    ) -> None:
        """Open (or rebuild) the derived state next to `ledger` and catch up with the log.

        Raises StartupRefused("acked-data-lost") if the derived state was built from entries
        the log does not hold, unless accept_loss (module doc). `losses` are descriptions of
        losses the caller accepted (gateway.ledger.trusted); each becomes an alarm event.
        """
        self.ledger = ledger
        self._state_path = state_path
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._events: list[tuple] = []
        self._conn, lost = self._open_checked(accept_loss)
        self.registry = DeviceRegistry(self._conn, ledger)
        self.catch_up()
        for what in [*losses, *lost]:
            self._event(EV_ACKED_DATA_LOST, None, None, what)
        self._flush_events()

    def close(self) -> None:
        """Close the derived-state database (the ledger is closed by its owner)."""
        self._conn.close()

    # ------------------------------------------------------------ derived state

    def _open_checked(self, accept_loss: bool) -> tuple[sqlite3.Connection, list[str]]:
        """Return (connection to a derived state that is a prefix of the log, descriptions of
        accepted losses). An unreadable file is moved aside (rebuilt by catch_up); one derived
        from entries the log does not hold raises StartupRefused unless accept_loss."""
        path = self._state_path
        try:
            conn = open_state(path)
            through, leaf = derived_from(conn)
        except sqlite3.DatabaseError as exc:
            aside = move_aside(path, "corrupt")
            log.error(
                "%s is unreadable (%s): moved to %s; rebuilding it from the log", path, exc, aside
            )
            return open_state(path), []
        size = self.ledger.sequenced_size
        if through <= size and (
            through == 0 or leaf is None or leaf_hash(self.ledger.entry(through - 1)) == leaf
        ):
            return conn, []
        conn.close()
        why = (
            f"{path} was derived from {through} log entries but the ledger holds {size}"
            if through > size
            else f"{path} was derived from a log whose entry {through - 1} differs from the ledger's"
        )
        why += ": records acknowledged to boards are not in the ledger"
        if not accept_loss:
            raise StartupRefused(
                "acked-data-lost",
                f"{why}. Restore the newest backup of the ledger, or start with --accept-loss to "
                "rebuild the derived state from what is left (docs/operations.md, section Recovery)",
            )
        aside = move_aside(path, "lost")
        log.error("ACCEPTING LOST HISTORY (--accept-loss): %s; old state kept in %s", why, aside)
        return open_state(path), [f"{why}; the old derived state is kept in {aside}"]

    @property
    def through_index(self) -> int:
        """Return how many log entries the derived state has applied."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'through'").fetchone()
        return int(row[0]) if row else 0

    def catch_up(self) -> int:
        """Apply every log entry the derived state has not seen yet; return how many."""
        start = self.through_index
        end = self.ledger.sequenced_size
        done = 0
        while start < end:
            stop = min(end, start + CATCH_UP_CHUNK_ENTRIES)
            self._apply(list(self.ledger.entries(start, stop)))
            done += stop - start
            start = stop
        return done

    def _apply(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Apply log entries (index, entry bytes), in order, in one derived-state transaction."""
        applied: list[tuple[int, int, bytes, wire.Record | None]] = []
        for index, entry in rows:
            kind, payload = decode_entry(entry)
            record = wire.decode_record(payload) if kind == KIND_DEVICE_RECORD else None
            applied.append((index, kind, payload, record))
        self._apply_decoded(applied)

    def _apply_decoded(self, applied: list[tuple[int, int, bytes, wire.Record | None]]) -> None:
        """Apply (index, kind, payload, decoded record or None) rows in one transaction."""
        if not applied:
            return
        last = applied[-1][0]
        index_rows = [(r.device_id, r.seq, i) for i, _, _, r in applied if r is not None]
        conn = self._conn
        conn.execute("BEGIN")
        try:
            self.registry.apply(applied)
            conn.executemany(
                "INSERT OR IGNORE INTO record_index(device_id, seq, entry_index) VALUES (?, ?, ?)",
                index_rows,
            )
            _, kind, payload, _ = applied[-1]
            conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("through", last + 1), ("through_leaf", leaf_hash(bytes((kind,)) + payload))],
            )
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (SQLITE_FULL) may have rolled back already: a second ROLLBACK
            # would raise "no transaction is active" over the error that matters.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.registry._cache.clear()
            raise

    def _append(self, entries: list[tuple[int, bytes]]) -> list[int]:
        """Durably append entries to the log, then derive; return their indexes."""
        self.catch_up()
        indexes = self.ledger.append(entries)
        self._apply(
            (i, bytes((kind,)) + payload)
            for i, (kind, payload) in zip(indexes, entries, strict=True)
        )
        return indexes

    # ----------------------------------------------------------------- registry

    def enroll(self, public_key: bytes, metadata: dict[str, Any] | None = None) -> int:
        """Enroll a board by its public key; return the enrollment's log index.

        Raises SignatureError("bad-public-key") or WireError("already-enrolled",
        "bad-enrollment") and then changes nothing.
        """
        payload = self.registry.enroll_entry(public_key, metadata)
        return self._append([(KIND_DEVICE_ENROLLMENT, payload)])[0]

    def revoke(self, device_id: bytes, reason: str) -> int:
        """Revoke an enrolled board; return the revocation's log index. Raises WireError."""
        payload = self.registry.revoke_entry(device_id, reason)
        return self._append([(KIND_DEVICE_ENROLLMENT, payload)])[0]

    # ------------------------------------------------------------------- events

    def _event(
        self,
        kind: str,
        device_id: bytes | None,
        seq: int | None,
        detail: str,
        evidence: bytes | None = None,
    ) -> None:
        self._events.append(
            (self._clock_ms(), kind, int(kind in ALARMS), device_id, seq, detail, evidence)
        )

    def _flush_events(self) -> None:
        """Write buffered events in one transaction (after the records they are about).

        All or nothing: on failure (a full disk) the events stay buffered for the next flush.
        """
        if self._events:
            conn = self._conn
            conn.execute("BEGIN")  # autocommit connection: without it each row commits alone
            try:
                conn.executemany(
                    "INSERT INTO event(time_ms, kind, alarm, device_id, seq, detail, evidence) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    self._events,
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._events.clear()

    def events(self, since_id: int = 0, limit: int = 1000) -> list[Event]:
        """Return events with id > since_id, oldest first (at most limit)."""
        self._flush_events()
        rows = self._conn.execute(
            "SELECT id, time_ms, kind, alarm, device_id, seq, detail, evidence FROM event "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (since_id, limit),
        ).fetchall()
        return [
            Event(
                r[0],
                r[1],
                r[2],
                bool(r[3]),
                bytes(r[4]) if r[4] is not None else None,
                r[5],
                r[6],
                bytes(r[7]) if r[7] is not None else None,
            )
            for r in rows
        ]

    # ------------------------------------------------------------------- ingest

    def last_committed_seq(self, device_id: bytes) -> int | None:
        """Return the newest committed seq of the device (None before its first record)."""
        dev = self.registry.get(device_id)
        return None if dev is None else dev.last_seq

    def _stored_record(self, device_id: bytes, seq: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT entry_index FROM record_index WHERE device_id = ? AND seq = ?",
            (device_id, seq),
        ).fetchone()
        if row is None:
            return None
        return self.ledger.entry(row[0])[1:]

    def deliver(self, device_id: bytes, raws: list[bytes]) -> UploadResult:
        """Verify and commit one upload of device_id; return what to ack and what happened.

        Never raises for bad input: every rejection becomes an event (and, for forgeries,
        an alarm). Processing stops at the first record that cannot extend the chain, so
        nothing after it is acked. Preconditions: raws are in the order the board sent them.
        """
        return self.deliver_many([(device_id, raws)])[0]

    def deliver_many(self, uploads: list[tuple[bytes, list[bytes]]]) -> list[UploadResult]:
        """Verify several uploads and commit their authentic records in one durable commit.

        Group commit: with several boards connected, one fsync covers all their records.
        Returns one UploadResult per upload, in order (see deliver()).
        """
        self.catch_up()
        results: list[UploadResult] = []
        batch: list[tuple[list[wire.Record], _Verdict]] = []
        seen: set[bytes] = set()
        mark = len(self._events)  # events buffered before this batch (a failed flush) are kept
        for device_id, raws in uploads:
            if device_id in seen:  # a second upload of one device must see the first's commit
                results += self._commit(batch, mark)
                batch, seen, mark = [], set(), len(self._events)
            seen.add(device_id)
            batch.append(self._verify_upload(device_id, raws))
        results += self._commit(batch, mark)
        return results

    def _verify_upload(
        self, device_id: bytes, raws: list[bytes]
    ) -> tuple[list[wire.Record], _Verdict]:
        """Return (authentic records in chain order, verdict) for one upload; records events."""
        dev = self.registry.get(device_id)
        if dev is None or not dev.active:
            kind = EV_UNKNOWN_DEVICE if dev is None else EV_REVOKED_DEVICE
            self._event(kind, device_id, None, f"upload of {len(raws)} records refused")
            return [], _Verdict(None, 0, 0, len(raws))
        chain = wire.DeviceChain(dev.device_id, dev.current_key, dev.last_seq, dev.last_hash)
        authentic: list[wire.Record] = []
        in_upload: dict[int, bytes] = {}  # seq -> raw: the link may repeat a notification
        duplicates = rejected = 0
        for pos, raw in enumerate(raws):
            try:
                rec = wire.decode_record(raw)
                if rec.device_id != device_id:
                    raise SignatureError("wrong-device", "record of another device in upload")
                if in_upload.get(rec.seq) == rec.raw:
                    duplicates += 1
                    continue
                if dev.last_seq is not None and rec.seq <= dev.last_seq:
                    stored = self._stored_record(device_id, rec.seq)
                    if stored == rec.raw:
                        duplicates += 1
                        continue
                    what = "differs from" if stored is not None else "was never part of"
                    self._event(
                        EV_CLONE, device_id, rec.seq, f"seq {rec.seq} {what} the chain", rec.raw
                    )
                    rejected += 1
                    continue
                tip_seq = chain.pending[-1].seq if chain.pending else chain.last_seq
                authentic += chain.push(rec)
                in_upload[rec.seq] = rec.raw
                if chain.breaks:
                    self._segment_events(device_id, chain.breaks, rec.raw)
                elif tip_seq is not None and rec.seq > tip_seq + 1:
                    self._event(EV_SEQ_GAP, device_id, rec.seq, f"seq {tip_seq} -> {rec.seq}")
            except EdgesealError as exc:
                self._event(_event_kind(exc), device_id, None, str(exc), bytes(raw))
                rejected += len(raws) - pos
                break
        rejected += self._unvouched_run(chain)
        if duplicates:
            self._event(EV_DUPLICATE, device_id, None, f"{duplicates} duplicate records dropped")
        ack = authentic[-1].seq if authentic else dev.last_seq
        return authentic, _Verdict(ack, duplicates, len(chain.pending), rejected)

    def _unvouched_run(self, chain: wire.DeviceChain) -> int:
        """Return how many waiting records a break no chain_segment vouched for leaves rejected
        (0 if none), after recording the chain-break alarm with the first of them as evidence;
        those records are dropped from chain.pending (never acked: the board keeps them)."""
        try:
            chain.finish()
        except ChainError as exc:
            at = chain.detached_at
            assert at is not None
            run = chain.pending[at:]
            self._event(EV_CHAIN_BREAK, chain.device_id, run[0].seq, str(exc), run[0].raw)
            del chain.pending[at:]
            chain.detached_at = None
            return len(run)
        return 0

    def _segment_events(self, device_id: bytes, breaks: list[wire.ChainBreak], raw: bytes) -> None:
        """Record each break a chain_segment named as an alarm with its missing seq range and
        reason (the segment record is the evidence), then empty `breaks`. Returns None."""
        for brk in breaks:
            held = "nothing" if brk.held_seq is None else f"seq {brk.held_seq}"
            missing = (
                f"seqs {brk.missing_from}..{brk.missing_to} missing"
                if brk.missing_from <= brk.missing_to
                else "no seq missing"
            )
            self._event(
                EV_CHAIN_SEGMENT,
                device_id,
                brk.seq,
                f"{missing} ({brk.reason_name}); the board held {held}; new segment at seq {brk.seq}",
                raw,
            )
        breaks.clear()

    def _commit(
        self, batch: list[tuple[list[wire.Record], _Verdict]], mark: int
    ) -> list[UploadResult]:
        """Append every authentic record of the batch durably, derive, flush events; return results.

        mark: how many buffered events predate the batch. If the append or the derivation
        fails (a full disk: sqlite3.OperationalError propagates, nothing is acked), the batch's
        own events are dropped, since verifying the resent upload records them again; a record
        appended before the derivation failed is derived by the next catch_up.
        """
        records = [r for authentic, _ in batch for r in authentic]
        indexes: list[int] = []
        if records:
            try:
                indexes = self.ledger.append([(KIND_DEVICE_RECORD, r.raw) for r in records])
                self._apply_decoded(
                    [
                        (i, KIND_DEVICE_RECORD, r.raw, r)
                        for i, r in zip(indexes, records, strict=True)
                    ]
                )
            except BaseException:
                del self._events[mark:]
                raise
        self._flush_events()
        results = []
        pos = 0
        for authentic, v in batch:
            n = len(authentic)
            results.append(
                UploadResult(
                    v.ack_seq, n, v.duplicates, v.pending, v.rejected, tuple(indexes[pos : pos + n])
                )
            )
            pos += n
        return results


@dataclass(frozen=True)
class _Verdict:
    """What verifying one upload decided, before the commit."""

    ack_seq: int | None
    duplicates: int
    pending: int
    rejected: int


def _event_kind(exc: EdgesealError) -> str:
    """Return the event kind for a rejection."""
    if isinstance(exc, ChainError):
        return EV_CLONE if exc.code == "replayed-seq" else EV_CHAIN_BREAK
    if isinstance(exc, SignatureError):
        return EV_WRONG_DEVICE if exc.code == "wrong-device" else EV_BAD_SIGNATURE
    assert isinstance(exc, WireError), exc
    return EV_MALFORMED
