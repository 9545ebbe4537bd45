"""The read model: typed queries over the log, the contract state and the indexes, for the API.

Every query reads a consistent snapshot: the ledger (its own lock), the contract state the
sequencer last published, and the LogIndex the writer thread keeps in step. Nothing here writes.
Queries raise the typed errors of gateway.errors (NotFound, ProofError, WrongContractType),
which the API maps to their HTTP status.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import bundle as bundles
from gateway.contracts import state_hash
from gateway.contracts.engine import State
from gateway.errors import NotFound, NotIntegrated, ProofError, RequestError, WrongContractType
from gateway.ingest import Event as IngestEvent
from gateway.ledger import Ledger, merkle
from gateway.ledger.entries import KIND_NAMES
from gateway.ledger.note import parse_checkpoint, parse_note
from gateway.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, node_location
from gateway.node.index import LogIndex
from gateway.node.sequencer import Sequencer
from gateway.registry import Device

if TYPE_CHECKING:
    from gateway.anchor.service import AnchorService
    from gateway.publish.witness import WitnessedCheckpoint, WitnessPublisher

# why: an index or size beyond 2^62 cannot exist in a SQLite-backed log (int64 rowids), and a
# bound keeps hostile query numbers from reaching SQLite at all.
MAX_INDEX = 2**62
# The ledger stores a tile's nodes in post-order (gateway.ledger.tiles); a C2SP tlog-tiles tile
# is the bottom row, node (8L, N*256 + i), which sits at the same byte offset in every tile.
_BOTTOM_ROW_OFFSETS = tuple(node_location(0, i)[2] for i in range(TILE_WIDTH))
# why: the anchoring status is public (GET /v1/gateway); an RPC provider's URL often carries an
# API key in its path, query or user info, and requests' errors quote the URL and its path; an
# MQTT broker URL (mqtt://user:password@host) its password. Any scheme is cut the same way.
MAX_ERROR_CHARS = 300
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^@/\s'\"]+@)?([^/\s'\"]+)[^\s'\"]*")
_URL_PATH = re.compile(r"(with url: )\S+")


def redact_urls(text: str) -> str:
    """Return text cut to MAX_ERROR_CHARS with every URL reduced to its scheme and host."""
    text = _URL_PATH.sub(r"\1<path>", _URL.sub(r"\1\2/<path>", text))
    return text[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class LogSizes:
    """The log's sizes: integrated (tree_size), durably sequenced, and awaiting integration."""

    tree_size: int
    sequenced_size: int
    pending: int


@dataclass(frozen=True)
class EntryView:
    """One log entry: its exact bytes, RFC 9162 leaf hash and a decoded view."""

    index: int
    entry: bytes
    integrated: bool

    def to_json(self) -> dict[str, Any]:
        """Return the API's entry object (docs/api.md, GET /v1/entries/{index})."""
        return {
            "index": self.index,
            "kind": KIND_NAMES.get(self.entry[0], "unknown"),
            "base64": bundles.b64(self.entry),
            "leaf_hash": bundles.b64(merkle.leaf_hash(self.entry)),
            "integrated": self.integrated,
            "decoded": bundles.decode_view(self.entry),
        }


@dataclass(frozen=True)
class EntryPage:
    """Entries [since, next) of the sequenced log, optionally filtered by kind."""

    entries: list[EntryView]
    next: int
    sequenced_size: int


@dataclass(frozen=True)
class TxLocation:
    """Where an accepted transaction went: its log index and the indexes of its events."""

    tx_hash: str
    index: int
    events: list[int]
    integrated: bool


def _stored_tile(led: Ledger, level: int, index: int) -> bytes | None:
    """Return the ledger's stored (post-order) tile (level, index), or None."""
    return led.stored_tile(level, index)


