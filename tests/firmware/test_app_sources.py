"""make_source and the drivers' source(): every driver of every profile, nmea_gps, qmc5883l,
ble_beacon, hx711, ina219 and the pond probes one by one, a made-up driver module, and the
parking-bay and collateral-tracker profiles end to end (bus fakes, the host BLE shim, simulated
flash)."""

import hashlib
import sys

from firmware import app, board, channels, drivers, ed25519, wire
from firmware.drivers.base import NotReadyError
from firmware.peripheral import Peripheral
from tests.firmware.fakes import (
    FakeADC,
    FakeClock,
    FakeDS18B20,
    FakeI2C,
    FakeOneWire,
    FakePin,
    FakeUART,
    raises,
)
from tests.firmware.simflash import SimFlash
from tests.firmware.test_board import fake_profile, install_fake_driver
from tests.firmware.test_sampler import Node, SimClock, SimLoop, check_chain
from tests.firmware.vectors import W

try:
    import bluetooth  # the host shim: tests/shims is on sys.path under pytest
except ImportError:  # the MicroPython VM: tools/mpvm.mjs copies tests/shims, not on sys.path
    try:
        from tests.shims import bluetooth
    except ImportError:  # a board: no shims
        bluetooth = None

VM_SKIP = {}
_WHY = "needs tests/shims/bluetooth.py (host shim, not deployed to boards)"

# NMEA reference sentences (tests/firmware/drivers/test_nmea_gps.py): 48.1173 N, 11.516666.. E.
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
LAT_E7 = 481173000
LON_E7 = 115166667
# iBeacon advert (tests/firmware/drivers/test_ble_beacon.py): the vehicle id is UUID + major + minor.
TAG_UUID = bytes(range(0x10, 0x20))
TAG_ID = TAG_UUID + b"\x00\x01\x00\x02"
IBEACON = b"\x02\x01\x06\x1a\xff\x4c\x00\x02\x15" + TAG_UUID + b"\x00\x01\x00\x02\xc5"
TAG_ADDR = b"\xc0\x11\x22\x33\x44\x55"
MAG_ADDR = 0x0D
# Empty bay: Earth field in raw 2 G counts (12000 LSB/G): x 20 uT, y -10 uT, z 40 uT.
EMPTY = (2400, -1200, 4800)
CAR = (2400 + 600, -1200, 4800 + 3000)  # +5 uT x, +25 uT z: deviation 3000 (0.01 uT)


def _urandom(n):
    return bytes((i * 53 + 7) & 0xFF for i in range(n))


def _profile(name):
    return board.load("boards/" + name + ".json")


def _sensor(profile, name):
    for s in profile["sensors"]:
        if s["name"] == name:
            return s
    raise KeyError(name)


def _salt():
    return bytes.fromhex(
        _sensor(_profile("parking-bay"), "vehicle_tag")["params"]["commitment_salt_hex"]
    )


def _le(v):
    v &= 0xFFFF
    return bytes([v & 0xFF, v >> 8])


def _mag_bus(field=EMPTY):
    i2c = FakeI2C()
    i2c.add_device(MAG_ADDR, {0x06: b"\x01", 0x0D: b"\xff"})
    _set_field(i2c, field)
    return i2c


def _set_field(i2c, field):
    data = _le(field[0]) + _le(field[1]) + _le(field[2])
    regs = i2c.regs[MAG_ADDR]
    for i in range(6):
        regs[i] = data[i : i + 1]


def _nmea(body):
    """Return '$' + body + '*hh' CRLF with the NMEA xor checksum."""
    x = 0
    for c in body.encode():
        x ^= c
    return ("$%s*%02X\r\n" % (body, x)).encode()


def _hx_levels(word, conversions):
    """DOUT levels for conversions of one 24-bit word: ready (0), then 24 bits MSB first."""
    one = [0] + [(word >> (23 - i)) & 1 for i in range(24)]
    out = []
    for _ in range(conversions):
        out += one
    return out


# ---- adapters one by one ---------------------------------------------------------------------


