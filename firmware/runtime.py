"""What a running board keeps resident: the Board, the port's clock, and the boot supervisor.

firmware/main.py activates BLE and calls main() here; boot() builds the board through
firmware/app.py, whose boot-only code (profile, drivers registry, key store, wiring) is unloaded
once the board is built (app.unload_boot_modules), and turns a MemoryError into a counted,
backed-off, degraded retry instead of an endless reset loop (docs/firmware-runtime.md, Boot).
"""

import asyncio

from micropython import const

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_EV_BOOT = const(1)

FIRMWARE_VERSION = (0, 1, 0)
_IDLE_MS = const(1000)
# GPS: the UART is drained this often between samples, so the parsed fix is never older than this
# plus one NMEA period, whatever sample_interval_s is (the ESP32 UART ring buffer keeps the oldest
# bytes when full: drained only at a 30 s sample it would hand out a 30 s old position).
GPS_POLL_MS = const(250)
PROFILE_PATH = "board.json"  # the deployed profile (tools copy boards/<name>.json here)
# The signer's fixed-base table on flash (firmware.ed25519.TableFile; written at the first boot):
# read an entry at a time while signing, so its 12 KB never sit on the heap.
TABLE_PATH = "ed25519.tbl"
NVS_NAMESPACE = "edgeseal"  # key, seq counter and the counters below (docs/production.md)
# NVS i32: MemoryError resets since the board last ran healthy (< 0: see Watch)
_OOM_KEY = const("oom_run")
# NVS i32: every MemoryError reset ever (diagnostics, never cleared)
_OOM_TOTAL_KEY = const("oom_total")
# why: after an unexpected exception, long enough to read the traceback on the console
_RESET_DELAY_MS = const(5000)
# why: sleep 5 s, 10 s, 20 s ... before the reset that follows a MemoryError, capped at 10 min: a
# board that cannot run wears its flash (a seq reservation per boot) and battery less, and a
# person at the console has time to read what happened
_BACKOFF_FIRST_MS = const(5000)
_BACKOFF_MAX_MS = const(600000)
# why: a normal boot that ran an hour (~4 uploads and dozens of signatures at the default
# intervals) has been through every allocation pattern of operation: the episode is over
_HEALTHY_MS = const(3600000)
# why: the health check is two int comparisons; once a minute is plenty for hour-scale decisions
_WATCH_MS = const(60000)


class RealClock:
    """The port's clock: ticks_ms/ticks_diff, async sleep_ms and a blocking block_ms for drivers.

    MicroPython uses time.ticks_* (wrap-safe) and asyncio.sleep_ms; CPython a monotonic stand-in.
    """

    def __init__(self):
        import time

        self._time = time
        if hasattr(time, "ticks_ms"):
            self.ticks_ms = time.ticks_ms
            self.ticks_diff = time.ticks_diff
            self.block_ms = time.sleep_ms
        else:
            mono = time.monotonic  # pyright: ignore[reportAttributeAccessIssue] (CPython only)
            self.ticks_ms = lambda: int(mono() * 1000)
            self.ticks_diff = lambda a, b: a - b
            self.block_ms = lambda ms: time.sleep(ms / 1000)

    async def sleep_ms(self, ms):
        """Sleep ms milliseconds without blocking other tasks."""
        fn = getattr(asyncio, "sleep_ms", None)
        if fn is not None:
            await fn(ms)
        else:
            await asyncio.sleep(ms / 1000)


