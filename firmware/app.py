"""Wires a board profile, buses, BLE, storage and a clock into the sampler and the peripheral."""

import asyncio

from micropython import const

from firmware import drivers, ed25519, wire
from firmware.journal import MAX_JOURNAL_BYTES, Journal
from firmware.keystore import KeyStore
from firmware.peripheral import Peripheral
from firmware.sampler import DeviceTime, Sampler
from firmware.seqcounter import FileKV, NvsKV, SeqCounter

FIRMWARE_VERSION = (0, 1, 0)
_IDLE_MS = const(1000)
# GPS: the UART is drained this often between samples, so the parsed fix is never older than this
# plus one NMEA period, whatever sample_interval_s is (the ESP32 UART ring buffer keeps the oldest
# bytes when full: drained only at a 30 s sample it would hand out a 30 s old position).
GPS_POLL_MS = const(250)


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


def load_profile(path):
    """Return the validated profile read from the JSON file at path (firmware.board.parse), then
    unload firmware.board and the driver modules it imported for their specs: its ~15 KB of code
    is only needed to validate, and the drivers come back when make_source builds the sensors, so
    they do not sit in RAM during the boot's big steps (journal mount, signer table) either.
    Raises what board.parse raises (ValueError, OSError)."""
    import sys

    import firmware
    from firmware import board

    before = [name for name in sys.modules if name.startswith("firmware.drivers.")]
    with open(path) as f:
        profile = board.parse(f.read(), path)
    board = None
    sys.modules.pop("firmware.board", None)
    if hasattr(firmware, "board"):  # the package keeps a reference to an imported submodule
        delattr(firmware, "board")
    package = sys.modules.get("firmware.drivers")
    for name in [n for n in sys.modules if n.startswith("firmware.drivers.") and n not in before]:
        sys.modules.pop(name)
        leaf = name[17:]  # after "firmware.drivers."
        if package is not None and hasattr(package, leaf):
            delattr(package, leaf)
    return profile


class Hooks:
    """What sources need from the rest of the board, collected by make_source for build_board.

    scanners: (on_result, on_done) pairs for Peripheral.set_scan_listener (ble_beacon);
    pollers: callables run every GPS_POLL_MS by Board's poll task (nmea_gps drains its UART).
    """

    def __init__(self):
        self.scanners = []
        self.pollers = []


def _unsupported(name):
    def read():
        raise NotImplementedError("no runtime adapter for sensor " + name)

    return read


def commitment(salt, vehicle_id):
    """Return the wire vehicle_commitment SHA-256(salt || vehicle id)[0:16]: the ble_beacon
    driver's firmware.drivers.ble_beacon.commitment, kept here for its callers (gateway demo)."""
    from firmware.drivers.ble_beacon import commitment as made

    return made(salt, vehicle_id)


def make_source(sensor, buses, clock, readings, hooks=None):
    """Return a Source reading one profile sensor through its driver: the source() of the driver's
    module (firmware.drivers.MODULES), imported now if no sensor used it before.

    buses: {bus name: bus object} plus {"<sensor>.<role>": Pin/ADC} for dedicated pins.
    readings: {sensor name: {type_id: value}} shared between sources (do_probe reads its water
    temperature there). hooks: a Hooks collecting the scan listener (ble_beacon) and UART pollers
    (nmea_gps); without it a ble_beacon source never sees a beacon and the GPS is polled per sample
    only. A driver without a module gives a source whose read() raises, which the sampler reports
    once as a sensor-fault event. Faults of every source are the driver's exceptions.
    """
    module = drivers.module(sensor["driver"])
    if module is None:
        from firmware.drivers.base import emitter, new_source

        emitter(sensor, readings)  # registers the sensor's (empty) readings, like every source
        return new_source(sensor, _unsupported(sensor["name"]))
    return module.source(sensor, buses, clock, readings, Hooks() if hooks is None else hooks)


