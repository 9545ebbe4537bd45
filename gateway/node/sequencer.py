"""The single writer: owns the Ledger, Ingest and the contract Engine and keeps them in step.

One writer thread does every mutation, in order, so the fsyncs stay off the event loop and the
contract state is always the replay of an exact log prefix:

- BLE deliveries (the link calls `deliver`, the Collector protocol of gateway.ble.link) go through
  gateway.node.groupcommit: whatever has arrived is handed to `Ingest.deliver_many` as one
  durable commit for all boards connected at the time. The link acks after that commit.
- After every commit the new log entries are fed to the Engine in index order and the contract
  events it returns are appended (one more commit); events never change the state.
- Integration follows the ledger's batch policy; the checkpoint's extension line is the state hash
  of exactly the prefix being integrated (`_extension_lines`, given to Ledger.open).
- A participant transaction is decoded and verified, dry-run on the current state (a rejection
  is answered with its typed error and nothing is appended), then appended together with its
  events in one commit.

Every log entry goes through `LogIndex.observe` on the writer thread, so the read model
(gateway.node.reads) sees a consistent prefix.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.config import Settings
from gateway.contracts import Engine, decode_event, decode_tx, extension_line, rejection
from gateway.contracts.engine import State
from gateway.contracts.tx import Tx
from gateway.errors import ContractError, ServiceUnavailable, StartupRefused, TxError
from gateway.ingest import Ingest
from gateway.ingest import UploadResult as IngestResult
from gateway.ledger import Ledger, NoteSigner, load_or_create_signer
from gateway.ledger.entries import KIND_PARTICIPANT_TX
from gateway.ledger.trusted import TrustedCheckpoint
from gateway.node.groupcommit import GroupCommit
from gateway.node.index import LogIndex

log = logging.getLogger("edgeseal.sequencer")

T = TypeVar("T")

# why: a sender's clock may drift, but a transaction dated far from now could be replayed later
# (a rejected one leaves its nonce unused, docs/contracts.md); 5 min is well inside TX_MAX_AGE_S.
TX_MAX_SKEW_S = 300
# why: the ingest events counted per registry refresh; far above what one commit produces.
MAX_INGEST_EVENTS_PER_REFRESH = 100_000


def open_signer(settings: Settings) -> NoteSigner:
    """Return the gateway's signer, creating the key file only for a gateway with no log yet.

    Raises StartupRefused("key-missing") without writing anything if the key file is missing
    while a ledger or the checkpoint file exists: a new key would start a new log over the old
    one (docs/operations.md, Keys and trust). Raises KeyFileError for an unusable key file.
    """
    key, ledger, cp = settings.key_path, settings.ledger_path, settings.checkpoint_path
    has_log = (ledger.exists() and ledger.stat().st_size > 0) or cp.exists()
    if has_log and not key.exists():
        raise StartupRefused(
            "key-missing",
            f"{key} is missing but {ledger} ({ledger.stat().st_size if ledger.exists() else 0}"
            f" bytes) and {cp} ({'present' if cp.exists() else 'missing'}) hold this gateway's "
            "log: restore the key file from its backup; a new key would start a new log "
            "(docs/operations.md, section Recovery)",
        )
    return load_or_create_signer(str(key), settings.origin)


@dataclass(frozen=True)
class Admitted:
    """An accepted transaction: its log index, hash and the events appended with it."""

    index: int
    tx_hash: str
    events: list[dict[str, Any]]


class Sequencer:
    """The gateway's only writer: group commit, engine feed, transaction admission (module doc).

    phase() is the lifecycle's phase (gateway.node.lifecycle): admin and participant writes are
    refused with ServiceUnavailable unless it is "running".
    """

    def __init__(
        self, settings: Settings, engine: Engine, index: LogIndex, phase: Callable[[], str]
    ) -> None:
        """Open (or create) the ledger and the derived state under settings.data_dir and replay
        the log into the engine and the index.

        Synchronous and blocking; raises ContractError("event-mismatch") if the log's contract
        events are not what the engine computes (the log was written by other contract code),
        StartupRefused if the ledger, the checkpoint file, the derived state or the key disagree
        (open_signer, gateway.ledger.trusted, gateway.ingest; docs/operations.md, Recovery).
        """
        self.settings = settings
        self.engine = engine
        self.index = index
        self._phase = phase
        self._state: State | None = None
        self._applied = 0  # the engine state covers log entries [0, _applied)
        self.ledger: Ledger | None = None
        self.trusted = TrustedCheckpoint(
            str(settings.checkpoint_path),
            str(settings.ledger_path),
            accept_loss=settings.accept_loss,
        )
        self.ledger = self._open_ledger(open_signer(settings))
        try:
            self.ingest = Ingest(
                self.ledger,
                str(settings.state_path),
                accept_loss=settings.accept_loss,
                losses=[self.trusted.loss] if self.trusted.loss else [],
            )
        except BaseException:
            self.ledger.close()
            raise
        self._replay()
        self._refresh_devices()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="edgeseal-writer")
        self.uploads = GroupCommit(self._commit_uploads, self._after_commit)
        self._closed = False

    def _open_ledger(self, signer: NoteSigner) -> Ledger:
        """Return the open ledger, checked against the checkpoint file (self.trusted).

        Raises StartupRefused: what TrustedCheckpoint raises, or "ledger-unreadable" (naming
        the file) if SQLite cannot read it.
        """
        path = str(self.settings.ledger_path)
        try:
            return Ledger.open(
                path,
                signer,
                self.settings.origin,
                max_batch_entries=self.settings.max_batch_entries,
                batch_interval_ms=self.settings.batch_interval_ms,
                extension_lines=self._extension_lines,
                trusted=self.trusted,
            )
        except sqlite3.DatabaseError as exc:
            raise StartupRefused(
                "ledger-unreadable",
                f"{path} cannot be read ({exc}): restore the newest backup of the ledger "
                "(docs/operations.md, section Recovery)",
            ) from exc

    # ---- reads the writer keeps consistent -------------------------------------------------

    def open_ledger(self) -> Ledger:
        """Return the open ledger; raise ServiceUnavailable once it is closed."""
        if self.ledger is None:
            raise ServiceUnavailable("unavailable", "the ledger is closed")
        return self.ledger

    @property
    def state(self) -> State:
        """Return the contract state after every sequenced entry (do not mutate)."""
        assert self._state is not None
        return self._state

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the writer thread; return its result (exceptions propagate)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, fn, *args)

    # ---- start-up replay -----------------------------------------------------------------

    def _replay(self) -> None:
        """Replay the whole log into the engine and the index; append events a crash left out."""
        led = self.open_ledger()

        def observed() -> Any:
            for index, entry in led.entries():
                self.index.observe(index, entry)
                yield index, entry

        state, pending = self.engine.audit(observed())
        self._state, self._applied = state, led.sequenced_size
        if pending:
            log.warning("appending %d contract events a crash left out", len(pending))
            self._append_events(pending)

    # ---- engine feed and integration (writer thread only) ---------------------------------

    def _extension_lines(self, size: int, _root: bytes) -> list[str]:
        """Return the checkpoint extension line for the state after entries [0, size).

        Called by the ledger inside integrate(), also when an append fills a batch before the
        engine has seen the new entries: those are replayed here on a copy (apply is pure).
        """
        if size == 0:  # also while Ledger.open creates the log, before its first commit
            return [extension_line(self.engine.initial_state())]
        led = self.ledger
        if led is None:  # integrating a crash's pending entries while Ledger.open runs
            with Ledger.open_readonly(str(self.settings.ledger_path)) as ro:
                return [extension_line(self.engine.replay(ro.entries(0, size)))]
        if self._state is None or size < self._applied:
            return [extension_line(self.engine.replay(led.entries(0, size)))]
        return [extension_line(self.engine.replay(led.entries(self._applied, size), self._state))]

    def _append_events(self, events: list[bytes]) -> list[int]:
        """Append contract event entries; index them; return their indexes."""
        led = self.open_ledger()
        indexes = led.append([(e[0], e[1:]) for e in events])
        for index, entry in zip(indexes, events, strict=True):
            self.index.observe(index, entry)
        self._applied = led.sequenced_size  # events are skipped by the engine
        return indexes

    def _feed_engine(self) -> int:
        """Apply every sequenced entry the engine has not seen; append their events; return
        how many events were appended."""
        led = self.open_ledger()
        end = led.sequenced_size
        if self._applied >= end:
            return 0
        state = self.state
        events: list[bytes] = []
        for index, entry in led.entries(self._applied, end):
            state, out = self.engine.apply(state, index, entry)
            self.index.observe(index, entry)
            events.extend(out)
        if events:  # before the state moves: if the append fails (a full disk), it is retried
            self._append_events(events)
        self._state, self._applied = state, max(self._applied, end)
        return len(events)

    def integrate_if_due(self, force: bool = False) -> bytes | None:
        """Feed the engine, then integrate if the batch policy says so (or force); return the
        new checkpoint note or None. Writer thread only."""
        self._feed_engine()
        led = self.open_ledger()
        if not led.pending or not (force or led.due()):
            return None
        note = led.integrate()
        self.index.counters.checkpoints += 1
        return note

    def _refresh_devices(self) -> None:
        """Snapshot the registry for the link's lookups and the API (writer thread)."""
        new_events = self.ingest.events(
            self.index.last_ingest_event, limit=MAX_INGEST_EVENTS_PER_REFRESH
        )
        self.index.set_devices(self.ingest.registry.all(), new_events)

    # ---- the Collector protocol (gateway.ble.link) ----------------------------------------

    def device_for_prefix(self, id_prefix: bytes) -> bytes | None:
        """Return the active enrolled device id starting with id_prefix, or None."""
        for device_id, dev in self.index.devices.items():
            if dev.active and device_id.startswith(id_prefix):
                return device_id
        return None

    def last_committed_seq(self, device_id: bytes) -> int | None:
        """Return the highest committed seq of device_id (from the registry snapshot)."""
        dev = self.index.devices.get(device_id)
        return None if dev is None else dev.last_seq

    async def deliver(self, device_id: bytes, records: list[bytes]) -> int | None:
        """Queue one upload for the next group commit; return the seq to ack after it."""
        return await self.uploads.deliver(device_id, records)

    async def _commit_uploads(self, uploads: list[tuple[bytes, list[bytes]]]) -> list[IngestResult]:
        """Commit a batch of uploads durably and count it; return the results."""
        results = await self.write(self._deliver_sync, uploads)
        c = self.index.counters
        c.group_commits += 1
        for res in results:
            c.uploads += 1
            c.records_committed += res.committed
            c.duplicates += res.duplicates
            c.rejected_records += res.rejected
        return results

    async def _after_commit(self) -> None:
        await self.write(self.integrate_if_due)

    def _deliver_sync(self, uploads: list[tuple[bytes, list[bytes]]]) -> list[IngestResult]:
        """Group-commit uploads (Ingest.deliver_many); refresh the registry snapshot so the
        link's next SEND_FROM starts after what was just committed; return the results."""
        results = self.ingest.deliver_many(uploads)
        self._refresh_devices()
        return results

    # ---- admin and participant writes ------------------------------------------------------

    def _require_accepting(self) -> None:
        phase = self._phase()
        if phase != "running":
            raise ServiceUnavailable("unavailable", f"the service is {phase}")

    async def _write_or_alarm(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the writer thread like `write`; return its result.

        A full disk or an I/O error of the store raises the storage alarm (the one the group
        commit raises, gateway.node.groupcommit.StorageHealth) and is answered with its typed
        ServiceUnavailable ("storage-full", "storage-io": 503), not an untyped error; a
        success clears the alarm. Other exceptions propagate unchanged.
        """
        storage = self.uploads.storage
        try:
            result = await self.write(fn, *args)
        except Exception as exc:
            err = storage.failed(what, exc)
            if err is None:
                raise
            raise err from exc
        storage.ok()
        return result

    async def enroll(self, public_key: bytes, metadata: dict[str, Any] | None = None) -> int:
        """Enroll a device key; return the enrollment's log index. Raises the Ingest errors,
        ServiceUnavailable when not running or the store is full."""
        self._require_accepting()
        return await self._write_or_alarm(
            "enrollment", self._registry_change, self.ingest.enroll, public_key, metadata
        )

    async def revoke(self, device_id: bytes, reason: str) -> int:
        """Revoke a device; return the revocation's log index. Raises WireError,
        ServiceUnavailable when not running or the store is full."""
        self._require_accepting()
        return await self._write_or_alarm(
            "revocation", self._registry_change, self.ingest.revoke, device_id, reason
        )

    def _registry_change(self, change: Callable[..., int], *args: Any) -> int:
        """Run an Ingest registry change (enroll, revoke) on the writer thread; return its index."""
        index = change(*args)
        self._refresh_devices()
        self._feed_engine()
        return index

    def check_tx(self, payload: bytes, now_s: float | None = None) -> Tx:
        """Return the decoded, signature-checked transaction; raise ContractError.

        Besides decode_tx's codes: "tx-clock-skew" if time_s is over TX_MAX_SKEW_S from now.
        """
        tx = decode_tx(payload)
        now = time.time() if now_s is None else now_s
        if abs(tx.time_s - now) > TX_MAX_SKEW_S:
            raise TxError(
                "tx-clock-skew", f"time_s {tx.time_s} is over {TX_MAX_SKEW_S} s from gateway time"
            )
        return tx

    async def submit_tx(self, payload: bytes, now_s: float | None = None) -> Admitted:
        """Admit a participant transaction; return where it went. Raises ContractError with
        the rejection's code (nothing appended) or ServiceUnavailable."""
        self._require_accepting()
        tx = self.check_tx(payload, now_s)
        try:
            admitted = await self._write_or_alarm("transaction", self._admit, tx, payload)
        except ContractError:
            self.index.counters.tx_rejected += 1
            raise
        self.index.counters.tx_accepted += 1
        return admitted

    def _admit(self, tx: Tx, payload: bytes) -> Admitted:
        """Dry-run then append tx and its events in one commit (writer thread)."""
        self._feed_engine()
        led = self.open_ledger()
        index = led.sequenced_size
        entry = bytes((KIND_PARTICIPANT_TX,)) + payload
        state, events = self.engine.apply(self.state, index, entry)
        refused = rejection(events)
        if refused is not None:
            raise ContractError(str(refused["code"]), str(refused["message"]))
        indexes = led.append([(KIND_PARTICIPANT_TX, payload)] + [(e[0], e[1:]) for e in events])
        assert indexes[0] == index, "the log moved under the writer thread"
        self._state = state
        self.index.observe(index, entry)
        for i, e in zip(indexes[1:], events, strict=True):
            self.index.observe(i, e)
        self._applied = led.sequenced_size
        self.integrate_if_due()
        decoded = [
            {**decode_event(e), "index": i} for i, e in zip(indexes[1:], events, strict=True)
        ]
        return Admitted(index, tx.tx_hash, decoded)

    # ---- closing ---------------------------------------------------------------------------

    async def drain(self) -> None:
        """Integrate everything sequenced (writer thread), then close. Safe to call twice.

        Closes even if the integration fails (a full disk), then raises its error; pending
        entries stay durable and are integrated on the next open."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.write(self.integrate_if_due, True)
        finally:
            self.close()

    def close(self) -> None:
        """Close the databases (pending entries stay durable and integrate on the next open)."""
        self._closed = True
        self._writer.shutdown(wait=True)
        self.ingest.close()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