class Board:
    """One running board: sampler + peripheral over its storage, radio and sensors.

    Built by firmware.app.build_board(); start() launches the asyncio tasks, stop() cancels them.
    degraded: True when built without sensors after a MemoryError (main.py): it still
    journals heartbeats and uploads, so a full journal drains.
    """

    def __init__(self, sampler, peripheral, pollers=(), degraded=False):
        # (not the profile: build_board has read what it needs, and its dict would stay on the heap)
        self.sampler = sampler
        self.peripheral = peripheral
        self.pollers = pollers
        self.degraded = degraded
        self.dev_id = sampler.dev_id
        self.public_key = sampler.signer.public_key
        self.journal = sampler.journal
        self._tasks = []
        self.running = False
        # firmware.power.DutyCycle of a battery profile (build_board sets it), else None; woke:
        # this boot resumed the chain after a deep sleep (no boot event: the boot did not change)
        self.duty = None
        self.woke = False
        self._watch = None

    def set_duty(self, duty, woke):
        """Make this a battery board run by duty (firmware.power.DutyCycle); woke: the boot resumed
        the chain after a deep sleep (no boot event). Returns nothing; call before start()."""
        self.duty = duty
        self.woke = woke

    def coroutines(self):
        """Journal the boot event and return the board's task coroutines (sampling, heartbeat,
        BLE peripheral, and the GPS poll task when there are pollers) for a caller-driven loop;
        start() runs them as asyncio tasks."""
        s = self.sampler
        s.running = True
        self.running = True
        if not self.woke:
            s.event(_EV_BOOT)
        if self.duty is not None:  # battery profile: one task steps, serves windows and sleeps
            return [self.duty.run(self, self._watch)]
        tasks = [s.sample_task(), s.heartbeat_task(), self.peripheral.run()]
        if self.pollers:
            tasks.append(self._poll_task())
        return tasks

    async def _poll_task(self):
        """Run every poller (GPS UART drain) every GPS_POLL_MS until stop(); errors are counted."""
        clock = self.sampler.time.clock
        while self.running:
            for fn in self.pollers:
                try:
                    fn()
                except Exception:
                    self.sampler.errors += 1
            await clock.sleep_ms(GPS_POLL_MS)

    async def start(self):
        """Journal the boot event and start sampling, heartbeats and the BLE peripheral as asyncio
        tasks on the running loop; returns at once."""
        self._tasks = [asyncio.create_task(c) for c in self.coroutines()]

    def stop(self):
        """Stop every task, advertising and the connection; returns nothing (safe to call twice)."""
        self.running = False
        self.sampler.running = False
        self.peripheral.stop()
        for t in self._tasks:
            t.cancel()
        self._tasks = []

    def drained(self):
        """Return True when the journal holds no unacked record (every upload was acked)."""
        j = self.journal
        return j.acked_seq >= j.last_seq

    async def run(self, watch=None, watch_ms=_IDLE_MS):
        """start(), then keep the board alive until stop(); watch(board), when given, is called
        every watch_ms (main.py's health check: it may stop the board or reset it; a battery
        board's DutyCycle calls it once per wake instead)."""
        self._watch = watch
        await self.start()
        clock = self.sampler.time.clock
        while self.running:
            await clock.sleep_ms(watch_ms)
            if watch is not None:
                watch(self)


def get_i32(nvs, key):
    """Return the i32 stored under key in nvs, 0 when there is none (or it cannot be read)."""
    try:
        return nvs.get_i32(key)
    except OSError:
        return 0


def put_i32(nvs, key, value):
    """Store value under key and commit; returns nothing (a failing NVS is not worth a crash)."""
    try:
        nvs.set_i32(key, value)
        nvs.commit()
    except OSError:
        pass


def backoff_ms(ooms):
    """Return the sleep before the reset after the ooms-th MemoryError in a row (ooms >= 1):
    _BACKOFF_FIRST_MS doubled per earlier one, at most _BACKOFF_MAX_MS."""
    ms = _BACKOFF_FIRST_MS
    for _ in range(ooms - 1):
        ms *= 2
        if ms >= _BACKOFF_MAX_MS:
            return _BACKOFF_MAX_MS
    return ms


