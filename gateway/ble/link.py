"""The gateway's BLE central on bleak: scan, connect, collect records, ack after the commit.

This is the only gateway module that drives bleak's BleakClient/BleakScanner (the bumble backend
implements bleak's backend base classes, nothing more). Toward ingest it needs a `Collector`;
toward the radio it takes an optional pair of bleak backend classes (`BleakBackends`): None means
bleak's platform default (BlueZ over D-Bus on Linux), `BumbleCentral.backends` the bumble one.

One upload, per docs/ble-protocol.md, is `BleLink.collect` looping over the rounds of one
`Connection` (an async context manager that owns the BleakClient): connect, read Info, check the
device id, subscribe to data, then per round SEND_FROM(last committed seq + 1, no limit) --
subscribing first means no notification can be lost (bleak #374) -- and reassemble until END,
hand the records to `Collector.deliver`, and only after it returns write ACK(the seq it returned)
and wait for the STATUS; leaving the block unsubscribes and disconnects.

Protocol v2: every command is authenticated (gateway/ble/auth.py) with the board's link key,
derived from the gateway's master secret (`LinkKeys`), bound to the nonce the board published in
Info for this connection and to a per-connection counter. A board that answers STATUS 4 does not
hold the right link key: a permanent `unauthenticated` failure, counted in stats.auth_rejections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import (
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)

from gateway.ble import protocol as p
from gateway.ble.auth import COUNTER_MAX, LinkKeys, Sealer
from gateway.ble.ota import OtaPusher
from gateway.errors import ServiceUnavailable, WireError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# A Pi's built-in controller holds about 7 stable LE connections (DESIGN, measured); 5 leaves
# room for one connection being torn down while the next is set up, and for scanning.
MAX_CONNECTIONS = 5
# Connect plus service discovery: BlueZ on a busy Pi can take several seconds; bleak's default is
# 30 s, which keeps a semaphore slot hostage far too long when a board walked out of range.
CONNECT_TIMEOUT_S = 20.0
# One GATT read/write/subscribe; a healthy link answers within a few connection intervals.
GATT_TIMEOUT_S = 10.0
# Watchdog on an upload: no notification for this long means the stream (or link) is dead. The
# board streams back to back, so even at MTU 23 and a 50 ms interval a frame comes every 50 ms.
STALL_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 5.0  # ACK write to STATUS: the board deletes from flash, a few ms per record
DISCONNECT_TIMEOUT_S = 5.0  # teardown must not hang a slot; BlueZ cleans up after us anyway
# Retry after a transient failure: exponential from BACKOFF_INITIAL_S, capped at BACKOFF_MAX_S,
# with +-BACKOFF_JITTER so boards that failed together (gateway restart, interference burst) do
# not retry in lockstep.
BACKOFF_INITIAL_S = 2.0
BACKOFF_FACTOR = 2.0
BACKOFF_MAX_S = 300.0
BACKOFF_JITTER = 0.25
# After a permanent failure (wrong device behind an enrolled prefix, protocol violation, GATT
# layout): retry rarely, a reflash or an enrollment may fix it, but do not hammer the board.
PERMANENT_BACKOFF_S = 900.0
# After a good upload the board's advertising still says pending > 0 until it refreshes; wait so
# we do not reconnect on a stale advertisement.
SUCCESS_COOLDOWN_S = 3.0
# Rounds of SEND_FROM per connection: another round only when chunks were dropped (reassembly),
# so the gap is re-requested while the link is up.
MAX_ROUNDS_PER_CONNECTION = 3
# BlueZ discovery can stop silently (adapter reset, another client); restart the scanner when no
# advertisement at all arrived for this long.
SCAN_WATCHDOG_S = 60.0
# Battery boards advertise only in a window every advertise_every_s (boards/*.json "power",
# docs/power.md): LinkConfig.sleepy_period_s is the longest such period among the enrolled boards.
# Silence that long is a sleeping fleet, not a dead scanner (a restart then could miss the next
# window), and a board is overdue (lost) only after this many of its periods without an advert.
OVERDUE_PERIODS = 2.0
# A board whose clock is unsynced or further than this from the gateway's (NTP) clock gets
# TIME_SYNC: contracts use device time, checked against receive time, so it must stay close;
# 2 s leaves room for the BLE round trip and the board's 1 s clock resolution.
TIME_SYNC_TOLERANCE_S = 2.0
# Records one SEND_FROM round may bring: a board's journal is 64 KB (firmware/journal.py), at
# most ~1,100 records of the smallest size; 4096 leaves room for a bigger journal while bounding
# what a hostile peripheral streaming records without end makes the gateway hold (~1 MB).
MAX_RECORDS_PER_ROUND = 4096


class BleakBackends(NamedTuple):
    """The bleak backend classes to use; None for either means bleak's platform default."""

    client: type[BaseBleakClient] | None = None
    scanner: type[BaseBleakScanner] | None = None


