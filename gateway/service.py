"""The service layer: owns the Ledger, Ingest and the contract Engine and keeps them in step.

One writer thread does every mutation, in order, so the fsyncs stay off the event loop and the
contract state is always the replay of an exact log prefix:

- BLE deliveries (the link calls `deliver`, the Collector protocol) go into a queue; the
  group-commit loop drains whatever has arrived and hands it to `Ingest.deliver_many`: one durable
  commit for all boards connected at the time. The link acks after that commit.
- After every commit the new log entries are fed to the Engine in index order and the contract
  events it returns are appended (one more commit); events never change the state.
- Integration follows the ledger's batch policy; the checkpoint's extension line is the state hash
  of exactly the prefix being integrated (`_extension_lines`, given to Ledger.open).
- A participant transaction is decoded and verified, dry-run on the current state (a rejection
  is answered with its typed error and nothing is appended), then appended together with its
  events in one commit.
- `stop()` finishes the batch in flight, feeds the engine, integrates and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import secrets
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import Settings
from gateway.contracts import Engine, decode_event, decode_tx, extension_line, rejection, state_hash
from gateway.contracts.engine import State
from gateway.contracts.tx import Tx
from gateway.errors import ContractError, EdgesealError
from gateway.ingest import Event as IngestEvent
from gateway.ingest import Ingest
from gateway.ledger import Ledger, load_or_create_signer
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_PARTICIPANT_TX
from gateway.registry import Device
from gateway.systemd import Notifier

log = logging.getLogger("edgeseal.service")

T = TypeVar("T")

# why: a sender's clock may drift, but a transaction dated far from now could be replayed later
# (a rejected one leaves its nonce unused, docs/contracts.md); 5 min is well inside TX_MAX_AGE_S.
TX_MAX_SKEW_S = 300
# why: one group commit holds at most this many uploads; at 5 connections (link MAX_CONNECTIONS)
# it is never reached in practice, it only bounds a burst's memory.
MAX_GROUP_UPLOADS = 64
# why: the API lists recent contract events from memory; older ones stay in the log (bounded
# memory on a Pi with a long log).
MAX_RECENT_CONTRACT_EVENTS = 50_000
# why: the ledger integrates at the latest batch_interval_ms after an append; checking four times
# per interval keeps the checkpoint latency within 1.25x the interval.
TICKS_PER_BATCH_INTERVAL = 4
# why: systemd's watchdog is pinged only if the writer thread answers within this bound.
WRITER_PING_TIMEOUT_S = 5.0
TOKEN_FILE_MODE = 0o600
TOKEN_BYTES = 32  # 256-bit operator token
FLEET_PROFILES = (
    "cold-chain-logger",
    "pond-monitor",
    "collateral-tracker",
    "energy-meter",
    "parking-bay",
)


class ServiceUnavailable(EdgesealError):
    """The service is starting or stopping and cannot take writes."""

    kind = "Unavailable"


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


@dataclass(frozen=True)
class Admitted:
    """An accepted transaction: its log index, hash and the events appended with it."""

    index: int
    tx_hash: str
    events: list[dict[str, Any]]


@dataclass
class BleStatus:
    """What the BLE link is doing: mode bluez/virtual/off, status running/unavailable/stopped."""

    mode: str = "off"
    status: str = "stopped"
    detail: str = ""


def load_or_create_token(path: Path) -> str:
    """Return the operator token stored at path, creating it (mode 0600) on first use.

    Raises PermissionError if the file is readable by group or others.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} has mode {mode:o}; it must be 0600")
        return path.read_text().strip()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _checkout_on_path() -> bool:
    """Put the source checkout holding firmware/ on sys.path; return False if there is none."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "firmware").is_dir():
        return False
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return True


def scenario_tasks() -> list[Callable[[Service], Awaitable[Any]]]:
    """Return [run gateway.scenarios] if that module exists (demo scenarios), else []."""
    if importlib.util.find_spec("gateway.scenarios") is None:
        return []

    async def run_scenarios(service: Service) -> None:
        # imported when it runs: it may need the source checkout the virtual fleet put on sys.path
        _checkout_on_path()
        module = importlib.import_module("gateway.scenarios")
        await module.run(service, service.fleet)

    return [run_scenarios]


class Service:
    """The gateway: ledger, ingest, contracts, BLE link and the background loops (module doc)."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        """Open (or create) everything under settings.data_dir and replay the log.

        Synchronous and blocking; raises ContractError("event-mismatch") if the log's contract
        events are not what the engine computes (the log was written by other contract code).
        """
        self.settings = settings
        self.engine = engine or Engine()
        self.started_at = time.monotonic()
        self.counters = Counters()
        self.ble = BleStatus()
        self.fleet: Any = None  # gateway.ble.virtual_fleet.VirtualFleet with --virtual-fleet
        self.link: Any = None  # gateway.ble.link.BleLink once started
        self.phase = "starting"
        self.notifier = Notifier()
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.operator_token = settings.operator_token or load_or_create_token(settings.token_path)
        signer = load_or_create_signer(str(settings.key_path), settings.origin)
        self._state: State | None = None
        self._applied = 0  # the engine state covers log entries [0, _applied)
        self.ledger: Ledger | None = None
        self.ledger = Ledger.open(
            str(settings.ledger_path),
            signer,
            settings.origin,
            max_batch_entries=settings.max_batch_entries,
            batch_interval_ms=settings.batch_interval_ms,
            extension_lines=self._extension_lines,
        )
        self.ingest = Ingest(self.ledger, str(settings.state_path))
        self._tx_index: dict[str, int] = {}  # tx hash -> log index of accepted transactions
        self._caused: dict[int, list[int]] = {}  # tx index -> its event indexes
        self._recent_events: deque[dict[str, Any]] = deque(maxlen=MAX_RECENT_CONTRACT_EVENTS)
        self._replay()
        self._devices: dict[bytes, Device] = {}
        self._last_ingest_event = 0
        self._refresh_devices()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="edgeseal-writer")
        self._queue: asyncio.Queue[tuple[bytes, list[bytes], asyncio.Future[int | None]] | None] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._closed = False

    # ---- start-up replay -----------------------------------------------------------------

    def _replay(self) -> None:
        """Replay the whole log into the engine; append events a crash left out; index."""
        led = self._ledger()

        def observed() -> Any:
            for index, entry in led.entries():
                self._observe(index, entry)
                yield index, entry

        state, pending = self.engine.audit(observed())
        self._state, self._applied = state, led.sequenced_size
        if pending:
            log.warning("appending %d contract events a crash left out", len(pending))
            self._append_events(pending)

    def _observe(self, index: int, entry: bytes) -> None:
        """Index one log entry for the API (accepted tx hashes, recent contract events)."""
        kind = entry[0] if entry else -1
        if kind == KIND_PARTICIPANT_TX:
            with contextlib.suppress(EdgesealError):
                tx = decode_tx(entry[1:])
                self._tx_index.setdefault(tx.tx_hash, index)
        elif kind == KIND_CONTRACT_EVENT:
            with contextlib.suppress(EdgesealError):
                ev = decode_event(entry)
                ev["index"] = index
                self._recent_events.append(ev)
                self.counters.contract_events[str(ev["type"])] += 1
                for cause in ev["causes"]:
                    self._caused.setdefault(int(cause), []).append(index)

    def _ledger(self) -> Ledger:
        assert self.ledger is not None, "ledger not open"
        return self.ledger

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
            path = str(self.settings.ledger_path)
            with Ledger.open_readonly(path) as ro:
                return [extension_line(self.engine.replay(ro.entries(0, size)))]
        if self._state is None or size < self._applied:
            return [extension_line(self.engine.replay(led.entries(0, size)))]
        return [extension_line(self.engine.replay(led.entries(self._applied, size), self._state))]

    def _append_events(self, events: list[bytes]) -> list[int]:
        """Append contract event entries; index them; return their indexes."""
        led = self._ledger()
        indexes = led.append([(e[0], e[1:]) for e in events])
        for index, entry in zip(indexes, events, strict=True):
            self._observe(index, entry)
        self._applied = led.sequenced_size  # events are skipped by the engine
        return indexes

    def _feed_engine(self) -> int:
        """Apply every sequenced entry the engine has not seen; append their events; return
        how many events were appended."""
        led = self._ledger()
        end = led.sequenced_size
        if self._applied >= end:
            return 0
        assert self._state is not None
        state = self._state
        events: list[bytes] = []
        for index, entry in led.entries(self._applied, end):
            state, out = self.engine.apply(state, index, entry)
            self._observe(index, entry)
            events.extend(out)
        self._state, self._applied = state, end
        if events:
            self._append_events(events)
        return len(events)

    def _integrate_if_due(self, force: bool = False) -> bytes | None:
        """Feed the engine, then integrate if the batch policy says so (or force); return the
        new checkpoint note or None."""
        self._feed_engine()
        led = self._ledger()
        if not led.pending or not (force or led.due()):
            return None
        note = led.integrate()
        self.counters.checkpoints += 1
        return note

    def _refresh_devices(self) -> None:
        """Snapshot the registry for the link's lookups and the API (writer thread)."""
        self._devices = {d.device_id: d for d in self.ingest.registry.all()}
        for ev in self.ingest.events(self._last_ingest_event, limit=100_000):
            self.counters.ingest_events[ev.kind] += 1
            self._last_ingest_event = ev.id

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the writer thread; return its result (exceptions propagate)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, fn, *args)

    # ---- the Collector protocol (gateway.ble.link) ----------------------------------------

    def device_for_prefix(self, id_prefix: bytes) -> bytes | None:
        """Return the active enrolled device id starting with id_prefix, or None."""
        for device_id, dev in self._devices.items():
            if dev.active and device_id.startswith(id_prefix):
                return device_id
        return None

    def last_committed_seq(self, device_id: bytes) -> int | None:
        """Return the device's highest committed seq (None before its first record)."""
        dev = self._devices.get(device_id)
        return None if dev is None else dev.last_seq

    async def deliver(self, device_id: bytes, records: list[bytes]) -> int | None:
        """Queue one upload for the next group commit; return the seq to ack after it."""
        if self.phase == "stopped":
            raise ServiceUnavailable("unavailable", "the service has stopped")
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((device_id, list(records), fut))
        return await fut

    async def _commit_loop(self) -> None:
        """Drain the delivery queue into group commits until the None sentinel arrives."""
        done = False
        while not done:
            item = await self._queue.get()
            batch: list[tuple[bytes, list[bytes], asyncio.Future[int | None]]] = []
            if item is None:
                done = True
            else:
                batch.append(item)
            while not self._queue.empty() and len(batch) < MAX_GROUP_UPLOADS:
                nxt = self._queue.get_nowait()
                if nxt is None:
                    done = True
                else:
                    batch.append(nxt)
            if batch:
                await self._group_commit(batch)

    async def _group_commit(
        self, batch: list[tuple[bytes, list[bytes], asyncio.Future[int | None]]]
    ) -> None:
        uploads = [(dev, recs) for dev, recs, _ in batch]
        try:
            results = await self._write(self._deliver_sync, uploads)
        except Exception as exc:  # a storage failure: no ack, the boards keep their records
            log.exception("group commit of %d uploads failed", len(batch))
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        c = self.counters
        c.group_commits += 1
        for (_, _, fut), res in zip(batch, results, strict=True):
            c.uploads += 1
            c.records_committed += res.committed
            c.duplicates += res.duplicates
            c.rejected_records += res.rejected
            if not fut.done():
                fut.set_result(res.ack_seq)
        await self._write(self._after_commit)

    def _deliver_sync(self, uploads: list[tuple[bytes, list[bytes]]]) -> list[Any]:
        """Group-commit uploads (Ingest.deliver_many); refresh the registry snapshot so the
        link's next SEND_FROM starts after what was just committed; return the results."""
        results = self.ingest.deliver_many(uploads)
        self._refresh_devices()
        return results

    def _after_commit(self) -> None:
        self._integrate_if_due()

    async def _tick_loop(self) -> None:
        """Integrate on the ledger's batch policy."""
        interval_s = max(self.settings.batch_interval_ms / 1000 / TICKS_PER_BATCH_INTERVAL, 0.01)
        led = self._ledger()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)
            if led.pending and led.due():
                try:
                    await self._write(self._integrate_if_due)
                except Exception:
                    log.exception("integration failed; retrying at the next tick")

    async def _watchdog_loop(self, interval_s: float) -> None:
        """Ping systemd's watchdog while the event loop and the writer thread both answer."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._write(lambda: None), WRITER_PING_TIMEOUT_S)
                self.notifier.watchdog()
            except TimeoutError:
                log.warning("writer thread busy for over %.0f s", WRITER_PING_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)

    # ---- admin and participant writes ------------------------------------------------------

    def _require_running(self) -> None:
        if self.phase != "running":
            raise ServiceUnavailable("unavailable", f"the service is {self.phase}")

    async def enroll(self, public_key: bytes, metadata: dict[str, Any] | None = None) -> int:
        """Enroll a device key; return the enrollment's log index. Raises the Ingest errors."""
        self._require_running()
        return await self._write(self._enroll_sync, public_key, metadata)

    def _enroll_sync(self, public_key: bytes, metadata: dict[str, Any] | None) -> int:
        index = self.ingest.enroll(public_key, metadata)
        self._refresh_devices()
        self._feed_engine()
        return index

    async def revoke(self, device_id: bytes, reason: str) -> int:
        """Revoke a device; return the revocation's log index. Raises WireError."""
        self._require_running()

        def job() -> int:
            index = self.ingest.revoke(device_id, reason)
            self._refresh_devices()
            self._feed_engine()
            return index

        return await self._write(job)

    def check_tx(self, payload: bytes, now_s: float | None = None) -> Tx:
        """Return the decoded, signature-checked transaction; raise ContractError.

        Besides decode_tx's codes: "tx-clock-skew" if time_s is over TX_MAX_SKEW_S from now.
        """
        tx = decode_tx(payload)
        now = time.time() if now_s is None else now_s
        if abs(tx.time_s - now) > TX_MAX_SKEW_S:
            raise ContractError(
                "tx-clock-skew", f"time_s {tx.time_s} is over {TX_MAX_SKEW_S} s from gateway time"
            )
        return tx

    async def submit_tx(self, payload: bytes, now_s: float | None = None) -> Admitted:
        """Admit a participant transaction; return where it went. Raises ContractError with
        the rejection's code (nothing appended) or ServiceUnavailable."""
        self._require_running()
        tx = self.check_tx(payload, now_s)
        try:
            admitted = await self._write(self._admit, tx, payload)
        except ContractError:
            self.counters.tx_rejected += 1
            raise
        self.counters.tx_accepted += 1
        return admitted

    def _admit(self, tx: Tx, payload: bytes) -> Admitted:
        """Dry-run then append tx and its events in one commit (writer thread)."""
        self._feed_engine()
        led = self._ledger()
        index = led.sequenced_size
        entry = bytes((KIND_PARTICIPANT_TX,)) + payload
        assert self._state is not None
        state, events = self.engine.apply(self._state, index, entry)
        refused = rejection(events)
        if refused is not None:
            raise ContractError(str(refused["code"]), str(refused["message"]))
        indexes = led.append([(KIND_PARTICIPANT_TX, payload)] + [(e[0], e[1:]) for e in events])
        assert indexes[0] == index, "the log moved under the writer thread"
        self._state = state
        self._tx_index.setdefault(tx.tx_hash, index)
        for i, e in zip(indexes[1:], events, strict=True):
            self._observe(i, e)
        self._applied = led.sequenced_size
        self._integrate_if_due()
        decoded = [
            {**decode_event(e), "index": i} for i, e in zip(indexes[1:], events, strict=True)
        ]
        return Admitted(index, tx.tx_hash, decoded)

    # ---- reads (any thread) ----------------------------------------------------------------

    @property
    def state(self) -> State:
        """Return the contract state after every sequenced entry (do not mutate)."""
        assert self._state is not None
        return self._state

    def state_hash_hex(self) -> str:
        """Return the hex state hash of the current state."""
        return state_hash(self.state).hex()

    def devices(self) -> list[Device]:
        """Return every enrolled device (snapshot), by enrollment."""
        return sorted(self._devices.values(), key=lambda d: d.enrolled_index)

    def device(self, device_id: bytes) -> Device | None:
        """Return the device with this id, or None."""
        return self._devices.get(device_id)

    def tx_location(self, tx_hash: str) -> tuple[int, list[int]] | None:
        """Return (log index, event indexes) of an accepted transaction, or None."""
        index = self._tx_index.get(tx_hash)
        if index is None:
            return None
        return index, list(self._caused.get(index, []))

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
        for ev in list(self._recent_events):
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

    async def ingest_events(
        self, since_id: int, limit: int, alarms_only: bool = False
    ) -> list[IngestEvent]:
        """Return ingest events with id > since_id (read on the writer thread)."""
        events = await self._write(self.ingest.events, since_id, limit)
        return [e for e in events if e.alarm] if alarms_only else events

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, extra_tasks: Sequence[Callable[[Service], Awaitable[Any]]] = ()) -> None:
        """Start the loops, the fleet and the BLE link, then each extra task (e.g. scenarios).

        Precondition: called once, on the event loop that will run the service.
        """
        self._tasks.append(asyncio.create_task(self._commit_loop(), name="group-commit"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="integrate"))
        if self.settings.virtual_fleet:
            await self._start_fleet()
        if self.settings.ble or self.settings.virtual_fleet:
            self._tasks.append(asyncio.create_task(self._run_link(), name="ble-link"))
        self.phase = "running"
        for make in extra_tasks:
            self._tasks.append(asyncio.create_task(self._guard(make(self)), name="extra"))
        interval = self.notifier.watchdog_interval_s
        if interval:
            self._tasks.append(asyncio.create_task(self._watchdog_loop(interval), name="wd"))

    async def _guard(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("extra task failed")

    def _boards_dir(self) -> Path:
        if self.settings.boards_dir is not None:
            return self.settings.boards_dir
        return Path(__file__).resolve().parent.parent / "boards"

    async def _start_fleet(self) -> None:
        """Start the five virtual boards and enroll their keys if they are not enrolled."""
        if not _checkout_on_path():
            raise RuntimeError(
                "--virtual-fleet needs a source checkout (firmware/ is not part of the wheel)"
            )
        from gateway.ble.virtual_fleet import VirtualFleet  # installs a `micropython` stand-in

        fw_board = importlib.import_module("firmware.board")

        boards_dir = self._boards_dir()
        profiles = [fw_board.load(str(boards_dir / f"{name}.json")) for name in FLEET_PROFILES]
        s = self.settings
        s.fleet_dir.mkdir(parents=True, exist_ok=True)
        self.fleet = VirtualFleet(
            profiles,
            str(s.fleet_dir),
            sample_interval_s=s.fleet_sample_interval_s,
            heartbeat_interval_s=s.fleet_heartbeat_interval_s,
            sign_every_n=s.fleet_sign_every_n,
        )
        boards = await self.fleet.start()
        for vb in boards:
            if vb.device_id not in self._devices:
                meta = {"profile": vb.profile["name"], "use_case": vb.profile.get("use_case")}
                meta = {k: v for k, v in meta.items() if v is not None}
                await self._write(self._enroll_sync, vb.public_key, meta)
        log.info("virtual fleet: %d boards running (%s)", len(boards), ", ".join(FLEET_PROFILES))

    async def _run_link(self) -> None:
        """Run the BLE link until stop; on a missing adapter, log one line and keep serving."""
        from gateway.ble.link import BleakBackends, BleLink

        backend: BleakBackends | None = None
        if self.fleet is not None:
            backend = self.fleet.central.backends
            self.ble = BleStatus("virtual", "running", f"{len(self.fleet.boards)} virtual boards")
        else:
            self.ble = BleStatus("bluez", "running", "BlueZ via bleak")
        self.link = BleLink(self, backend)
        try:
            await self.link.run(self._stop)
            self.ble.status = "stopped"
        except asyncio.CancelledError:
            self.ble.status = "stopped"
            raise
        except Exception as exc:  # bleak: FileNotFoundError (no D-Bus), BleakDBusError (no BlueZ)
            reason = f"{type(exc).__name__}: {exc}".strip()
            self.ble = BleStatus(self.ble.mode, "unavailable", f"no BLE adapter found ({reason})")
            log.warning(
                "no BLE adapter found (%s): serving the API without BLE; "
                "use --virtual-fleet for virtual boards",
                reason,
            )

    async def stop(self) -> None:
        """Finish the batch in flight, integrate everything, close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.phase = "stopping"
        self.notifier.stopping("finishing the batch in flight")
        self._stop.set()
        link_tasks = [t for t in self._tasks if t.get_name() in ("ble-link", "extra", "wd")]
        for t in link_tasks:
            if t.get_name() != "ble-link":
                t.cancel()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(asyncio.gather(*link_tasks, return_exceptions=True), 15)
        if self.fleet is not None:
            with contextlib.suppress(Exception):
                await self.fleet.stop()
        self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.phase = "stopped"
        await self._write(self._integrate_if_due, True)
        self.close()

    def close(self) -> None:
        """Close the databases (pending entries stay durable and integrate on the next open)."""
        self.phase = "stopped"
        self._closed = True
        self._writer.shutdown(wait=True)
        self.ingest.close()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