def test_nmea_gps_source_fix_and_no_fix():
    sensor = _sensor(_profile("collateral-tracker"), "gps")
    clock = FakeClock(5000)
    uart = FakeUART()
    hooks = app.Hooks()
    src = app.make_source(sensor, {"gnss": uart}, clock, {}, hooks)
    assert src.fault_type == W.CH_LATITUDE and len(hooks.pollers) == 1
    raises(NotReadyError, src.read)  # nothing received yet: a fault, not a value
    uart.feed(RMC[:30])
    raises(NotReadyError, src.read)  # half a sentence
    uart.feed(RMC[30:])
    assert src.read() == [(W.CH_LATITUDE, 0, LAT_E7), (W.CH_LONGITUDE, 0, LON_E7)]
    clock.advance(10000)
    assert len(src.read()) == 2  # fix_max_age_ms 10000: still current
    clock.advance(1)
    raises(NotReadyError, src.read)  # the receiver stopped talking: stale fix
    uart.feed(_nmea("GPRMC,123520,V,,,,,,,230394,,"))  # status V: fix lost
    hooks.pollers[0]()  # the board's poll task drains the UART between samples
    raises(NotReadyError, src.read)


def test_gps_fault_is_journaled_once_per_lost_fix_episode():
    n = Node()
    uart = FakeUART()
    clock = FakeClock()
    src = app.make_source(_sensor(_profile("collateral-tracker"), "gps"), {"gnss": uart}, clock, {})
    n.sampler.sources = [src]
    for _ in range(5):
        n.sampler.sample_once()  # no fix for five samples
    uart.feed(RMC)
    n.sampler.sample_once()
    clock.advance(20000)
    for _ in range(3):
        n.sampler.sample_once()  # fix lost again
    recs = [wire.parse(r) for r in n.records()]
    kinds = [p[0] for p in recs]
    assert kinds == [W.KIND_EVENT, W.KIND_READING, W.KIND_EVENT]
    fault = [
        (W.CH_EVENT_CODE, 0, W.EV_SENSOR_FAULT),
        (W.CH_EVENT_ARG, 0, W.CH_LATITUDE),
    ]
    assert recs[0][7] == fault and recs[2][7] == fault
    assert recs[1][7] == [(W.CH_LATITUDE, 0, LAT_E7), (W.CH_LONGITUDE, 0, LON_E7)]
    assert n.sampler.sensor_faults == 8


def test_qmc5883l_source_baseline_occupancy_and_events():
    sensor = _sensor(_profile("parking-bay"), "bay_mag")
    clock = SimClock()
    i2c = _mag_bus()
    src = app.make_source(sensor, {"i2c0": i2c}, clock, {})
    assert src.event_types == (W.CH_VEHICLE_COMMITMENT,)
    for _ in range(16):  # baseline_samples 16: the empty-bay baseline, nothing reported yet
        assert src.read() == []
    writes = [e for e in i2c.log if e[0] == "writeto_mem"]
    assert [e[2:] for e in writes] == [(0x0A, b"\x80"), (0x0B, b"\x01"), (0x09, b"\x01")]  # once
    assert clock.now_ms == 110  # waited for the first 10 Hz conversion after configure
    assert src.read() == [(W.CH_OCCUPANCY, 0, 0), (W.CH_MAGNETIC_FIELD, 0, 0)]
    _set_field(i2c, CAR)
    # deviation: 600 raw x -> 500, 3000 raw z -> 2500 (0.01 uT, x 5/6); L1 sum 3000 >= 1500
    assert src.read() == [(W.CH_OCCUPANCY, 0, 0), (W.CH_MAGNETIC_FIELD, 0, 3000)]
    assert src.read()[0] == (W.CH_OCCUPANCY, 0, 0) and src.event == 0
    assert src.read() == [(W.CH_OCCUPANCY, 0, 1), (W.CH_MAGNETIC_FIELD, 0, 3000)]
    assert src.event == W.EV_ARRIVAL  # confirm_samples 3: the third sample flips the state
    src.event = 0  # (the sampler clears it after journaling the event)
    assert src.read()[0] == (W.CH_OCCUPANCY, 0, 1) and src.event == 0
    _set_field(i2c, EMPTY)
    for _ in range(2):
        assert src.read() == [(W.CH_OCCUPANCY, 0, 1), (W.CH_MAGNETIC_FIELD, 0, 0)]
    assert src.read()[0] == (W.CH_OCCUPANCY, 0, 0) and src.event == W.EV_DEPARTURE