class ReadModel:
    """Typed queries for the API over one sequencer's log and index (module doc)."""

    def __init__(
        self, sequencer: Sequencer, index: LogIndex, witnesses: WitnessPublisher | None = None
    ) -> None:
        """Read through sequencer (ledger, state) and index (transactions, events, devices);
        witnesses: the witness client (gateway.publish.witness), None without a witness policy."""
        self._seq = sequencer
        self._index = index
        self.witnesses = witnesses
        self._hashed_state: State | None = None  # the state whose hash is cached (state_hash_hex)
        self._hashed_hex = ""
        # the anchor section of a bundle (gateway.bundle.AnchorFor); the node sets it when it
        # anchors its checkpoints (gateway/node/lifecycle.py); None: bundles carry no anchor
        self.anchor_for: bundles.AnchorFor | None = None
        self.anchoring: AnchorService | None = None  # set with anchor_for
        self._anchor_sizes: tuple[tuple[tuple[str, int], ...], int, int] | None = None

    # ---- the log ---------------------------------------------------------------------------

    def ledger(self) -> Ledger:
        """Return the open ledger; raise ServiceUnavailable once it is closed."""
        return self._seq.open_ledger()

    def sizes(self) -> LogSizes | None:
        """Return the log's sizes, or None once the ledger is closed."""
        led = self._seq.ledger
        if led is None:
            return None
        return LogSizes(led.tree_size, led.sequenced_size, led.pending)

    def checkpoint(self, size: int | None = None) -> str:
        """Return the latest signed checkpoint note, or the stored one of tree size `size`.

        Raises NotFound if no checkpoint of that size was signed.
        """
        led = self.ledger()
        if size is None:
            return led.checkpoint().decode("utf-8")
        try:
            return led.checkpoint_at(size).decode("utf-8")
        except ProofError:
            raise NotFound("not-found", f"no checkpoint at size {size}") from None

    def newest_cosigned_checkpoint(self) -> WitnessedCheckpoint:
        """Return the newest signed checkpoint with every cosignature collected for it so far.

        Its note is a C2SP signed note: the gateway's signature line, then the witnesses'
        cosignature/v1 lines (policy order); `quorum` is the policy's verdict on it (None and no
        cosignature lines without a witness policy).
        """
        if self.witnesses is not None:
            return self.witnesses.newest()
        from gateway.publish.witness import WitnessedCheckpoint

        note = self.ledger().checkpoint()
        size = parse_checkpoint(parse_note(note)[0]).size
        return WitnessedCheckpoint(size, note, None)

    def newest_quorum_checkpoint(self) -> WitnessedCheckpoint | None:
        """Return the newest checkpoint whose collected cosignatures satisfy the witness policy's
        quorum (None if none does yet); without a policy, the newest signed checkpoint."""
        if self.witnesses is not None:
            return self.witnesses.newest_with_quorum()
        return self.newest_cosigned_checkpoint()

    def anchor_status(self) -> dict[str, Any] | None:
        """Return the anchoring status (docs/anchoring.md, Status), None without anchoring:
        chain id, contract, whether the chain node answered the last round, the consecutive
        failures and the last error, reorgs seen, the outbox rows per state, and the newest
        anchored size (any state but superseded) and newest final size (0 if none)."""
        svc = self.anchoring
        if svc is None:
            return None
        counts = svc.outbox.counts()
        key = tuple(sorted(counts.items()))
        cached = self._anchor_sizes
        if cached is None or cached[0] != key:  # sizes change only when the counts do
            rows = svc.outbox.anchors(self.ledger().origin)
            live = [a.head.size for a in rows if a.state != "superseded"]
            final = [a.head.size for a in rows if a.state == "final"]
            cached = (key, max(live, default=0), max(final, default=0))
            self._anchor_sizes = cached
        s = svc.status
        return {
            "chain_id": svc.outbox.chain_id,
            "contract": svc.chain.address,
            "node_up": s.node_up,
            "failures": s.failures,
            "last_error": redact_urls(s.last_error),
            "reorgs": s.reorgs,
            "anchors": counts,
            "newest_size": cached[1],
            "final_size": cached[2],
        }

    def entries(self, since: int, limit: int, kind: str | None = None) -> EntryPage:
        """Return the page of entries [since, since + limit), keeping only `kind` if given.

        Raises RequestError("bad-request") for an unknown kind name.
        """
        if kind is not None and kind not in KIND_NAMES.values():
            raise RequestError("bad-request", f"kind must be one of {sorted(KIND_NAMES.values())}")
        led = self.ledger()
        end = min(led.sequenced_size, since + limit)
        tree_size = led.tree_size
        out = [
            EntryView(i, e, i < tree_size)
            for i, e in led.entries(since, end)
            if kind is None or KIND_NAMES.get(e[0]) == kind
        ]
        return EntryPage(out, max(since, end), led.sequenced_size)

    def entry(self, index: int) -> EntryView:
        """Return the entry at index; raise NotFound if the log is not that long."""
        led = self.ledger()
        if index >= led.sequenced_size:
            raise NotFound("not-found", f"no entry at index {index}")
        return EntryView(index, led.entry(index), index < led.tree_size)

    def prove_inclusion(self, index: int, size: int | None) -> dict[str, Any]:
        """Return the RFC 9162 2.1.3 inclusion proof of entry index in the tree of `size`
        (default: the current tree); raise ProofError("bad-range") unless index < size <= tree."""
        led = self.ledger()
        n = led.tree_size if size is None else size
        if index >= n or n > led.tree_size:
            raise ProofError(
                "bad-range", f"need index < size <= tree size {led.tree_size}, got {index}, {n}"
            )
        return {
            "index": index,
            "size": n,
            "leaf_hash": bundles.b64(merkle.leaf_hash(led.entry(index))),
            "hashes": [bundles.b64(h) for h in led.prove_inclusion(index, n)],
        }

    def prove_consistency(self, old: int, new: int | None) -> dict[str, Any]:
        """Return the RFC 9162 2.1.4 consistency proof between tree sizes old and new (default:
        the current tree); raise ProofError("bad-range") unless old <= new <= tree."""
        led = self.ledger()
        n = led.tree_size if new is None else new
        if old > n or n > led.tree_size:
            raise ProofError(
                "bad-range", f"need old <= new <= tree size {led.tree_size}, got {old}, {n}"
            )
        return {
            "old": old,
            "new": n,
            "hashes": [bundles.b64(h) for h in led.prove_consistency(old, n)],
        }

    def tile(self, level: int, index: int, width: int | None) -> bytes:
        """Return C2SP tlog-tiles tile (level, index): the hashes of nodes (8 * level,
        index * 256 + i) for i < width (256 when width is None), 32 bytes each (RFC 9162 2.1.1).

        Served when the integrated tree completes all of them, so every partial tile of every
        signed tree size up to the current one. Raises NotFound otherwise (a tile beyond the tree).
        """
        led = self.ledger()
        count = TILE_WIDTH if width is None else width
        if (index * TILE_WIDTH + count) << (TILE_HEIGHT * level) > led.tree_size:
            raise NotFound("not-found", "the tree holds no such tile")
        blob = _stored_tile(led, level, index)
        if blob is None or len(blob) <= _BOTTOM_ROW_OFFSETS[count - 1]:
            raise NotFound("not-found", f"tile ({level}, {index}) is not stored")
        return b"".join(blob[o : o + merkle.HASH_SIZE] for o in _BOTTOM_ROW_OFFSETS[:count])

    def entry_bundle(self, index: int, width: int | None) -> bytes:
        """Return C2SP tlog-tiles entry bundle `index`: entries index * 256 + i for i < width
        (256 when None), each as a big-endian uint16 length and its bytes.

        Only integrated entries (covered by a signed checkpoint); raises NotFound otherwise.
        """
        led = self.ledger()
        start = index * TILE_WIDTH
        end = start + (TILE_WIDTH if width is None else width)
        if end > led.tree_size:
            raise NotFound("not-found", "the tree holds no such entry bundle")
        return b"".join(len(e).to_bytes(2, "big") + e for _, e in led.entries(start, end))

    async def bundle(self, index: int) -> dict[str, Any]:
        """Return the offline proof bundle of entry index (gateway.bundle) as a value.

        Raises NotFound for an index past the log, NotIntegrated if no checkpoint covers it yet.
        Format 4 (with its anchor section) once a final on-chain anchor covers the entry.
        Reads the entries the bundle carries and the RFC 9162 2.1.3 proof: O(log n) with the
        LogIndex's device records (never a scan of the log); runs in a thread (SQLite reads).
        """
        led = self.ledger()
        if index >= led.sequenced_size:
            raise NotFound("not-found", f"no entry at index {index}")
        if self.witnesses is None:
            return await asyncio.to_thread(
                bundles.build_bundle, led, index, self._device_lookup, None, self._index,
                self.anchor_for,
            )  # fmt: skip
        # against the newest checkpoint that has the witness quorum (format 3 if it has
        # cosignatures: gateway.bundle)
        best = self.witnesses.newest_with_quorum()
        if best is None or index >= best.size:
            raise NotIntegrated(
                "not-integrated", f"entry {index} is not covered by a witnessed checkpoint yet"
            )
        return await asyncio.to_thread(
            bundles.build_bundle, led, index, self._device_lookup, best.note, self._index,
            self.anchor_for,
        )  # fmt: skip

    async def bundle_bytes(self, index: int) -> bytes:
        """Return the canonical bytes of the bundle of entry index (what the API serves and
        `edgeseal verify-bundle` checks: gateway.bundle.encode_bundle); raises as bundle()."""
        return bundles.encode_bundle(await self.bundle(index))

    def _device_lookup(self, device_id: bytes) -> tuple[bytes, int] | None:
        dev = self._index.devices.get(device_id)
        return None if dev is None else (dev.first_key, dev.enrolled_index)

    # ---- devices and ingest events -----------------------------------------------------------

    def devices(self) -> list[Device]:
        """Return every enrolled device (snapshot), by enrollment."""
        return sorted(self._index.devices.values(), key=lambda d: d.enrolled_index)

    def device(self, device_id: bytes) -> Device:
        """Return the device with this id; raise NotFound if it is not enrolled."""
        dev = self._index.devices.get(device_id)
        if dev is None:
            raise NotFound("not-found", f"device {device_id.hex()} is not enrolled")
        return dev

    def find_device(self, device_id: bytes) -> Device | None:
        """Return the device with this id, or None."""
        return self._index.devices.get(device_id)

    async def ingest_events(
        self, since_id: int, limit: int, alarms_only: bool = False
    ) -> list[IngestEvent]:
        """Return ingest events with id > since_id (read on the writer thread, which owns the
        derived-state database)."""
        events = await self._seq.write(self._seq.ingest.events, since_id, limit)
        return [e for e in events if e.alarm] if alarms_only else events

    # ---- transactions and contracts ------------------------------------------------------------

    @property
    def state(self) -> State:
        """Return the contract state after every sequenced entry (do not mutate)."""
        return self._seq.state

    def state_hash_hex(self) -> str:
        """Return the hex state hash of the current state (the checkpoints' extension line).

        Hashing the canonical state costs ~10 ms at a few thousand entries, and /v1/gateway is
        polled by every dashboard; the writer replaces the state object on every change and
        never mutates it, so the hash is cached for as long as the same object is current.
        """
        state = self.state
        if self._hashed_state is not state:
            self._hashed_hex = state_hash(state).hex()
            self._hashed_state = state
        return self._hashed_hex

    def tx_location(self, tx_hash: str) -> TxLocation:
        """Return where an accepted transaction went; raise NotFound if none has this hash."""
        index = self._index.tx_index.get(tx_hash)
        if index is None:
            raise NotFound("not-found", f"no accepted transaction {tx_hash}")
        integrated = index < self.ledger().tree_size
        return TxLocation(tx_hash, index, list(self._index.caused.get(index, [])), integrated)

    def participants(self) -> dict[str, Any]:
        """Return the registered participants: public key hex -> {name, roles}."""
        return self.state["participants"]

    def contracts(self) -> list[dict[str, Any]]:
        """Return every contract instance summarised (id, type, owner, clock, devices), by id."""
        return [
            {
                "id": cid,
                "type": inst["type"],
                "owner": inst["owner"],
                "clock_s": inst["clock_s"],
                "devices": inst["devices"],
                "created_at": inst["created_at"],
            }
            for cid, inst in sorted(self.state["contracts"].items())
        ]

    def contract(self, cid: str, typ: str | None = None) -> dict[str, Any]:
        """Return contract instance cid (type, owner, params, data, ...).

        Raises NotFound if there is none, WrongContractType if typ is given and differs.
        """
        inst = self.state["contracts"].get(cid)
        if inst is None:
            raise NotFound("not-found", f"no contract {cid!r}")
        if typ is not None and inst["type"] != typ:
            raise WrongContractType(
                "wrong-contract-type", f"contract {cid!r} is a {inst['type']}, not {typ}"
            )
        return inst

    def contract_events(
        self,
        contract: str | None = None,
        types: frozenset[str] | None = None,
        since: int = -1,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return recent contract events with index > since, oldest first, filtered by
        contract id and event types."""
        out = []
        for ev in list(self._index.recent_events):
            if ev["index"] <= since:
                continue
            if contract is not None and ev["contract"] != contract:
                continue
            if types is not None and ev["type"] not in types:
                continue
            out.append(ev)
            if len(out) >= limit:
                break
        return out
