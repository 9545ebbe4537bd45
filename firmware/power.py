"""Battery profiles: sleep between samples, advertise in windows, and carry state across deep sleep.

A board whose profile has a "power" object (boards/README.md, Power) runs DutyCycle instead of the
always-on tasks: sample and heartbeat when due, open an advertising window every advertise_every_s
(or early when advertise_pending records wait), then sleep until the next thing is due -- light
sleep keeps RAM, deep sleep is a reset. What the chain needs across a deep sleep and is not on
flash (seq position, boot count, clock, signing run, schedule) goes to RTC memory
(machine.RTC().memory(), kept in deep sleep, lost at power-on) with a CRC; a wake whose state is
missing or does not match the journal and NVS is an ordinary boot (docs/power.md).
"""

import struct

from micropython import const

from firmware.crc32 import crc32
from firmware.seqcounter import SeqCounter, _unpack

# private copies of firmware/seqcounter.py's, pinned by tests/firmware/test_seqcounter.py
_KEYS = const(("seq_a", "seq_b"))
_SEQ_BLOCK = const(32)

SLEEP_NONE = "none"
SLEEP_LIGHT = "light"
SLEEP_DEEP = "deep"
_MS_PER_S = const(1000)
# why: a deep sleep shorter than this costs more than it saves (a wake is a full boot: bootloader,
# MicroPython, journal mount, key load: ~1 s awake, docs/power.md), so shorter waits light-sleep
DEEP_MIN_MS = const(20000)
# why: a blocking driver wait (DS18B20 conversion: 750 ms at 12 bits) at least this long is
# light-slept outside windows (~130 uA instead of ~20 mA idle); shorter ones are not worth the
# sleep's entry and exit (about a millisecond each, ESP-IDF sleep modes)
NAP_MIN_MS = const(20)
# RTC memory layout (big-endian): magic, then the fields of _FMT, then CRC-32 of everything before.
_MAGIC = const(b"EPW1")
# gen, limit, next seq, boot, journal last seq, uptime at sleep, wall ms at sleep, planned sleep ms,
# synced, offset ms, sync event ms (-1 none), unsynced correction s, unsigned run, segment seq,
# next sample, next heartbeat, next window (uptime ms)
_FMT = ">IIIIiqqIBqqiHiqqq"
# why: a measured sleep this much longer than planned means the wall clock jumped (or was set):
# the planned length is the better guess then
_SLEEP_SLACK = const(4)


def settings(profile):
    """Return (sleep, window_ms, every_ms, pending) of a validated profile (firmware/board.py
    _check_power), or None when it has no power object or one that changes nothing (always
    awake, always advertising)."""
    power = profile.get("power")
    if not power:
        return None
    sleep = power.get("sleep", SLEEP_NONE)
    window = int(power.get("advertise_window_s", 0) * _MS_PER_S)
    every = int(power.get("advertise_every_s", 0) * _MS_PER_S)
    if sleep == SLEEP_NONE and not every:
        return None
    return sleep, window, every, power.get("advertise_pending", 0)


class Sleeper:
    """What DutyCycle needs from the port: machine.lightsleep/deepsleep, RTC memory, the reset
    cause, and a wall clock in ms that keeps counting in deep sleep (the RTC timer).

    machine: the `machine` module (or the host shim); None: windows only, every sleep an
    asyncio sleep (the virtual fleet, tools/sim/fleet.py). wall_ms: callable; default
    time.time_ns() (the ESP32 port keeps it across deep sleep from the RTC slow clock).
    """

    def __init__(self, machine, wall_ms=None):
        self.machine = machine
        if wall_ms is None:
            import time

            ns = getattr(time, "time_ns", None)
            if ns is not None:
                wall_ms = lambda: ns() // 1000000  # noqa: E731
            else:
                wall_ms = lambda: int(time.time() * 1000)  # noqa: E731
        self.wall_ms = wall_ms
        self.light_sleeps = 0
        self.light_ms = 0
        self.in_window = False  # DutyCycle sets it while the radio serves: no light sleep then
        self._block = None

    def block_ms(self, ms):
        """A driver's blocking wait (RealClock.block_ms on a sleeping board): light-sleep it when
        it is long enough and the radio is idle, else wait awake; returns after ms."""
        if ms >= NAP_MIN_MS and not self.in_window:
            self.lightsleep(ms)
            return
        fn = self._block
        if fn is None:
            import time

            fn = self._block = getattr(time, "sleep_ms", None) or (lambda t: time.sleep(t / 1000))
        fn(ms)

    def lightsleep(self, ms):
        """Light-sleep ms milliseconds (RAM, tasks' state and the BLE stack stay); returns after."""
        self.light_sleeps += 1
        self.light_ms += ms
        self.machine.lightsleep(ms)

    def deepsleep(self, ms):
        """Deep-sleep ms milliseconds: the chip resets when it wakes (never returns on a board)."""
        self.machine.deepsleep(ms)

    def save(self, blob):
        """Store blob in RTC memory (kept in deep sleep, lost at power-on)."""
        self.machine.RTC().memory(blob)

    def woke(self):
        """Return the RTC memory when this boot is a deep-sleep wake, else None."""
        m = self.machine
        if m is None or m.reset_cause() != m.DEEPSLEEP_RESET:
            return None
        return bytes(m.RTC().memory())