def test_qmc5883l_source_reconfigures_after_a_failed_read():
    sensor = _sensor(_profile("parking-bay"), "bay_mag")
    i2c = _mag_bus()
    src = app.make_source(sensor, {"i2c0": i2c}, SimClock(), {})
    src.read()
    i2c.regs[MAG_ADDR][0x06] = b"\x00"  # DRDY clear: the chip reset and stopped converting
    raises(NotReadyError, src.read)
    i2c.regs[MAG_ADDR][0x06] = b"\x01"
    src.read()
    resets = [e for e in i2c.log if e[0] == "writeto_mem" and e[2] == 0x0A]
    assert len(resets) == 2


def test_ble_beacon_source_commitment_and_rssi():
    sensor = _sensor(_profile("parking-bay"), "vehicle_tag")
    hooks = app.Hooks()
    src = app.make_source(sensor, {}, SimClock(), {}, hooks)
    assert len(hooks.scanners) == 1
    on_result, on_done = hooks.scanners[0]
    assert src.read() == []  # no scan yet: no commitment, not a fault
    on_result(0, TAG_ADDR, 0, -63, IBEACON)
    on_result(0, TAG_ADDR, 0, -58, IBEACON)
    on_result(0, TAG_ADDR, 0, -90, IBEACON)  # below min_rssi_dbm -75: ignored
    assert src.read() == []  # the scan is still running
    on_done()
    expected = hashlib.sha256(_salt() + TAG_ID).digest()[:16]
    assert src.read() == [(W.CH_VEHICLE_COMMITMENT, 0, expected), (W.CH_RSSI, 0, -58)]
    assert src.read()[0][2] == expected  # held until the next scan completes
    on_result(0, TAG_ADDR, 0, -60, IBEACON)  # one hit: min_hits 2 not reached
    on_done()
    assert src.read() == []
    assert app.commitment(b"s" * 16, b"id") == hashlib.sha256(b"s" * 16 + b"id").digest()[:16]


def test_ble_beacon_source_needs_a_salt():
    sensor = _sensor(_profile("parking-bay"), "vehicle_tag")
    del sensor["params"]["commitment_salt_hex"]
    raises(ValueError, app.make_source, sensor, {}, SimClock(), {})
    sensor["params"]["commitment_salt_hex"] = "00" * 15
    raises(ValueError, app.make_source, sensor, {}, SimClock(), {})


def test_ds18b20_source_writes_the_profile_resolution_before_converting():
    # a chip left at 12 bits in EEPROM would still be converting when a 9-bit wait ends
    chip = FakeDS18B20(b"\x28\x01\x02\x03\x04\x05\x06\x9e", temps=[0x00A0] * 10)  # 10.0 degC
    ow = FakeOneWire([chip])
    sensor = {"name": "t", "driver": "ds18b20", "bus": "ow0", "params": {"resolution_bits": 9},
              "channels": [{"type": "temperature", "channel": 0}]}  # fmt: skip
    src = app.make_source(sensor, {"ow0": ow}, SimClock(), {})
    assert src.read() == [(W.CH_TEMPERATURE, 0, 1000)]
    assert chip.config == 0x1F  # R1:R0 = 00: 9 bits, written by the source
    chip.config = 0x7F  # a power cycle: back to the EEPROM's 12 bits; the next read fails ...
    ow.devices.remove(chip)
    try:
        src.read()
        raise AssertionError("an unplugged probe read")
    except Exception:
        pass
    ow.devices.append(chip)  # ... and the source configures again before converting
    src.read()
    assert chip.config == 0x1F


def test_hx711_source_weight():
    sensor = _sensor(_profile("collateral-tracker"), "stock_scale")
    # tare 84250 counts, 426000 counts = 10000 g: 84250 + 213000 counts = 5000 g
    dout = FakePin(level=1, levels=_hx_levels(84250 + 213000, 5) + _hx_levels(84250 - 4260, 5))
    sck = FakePin()
    buses = {"stock_scale.dout": dout, "stock_scale.sck": sck}
    src = app.make_source(sensor, buses, SimClock(), {})
    assert dout.mode == FakePin.IN and sck.mode == FakePin.OUT
    assert src.read() == [(W.CH_WEIGHT, 0, 5000)]
    assert sck.writes[:50] == [1, 0] * 25  # gain 128: 24 bits + 1 pulse
    assert src.read() == [(W.CH_WEIGHT, 0, 0)]  # -100 g below the tare: 0 (the type is >= 0)
    raises(NotReadyError, src.read)  # DOUT idles high: not ready, a fault


