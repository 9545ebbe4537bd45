"""Wires a board profile, buses, BLE, storage and a clock into the sampler and the peripheral."""

import asyncio
import hashlib

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
# GPS: the UART is drained this often between samples, so the parsed fix is never older than this
# plus one NMEA period, whatever sample_interval_s is (the ESP32 UART ring buffer keeps the oldest
# bytes when full: drained only at a 30 s sample it would hand out a 30 s old position).
GPS_POLL_MS = const(250)
# QMC5883L: first conversion after configure() at 10 Hz (datasheet ODR) plus margin.
_MAG_SETTLE_MS = const(110)
_COMMITMENT_BYTES = const(16)
_MIN_SALT_BYTES = const(16)
_HX711_GAINS = {128: 1, 32: 2, 64: 3}  # profile gain -> firmware.drivers.hx711 GAIN_A128/B32/A64


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
    types = wire.CHANNEL_TYPES
    return [(types[c["type"]], c["channel"]) for c in sensor["channels"]]


def load_profile(path):
    """Return the validated profile read from the JSON file at path (firmware.board.parse), then
    unload firmware.board: its ~15 KB of code is only needed to validate, and the running board
    needs that RAM. Raises what board.parse raises (ValueError, OSError)."""
    import sys

    import firmware
    from firmware import board

    with open(path) as f:
        profile = board.parse(f.read(), path)
    board = None
    sys.modules.pop("firmware.board", None)
    if hasattr(firmware, "board"):  # the package keeps a reference to an imported submodule
        delattr(firmware, "board")
    return profile


def _unsupported(name):
    def read():
        raise NotImplementedError("no runtime adapter for sensor " + name)

    return read


def commitment(salt, vehicle_id):
    """Return the wire vehicle_commitment: SHA-256(salt || vehicle id)[0:16] (bytes)."""
    h = hashlib.sha256(salt)
    h.update(vehicle_id)
    return h.digest()[:_COMMITMENT_BYTES]


class Hooks:
    """What sources need from the rest of the board, collected by make_source for build_board.

    scanners: (on_result, on_done) pairs for Peripheral.set_scan_listener (ble_beacon);
    pollers: callables run every GPS_POLL_MS by Board's poll task (nmea_gps drains its UART).
    """

    def __init__(self):
        self.scanners = []
        self.pollers = []