class WakeState:
    """The board state kept in RTC memory across one deep sleep (see _FMT)."""

    def __init__(self, fields):
        (
            self.gen, self.limit, self.next_seq, self.boot, self.last_seq, self.uptime_ms,
            self.wall_ms, self.planned_ms, synced, offset_ms, self.sync_event_ms,
            self.sync_unlogged_s, self.unsigned_run, self.segment_seq, self.sample_at,
            self.beat_at, self.window_at,
        ) = fields  # fmt: skip
        self.offset_ms = offset_ms if synced else None


def pack(board, planned_ms, wall_ms, due):
    """Return the RTC memory blob of board before a deep sleep of planned_ms; due: (next sample,
    next heartbeat, next window) in uptime ms."""
    s = board.sampler
    seqs = s.seqs
    t = s.time
    off = t._offset_ms
    ev = s._sync_event_ms
    body = _MAGIC + struct.pack(
        _FMT, seqs._gen, seqs._limit & 0xFFFFFFFF, seqs.peek() & 0xFFFFFFFF, s.boot,
        s.journal.last_seq, t.uptime_ms(), wall_ms, planned_ms, off is not None,
        0 if off is None else off, -1 if ev is None else ev, s._sync_unlogged_s,
        s._unsigned_run, s._segment_seq, due[0], due[1], due[2],
    )  # fmt: skip
    return body + struct.pack(">I", crc32(body))


def unpack(blob):
    """Return the WakeState in blob, or None when it is missing, short or fails its CRC."""
    n = 4 + struct.calcsize(_FMT)
    if blob is None or len(blob) != n + 4 or blob[:4] != _MAGIC:
        return None
    if struct.unpack(">I", blob[n:])[0] != crc32(blob[:n]):
        return None
    return WakeState(struct.unpack(_FMT, blob[4:n]))


class ResumedSeqs(SeqCounter):
    """The SeqCounter of the boot before a deep sleep, picked up where it stopped: the same boot
    count, the same NVS reservation, no flash write (SeqCounter() would count a boot and reserve
    a new block at every wake: a write a minute and a seq gap per sample)."""

    def __init__(self, kv, wake):  # no super().__init__: nothing is reserved or counted
        self._kv = kv
        self._block = _SEQ_BLOCK
        self._gen = wake.gen
        self._limit = wake.limit
        self._next = wake.next_seq
        self.boot_count = wake.boot


def resume_seqs(kv, wake, journal_last_seq):
    """Return ResumedSeqs for wake when it matches durable state, else None (then the board boots
    as after a power cut). Matches: the newest NVS seq slot is the reservation wake holds (same
    generation, limit, boot), its next seq is inside it, above every seq in the journal, and the
    journal's head is the one wake saw (a journal written by another boot is not resumed)."""
    newest = None
    for key in _KEYS:
        st = _unpack(kv.get(key))
        if st is not None and (newest is None or st[0] > newest[0]):
            newest = st
    if newest is None or newest != (wake.gen, wake.limit, wake.boot):
        return None
    if not (journal_last_seq < wake.next_seq <= wake.limit) or journal_last_seq != wake.last_seq:
        return None
    return ResumedSeqs(kv, wake)


def restore(sampler, wake, wall_now_ms):
    """Put the clock, the signing run and the time-sync bookkeeping of wake back into sampler
    (built on the resumed seqs); returns the uptime now. Uptime continues from the sleep by the
    wall clock's measure of it (the planned length when the wall clock jumped)."""
    slept = wall_now_ms - wake.wall_ms
    if slept < 0 or slept > _SLEEP_SLACK * wake.planned_ms + 60000:
        slept = wake.planned_ms
    t = sampler.time
    t.resume(wake.uptime_ms + slept, wake.offset_ms)
    sampler.resume(
        wake.unsigned_run, None if wake.sync_event_ms < 0 else wake.sync_event_ms,
        wake.sync_unlogged_s, wake.segment_seq,
    )  # fmt: skip
    return t.uptime_ms()


# Idle pass period of a window's serving loop: firmware.peripheral's poll period (_POLL_MS).
_WINDOW_POLL_MS = const(20)