# ---- the peripheral's scan hook ----------------------------------------------------------------


def test_peripheral_scans_periodically_and_copies_adv_data():
    n = Node()
    ble = bluetooth.BLE(0, n.clock)
    per = Peripheral(
        ble, n.sampler, "parking-bay", (0, 1, 0), uuid=bluetooth.UUID, urandom=lambda k: bytes(k)
    )
    got = []
    done = []
    per.set_scan_listener(lambda *a: got.append(a), lambda: done.append(n.clock.now_ms))
    loop = SimLoop(n.clock)
    loop.spawn(per.run())
    loop.run_for(10)
    assert ble.scan is not None and ble.scan[:3] == (1500, 100000, 50000)
    assert ble.scan_result(TAG_ADDR, -61, IBEACON)
    assert got[0][0] == 0 and got[0][2] == 0 and got[0][3] == -61
    assert got[0][4] == IBEACON and isinstance(got[0][4], bytes)  # survived the buffer reuse
    for _ in range(100):  # 10 s
        loop.run_for(100)
        ble.scan_tick()
    assert ble.scan_count == 4 and len(done) == 3  # a scan every 3 s, each 1.5 s long
    per.stop()
    assert ble.scan is None and len(done) == 4  # stopped: _IRQ_SCAN_DONE
    loop.close()


def test_peripheral_restarts_a_scan_whose_done_never_came():
    n = Node()
    ble = bluetooth.BLE(0, n.clock)
    per = Peripheral(
        ble, n.sampler, "parking-bay", (0, 1, 0), uuid=bluetooth.UUID, urandom=lambda k: bytes(k)
    )
    per.set_scan_listener(lambda *a: None)
    loop = SimLoop(n.clock)
    loop.spawn(per.run())
    loop.run_for(10)
    assert ble.scan_count == 1
    ble.scan = None  # the stack ended it without an IRQ
    loop.run_for(2600)
    assert ble.scan_count == 1 and ble.scan is None
    loop.run_for(500)
    assert ble.scan_count == 2 and per.errors == 0
    per.stop()
    loop.close()


# ---- whole boards ------------------------------------------------------------------------------


class _Bay:
    """The parking-bay profile on SimFlash, the BLE shim and an I2C magnetometer fake."""

    def __init__(self):
        self.clock = SimClock()
        self.ble = bluetooth.BLE(1, self.clock)
        self.i2c = _mag_bus()
        self.board = app.build_board(
            _profile("parking-bay"), self.ble, SimFlash(seed=11), None, {"i2c0": self.i2c},
            self.clock, _urandom, uuid=bluetooth.UUID,
        )  # fmt: skip
        self.loop = SimLoop(self.clock)
        for c in self.board.coroutines():
            self.loop.spawn(c)
        self.tag_rssi = None  # the vehicle's tag is heard at this RSSI while set

    def run_s(self, seconds):
        for _ in range(seconds * 10):
            self.loop.run_for(100)
            if self.tag_rssi is not None:
                self.ble.scan_result(TAG_ADDR, self.tag_rssi, IBEACON)
                self.ble.scan_result(b"\x01\x02\x03\x04\x05\x06", -40, b"\x02\x01\x06")  # a phone
            self.ble.scan_tick()

    def records(self):
        return [r for _, r in self.board.journal.iter_from(0)]


def _verify(public_key, rec):
    p = wire.parse(rec)
    return p[9] and ed25519.verify(public_key, rec[: p[8]], rec[p[8] :])