def make_source(sensor, buses, clock, readings, hooks=None):
    """Return a Source reading one profile sensor through its driver.

    buses: {bus name: bus object} plus {"<sensor>.<role>": Pin/ADC} for dedicated pins.
    readings: {sensor name: {type_id: value}} shared between sources (do_probe reads its water
    temperature there). hooks: a Hooks collecting the scan listener (ble_beacon) and UART pollers
    (nmea_gps); without it a ble_beacon source never sees a beacon and the GPS is polled per sample
    only. Drivers without an adapter give a source whose read() raises, which the sampler reports
    once as a sensor-fault event. Faults of every adapter are the driver's exceptions.
    """
    name = sensor["name"]
    driver = sensor["driver"]
    params = sensor.get("params") or {}
    chans = _types(sensor)
    block = getattr(clock, "block_ms", None)
    fault_type = chans[0][0]
    last = {}
    readings[name] = last
    event_types = ()

    def emit(pairs):
        # pairs: {type_id: value} for every channel of that type, or {(type_id, channel): value}
        out = []
        for type_id, channel in chans:
            v = pairs.get((type_id, channel), pairs.get(type_id))
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
                    (wire.CH_ENERGY, 0): dev.energy_fwd_uwh() // 1000000,  # import
                    (wire.CH_ENERGY, 1): dev.energy_rev_uwh() // 1000000,  # export
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

    elif driver == "nmea_gps":
        from firmware.drivers.base import NotReadyError
        from firmware.drivers.nmea_gps import FIX_MAX_AGE_MS_DEFAULT, NmeaGps

        dev = NmeaGps(
            buses[sensor["bus"]], clock.ticks_ms, clock.ticks_diff,
            params.get("fix_max_age_ms", FIX_MAX_AGE_MS_DEFAULT),
        )  # fmt: skip
        if hooks is not None:
            hooks.pollers.append(dev.poll)

        def read():
            dev.poll()
            pos = dev.position()
            if pos is None:  # a fault; the sampler journals it once per lost-fix episode
                raise NotReadyError("no current GPS fix")
            return emit({wire.CH_LATITUDE: pos[0], wire.CH_LONGITUDE: pos[1]})

    elif driver == "qmc5883l":
        from firmware.drivers import qmc5883l

        dev = qmc5883l.QMC5883L(
            buses[sensor["bus"]], sensor["address"],
            qmc5883l.RANGE_8G if params.get("field_range_gauss") == 8 else qmc5883l.RANGE_2G,
        )  # fmt: skip
        det = qmc5883l.OccupancyDetector(
            params.get("on_threshold_c01", qmc5883l.ON_THRESHOLD_C01_DEFAULT),
            params.get("off_threshold_c01", qmc5883l.OFF_THRESHOLD_C01_DEFAULT),
            params.get("confirm_samples", qmc5883l.CONFIRM_SAMPLES_DEFAULT),
            params.get("baseline_samples", qmc5883l.BASELINE_SAMPLES_DEFAULT),
        )
        # the arrival/departure event carries the vehicle commitment of the same sample (if any)
        event_types = (wire.CH_VEHICLE_COMMITMENT,)
        configured = [False]

        def read():
            if not configured[0]:
                dev.configure()
                configured[0] = True
                if block is not None:
                    block(_MAG_SETTLE_MS)
            try:
                x, y, z = dev.read_c01()
            except Exception:
                configured[0] = False  # a reset chip stops converting: configure it again
                raise
            if not det.calibrated:
                det.update(x, y, z)
                return []  # collecting the empty-bay baseline: nothing to report yet, no fault
            change = det.update(x, y, z)
            if change == qmc5883l.ARRIVAL:
                src.event = wire.EV_ARRIVAL
            elif change == qmc5883l.DEPARTURE:
                src.event = wire.EV_DEPARTURE
            return emit(
                {wire.CH_OCCUPANCY: det.occupied, wire.CH_MAGNETIC_FIELD: det.deviation_c01}
            )

    elif driver == "ble_beacon":
        from firmware.drivers.ble_beacon import MIN_HITS_DEFAULT, MIN_RSSI_DBM_DEFAULT, BeaconReader

        prefix = params.get("id_prefix_hex")
        reader = BeaconReader(
            params.get("min_rssi_dbm", MIN_RSSI_DBM_DEFAULT),
            None if prefix is None else bytes.fromhex(prefix),
            params.get("min_hits", MIN_HITS_DEFAULT),
        )
        salt_hex = params.get("commitment_salt_hex")
        salt = None if salt_hex is None else bytes.fromhex(salt_hex)
        if salt is None or len(salt) < _MIN_SALT_BYTES:
            # unsalted, a commitment could be reversed by hashing every known tag id
            raise ValueError("sensor %s: commitment_salt_hex needs >= 16 bytes of hex" % name)
        window = [reader.take()]  # take() of the last completed scan: (kind, id, rssi) or None
        cache = [b"", b""]  # [vehicle id, its commitment]: hash once per vehicle

        def on_done():
            # IRQ context, like on_scan_result: the reader is never touched by two contexts
            window[0] = reader.take()

        if hooks is not None:
            hooks.scanners.append((reader.on_scan_result, on_done))

        def read():
            got = window[0]
            if got is None:
                return []  # no tag in the last scan: no commitment, not a fault
            vid = got[1]
            if vid != cache[0]:
                cache[0] = vid
                cache[1] = commitment(salt, vid)
            rssi = got[2]
            return emit(
                {wire.CH_VEHICLE_COMMITMENT: cache[1], wire.CH_RSSI: max(-127, min(20, rssi))}
            )

    elif driver == "hx711":
        from firmware.drivers.hx711 import HX711, SAMPLES_DEFAULT, LoadCell

        hx = HX711(
            buses[name + ".dout"], buses[name + ".sck"], _HX711_GAINS[params.get("gain", 128)]
        )
        cell = LoadCell(
            hx, params["tare_counts"], params["cal_counts"], params["cal_grams"],
            params.get("samples", SAMPLES_DEFAULT),
        )  # fmt: skip

        def read():
            # below the tare is drift or noise around an empty platform (the wire type is >= 0)
            return emit({wire.CH_WEIGHT: max(0, cell.read_grams())})

    else:
        read = _unsupported(name)
    src = Source(name, read, fault_type, event_types)  # read() of qmc5883l sets src.event
    return src


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