async def serve_window(p, open_ms, tick=None):
    """Advertise and serve on the firmware.peripheral.Peripheral p for open_ms (a battery board's
    window), longer while a central is connected or a stream or command is in flight (the auth
    and idle timeouts bound that), shorter when an upload emptied the journal; then stop
    advertising. tick(), when given, runs every pass (sampling stays on schedule). Returns the
    number of connections served in the window. Lives here, not in the Peripheral, so that an
    always-awake board does not hold its code."""
    clock = p._clock
    start = clock.ticks_ms()
    before = p.connections
    p.running = True
    p.windowed = False  # advertising allowed until the window closes
    p._advertise()
    try:
        while p.running:
            busy = p._conn is not None or p._stream or p._queue or p._ev_disconnect
            if not busy:
                if clock.ticks_diff(clock.ticks_ms(), start) >= open_ms:
                    break
                if p.connections > before and p.sampler.depth == 0:
                    break  # uploaded and acked: nothing left to offer this window
            if tick is not None:
                tick()
            if not await p._pass():
                await clock.sleep_ms(_WINDOW_POLL_MS)
    finally:
        p.windowed = True
        _quiet(p)
    return p.connections - before


def _quiet(p):
    """Stop p's advertising (the window closed) and drop a central that connected in its last
    moment (the board is about to sleep); returns nothing."""
    try:
        p._ble.gap_advertise(None)
    except OSError:
        p.errors += 1
    p._advertising = False
    if p._conn is not None:
        p._disconnect(p._conn)


class DutyCycle:
    """The battery board's single task: steps when due, advertising windows, sleep in between.

    cfg: settings(profile). sleeper: Sleeper (None: sleep is an asyncio sleep, for hosts).
    wake: the WakeState this boot resumed from (None after an ordinary boot).
    """

    def __init__(self, cfg, sleeper=None, wake=None):
        self.sleep, self.window_ms, self.every_ms, self.pending = cfg
        self.sleeper = sleeper
        self.wake = wake
        self.windows = 0
        self.early_windows = 0
        self._early_done = False
        self._sample_at = self._beat_at = self._window_at = 0

    def due(self):
        """Return (next sample, next heartbeat, next window) in uptime ms."""
        return self._sample_at, self._beat_at, self._window_at

    def _steps(self, board):
        """Sample and heartbeat when due (drift-free, missed slots skipped); returns nothing."""
        s = board.sampler
        now = s.time.uptime_ms()
        if now >= self._sample_at:
            for fn in board.pollers:
                try:
                    fn()
                except Exception:
                    s.errors += 1
            try:
                s.sample_once()
            except Exception:  # flash or wire trouble: counted, the board keeps going
                s.errors += 1
            self._sample_at += s.sample_interval_ms
            if self._sample_at <= now:
                self._sample_at = now + s.sample_interval_ms
        if now >= self._beat_at:
            try:
                s.heartbeat()
            except Exception:
                s.errors += 1
            self._beat_at += s.heartbeat_interval_ms
            if self._beat_at <= now:
                self._beat_at = now + s.heartbeat_interval_ms

    def _window_due(self, board, now):
        """Return True when a window should open now: its period came round, or (once per
        period) advertise_pending records wait."""
        if self.every_ms and now >= self._window_at:
            return True
        if self.pending and not self._early_done and board.sampler.depth >= self.pending:
            self._early_done = True  # once per period: no gateway in reach must not keep it open
            self.early_windows += 1
            return True
        return False

    async def run(self, board, watch=None):
        """Run until board.stop() (or a deep sleep, which does not return on a board)."""
        s = board.sampler
        now = s.time.uptime_ms()
        w = self.wake
        if w is not None:
            self._sample_at, self._beat_at, self._window_at = w.sample_at, w.beat_at, w.window_at
        else:  # first window at once: the gateway sets the clock and learns the board is there
            self._sample_at = now
            self._beat_at = now + s.heartbeat_interval_ms
            self._window_at = now
        p = board.peripheral
        p.windowed = True
        window = self.every_ms and self.window_ms or 0

        def tick():  # sampling stays on schedule while a window serves
            self._steps(board)

        while board.running:
            self._steps(board)
            now = s.time.uptime_ms()
            if self._window_due(board, now):
                self.windows += 1
                sl = self.sleeper
                if sl is not None:
                    sl.in_window = True
                try:
                    await serve_window(p, window, tick)
                finally:
                    if sl is not None:
                        sl.in_window = False
                if self.every_ms and now >= self._window_at:
                    self._early_done = False
                    self._window_at += self.every_ms
                    if self._window_at <= now:
                        self._window_at = now + self.every_ms
            if watch is not None:
                watch(board)
            nxt = self._sample_at if self._sample_at < self._beat_at else self._beat_at
            if self.every_ms and self._window_at < nxt:
                nxt = self._window_at
            wait = nxt - s.time.uptime_ms()
            if wait > 0 and board.running:
                await self._sleep(board, wait)

    async def _sleep(self, board, ms):
        """Sleep ms the profile's way; precondition: no connection, advertising off."""
        sl = self.sleeper
        if sl is None or sl.machine is None or self.sleep == SLEEP_NONE:
            await board.sampler.time.clock.sleep_ms(ms)
        elif self.sleep == SLEEP_DEEP and ms >= DEEP_MIN_MS:
            sl.save(pack(board, ms, sl.wall_ms(), self.due()))
            board.stop()
            sl.deepsleep(ms)  # a reset on the board; the host shim raises SystemExit
        else:
            sl.lightsleep(ms)