def test_parking_bay_arrival_and_departure_end_to_end():
    bay = _Bay()
    bay.run_s(20)  # baseline (16 samples) of the empty bay
    bay.tag_rssi = -62  # the car approaches: its tag is heard
    bay.run_s(2)
    _set_field(bay.i2c, CAR)  # the car is over the sensor
    bay.run_s(8)
    bay.tag_rssi = None
    _set_field(bay.i2c, EMPTY)  # it leaves
    bay.run_s(8)
    recs = bay.records()
    check_chain(recs, bay.board.dev_id)
    parsed = [wire.parse(r) for r in recs]
    commit = hashlib.sha256(_salt() + TAG_ID).digest()[:16]
    events = [i for i, p in enumerate(parsed) if p[0] == W.KIND_EVENT]
    codes = [parsed[i][7][0][2] for i in events]
    assert codes == [W.EV_BOOT, W.EV_ARRIVAL, W.EV_DEPARTURE]
    arr = events[1]
    # the arrival: a reading with occupancy 1 and the commitment, then the signed arrival event
    reading = parsed[arr - 1]
    assert reading[0] == W.KIND_READING
    assert reading[7] == [
        (W.CH_OCCUPANCY, 0, 1),
        (W.CH_MAGNETIC_FIELD, 0, 3000),
        (W.CH_VEHICLE_COMMITMENT, 0, commit),
        (W.CH_RSSI, 0, -62),
    ]
    assert parsed[arr - 2][7][0] == (W.CH_OCCUPANCY, 0, 0)  # the sample before: still vacant
    assert parsed[arr][7] == [
        (W.CH_EVENT_CODE, 0, W.EV_ARRIVAL),
        (W.CH_VEHICLE_COMMITMENT, 0, commit),
    ]
    assert _verify(bay.board.public_key, recs[arr])
    # the signature covers the reading too: the signed event's prev_hash is the reading's hash
    assert parsed[arr][6] == wire.record_hash(recs[arr - 1], reading[8])
    assert TAG_ID not in b"".join(recs)  # the vehicle id never leaves the board
    dep = events[2]
    assert parsed[dep - 1][7][0] == (W.CH_OCCUPANCY, 0, 0)
    assert parsed[dep][7][0] == (W.CH_EVENT_CODE, 0, W.EV_DEPARTURE)
    assert _verify(bay.board.public_key, recs[dep])
    # readings while parked carry occupancy 1 and, while the tag is heard, the commitment
    parked = [p for p in parsed[arr + 1 : dep - 1] if p[0] == W.KIND_READING]
    assert parked and all(p[7][0] == (W.CH_OCCUPANCY, 0, 1) for p in parked)
    assert bay.board.sampler.sensor_faults == 0 and bay.board.peripheral._scanner.scans >= 12
    bay.board.stop()
    bay.loop.close()


def test_collateral_tracker_profile_end_to_end():
    clock = SimClock()
    uart = FakeUART()
    door = FakePin(level=0)  # normally closed switch, shut
    dout = FakePin(level=1, levels=_hx_levels(84250 + 426000, 5 * 4))  # 10 kg, four samples
    buses = {
        "gnss": uart,
        "door.pin": door,
        "stock_scale.dout": dout,
        "stock_scale.sck": FakePin(),
    }
    b = app.build_board(
        _profile("collateral-tracker"), bluetooth.BLE(1, clock), SimFlash(seed=12), None, buses,
        clock, _urandom, uuid=bluetooth.UUID,
    )  # fmt: skip
    assert len(b.pollers) == 1
    loop = SimLoop(clock)
    for c in b.coroutines():
        loop.spawn(c)
    for _ in range(60):  # the receiver talks once a second; the poll task drains the UART
        uart.feed(RMC)
        loop.run_for(1000)
    door.set_level(1)  # the door is opened and stays open
    loop.run_for(30000)
    recs = [wire.parse(r) for _, r in b.journal.iter_from(0)]
    readings = [p[7] for p in recs if p[0] == W.KIND_READING]
    assert len(readings) == 4 and len(uart.chunks) == 0  # samples at 0, 30, 60 and 90 s
    position = [(W.CH_LATITUDE, 0, LAT_E7), (W.CH_LONGITUDE, 0, LON_E7)]
    assert readings[0] == position + [(W.CH_TAMPER, 0, 0), (W.CH_WEIGHT, 0, 10000)]
    assert readings[1] == readings[0] and readings[2] == readings[0]
    # at 90 s the receiver was silent for 31 s (stale fix: fault), the door is open (latched)
    assert readings[3] == [(W.CH_TAMPER, 0, 1), (W.CH_WEIGHT, 0, 10000)]
    faults = [p[7] for p in recs if p[0] == W.KIND_EVENT and p[7][0][2] == W.EV_SENSOR_FAULT]
    assert faults == [[(W.CH_EVENT_CODE, 0, 5), (W.CH_EVENT_ARG, 0, W.CH_LATITUDE)]]
    b.stop()
    loop.close()