class Collector(Protocol):
    """What the link needs from ingest. All calls are made from the link's event loop."""

    def device_for_prefix(self, id_prefix: bytes) -> bytes | None:
        """Return the enrolled 16-byte device id whose first 4 bytes are id_prefix, or None."""
        ...

    def last_committed_seq(self, device_id: bytes) -> int | None:
        """Return the highest durably committed seq of device_id, or None if none yet."""
        ...

    async def deliver(self, device_id: bytes, records: list[bytes]) -> int | None:
        """Verify and durably commit records (raw, in arrival order; duplicates possible).

        Return the seq to ack -- the highest seq of device_id that is authentic and durably
        committed -- or None if nothing may be acked. The link writes ACK only after this returns.
        """
        ...


@dataclass(frozen=True)
class LinkConfig:
    """Tunables of a BleLink; defaults are the module constants (tests shorten the timers)."""

    max_connections: int = MAX_CONNECTIONS
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    gatt_timeout_s: float = GATT_TIMEOUT_S
    stall_timeout_s: float = STALL_TIMEOUT_S
    ack_timeout_s: float = ACK_TIMEOUT_S
    disconnect_timeout_s: float = DISCONNECT_TIMEOUT_S
    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_factor: float = BACKOFF_FACTOR
    backoff_max_s: float = BACKOFF_MAX_S
    backoff_jitter: float = BACKOFF_JITTER
    permanent_backoff_s: float = PERMANENT_BACKOFF_S
    success_cooldown_s: float = SUCCESS_COOLDOWN_S
    max_rounds_per_connection: int = MAX_ROUNDS_PER_CONNECTION
    scan_watchdog_s: float = SCAN_WATCHDOG_S
    time_sync_tolerance_s: float = TIME_SYNC_TOLERANCE_S
    max_records_per_round: int = MAX_RECORDS_PER_ROUND
    sleepy_period_s: float = 0.0  # longest advertise_every_s of the enrolled boards (0: none)

    def quiet_s(self) -> float:
        """Return how long the air may be silent before the scanner counts as stuck: the
        watchdog period, or the longest battery board's window period plus the watchdog."""
        if self.sleepy_period_s > 0:
            return self.sleepy_period_s + self.scan_watchdog_s
        return self.scan_watchdog_s


