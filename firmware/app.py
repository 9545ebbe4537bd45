"""Wires a board profile, buses, BLE, storage and a clock into the sampler and the peripheral."""

import asyncio

from micropython import const

from firmware import ed25519, wire
from firmware.journal import MAX_JOURNAL_BYTES, Journal
from firmware.keystore import KeyStore
from firmware.peripheral import Peripheral
from firmware.sampler import DeviceTime, Sampler, Source
from firmware.seqcounter import FileKV, SeqCounter

FIRMWARE_VERSION = (0, 1, 0)
_NVS_BLOB_BYTES = const(64)  # the seq counter's slots are 20 bytes; FileKV reads up to 64
_IDLE_MS = const(1000)


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


class NvsKV:
    """The seq counter's key-value interface (get/put of small blobs) over an esp32.NVS object."""

    def __init__(self, nvs):
        self._nvs = nvs
        self._buf = bytearray(_NVS_BLOB_BYTES)

    def get(self, key):
        """Return the blob stored under key, or None."""
        try:
            n = self._nvs.get_blob(key, self._buf)
        except OSError:
            return None
        return bytes(self._buf[:n])

    def put(self, key, value):
        """Store value under key and commit (durable when this returns)."""
        self._nvs.set_blob(key, value)
        self._nvs.commit()


def _types(sensor):
    """Return [(type_id, channel)] of a profile sensor's channels."""
    from firmware.board import CHANNEL_TYPES

    return [(CHANNEL_TYPES[c["type"]], c["channel"]) for c in sensor["channels"]]


def _unsupported(name):
    def read():
        raise NotImplementedError("no runtime adapter for sensor " + name)

    return read


def make_source(sensor, buses, clock, readings):
    """Return a Source reading one profile sensor through its driver.

    buses: {bus name: bus object} plus {"<sensor>.<role>": Pin/ADC} for dedicated pins.
    readings: {sensor name: {type_id: value}} shared between sources (do_probe reads its water
    temperature there). Drivers without an adapter (ble_beacon, hx711) give a source whose read()
    raises, which the sampler reports once as a sensor-fault event.
    """
    name = sensor["name"]
    driver = sensor["driver"]
    params = sensor.get("params") or {}
    chans = _types(sensor)
    block = getattr(clock, "block_ms", None)
    fault_type = chans[0][0]
    last = {}
    readings[name] = last

    def emit(pairs):
        out = []
        for type_id, channel in chans:
            v = pairs.get(type_id)
            if v is not None:
                out.append((type_id, channel, v))
                last[type_id] = v
        return out

    if driver == "ds18b20":
        from firmware.drivers.ds18b20 import DS18B20

        rom = params.get("rom")
        dev = DS18B20(
            buses[sensor["bus"]],
            None if rom is None else bytes.fromhex(rom),
            params.get("resolution_bits", 12),
            block,
        )

        def read():
            return emit({wire.CH_TEMPERATURE: dev.measure_c01()})

    elif driver == "sht3x":
        from firmware.drivers.sht3x import SHT3x

        dev = SHT3x(buses[sensor["bus"]], sensor["address"], block)

        def read():
            t, rh = dev.measure()
            return emit({wire.CH_TEMPERATURE: t, wire.CH_HUMIDITY: rh})

    elif driver == "analog_probe":
        from firmware.drivers.analog_probe import INPUT_MV, INPUT_U16, AnalogProbe, CalibrationTable

        table = CalibrationTable([tuple(p) for p in params["calibration"]])
        mode = INPUT_U16 if params.get("input") == "u16" else INPUT_MV
        dev = AnalogProbe(buses[name + ".adc"], table, mode, params.get("samples", 8))
        type_id = chans[0][0]

        def read():
            return emit({type_id: dev.read()})

    elif driver == "do_probe":
        from firmware.drivers.analog_probe import DissolvedOxygenProbe

        dev = DissolvedOxygenProbe(
            buses[name + ".adc"],
            [tuple(p) for p in params["saturation_mv"]],
            params.get("samples", 8),
        )
        ref = params["temperature_sensor"]

        def read():
            t = readings.get(ref, {}).get(wire.CH_TEMPERATURE)
            if t is None:
                raise ValueError("no water temperature from " + ref)
            return emit({wire.CH_DISSOLVED_OXYGEN: dev.read_c01(t)})

    elif driver == "ina219":
        from firmware.drivers.ina219 import INA219

        kw = {"ticks_ms": clock.ticks_ms, "ticks_diff": clock.ticks_diff}
        if "config" in params:
            kw["config"] = params["config"]
        dev = INA219(
            buses[sensor["bus"]], params["shunt_uohm"], params["current_lsb_ua"],
            sensor["address"], **kw,
        )  # fmt: skip

        def read():
            bus_mv, current_ma, power_mw = dev.update()
            return emit(
                {
                    wire.CH_VOLTAGE: bus_mv,
                    wire.CH_CURRENT: current_ma,
                    wire.CH_POWER: power_mw,
                    wire.CH_ENERGY: dev.energy_fwd_uwh() // 1000000,
                }
            )

    elif driver == "tamper":
        from firmware.drivers.tamper import TamperSwitch

        kw = {"ticks_ms": clock.ticks_ms, "ticks_diff": clock.ticks_diff}
        if "debounce_ms" in params:
            kw["debounce_ms"] = params["debounce_ms"]
        if "open_level" in params:
            kw["open_level"] = params["open_level"]
        dev = TamperSwitch(buses[name + ".pin"], **kw)

        def read():
            return emit({wire.CH_TAMPER: dev.poll()})

    else:
        read = _unsupported(name)
    return Source(name, read, fault_type)


class Board:
    """One running board: sampler + peripheral over its storage, radio and sensors.

    Built by build_board(); start() launches the asyncio tasks, stop() cancels them.
    """

    def __init__(self, profile, sampler, peripheral):
        self.profile = profile
        self.sampler = sampler
        self.peripheral = peripheral
        self.dev_id = sampler.dev_id
        self.public_key = sampler.signer.public_key
        self.journal = sampler.journal
        self._tasks = []
        self.running = False

    def coroutines(self):
        """Journal the boot event and return the board's task coroutines (sampling, heartbeat,
        BLE peripheral) for a caller-driven loop; start() runs them as asyncio tasks."""
        s = self.sampler
        s.running = True
        self.running = True
        s.event(wire.EV_BOOT)
        return [s.sample_task(), s.heartbeat_task(), self.peripheral.run()]

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
    signer = ed25519.SigningKey(seed)
    dev_id = wire.device_id(signer.public_key)
    journal = Journal(fs, "journal", journal_bytes)
    kv = FileKV(fs, "state") if nvs is None else NvsKV(nvs)
    seqs = SeqCounter(kv, max(journal.last_seq, 0))
    if sources is None:
        readings = {}
        sources = [make_source(s, buses, clock, readings) for s in profile["sensors"]]
    kw = {}
    if sign_every_n is not None:
        kw["sign_every_n"] = sign_every_n
    sampler = Sampler(
        journal, seqs, signer, dev_id, DeviceTime(clock), sources, profile["sample_interval_s"],
        profile["heartbeat_interval_s"], **kw,
    )  # fmt: skip
    peripheral = Peripheral(ble, sampler, profile["name"], firmware_version, uuid=uuid)
    return Board(profile, sampler, peripheral)


async def run(profile, ble, fs, nvs, buses, clock, urandom):
    """Build the board and run it forever (the on-board entry point's body)."""
    board = build_board(profile, ble, fs, nvs, buses, clock, urandom)
    await board.run()