if bluetooth is None:
    for _name in list(globals()):
        if _name.startswith("test_") and ("peripheral" in _name or "end_to_end" in _name):
            VM_SKIP[_name] = _WHY


def test_ina219_source_reports_import_on_channel_0_and_export_on_channel_1():
    # Energy-meter profile: 10 mOhm shunt, 1 mA current LSB -> calibration 4096, power LSB 20 mW.
    # Exporting 10 A at 11.98 V: shunt -100 mV (0xD8F0 x 10 uV), current -10 A, power 5990 x 20 mW.
    i2c = FakeI2C()
    regs = {0x00: 0x019F, 0x01: 0xD8F0, 0x02: 0x5D98, 0x03: 0x1766, 0x04: 0xD8F0, 0x05: 0x1000}
    i2c.add_device(0x40, {r: bytes([v >> 8, v & 0xFF]) for r, v in regs.items()})
    clock = FakeClock()
    sensor = _sensor(_profile("energy-meter"), "pv_meter")
    sensor = dict(sensor, params=dict(sensor["params"], config=0x019F))
    src = app.make_source(sensor, {"i2c0": i2c}, clock, {})
    for _ in range(32):  # 119.8 W for 31 s = 3,713.8 J = 1.03 Wh exported
        values = src.read()
        clock.advance(1000)
    got = {(t, c): v for t, c, v in values}
    assert got[(W.CH_ENERGY, 0)] == 0
    assert got[(W.CH_ENERGY, 1)] == 1
    assert got[(W.CH_POWER, 0)] == -119800
    assert got[(W.CH_CURRENT, 0)] == -10000


def test_ina219_source_takes_max_gap_ms_from_the_profile():
    # a gap longer than max_gap_ms is not integrated (the board was off or the bus failed)
    def exported_wh(max_gap_ms):
        i2c = FakeI2C()
        regs = {0x00: 0x019F, 0x01: 0xD8F0, 0x02: 0x5D98, 0x03: 0x1766, 0x04: 0xD8F0, 0x05: 0x1000}
        i2c.add_device(0x40, {r: bytes([v >> 8, v & 0xFF]) for r, v in regs.items()})
        clock = FakeClock()
        sensor = _sensor(_profile("energy-meter"), "pv_meter")
        params = dict(sensor["params"], config=0x019F, max_gap_ms=max_gap_ms)
        src = app.make_source(dict(sensor, params=params), {"i2c0": i2c}, clock, {})
        src.read()
        clock.advance(40000)  # 119.8 W for 40 s = 1.33 Wh, if integrated
        got = {(t, c): v for t, c, v in src.read()}
        return got[(W.CH_ENERGY, 1)]

    assert exported_wh(60000) == 1
    assert exported_wh(30000) == 0


# ---- the dispatcher ----------------------------------------------------------------------------


def _fake_buses(profile):
    """Return bus and pin fakes for every bus and dedicated pin of profile."""
    kinds = {"i2c": FakeI2C, "onewire": FakeOneWire, "uart": FakeUART}
    buses = {name: kinds[bus["type"]]() for name, bus in profile["buses"].items()}
    for s in profile["sensors"]:
        for role in s.get("pins") or {}:
            buses[s["name"] + "." + role] = FakeADC(uv=[1500000]) if role == "adc" else FakePin()
    return buses


def test_every_sensor_of_every_profile_gets_its_drivers_source():
    for profile in board.load_all("boards").values():
        buses = _fake_buses(profile)
        readings = {}
        hooks = app.Hooks()
        for s in profile["sensors"]:
            src = app.make_source(s, buses, SimClock(), readings, hooks)
            assert src.name == s["name"] and s["name"] in readings, s["name"]
            assert src.fault_type == channels.CHANNEL_TYPES[s["channels"][0]["type"]], s["name"]
            assert "firmware.drivers." + drivers.MODULES[s["driver"]] in sys.modules, s["name"]
        gps = [s for s in profile["sensors"] if s["driver"] == "nmea_gps"]
        tags = [s for s in profile["sensors"] if s["driver"] == "ble_beacon"]
        assert (len(hooks.pollers), len(hooks.scanners)) == (len(gps), len(tags)), profile["name"]


