"""The replica's replay: the gateway's contract engine, its read indexes and device registry,
fed the verified log in index order.

`Replay.feed(index, entry)` does what the gateway's start-up replay does (gateway.node.sequencer
`_replay`: Engine.audit with LogIndex.observe), incrementally: the engine applies every entry
that is not a contract event; every contract event in the log must be, in order, the next event
the engine emitted (else ContractError("event-mismatch"): the gateway logged events its own
contracts do not produce). The device registry (gateway.registry, in memory, fed the
enrollments) gives the read model its devices and their first keys. `state_line()` is what the
checkpoint's extension line must say.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque

from gateway import wire
from gateway.contracts import Engine, extension_line
from gateway.contracts.engine import State
from gateway.errors import ContractError, EdgesealError
from gateway.ledger import Ledger
from gateway.ledger.entries import (
    KIND_CONTRACT_EVENT,
    KIND_DEVICE_ENROLLMENT,
    decode_entry,
)
from gateway.node.index import LogIndex
from gateway.registry import DeviceRegistry

_EVENT = bytes((KIND_CONTRACT_EVENT,))
# why: the replica's read model needs the registry for its devices' first keys and enrollment
# indexes (proof bundles); the registry's chain heads come from the records, which the engine
# and the LogIndex already decode: a third decode per record would cost half again as much
# decoding (profiled: decoding is most of the replay of device records).
_REGISTRY_KINDS = (bytes((KIND_DEVICE_ENROLLMENT,)),)
log = logging.getLogger("edgeseal.replica")


class Replay:
    """Contract state, pending events, read indexes and registry after entries [0, size)."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        """engine: the contracts to replay with; ledger: the replica's read view (the registry
        keeps a reference to it and only reads)."""
        self.engine = engine
        self.state: State = engine.initial_state()
        self.pending: deque[bytes] = deque()  # emitted events not yet seen in the log
        self.size = 0
        self.index = LogIndex()
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.registry = DeviceRegistry(self._conn, ledger)

    def feed(self, start: int, entries: list[bytes]) -> None:
        """Apply entries [start, start + len) in order; raise ContractError("event-mismatch")
        as Engine.audit does. Precondition: start == size."""
        if start != self.size:
            raise ValueError(f"replay is at {self.size}, not {start}")
        engine, index, pending = self.engine, self.index, self.pending
        state = self.state
        rows: list[tuple[int, int, bytes, wire.Record | None]] = []
        try:
            for i, entry in enumerate(entries, start):
                index.observe(i, entry)
                self.size = i + 1
                if entry[:1] == _EVENT:
                    if not pending:
                        raise ContractError("event-mismatch", f"entry {i}: event nobody emitted")
                    if entry != pending.popleft():
                        raise ContractError("event-mismatch", f"entry {i}: not the expected event")
                    continue
                state, events = engine.apply(state, i, entry)
                pending.extend(events)
                if entry[:1] in _REGISTRY_KINDS:
                    rows.append(_registry_row(i, entry))
        finally:
            self.state = state
            self._apply_registry([r for r in rows if r[1] != -1])

    def _apply_registry(self, rows: list[tuple[int, int, bytes, wire.Record | None]]) -> None:
        """Apply registry rows in one transaction; if one is refused (an enrollment the gateway's
        ingest would not have logged), apply them one by one and skip the refused ones."""
        if not rows:
            return
        try:
            self._registry_batch(rows)
        except EdgesealError:
            for row in rows:
                try:
                    self._registry_batch([row])
                except EdgesealError as exc:
                    log.warning("entry %d is not a valid registry change: %s", row[0], exc)
        self.index.set_devices(self.registry.all(), [])

    def _registry_batch(self, rows: list[tuple[int, int, bytes, wire.Record | None]]) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        try:
            self.registry.apply(rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def state_line(self) -> str:
        """Return the checkpoint extension line of the current state ("edgeseal-state <hex>")."""
        return extension_line(self.state)

    def close(self) -> None:
        """Release the in-memory registry."""
        self._conn.close()


def _registry_row(index: int, entry: bytes) -> tuple[int, int, bytes, wire.Record | None]:
    """Return the registry's row for an enrollment entry: (index, kind, payload, None); kind -1
    if it does not decode (the engine rejected it too)."""
    try:
        kind, payload = decode_entry(entry)
    except EdgesealError:
        return index, -1, b"", None
    return index, kind, payload, None