class Watch:
    """The health check Board.run calls every _WATCH_MS; ends a MemoryError episode.

    The NVS counter _OOM_KEY: 0 normal; n > 0 after n MemoryError resets in a row, and such a
    boot runs degraded (no sensors: heartbeats and uploads only, so a full journal drains);
    -n: the degraded boot drained its journal and reset to try the full build once more,
    remembering n (a new MemoryError makes it n + 1, with a longer back-off).
    Degraded and drained: store -n, reset. Normal and up _HEALTHY_MS: store 0.
    """

    def __init__(self, nvs, ooms, machine):
        self.nvs = nvs
        self.ooms = ooms
        self.machine = machine

    def __call__(self, board):
        if self.ooms == 0:
            return
        if board.degraded:
            if board.drained():
                put_i32(self.nvs, _OOM_KEY, -self.ooms)
                board.stop()
                self.machine.reset()
        elif board.sampler.time.uptime_ms() >= _HEALTHY_MS:
            put_i32(self.nvs, _OOM_KEY, 0)
            self.ooms = 0


def run_board(ble, nvs, machine, urandom, degraded, watch):
    """Build the board from board.json (no sensors when degraded), unload the boot-only code and
    run it until reset. Precondition: ble is active (main() did it first)."""
    from firmware import app
    from firmware.fs import VfsFS

    profile = app.load_profile(PROFILE_PATH)  # validated; firmware.board is unloaded again
    buses = {} if degraded else app.make_buses(profile, machine)
    sleeper = None
    clock = RealClock()
    if profile.get("power") and not degraded:  # a degraded boot stays awake until it drains
        from firmware.power import Sleeper

        sleeper = Sleeper(machine)
        if profile["power"].get("sleep", "none") != "none":
            clock.block_ms = sleeper.block_ms  # drivers' waits (DS18B20 conversion) light-sleep
    board = app.build_board(
        profile, ble, VfsFS(), nvs, buses, clock, urandom, degraded=degraded,
        table_path=TABLE_PATH, sleeper=sleeper, unload=True,
    )  # fmt: skip
    app.unload_boot_modules()
    app = None  # noqa: F841 (the last reference: the boot code can now be collected)
    profile = buses = sleeper = None  # noqa: F841 (held by this frame while the board runs)
    asyncio.run(board.run(watch, _WATCH_MS))


def boot(ble, nvs, machine, urandom, sleep_ms, run=run_board):
    """Run the board (run(ble, nvs, machine, urandom, degraded, watch)) until it fails, then
    sleep and machine.reset(); returns only when reset() returns (host stand-ins).

    MemoryError: counted in NVS (_OOM_KEY, _OOM_TOTAL_KEY); the next boot runs degraded; the sleep
    doubles per MemoryError in a row (backoff_ms). Anything else: printed, 5 s, reset.
    """
    ooms = get_i32(nvs, _OOM_KEY)
    degraded = ooms > 0
    try:
        run(ble, nvs, machine, urandom, degraded, Watch(nvs, ooms, machine))
        wait_ms = _RESET_DELAY_MS
    except MemoryError:
        # The failed frames are gone: what they held is garbage now, so the little this needs fits.
        import gc

        gc.collect()
        ooms = (ooms if ooms > 0 else -ooms) + 1
        put_i32(nvs, _OOM_KEY, ooms)
        put_i32(nvs, _OOM_TOTAL_KEY, get_i32(nvs, _OOM_TOTAL_KEY) + 1)
        wait_ms = backoff_ms(ooms)
        print("MemoryError: reset", ooms, "in a row; next boot degraded, in", wait_ms, "ms")
    except Exception as e:  # anything unexpected: show it, then start over from durable state
        import sys

        show = getattr(sys, "print_exception", None)  # MicroPython; CPython (host tests): repr
        if show is None:
            print(repr(e))
        else:
            show(e)
        wait_ms = _RESET_DELAY_MS
    sleep_ms(wait_ms)
    machine.reset()


def main(ble):
    """The board's power-on after main.py activated ble: boot() until reset."""
    import os
    import time

    import esp32
    import machine

    boot(ble, esp32.NVS(NVS_NAMESPACE), machine, os.urandom, time.sleep_ms)