class LinkError(Exception):
    """A failed upload with a stable `code` and whether a retry may help (`transient`)."""

    def __init__(self, code: str, message: str, *, transient: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient


# Substrings of BlueZ / bleak error texts that mean "radio or stack busy, try again".
_TRANSIENT_MARKERS = (
    "le-connection-abort",
    "inprogress",
    "in progress",
    "not connected",
    "notconnected",
    "disconnected",
    "noreply",
    "timeout",
    "timed out",
    "software caused connection abort",
    "notready",
)


def classify(exc: BaseException) -> LinkError:
    """Return exc as a LinkError with a stable code and its transient/permanent class.

    Transient (retry with backoff): timeouts, le-connection-abort-by-local, InProgress, a
    disconnect or stall mid-upload, a busy board, ingest unavailable (`ingest/<code>`: a full
    disk, a stopping gateway; nothing was acked, the board keeps its records), any other
    bleak/D-Bus/OS error (the radio is the usual suspect). Permanent (retry only after
    PERMANENT_BACKOFF_S): wrong device, protocol errors (WireError), a GATT layout without our
    characteristics, GATT protocol errors, too many records in a round, and anything
    unexpected (a bug must not hot-loop).
    """
    if isinstance(exc, LinkError):
        return exc
    if isinstance(exc, ServiceUnavailable):
        return LinkError(f"ingest/{exc.code}", exc.message, transient=True)
    if isinstance(exc, WireError):
        return LinkError(f"protocol/{exc.code}", exc.message, transient=False)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return LinkError("timeout", str(exc) or "timed out", transient=True)
    if isinstance(exc, BleakCharacteristicNotFoundError):
        return LinkError("gatt-layout", str(exc), transient=False)
    if isinstance(exc, BleakGATTProtocolError):
        return LinkError("gatt-error", str(exc), transient=False)
    if isinstance(exc, BleakDeviceNotFoundError):
        return LinkError("not-found", str(exc), transient=True)
    if isinstance(exc, BleakDBusError):
        text = f"{exc.dbus_error} {exc.dbus_error_details or ''}".lower()
        code = "in-progress" if "inprogress" in text else "dbus"
        if "le-connection-abort" in text:
            code = "le-connection-abort"
        return LinkError(code, str(exc), transient=True)
    if isinstance(exc, BleakError | OSError | EOFError):
        text = str(exc).lower()
        code = next((m.replace(" ", "-") for m in _TRANSIENT_MARKERS if m in text), "bleak")
        return LinkError(code, str(exc), transient=True)
    return LinkError("internal", repr(exc), transient=False)


@dataclass
class DeviceState:
    """Retry bookkeeping of one device at one address: consecutive failures, when to try next.

    Keyed by (device id, address) in BleLink.states, not by device id alone: anything can
    advertise an enrolled board's 4-byte id prefix, and an imposter's failures (a wrong device,
    garbage Info) must not put the real board into PERMANENT_BACKOFF_S.
    """

    failures: int = 0
    next_attempt_s: float = 0.0
    last_error: str | None = None
    uploads: int = 0


@dataclass
class LinkStats:
    """Counters for logs, health and tests."""

    sessions: int = 0
    uploads_ok: int = 0
    records_received: int = 0
    acks: int = 0
    transient_failures: int = 0
    permanent_failures: int = 0
    dropped_records: int = 0
    dropped_chunks: int = 0
    bad_frames: int = 0
    stale_notifications: int = 0
    not_enrolled_adverts: int = 0
    scanner_restarts: int = 0
    time_syncs: int = 0
    auth_rejections: int = 0  # commands a board answered with STATUS unauthenticated
    lost_tails: int = 0  # uploads whose END named a record that never arrived
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class UploadResult:
    """What one connection achieved: records received, the seq acked (None if none), rounds."""

    device_id: bytes
    records: int
    acked_seq: int | None
    rounds: int
    mtu: int


def _mtu_of(client: BleakClient) -> int:
    """Return the ATT MTU as the data characteristic reports it (BlueZ >= 5.62 exposes it per
    characteristic; bleak's client.mtu_size on BlueZ is 23 unless a private call acquires it)."""
    try:
        char = client.services.get_characteristic(p.DATA_UUID)
        return char.max_write_without_response_size + 3 if char else p.MIN_MTU
    except BleakError:
        return p.MIN_MTU


def _seq_of(record: bytes) -> int | None:
    """Return the seq field of a record's bytes (wire format v1 offset 19), None if too short."""
    return int.from_bytes(record[19:23], "big") if len(record) >= 23 else None


def _holds_committed(info: p.Info, last_committed: int | None) -> bool:
    """Return True if the board (per its Info) still holds records the gateway has committed (an
    ack was lost after its commit): its oldest unacked seq is at or below last_committed, which
    it wrote itself. The board acks only records sent on the same connection, so the link then
    asks for them again from first_seq."""
    return (
        last_committed is not None
        and info.first_seq is not None
        and info.last_seq is not None
        and info.first_seq <= last_committed <= info.last_seq
    )


def backoff_delay_s(failures: int, config: LinkConfig, rng: random.Random) -> float:
    """Return the delay before retry number `failures` (>= 1) after transient failures."""
    base = min(
        config.backoff_max_s, config.backoff_initial_s * config.backoff_factor ** (failures - 1)
    )
    return base * (1.0 + rng.uniform(-config.backoff_jitter, config.backoff_jitter))


class BleLink:
    """The BLE central: scans, picks enrolled boards with pending records, collects, acks.

    `run()` scans until stopped and schedules one upload per device at a time, at most
    `config.max_connections` at once. `collect()` runs one upload and is public for tools/tests.
    """

    def __init__(
        self,
        collector: Collector,
        backend: BleakBackends | None = None,
        config: LinkConfig | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        link_keys: LinkKeys | None = None,
        ota: OtaPusher | None = None,
    ) -> None:
        """Set up the link; nothing touches the radio until run() or collect().

        clock paces retries (monotonic); wall_clock is the Unix time boards are synced to.
        link_keys: the boards' link keys (from the master secret data_dir/link.key); None means
        no key, so every upload fails with the permanent LinkError "no-link-key".
        ota: a release to push to boards that run an older version (docs/ota.md), or None.
        """
        self.collector = collector
        self.link_keys = link_keys
        self.ota = ota
        self.backend = backend or BleakBackends()
        self.config = config or LinkConfig()
        self.stats = LinkStats()
        self.states: dict[tuple[bytes, str], DeviceState] = {}  # (device id, address)
        self._rng = rng or random.Random()
        self._clock = clock
        self._wall_clock = wall_clock
        self._slots = asyncio.Semaphore(self.config.max_connections)
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        # device id -> token of the connection allowed to feed notifications (bleak #2002 guard)
        self._live: dict[bytes, object] = {}
        self._last_advert_s = 0.0
        self.seen_s: dict[bytes, float] = {}  # 4-byte id prefix -> last advert (clock)

    def overdue(self) -> list[bytes]:
        """Return the id prefixes (docs/ble-protocol.md, Advertising) of boards not heard for
        OVERDUE_PERIODS times the quiet period (LinkConfig.quiet_s): lost, not asleep in
        between their windows. Only boards heard at least once since run() are known here."""
        limit = OVERDUE_PERIODS * self.config.quiet_s()
        now = self._clock()
        return [prefix for prefix, at in self.seen_s.items() if now - at > limit]

    # -- scanning and scheduling ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Scan and collect until stop is set; then cancel uploads in flight and return.

        Raises what BleakScanner.start raises when there is no usable adapter (no D-Bus, no
        BlueZ): that is a deployment error, not something to retry here.
        """
        scanner = self._new_scanner()
        await scanner.start()
        self._last_advert_s = self._clock()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.scan_watchdog_s)
                if (
                    not stop.is_set()
                    and self._clock() - self._last_advert_s > self.config.quiet_s()
                ):
                    logger.warning("no advertisement for %.0f s, restarting the scanner",
                                   self.config.quiet_s())  # fmt: skip
                    self.stats.scanner_restarts += 1
                    with contextlib.suppress(Exception):
                        await scanner.stop()
                    scanner = self._new_scanner()
                    await scanner.start()
                    self._last_advert_s = self._clock()
        finally:
            with contextlib.suppress(Exception):
                await scanner.stop()
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _new_scanner(self) -> BleakScanner:
        return BleakScanner(
            self.on_advertisement, service_uuids=[p.SERVICE_UUID], backend=self.backend.scanner
        )

    def on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """Scanner callback: schedule an upload if the board is enrolled, has pending records,
        is not already being collected and is not backing off. Returns nothing; never raises."""
        self._last_advert_s = self._clock()
        try:
            advert = p.parse_manufacturer_data(adv.manufacturer_data)
        except WireError:
            return
        ota_waiting = self.ota is not None and bool(self.ota.unfinished)
        if advert is None:
            return
        self.seen_s[advert.id_prefix] = self._last_advert_s  # asleep until its next window
        if advert.pending == 0 and not ota_waiting:
            return
        device_id = self.collector.device_for_prefix(advert.id_prefix)
        if device_id is None:
            self.stats.not_enrolled_adverts += 1
            return
        if advert.pending == 0 and (self.ota is None or device_id not in self.ota.unfinished):
            return  # nothing to upload and no OTA push to resume
        if device_id in self._tasks:
            return
        state = self.states.setdefault((device_id, device.address), DeviceState())
        if self._clock() < state.next_attempt_s:
            return
        task = asyncio.get_running_loop().create_task(self._upload_with_retry(device, device_id))
        self._tasks[device_id] = task

    async def _upload_with_retry(self, device: BLEDevice, device_id: bytes) -> None:
        state = self.states.setdefault((device_id, device.address), DeviceState())
        try:
            async with self._slots:
                await self.collect(device, device_id)
            state.failures = 0
            state.uploads += 1
            state.last_error = None
            state.next_attempt_s = self._clock() + self.config.success_cooldown_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = classify(exc)
            state.last_error = err.code
            self.stats.errors[err.code] = self.stats.errors.get(err.code, 0) + 1
            if err.transient:
                self.stats.transient_failures += 1
                state.failures += 1
                delay = backoff_delay_s(state.failures, self.config, self._rng)
                logger.info("upload from %s failed (%s), retry in %.1f s", device_id.hex(),
                            err, delay)  # fmt: skip
            else:
                self.stats.permanent_failures += 1
                delay = self.config.permanent_backoff_s
                logger.warning("upload from %s failed permanently (%s), retry in %.0f s",
                               device_id.hex(), err, delay)  # fmt: skip
            state.next_attempt_s = self._clock() + delay
        finally:
            self._tasks.pop(device_id, None)

    # -- one upload ----------------------------------------------------------------------------

    def _notification_handler(
        self, device_id: bytes, token: object, queue: asyncio.Queue[bytes | None]
    ) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        """Return the data callback of one connection: it feeds queue only while token is live.

        A callback that outlives its connection (bleak #2002: BlueZ can keep delivering to an old
        client's watcher after a reconnect) is counted in stats.stale_notifications and dropped.
        """

        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            if self._live.get(device_id) is not token:
                self.stats.stale_notifications += 1
                return
            queue.put_nowait(bytes(data))

        return on_notify

    async def collect(self, device: BLEDevice, device_id: bytes) -> UploadResult:
        """Run one upload from the board behind device, expected to be device_id.

        Returns the UploadResult; raises LinkError / WireError / bleak errors on failure (see
        classify). The ACK is written only after Collector.deliver returned; records received
        before a failure are still delivered (not acked) so authentic ones are kept.
        """
        self.stats.sessions += 1
        async with Connection(self, device, device_id) as conn:
            records: list[bytes] = []
            acked: int | None = None
            rounds = 0
            whole = False
            # Another round only when the last one dropped chunks or lost its tail, so the gap
            # is asked for again while the link is up.
            while not whole and rounds < self.config.max_rounds_per_connection:
                rounds += 1
                records, whole, ack_seq = await self._round(conn)
                if ack_seq is not None:
                    await conn.ack(ack_seq)
                    acked = ack_seq
            if self.ota is not None and self.ota.due(conn.info):
                await self.ota.push(conn)  # after the upload: records first (docs/ota.md)
            self.stats.uploads_ok += 1
            return UploadResult(device_id, len(records), acked, rounds, conn.mtu)

    async def _round(self, conn: Connection) -> tuple[list[bytes], bool, int | None]:
        """Run one round on conn from the last committed seq + 1 and hand its records to ingest.

        Returns (the records, whether the round was whole, the seq to ack or None). If the round
        fails, the records it received are delivered all the same (not acked: authentic ones are
        kept, the board resends the rest) and the failure is raised; a cancelled round delivers
        nothing, a cancelled task must not start new work.
        """
        last = self.collector.last_committed_seq(conn.device_id)
        start = 0 if last is None else last + 1
        if conn.rounds == 0 and _holds_committed(conn.info, last):
            # The ack of an earlier upload was lost after its commit (a disconnect, an ack
            # timeout, a gateway stop). The board accepts an ACK only for records sent on this
            # connection, so ask for them again: ingest drops the duplicates and the ack follows.
            start = conn.info.first_seq or 0
        records: list[bytes] = []
        try:
            whole = await conn.round(start, records)
        except Exception:
            await self._deliver_partial(conn.device_id, records)
            raise
        if records:
            return records, whole, await self.collector.deliver(conn.device_id, records)
        return records, whole, None

    async def _deliver_partial(self, device_id: bytes, records: list[bytes]) -> None:
        """Deliver the records of a failed round (no ack follows); log, never raise."""
        if not records:
            return
        try:
            await self.collector.deliver(device_id, records)
        except ServiceUnavailable as e:  # a full disk: ingest raised the alarm, the board resends
            logger.info("a partial upload of %s was not stored: %s", device_id.hex(), e)
        except Exception:
            logger.exception("delivering a partial upload of %s failed", device_id.hex())

    async def _receive(
        self, queue: asyncio.Queue[bytes | None], reasm: p.Reassembler, out: list[bytes]
    ) -> p.End:
        """Append reassembled records to out until END; return the End frame.

        Raises LinkError "stalled" (no frame for stall_timeout_s), "disconnected", "busy"
        (STATUS busy to SEND_FROM, transient), "refused" (another SEND_FROM status, permanent)
        or "too-many-records" (more than max_records_per_round, permanent: a hostile peripheral).
        """
        while True:
            try:
                data = await asyncio.wait_for(queue.get(), self.config.stall_timeout_s)
            except TimeoutError:
                raise LinkError(
                    "stalled",
                    f"no notification for {self.config.stall_timeout_s} s",
                    transient=True,
                ) from None
            if data is None:
                raise LinkError("disconnected", "link lost during the upload", transient=True)
            try:
                frame = p.decode_frame(data)
                if isinstance(frame, p.Chunk):
                    record = reasm.feed(frame)
                    if record is not None:
                        out.append(record)
                        if len(out) > self.config.max_records_per_round:
                            raise LinkError("too-many-records", f"over {len(out) - 1} records "
                                            "in one round", transient=False)  # fmt: skip
                    continue
            except WireError as e:
                self.stats.bad_frames += 1
                reasm.reset()
                logger.warning("bad frame dropped: %s", e)
                continue
            if isinstance(frame, p.End):
                reasm.reset()  # a record still missing chunks at END is a drop (counted)
                return frame
            _raise_if_unauthenticated(frame, self.stats)
            if frame.command == p.CMD_SEND_FROM and frame.status != p.STATUS_OK:
                if frame.status == p.STATUS_BUSY:
                    raise LinkError("busy", "board answered SEND_FROM with busy", transient=True)
                raise LinkError(
                    "refused",
                    f"board answered SEND_FROM with status {frame.status}",
                    transient=False,
                )


def _raise_if_unauthenticated(frame: p.Status, stats: LinkStats) -> None:
    """Count and raise the permanent LinkError "unauthenticated" when the board refused a
    command's tag (STATUS 4: it lacks our link key, or holds another); return otherwise."""
    if frame.status == p.STATUS_UNAUTHENTICATED:
        stats.auth_rejections += 1
        raise LinkError(
            "unauthenticated",
            f"board refused command 0x{frame.command:02x}: not provisioned with our link key",
            transient=False,
        )


async def _finish_despite_cancel(coro: Coroutine[Any, Any, None]) -> None:
    """Run coro to its end even if the caller is cancelled meanwhile, then let the cancel through.

    For teardown, whose steps are bounded by their own timeouts: a gateway stop that cancels an
    upload while it unsubscribes must not skip the disconnect after it, or the link stays up
    after BleLink.run returned (the board keeps its connection and stops advertising).
    """
    task = asyncio.ensure_future(coro)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])  # unlike `await task`, a cancel here leaves task running
        except asyncio.CancelledError as e:
            cancelled = e
    if cancelled is not None:
        raise cancelled
    task.result()