class Board:
    """One running board: sampler + peripheral over its storage, radio and sensors.

    Built by build_board(); start() launches the asyncio tasks, stop() cancels them.
    """

    def __init__(self, profile, sampler, peripheral, pollers=()):
        self.profile = profile
        self.sampler = sampler
        self.peripheral = peripheral
        self.pollers = pollers
        self.dev_id = sampler.dev_id
        self.public_key = sampler.signer.public_key
        self.journal = sampler.journal
        self._tasks = []
        self.running = False

    def coroutines(self):
        """Journal the boot event and return the board's task coroutines (sampling, heartbeat,
        BLE peripheral, and the GPS poll task when there are pollers) for a caller-driven loop;
        start() runs them as asyncio tasks."""
        s = self.sampler
        s.running = True
        self.running = True
        s.event(wire.EV_BOOT)
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

    async def run(self):
        """start(), then keep the board alive until stop()."""
        await self.start()
        clock = self.sampler.time.clock
        while self.running:
            await clock.sleep_ms(_IDLE_MS)


def build_board(
    profile, ble, fs, nvs, buses, clock, urandom, sources=None, journal_bytes=MAX_JOURNAL_BYTES,
    firmware_version=FIRMWARE_VERSION, uuid=None, sign_every_n=None,
):  # fmt: skip
    """Return a Board (not started) from durable state, as the board does at power-on.

    profile: dict from firmware.board (name, sample/heartbeat intervals, sensors); ble: a
    bluetooth.BLE-compatible object; fs: firmware.fs.VfsFS or the simulated flash (journal, key,
    and the seq counter when nvs is None); nvs: an esp32.NVS object for the seq counter, or None;
    buses: {bus name: bus} plus {"<sensor>.<role>": Pin/ADC}; clock: ticks_ms(), ticks_diff(a, b),
    async sleep_ms(ms) and optionally block_ms(ms) for drivers; urandom(n) -> bytes (first boot
    only, makes the device key). sources: a list of sampler.Source replacing the profile's sensors.
    Raises KeyCorrupt (damaged key file) or ValueError (bad profile) instead of running.
    """
    seed = KeyStore(fs).load_or_create(urandom)
    # Mount before the signer exists: scanning a full journal allocates ~40 KB of short-lived
    # garbage, which then never coincides with the signer's 12 KB table (tools/firmware_heap.py).
    journal = Journal(fs, "journal", journal_bytes)
    signer = ed25519.SigningKey(seed)
    dev_id = wire.device_id(signer.public_key)
    kv = FileKV(fs, "state") if nvs is None else NvsKV(nvs)
    seqs = SeqCounter(kv, max(journal.last_seq, 0))
    hooks = Hooks()
    if sources is None:
        readings = {}
        sources = [make_source(s, buses, clock, readings, hooks) for s in profile["sensors"]]
    kw = {}
    if sign_every_n is not None:
        kw["sign_every_n"] = sign_every_n
    sampler = Sampler(
        journal, seqs, signer, dev_id, DeviceTime(clock), sources, profile["sample_interval_s"],
        profile["heartbeat_interval_s"], **kw,
    )  # fmt: skip
    peripheral = Peripheral(ble, sampler, profile["name"], firmware_version, uuid=uuid)
    if hooks.scanners:
        on_result, on_done = _fan_out(hooks.scanners)
        peripheral.set_scan_listener(on_result, on_done)
    return Board(profile, sampler, peripheral, hooks.pollers)


def _fan_out(scanners):
    """Return (on_result, on_done) for Peripheral.set_scan_listener from (on_result, on_done) pairs."""
    if len(scanners) == 1:
        return scanners[0]

    def on_result(addr_type, addr, adv_type, rssi, adv_data):
        for fn, _ in scanners:
            fn(addr_type, addr, adv_type, rssi, adv_data)

    def on_done():
        for _, fn in scanners:
            fn()

    return on_result, on_done


async def run(profile, ble, fs, nvs, buses, clock, urandom):
    """Build the board and run it forever (the on-board entry point's body)."""
    board = build_board(profile, ble, fs, nvs, buses, clock, urandom)
    await board.run()
