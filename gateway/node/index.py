"""In-memory indexes of the log for reads: accepted transactions, recent contract events, devices,
and each device's records (so a proof bundle reads O(log n) entries, not a scan).

Written only by the sequencer's writer thread (`observe` for every log entry in index order,
`set_devices` after every registry change); read from any thread. Everything here is derived
from the log and rebuilt by the start-up replay.
"""

from __future__ import annotations

import contextlib
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from gateway import wire
from gateway.contracts import decode_event, decode_tx
from gateway.errors import EdgesealError, NotIntegrated
from gateway.ingest import Event as IngestEvent
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_DEVICE_RECORD, KIND_PARTICIPANT_TX
from gateway.registry import Device

# why: the API lists recent contract events from memory; older ones stay in the log (bounded
# memory on a Pi with a long log).
MAX_RECENT_CONTRACT_EVENTS = 50_000


@dataclass
class Counters:
    """Monotonic counters for /metrics."""

    uploads: int = 0
    records_committed: int = 0
    duplicates: int = 0
    rejected_records: int = 0
    group_commits: int = 0
    checkpoints: int = 0
    tx_accepted: int = 0
    tx_rejected: int = 0
    contract_events: Counter[str] = field(default_factory=Counter)
    ingest_events: Counter[str] = field(default_factory=Counter)


@dataclass
class DeviceRecords:
    """One device's records in the log: sorted log indexes (int64 arrays, 8 bytes per record)."""

    records: array[int] = field(default_factory=lambda: array("q"))  # every record
    signed: array[int] = field(default_factory=lambda: array("q"))  # records with a signature
    rotations: array[int] = field(default_factory=lambda: array("q"))  # signed key rotations


class LogIndex:
    """Transaction hashes, contract events and the device snapshot, kept in step with the log."""

    def __init__(self) -> None:
        """Start empty; the sequencer's replay fills it."""
        self.counters = Counters()
        self.tx_index: dict[str, int] = {}  # tx hash -> log index of accepted transactions
        self.caused: dict[int, list[int]] = {}  # tx index -> its event indexes
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=MAX_RECENT_CONTRACT_EVENTS)
        self.devices: dict[bytes, Device] = {}
        self.device_records: dict[bytes, DeviceRecords] = {}
        self.observed_size = 0  # entries [0, observed_size) are indexed
        self.last_ingest_event = 0

    def observe(self, index: int, entry: bytes) -> None:
        """Index one log entry (device records, accepted tx hashes, contract events); entries
        come in index order; enrollments are skipped (set_devices has them)."""
        kind = entry[0] if entry else -1
        self.observed_size = max(self.observed_size, index + 1)
        if kind == KIND_DEVICE_RECORD:
            with contextlib.suppress(EdgesealError):
                self._observe_record(index, wire.decode_record(entry[1:]))
        elif kind == KIND_PARTICIPANT_TX:
            with contextlib.suppress(EdgesealError):
                tx = decode_tx(entry[1:])
                self.tx_index.setdefault(tx.tx_hash, index)
        elif kind == KIND_CONTRACT_EVENT:
            with contextlib.suppress(EdgesealError):
                ev = decode_event(entry)
                ev["index"] = index
                self.recent_events.append(ev)
                self.counters.contract_events[str(ev["type"])] += 1
                for cause in ev["causes"]:
                    self.caused.setdefault(int(cause), []).append(index)

    def _observe_record(self, index: int, rec: wire.Record) -> None:
        recs = self.device_records.get(rec.device_id)
        if recs is None:
            recs = self.device_records[rec.device_id] = DeviceRecords()
        recs.records.append(index)
        if rec.signed:
            recs.signed.append(index)
            if rec.kind == wire.KEY_ROTATION:
                recs.rotations.append(index)

    def rotations(self, device_id: bytes, since: int, before: int) -> list[int]:
        """Return the log indexes of the device's key-rotation records in [since, before), in
        log order: two binary searches (gateway.bundle.DeviceChains).

        Raises NotIntegrated("not-integrated") if entries before `before` are not indexed yet (an
        append that filled a batch was checkpointed before the writer thread observed it): the
        API answers 409, retry.
        """
        if before > self.observed_size:
            raise NotIntegrated(
                "not-integrated", f"entry {before - 1} is not indexed yet: retry in a moment"
            )
        recs = self.device_records.get(device_id)
        if recs is None:
            return []
        rot = recs.rotations
        return list(rot[bisect_left(rot, since) : bisect_left(rot, before)])

    def successors(self, device_id: bytes, after: int, size: int) -> list[int] | None:
        """Return the log indexes of the device's records after `after` up to and including the
        first signed one, or None if no indexed signed record below size closes them: three
        binary searches (gateway.bundle.DeviceChains). Entries are observed in index order, so
        every record before a found closing one is indexed."""
        recs = self.device_records.get(device_id)
        if recs is None:
            return None
        i = bisect_right(recs.signed, after)
        if i == len(recs.signed) or recs.signed[i] >= size:
            return None
        closing = recs.signed[i]
        records = recs.records
        return list(records[bisect_right(records, after) : bisect_right(records, closing)])

    def set_devices(self, devices: list[Device], new_events: list[IngestEvent]) -> None:
        """Replace the device snapshot and count the ingest events that are new since the last
        call (new_events: ingest events with id > last_ingest_event, oldest first)."""
        self.devices = {d.device_id: d for d in devices}
        for ev in new_events:
            self.counters.ingest_events[ev.kind] += 1
            self.last_ingest_event = ev.id