def test_pond_monitor_probe_sources():
    profile = _profile("pond-monitor")
    ow = FakeOneWire([FakeDS18B20(bytes(8), temps=[0x0191] * 10)])  # 25.0625 degC
    buses = {
        "ow0": ow,
        "do.adc": FakeADC(uv=[1600000]),  # the probe's air-saturation output: 100 %
        "ph.adc": FakeADC(uv=[1500000]),  # 1500 mV: pH 7.000 on the table
        "ammonia.adc": FakeADC(uv=[250000]),  # 250 mV: 0.100 mg/L
    }
    readings = {}
    src = {s["name"]: app.make_source(s, buses, SimClock(), readings) for s in profile["sensors"]}
    e = raises(ValueError, src["do"].read)  # no water temperature read yet
    assert "water_temp" in str(e)
    assert src["water_temp"].read() == [(W.CH_TEMPERATURE, 0, 2506)]
    assert readings["water_temp"] == {W.CH_TEMPERATURE: 2506}
    # DO_sat(25.06 degC) = 826 + round(-15 x 0.06) = 825 (0.01 mg/L); V = V_sat: 8.25 mg/L
    assert src["do"].read() == [(W.CH_DISSOLVED_OXYGEN, 0, 825)]
    assert src["ph"].read() == [(W.CH_PH, 0, 7000)]
    assert src["ammonia"].read() == [(W.CH_AMMONIA, 0, 100)]
    assert src["ph"].fault_type == W.CH_PH and src["do"].fault_type == W.CH_DISSOLVED_OXYGEN


def test_make_source_dispatches_to_the_driver_module():
    mod, uninstall = install_fake_driver()
    try:
        profile = fake_profile()
        board.validate(profile)
        readings = {}
        src = app.make_source(profile["sensors"][2], {}, SimClock(), readings)
        assert mod.built == ["tank"] and src.name == "tank" and src.fault_type == W.CH_TURBIDITY
        assert src.read() == [(W.CH_TURBIDITY, 0, 7)]
        assert readings["tank"] == {W.CH_TURBIDITY: 7}
    finally:
        uninstall()
    # a driver no module implements: a source whose read() raises (a sensor fault at run time)
    sensor = {"name": "x", "driver": "dht22", "channels": [{"type": "humidity", "channel": 3}]}
    readings = {}
    src = app.make_source(sensor, {}, SimClock(), readings)
    assert src.name == "x" and src.fault_type == W.CH_HUMIDITY and readings == {"x": {}}
    raises(NotImplementedError, src.read)


def test_load_profile_unloads_board_and_the_drivers_it_imported():
    import firmware

    package = sys.modules["firmware.drivers"]
    gone = ("firmware.drivers.nmea_gps", "firmware.drivers.tamper", "firmware.drivers.hx711")
    saved = {}
    for name in gone + ("firmware.board",):
        if name in sys.modules:
            saved[name] = sys.modules.pop(name)
    from firmware.drivers import sht3x  # loaded before: stays

    try:
        profile = app.load_profile("boards/collateral-tracker.json")
        assert [s["driver"] for s in profile["sensors"]] == ["nmea_gps", "tamper", "hx711"]
        assert profile["sensors"][0]["params"] == {"fix_max_age_ms": 10000}
        for name in gone + ("firmware.board",):
            assert name not in sys.modules, name
        assert not hasattr(package, "hx711") and not hasattr(firmware, "board")
        assert sys.modules["firmware.drivers.sht3x"] is sht3x
        app.load_profile("boards/cold-chain-logger.json")
        assert sys.modules["firmware.drivers.sht3x"] is sht3x and hasattr(package, "sht3x")
        # make_source brings a driver back
        src = app.make_source(profile["sensors"][2], _fake_buses(profile), SimClock(), {})
        assert src.name == "stock_scale" and "firmware.drivers.hx711" in sys.modules
    finally:
        for name in gone:
            sys.modules.pop(name, None)
        for name, mod in saved.items():
            sys.modules[name] = mod
            owner = package if name.startswith("firmware.drivers.") else firmware
            setattr(owner, name.split(".")[-1], mod)