class Connection:
    """One connection to one board: `async with Connection(link, device, device_id) as conn:`.

    The shape of aioble's connection. __aenter__ connects a fresh BleakClient (bounded by
    connect_timeout_s), reads Info, checks the device id (else permanent `wrong-device`),
    subscribes to data -- before any SEND_FROM, so no notification can be lost (bleak #374) -- and
    writes TIME_SYNC if the board's clock is unsynced or off. `round()` runs one SEND_FROM round,
    `ack()` writes ACK and waits for the STATUS. __aexit__ unsubscribes and disconnects, each step
    bounded by disconnect_timeout_s and carried out even if the task is cancelled meanwhile (the
    cancel goes through afterwards); it never raises over the exception that ended the block.
    Notifications reach the connection only while its token is the device's live one in the link
    (bleak #2002: BlueZ can keep feeding an old client's callback after a reconnect).
    """

    def __init__(self, link: BleLink, device: BLEDevice, device_id: bytes) -> None:
        """Prepare the connection; nothing touches the radio before __aenter__."""
        self.device_id = device_id
        self._link = link
        self._cfg = link.config
        self._stats = link.stats
        self._token = object()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._info: p.Info | None = None
        self._sealer: Sealer | None = None
        self.rounds = 0  # SEND_FROM rounds run on this connection
        self._subscribed = False
        self._client = BleakClient(
            device,
            disconnected_callback=self._on_disconnect,
            timeout=self._cfg.connect_timeout_s,
            backend=link.backend.client,
        )

    @property
    def info(self) -> p.Info:
        """The Info the board gave when the connection opened."""
        if self._info is None:
            raise RuntimeError("the connection is not open")
        return self._info

    @property
    def mtu(self) -> int:
        """The ATT MTU of the link (see _mtu_of)."""
        return _mtu_of(self._client)

    async def __aenter__(self) -> Connection:
        self._link._live[self.device_id] = self._token
        try:
            await self._open()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        if self._link._live.get(self.device_id) is self._token:
            del self._link._live[self.device_id]
        await _finish_despite_cancel(self._teardown())

    def _on_disconnect(self, _client: BleakClient) -> None:
        if self._link._live.get(self.device_id) is self._token:
            self._queue.put_nowait(None)

    async def _gatt(self, op: Awaitable[_T]) -> _T:
        return await asyncio.wait_for(op, self._cfg.gatt_timeout_s)

    async def _write(self, command: bytes) -> None:
        """Write command, authenticated for this connection (precondition: _open read Info)."""
        if self._sealer is None:
            raise RuntimeError("the connection is not open")
        data = self._sealer.seal(command)
        await self._gatt(self._client.write_gatt_char(p.CONTROL_UUID, data, response=True))

    async def _open(self) -> None:
        cfg = self._cfg
        await asyncio.wait_for(self._client.connect(), cfg.connect_timeout_s)
        info = p.decode_info(bytes(await self._gatt(self._client.read_gatt_char(p.INFO_UUID))))
        if info.device_id != self.device_id:
            raise LinkError(
                "wrong-device",
                f"board says {info.device_id.hex()}, enrolled {self.device_id.hex()}",
                transient=False,
            )
        keys = self._link.link_keys
        if keys is None:
            raise LinkError("no-link-key", "the gateway has no link master secret",
                            transient=False)  # fmt: skip
        self._info = info
        self._sealer = Sealer(keys.for_device(self.device_id), self.device_id, info.nonce)
        handler = self._link._notification_handler(self.device_id, self._token, self._queue)
        await self._gatt(self._client.start_notify(p.DATA_UUID, handler))
        self._subscribed = True
        now_s = self._link._wall_clock()
        if not info.time_synced or abs(info.time_s - now_s) > cfg.time_sync_tolerance_s:
            await self._write(p.encode_time_sync(int(now_s)))
            self._stats.time_syncs += 1

    async def round(self, start: int, records: list[bytes]) -> bool:
        """Write SEND_FROM(start, no limit) and reassemble until END, appending every record to
        records as it completes, so the caller keeps them if this raises.

        Returns True if the round was whole: no chunk or record dropped, and the record END
        names as the last one sent did arrive (a tail lost on the radio leaves no gap in the
        chain for ingest to see, so the link checks it and counts stats.lost_tails). Raises
        LinkError (stalled, disconnected, busy, refused), TimeoutError or a bleak error.
        """
        reasm = p.Reassembler()
        self.rounds += 1
        await self._write(p.encode_send_from(start, 0))
        try:
            end = await self._link._receive(self._queue, reasm, records)
        finally:  # a round cut short by a failure counts its drops too
            self._stats.records_received += len(records)
            self._stats.dropped_records += reasm.dropped_records
            self._stats.dropped_chunks += reasm.dropped_chunks
        last_seq = _seq_of(records[-1]) if records else None
        tail_lost = end.last_sent_seq is not None and last_seq != end.last_sent_seq
        if tail_lost:
            self._stats.lost_tails += 1
            logger.warning("%s: END names seq %s, last received %s: the tail was lost",
                           self.device_id.hex(), end.last_sent_seq, last_seq)  # fmt: skip
        return not (reasm.dropped_records or reasm.dropped_chunks or tail_lost)

    async def ack(self, seq: int) -> None:
        """Write ACK(seq) and wait for the board's STATUS; raise LinkError if refused or lost."""
        await self._write(p.encode_ack(seq))
        deadline = asyncio.get_running_loop().time() + self._cfg.ack_timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                data = await asyncio.wait_for(self._queue.get(), max(0.0, remaining))
            except TimeoutError:
                raise LinkError(
                    "ack-timeout", f"no STATUS for ACK({seq})", transient=True
                ) from None
            if data is None:
                raise LinkError(
                    "disconnected", "link lost waiting for the ACK status", transient=True
                )
            try:
                frame = p.decode_frame(data)
            except WireError:
                self._stats.bad_frames += 1
                continue
            if isinstance(frame, p.Status) and frame.command == p.CMD_ACK:
                _raise_if_unauthenticated(frame, self._stats)
                if frame.status != p.STATUS_OK:
                    raise LinkError(
                        "ack-refused", f"board refused ACK({seq}): status {frame.status}",
                        transient=False,
                    )  # fmt: skip
                self._stats.acks += 1
                return

    def commands_left(self) -> int:
        """Return how many more commands this connection may send (the counter is a u8)."""
        return COUNTER_MAX - (self._sealer.counter if self._sealer is not None else 0)

    async def request(self, command: bytes, opcode: int) -> p.Status:
        """Write command and return the board's STATUS for opcode (docs/ota.md uses it).

        Raises LinkError: "unauthenticated" (permanent), "request-timeout" after gatt_timeout_s
        without the STATUS, "disconnected" (both transient)."""
        await self._write(command)
        deadline = asyncio.get_running_loop().time() + self._cfg.gatt_timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                data = await asyncio.wait_for(self._queue.get(), max(0.0, remaining))
            except TimeoutError:
                raise LinkError("request-timeout", f"no STATUS for command 0x{opcode:02x}",
                                transient=True) from None  # fmt: skip
            if data is None:
                raise LinkError("disconnected", "link lost waiting for a status", transient=True)
            try:
                frame = p.decode_frame(data)
            except WireError:
                self._stats.bad_frames += 1
                continue
            if isinstance(frame, p.Status) and frame.command == opcode:
                _raise_if_unauthenticated(frame, self._stats)
                return frame

    async def _teardown(self) -> None:
        """Unsubscribe (bleak #2002: leave no callback behind) and disconnect; never raises."""
        timeout_s = self._cfg.disconnect_timeout_s
        if self._subscribed and self._client.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.stop_notify(p.DATA_UUID), timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.disconnect(), timeout_s)
