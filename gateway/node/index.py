"""In-memory indexes of the log for reads: accepted transactions, recent contract events, devices.

Written only by the sequencer's writer thread (`observe` for every log entry in index order,
`set_devices` after every registry change); read from any thread. Everything here is derived
from the log and rebuilt by the start-up replay.
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from gateway.contracts import decode_event, decode_tx
from gateway.errors import EdgesealError
from gateway.ingest import Event as IngestEvent
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_PARTICIPANT_TX
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


class LogIndex:
    """Transaction hashes, contract events and the device snapshot, kept in step with the log."""

    def __init__(self) -> None:
        """Start empty; the sequencer's replay fills it."""
        self.counters = Counters()
        self.tx_index: dict[str, int] = {}  # tx hash -> log index of accepted transactions
        self.caused: dict[int, list[int]] = {}  # tx index -> its event indexes
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=MAX_RECENT_CONTRACT_EVENTS)
        self.devices: dict[bytes, Device] = {}
        self.last_ingest_event = 0

    def observe(self, index: int, entry: bytes) -> None:
        """Index one log entry (accepted tx hashes, contract events); other kinds are skipped."""
        kind = entry[0] if entry else -1
        if kind == KIND_PARTICIPANT_TX:
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

    def set_devices(self, devices: list[Device], new_events: list[IngestEvent]) -> None:
        """Replace the device snapshot and count the ingest events that are new since the last
        call (new_events: ingest events with id > last_ingest_event, oldest first)."""
        self.devices = {d.device_id: d for d in devices}
        for ev in new_events:
            self.counters.ingest_events[ev.kind] += 1
            self.last_ingest_event = ev.id
