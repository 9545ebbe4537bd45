"""The chip models of tools/sim/devices.py answer the firmware's REAL drivers as the datasheet parts do.

For every model: the driver's source() (through firmware.app.make_source, on the buses of
build_buses, for every profile in boards/ that uses the driver) reads back the timeline's value
within the chip's resolution across the quantity's range, edges included; saturation where the
chip saturates surfaces as the driver's RangeError (or as the clipped value where the part has no
flag); the faults the datasheet allows (NACK, CRC, not ready, reset) surface as the driver's
errors. Expected values come from the physical quantity, never from the model's registers.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from firmware import app, board, channels
from firmware.drivers import analog_probe, ds18b20, hx711, ina219, nmea_gps, qmc5883l, sht3x
from firmware.drivers.base import CRCError, NoDeviceError, NotReadyError, RangeError, SensorError
from tests.firmware.vectors import W, private_const
from tools.sim.buses import EIO, ENODEV, FakeI2C, FakeOneWire, FakePin
from tools.sim.devices import (
    DEFAULTS,
    SimUART,
    Timelines,
    build_buses,
    constant,
    do_saturation_mg_l,
    ds18b20_raw,
)

ROOT = Path(__file__).resolve().parents[3]
PROFILES = board.load_all(str(ROOT / "boards"))


class Clock:
    """The board clock of a test: manual ms; block_ms (the drivers' waits) advances it."""

    def __init__(self, start_ms: int = 0) -> None:
        self.now_ms = start_ms

    def ticks_ms(self) -> int:
        return self.now_ms

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def block_ms(self, ms: int) -> None:
        self.now_ms += ms


class Rig:
    """One virtual board's sensors: build_buses + make_source for every sensor of the profile.

    state[sensor name] is a mutable dict the sensor's timeline returns, so a test changes the
    world and lets time pass.
    """

    def __init__(
        self, profile: dict, state: dict[str, dict] | None = None, hx711_sps: int | None = None
    ) -> None:
        self.profile = profile
        self.clock = Clock(5_000)
        self.state = {s["name"]: dict((state or {}).get(s["name"], {})) for s in profile["sensors"]}
        timelines = {name: (lambda t, v=v: v) for name, v in self.state.items()}
        self.buses = build_buses(profile, timelines, self.clock, hx711_sps=hx711_sps)
        self.readings: dict = {}
        self.hooks = app.Hooks()
        self.sources = {
            s["name"]: app.make_source(s, self.buses, self.clock, self.readings, self.hooks)
            for s in profile["sensors"]
        }

    def model(self, name: str) -> Any:
        return self.buses.models[name]

    def read(self, name: str) -> dict[tuple[int, int], Any]:
        """Read the sensor's source now; return {(type id, channel): value}."""
        return {(t, c): v for t, c, v in self.sources[name].read()}

    def value(self, name: str, type_id: int, channel: int = 0) -> Any:
        return self.read(name)[(type_id, channel)]

    def run(self, ms: int, step_ms: int = 10) -> None:
        """Let ms pass: buses.update() every step_ms, the GPS pollers every 250 ms (app.Board)."""
        end = self.clock.now_ms + ms
        next_poll = self.clock.now_ms
        while self.clock.now_ms < end:
            self.clock.now_ms = min(end, self.clock.now_ms + step_ms)
            self.buses.update()
            if self.clock.now_ms >= next_poll:
                for fn in self.hooks.pollers:
                    fn()
                next_poll += app.GPS_POLL_MS


def users(driver: str) -> list[tuple[dict, dict]]:
    """Return (profile, sensor) for every sensor of every profile in boards/ using driver."""
    return [(p, s) for p in PROFILES.values() for s in p["sensors"] if s["driver"] == driver]


def ids(cases: list[tuple[dict, dict]]) -> list[str]:
    return [p["name"] + "/" + s["name"] for p, s in cases]


def variant(profile: dict, sensor_name: str, **params: Any) -> dict:
    """Return a validated copy of profile with params of one sensor changed."""
    p = copy.deepcopy(profile)
    for s in p["sensors"]:
        if s["name"] == sensor_name:
            s["params"] = dict(s.get("params") or {}, **params)
    return board.validate(p)


def _errno(e: OSError) -> int:
    return e.errno if e.errno is not None else e.args[0]


# ==== DS18B20 ====================================================================================

DS18B20 = users("ds18b20")


@pytest.mark.parametrize(("profile", "sensor"), DS18B20, ids=ids(DS18B20))
def test_ds18b20_reads_the_timeline_across_its_range(profile: dict, sensor: dict) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    for t in (-55.0, -40.3, -10.125, -0.5, -0.01, 0.0, 0.03, 4.0, 25.0625, 61.7, 99.99, 125.0):
        rig.state[name]["temperature_c"] = t
        got = rig.value(name, W.CH_TEMPERATURE)
        assert abs(got - t * 100) <= 100 / 32 + 0.5, (t, got)  # 12 bits: 1/16 degC, nearest
    assert rig.clock.now_ms >= 5_000 + 12 * 750  # the driver waited tCONV every time


def test_ds18b20_genuine_85_degc_takes_a_second_conversion() -> None:
    rig = Rig(PROFILES["pond-monitor"], {"water_temp": {"temperature_c": 85.0}})
    assert rig.value("water_temp", W.CH_TEMPERATURE) == 8500
    assert rig.model("water_temp").conversions == 2  # the power-on value is confirmed once


@pytest.mark.parametrize(("profile", "sensor"), DS18B20, ids=ids(DS18B20))
def test_ds18b20_outside_minus_55_to_125_degc_is_a_range_error(profile: dict, sensor: dict) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    for t in (-60.0, -130.0, 126.0, 200.0):  # the register saturates at -128 / +127.9375 degC
        rig.state[name]["temperature_c"] = t
        with pytest.raises(RangeError):
            rig.read(name)


def test_ds18b20_scratchpad_updates_only_after_tconv() -> None:
    rig = Rig(PROFILES["pond-monitor"], {"water_temp": {"temperature_c": 12.5}})
    dev = ds18b20.DS18B20(rig.buses["ow0"], sleep_ms=rig.clock.block_ms)
    assert dev.start_conversion() == 750
    rig.clock.now_ms += 749
    with pytest.raises(ds18b20.PowerOnValueError):  # still converting: the power-on 85 degC
        dev.read_c01()
    rig.clock.now_ms += 1
    assert dev.read_c01() == 1250


def test_ds18b20_lower_resolution_rounds_to_its_step_and_the_driver_masks_the_undefined_bits() -> (
    None
):
    rig = Rig(PROFILES["pond-monitor"], {"water_temp": {"temperature_c": 25.3}})
    assert ds18b20_raw(25.3, 9) & 7 == 7  # undefined low bits are set by the model
    for bits, expected in ((9, 2550), (10, 2525), (11, 2525), (12, 2531)):
        dev = ds18b20.DS18B20(rig.buses["ow0"], resolution_bits=bits, sleep_ms=rig.clock.block_ms)
        dev.configure()
        assert dev.measure_c01() == expected, bits


def test_ds18b20_source_with_9_bit_resolution_reads_the_current_temperature() -> None:
    profile = variant(PROFILES["pond-monitor"], "water_temp", resolution_bits=9)
    rig = Rig(profile, {"water_temp": {"temperature_c": 10.0}})
    assert abs(rig.value("water_temp", W.CH_TEMPERATURE) - 1000) <= 25


def test_ds18b20_faults_surface_as_the_drivers_errors() -> None:
    rig = Rig(PROFILES["cold-chain-logger"])
    probe = rig.model("product_probe")
    bus = rig.buses["ow0"]
    probe.bad_crc = True
    with pytest.raises(CRCError):
        rig.read("product_probe")
    probe.bad_crc = False
    bus.fail.append(OSError(EIO))
    with pytest.raises(OSError):
        rig.read("product_probe")
    bus.devices.remove(probe)  # unplugged: no presence pulse
    with pytest.raises(NoDeviceError):
        rig.read("product_probe")
    bus.devices.append(probe)
    assert rig.value("product_probe", W.CH_TEMPERATURE) == 2000


# ==== SHT3x ======================================================================================

SHT3X = users("sht3x")


@pytest.mark.parametrize(("profile", "sensor"), SHT3X, ids=ids(SHT3X))
def test_sht3x_reads_the_timeline_across_its_range(profile: dict, sensor: dict) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    t_ch = next(c["channel"] for c in sensor["channels"] if c["type"] == "temperature")
    for t in (-45.0, -40.0, -10.5, -0.01, 0.0, 23.7, 60.0, 99.9, 125.0, 130.0):
        for rh in (0.0, 0.5, 12.3, 50.0, 99.9, 100.0):
            rig.state[name].update(temperature_c=t, humidity_rh=rh)
            got = rig.read(name)
            # one raw step is 175/65535 degC and 100/65535 %RH; the driver rounds to 0.01
            assert abs(got[(W.CH_TEMPERATURE, t_ch)] - t * 100) <= 17500 / 65535 / 2 + 0.5
            assert abs(got[(W.CH_HUMIDITY, 0)] - rh * 100) <= 10000 / 65535 / 2 + 0.5


def test_sht3x_clips_at_its_output_range_without_a_flag() -> None:
    # the part has no overflow flag: its words saturate at 0 / 65535 (-45 / 130 degC, 0 / 100 %RH)
    rig = Rig(PROFILES["esp32-devkitc"])
    for (t, rh), expected in (((-50.0, -3.0), (-4500, 0)), ((140.0, 104.0), (13000, 10000))):
        rig.state["room_air"].update(temperature_c=t, humidity_rh=rh)
        got = rig.read("room_air")
        assert (got[(W.CH_TEMPERATURE, 1)], got[(W.CH_HUMIDITY, 0)]) == expected


def test_sht3x_nacks_until_the_measurement_is_done_and_after_the_data_was_read() -> None:
    rig = Rig(PROFILES["esp32-devkitc"], {"room_air": {"temperature_c": 21.0}})
    dev = sht3x.SHT3x(rig.buses["i2c0"], 0x44, rig.clock.block_ms)
    with pytest.raises(OSError) as e:  # nothing measured yet
        dev.read()
    assert _errno(e.value) == ENODEV
    dev.start()
    rig.clock.now_ms += 14
    with pytest.raises(OSError):  # high repeatability takes up to 15 ms
        dev.read()
    rig.clock.now_ms += 1
    assert dev.read() == (2100, 5000)
    with pytest.raises(OSError):  # the result is sent once
        dev.read()


def test_sht3x_status_register_and_faults() -> None:
    rig = Rig(PROFILES["cold-chain-logger"])
    dev = sht3x.SHT3x(rig.buses["i2c0"], 0x44, rig.clock.block_ms)
    assert dev.read_status() == private_const(sht3x, "_STATUS_ALERT", 0x8000) | private_const(
        sht3x, "_STATUS_RESET_DETECTED", 0x0010
    )
    dev.clear_status()
    assert dev.read_status() == 0
    dev.soft_reset()
    assert dev.read_status() & private_const(sht3x, "_STATUS_RESET_DETECTED", 0x0010)
    model = rig.model("crate_air")
    model.corrupt_crc = 1
    with pytest.raises(CRCError):
        rig.read("crate_air")
    assert rig.read("crate_air")[(W.CH_HUMIDITY, 0)] == 5000
    model.present = False
    with pytest.raises(OSError) as e:
        rig.read("crate_air")
    assert _errno(e.value) == ENODEV


# ==== INA219 =====================================================================================

INA219 = users("ina219")


def _configured(rig: Rig, name: str) -> None:
    """The adapter configures the chip (power-on calibration 0) before its first read, which
    raises nothing; the conversions with the new settings are ready a conversion time later."""
    rig.read(name)
    assert rig.model(name).calibration != 0
    rig.run(300)


@pytest.mark.parametrize(("profile", "sensor"), INA219, ids=ids(INA219))
def test_ina219_reads_the_timeline_across_its_range(profile: dict, sensor: dict) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    params = sensor["params"]
    full_scale_a = 0.32 / (params["shunt_uohm"] / 1e6)  # +-320 mV at PGA /8
    shunt_lsb_ma = 10_000 / params["shunt_uohm"]  # 10 uV over the shunt, in mA
    lsb_ma = params["current_lsb_ua"] / 1000
    _configured(rig, name)
    for volts in (0.0, 3.3, 12.0, 26.0, 32.0):
        for amps in (-0.99 * full_scale_a, -1.234, 0.0, 0.001, 0.05, 2.5, 0.99 * full_scale_a):
            rig.state[name].update(bus_voltage_v=volts, current_a=amps)
            rig.run(150)  # one conversion: 2 x 68.1 ms at 12-bit x128
            got = rig.read(name)
            current_tol = shunt_lsb_ma / 2 + lsb_ma + 0.5
            assert abs(got[(W.CH_VOLTAGE, 0)] - volts * 1000) <= 2, (volts, amps)
            assert abs(got[(W.CH_CURRENT, 0)] - amps * 1000) <= current_tol, (volts, amps)
            power_tol = abs(amps) * 2 + volts * current_tol + 20 * lsb_ma + 1
            assert abs(got[(W.CH_POWER, 0)] - volts * amps * 1000) <= power_tol, (volts, amps)


def test_ina219_shunt_and_bus_saturate_silently_as_the_chip_does() -> None:
    # no flag for a saturated shunt (+-320 mV) or bus (32 V FSR): the reading clips at full scale
    rig = Rig(PROFILES["energy-meter"])
    _configured(rig, "pv_meter")
    rig.state["pv_meter"].update(bus_voltage_v=40.0, current_a=45.0)
    rig.run(150)
    got = rig.read("pv_meter")
    assert got[(W.CH_CURRENT, 0)] == 32000 and got[(W.CH_VOLTAGE, 0)] == 32000
    rig.state["pv_meter"].update(current_a=-45.0)
    rig.run(150)
    assert rig.value("pv_meter", W.CH_CURRENT) == -32000


def test_ina219_math_overflow_is_a_range_error() -> None:
    # 10 mOhm with a 100 uA LSB: calibration 40960, the current register overflows above 3.2767 A
    profile = variant(PROFILES["energy-meter"], "pv_meter", current_lsb_ua=100)
    rig = Rig(profile, {"pv_meter": {"current_a": 3.0}})
    _configured(rig, "pv_meter")
    assert rig.value("pv_meter", W.CH_CURRENT) == 3000
    rig.state["pv_meter"]["current_a"] = 3.5
    rig.run(150)
    with pytest.raises(RangeError):
        rig.read("pv_meter")


def test_ina219_integrates_energy_from_the_timeline() -> None:
    rig = Rig(PROFILES["energy-meter"], {"pv_meter": {"bus_voltage_v": 12.0, "current_a": 10.0}})
    _configured(rig, "pv_meter")
    rig.read("pv_meter")  # the first valid sample starts the integration
    for _ in range(720):  # one hour at the profile's 5 s: 120 W imported (6000 x 20 mW, exact)
        rig.run(5000, step_ms=5000)
        got = rig.read("pv_meter")
    assert got[(W.CH_ENERGY, 0)] == 120 and got[(W.CH_ENERGY, 1)] == 0
    rig.state["pv_meter"]["current_a"] = -5.0
    rig.run(5000, step_ms=5000)
    rig.read("pv_meter")  # the trapezoid from +120 W to -60 W counts as import
    for _ in range(720):  # one hour exporting 60 W
        rig.run(5000, step_ms=5000)
        got = rig.read("pv_meter")
    assert got[(W.CH_ENERGY, 0)] == 120 and got[(W.CH_ENERGY, 1)] == 60


def test_ina219_conversion_ready_power_read_and_reset() -> None:
    rig = Rig(PROFILES["esp32-s3-devkitc-1"], {"meter": {"current_a": 1.0}})
    dev = ina219.INA219(
        rig.buses["i2c0"], 100_000, 100, 0x40, ticks_ms=rig.clock.ticks_ms,
        ticks_diff=rig.clock.ticks_diff,
    )  # fmt: skip
    dev.configure()
    dev.read()
    assert not dev.conversion_ready  # config write restarts the conversion
    rig.clock.now_ms += 137  # 68.1 ms shunt + 68.1 ms bus
    assert dev.read()[2] == 1000 and dev.conversion_ready
    dev.read()
    assert not dev.conversion_ready  # reading power cleared CNVR
    rig.model("meter").power_cycle()  # brown-out: calibration back to 0
    with pytest.raises(SensorError):
        dev.read()
    rig.clock.now_ms += 137
    assert dev.read()[2] == 1000  # the driver rewrote it
    rig.model("meter").present = False
    with pytest.raises(OSError) as e:
        dev.read()
    assert _errno(e.value) == ENODEV


# ==== QMC5883L ===================================================================================

QMC = users("qmc5883l")


@pytest.mark.parametrize(("profile", "sensor"), QMC, ids=ids(QMC))
@pytest.mark.parametrize("gauss", [2, 8])
def test_qmc5883l_driver_reads_the_field_on_every_axis(
    profile: dict, sensor: dict, gauss: int
) -> None:
    profile = variant(profile, sensor["name"], field_range_gauss=gauss)
    rig = Rig(profile)
    name = sensor["name"]
    rng = qmc5883l.RANGE_8G if gauss == 8 else qmc5883l.RANGE_2G
    dev = qmc5883l.QMC5883L(rig.buses["i2c0"], sensor["address"], rng)
    dev.configure()
    limit = 32767 / (120 if gauss == 2 else 30)  # uT at the int16 output's end
    tol = (100 / 120 if gauss == 2 else 100 / 30) / 2 + 0.5  # half a count in 0.01 uT, + rounding
    for field in ((21.5, -14.3, 42.6), (0.0, 0.0, 0.0), (-0.01, 0.01, -250.0), (limit, -limit, 1)):
        rig.state[name]["field_ut"] = field
        rig.clock.now_ms += 100  # 10 Hz
        got = dev.read_c01()
        for axis, ut in zip(got, field, strict=True):
            assert abs(axis - ut * 100) <= tol, (field, got)
    rig.state[name]["field_ut"] = (limit + 1, 0, 0)
    rig.clock.now_ms += 100
    with pytest.raises(RangeError):  # OVL: an axis beyond the output range (a magnet on it)
        dev.read_c01()


@pytest.mark.parametrize(("profile", "sensor"), QMC, ids=ids(QMC))
def test_qmc5883l_source_detects_a_car_from_the_field(profile: dict, sensor: dict) -> None:
    empty, car = (21.5, -14.3, 42.6), (39.5, -4.8, 30.6)  # a car's steel: 18 + 9.5 + 12 uT
    rig = Rig(profile, {sensor["name"]: {"field_ut": empty}})
    name = sensor["name"]
    src = rig.sources[name]
    baseline = (sensor["params"] or {}).get("baseline_samples", 16)
    for _ in range(baseline):
        assert rig.read(name) == {}  # the empty-bay baseline
        rig.run(1000, step_ms=1000)
    assert rig.value(name, W.CH_OCCUPANCY) == 0
    rig.state[name]["field_ut"] = car
    events = []
    for _ in range(3):
        rig.run(1000, step_ms=1000)
        got = rig.read(name)
        events.append(src.event)
        src.event = None
    assert got[(W.CH_OCCUPANCY, 0)] == 1 and events[-1] == W.EV_ARRIVAL
    if (W.CH_MAGNETIC_FIELD, 0) in got:
        assert abs(got[(W.CH_MAGNETIC_FIELD, 0)] - 3950) <= 3  # L1 deviation, 0.01 uT
    rig.state[name]["field_ut"] = (300.0, 0.0, 0.0)  # beyond the 2 G range
    rig.run(1000, step_ms=1000)
    with pytest.raises(RangeError):
        rig.read(name)


def test_qmc5883l_data_ready_overrun_and_a_chip_that_lost_its_configuration() -> None:
    rig = Rig(PROFILES["parking-bay"])
    bus = rig.buses["i2c0"]
    dev = qmc5883l.QMC5883L(bus, 0x0D)
    with pytest.raises(NotReadyError):  # standby after power-on: no conversions
        dev.read_raw()
    assert bus.readfrom_mem(0x0D, 0x0D, 1) == b"\xff"  # chip id
    dev.configure()
    rig.clock.now_ms += 99
    with pytest.raises(NotReadyError):
        dev.read_raw()
    rig.clock.now_ms += 1
    assert dev.read_raw() == (2580, -1716, 5112)  # 120 counts per uT at 2 G
    with pytest.raises(NotReadyError):  # DRDY was cleared by reading the data
        dev.read_raw()
    rig.clock.now_ms += 250
    assert bus.readfrom_mem(0x0D, 0x06, 1)[0] == 0x05  # DRDY + DOR: a sample was skipped
    # a chip reset between samples: the adapter reconfigures after the failed read
    rig.run(1000, step_ms=1000)
    rig.read("bay_mag")
    rig.model("bay_mag").power_cycle()
    rig.run(1000, step_ms=1000)
    with pytest.raises(NotReadyError):
        rig.read("bay_mag")
    rig.run(1000, step_ms=1000)
    rig.read("bay_mag")  # configured again, converting
    rig.model("bay_mag").present = False
    with pytest.raises(OSError):
        rig.read("bay_mag")


# ==== NMEA GPS ===================================================================================

GPS = users("nmea_gps")


@pytest.mark.parametrize(("profile", "sensor"), GPS, ids=ids(GPS))
def test_gps_reports_the_timeline_position(profile: dict, sensor: dict) -> None:
    name = sensor["name"]
    places = (
        (48.1372, 11.5755), (-33.8688, 151.2093), (-22.9068, -43.1729), (40.7128, -74.006),
        (0.0, 0.0), (-0.0000001, 0.0000001), (89.9999999, 179.9999999), (-90.0, -180.0),
    )  # fmt: skip
    for lat, lon in places:
        rig = Rig(profile, {name: {"lat_deg": lat, "lon_deg": lon}})
        rig.run(2500)
        got = rig.read(name)
        # 5 decimals of minutes (1.7e-7 deg) then the driver's 1e-7 deg rounding
        assert abs(got[(W.CH_LATITUDE, 0)] - lat * 1e7) <= 1.34, (lat, got)
        assert abs(got[(W.CH_LONGITUDE, 0)] - lon * 1e7) <= 1.34, (lon, got)


def test_gps_sends_rmc_and_gga_once_a_second_byte_by_byte() -> None:
    rig = Rig(PROFILES["collateral-tracker"])
    uart = rig.buses["gnss"]
    assert isinstance(uart, SimUART) and uart.rxbuf == 1024
    rig.clock.now_ms += 999
    assert uart.any() == 0
    rig.clock.now_ms += 41  # 40 ms into the burst at 9600 baud (8N1): 38 bytes
    assert uart.any() == 38
    rig.clock.now_ms += 459
    lines = uart.read().split(b"\r\n")
    assert lines[0].startswith(b"$GPRMC,000001.00,A,4808.23200,N,01134.53000,E,")
    assert lines[1].startswith(b"$GPGGA,000001.00,4808.23200,N,01134.53000,E,1,08,0.90,520.0")
    for line in lines[:2]:
        assert nmea_gps.checked_fields(line)  # the driver's own checksum check
    assert lines[2] == b""  # one burst so far: nothing after GGA
    assert b"010624" in lines[0]  # RMC date: 2024-06-01 (UTC_BASE_S)


def test_gps_no_fix_then_fix_then_a_silent_receiver() -> None:
    rig = Rig(PROFILES["collateral-tracker"], {"gps": {"fix": False}})
    rig.run(3000)
    with pytest.raises(NotReadyError):  # RMC V / GGA quality 0
        rig.read("gps")
    rig.state["gps"]["fix"] = True
    rig.run(1500)
    assert rig.value("gps", W.CH_LATITUDE) == 481372000
    rig.model("gps").present = False
    rig.run(10_500)  # fix_max_age_ms of the profile: 10 s
    with pytest.raises(NotReadyError):
        rig.read("gps")


def test_gps_bad_checksums_are_rejected_and_change_nothing() -> None:
    rig = Rig(PROFILES["collateral-tracker"])
    gps = nmea_gps.NmeaGps(rig.buses["gnss"], rig.clock.ticks_ms, rig.clock.ticks_diff)
    rig.clock.now_ms += 1500
    assert gps.poll() == 2 and gps.position() == (481372000, 115755000)
    rig.model("gps").corrupt_checksum = 2
    rig.state["gps"]["lat_deg"] = 10.0
    rig.clock.now_ms += 1000
    assert gps.poll() == 0 and gps.rejected == 2 and gps.position() == (481372000, 115755000)


def test_gps_uart_buffer_is_bounded_and_keeps_the_oldest_bytes() -> None:
    # nobody drains the UART for 20 s: the ring buffer fills with the first ~7 bursts (143 bytes
    # each) and drops the rest (the reason app.Board polls every GPS_POLL_MS): the fix the driver
    # then parses is the one of 8 s, while the receiver moved on at 10 s
    rig = Rig(PROFILES["collateral-tracker"], {"gps": {"lat_deg": 48.2}})
    uart = rig.buses["gnss"]
    rig.clock.now_ms += 3500
    assert uart.any() < 1024
    rig.clock.now_ms += 6500
    assert uart.any() == 1024
    rig.state["gps"]["lat_deg"] = 48.3
    rig.clock.now_ms += 10_500
    assert uart.any() == 1024 and uart.overruns > 0
    gps = nmea_gps.NmeaGps(uart, rig.clock.ticks_ms, rig.clock.ticks_diff)
    assert gps.poll() >= 13
    assert gps.position()[0] == 482000000
    rig.clock.now_ms += 1500  # drained: the next burst is current again
    gps.poll()
    assert gps.position()[0] == 483000000


# ==== analog probes (pH, ammonia) and the DO probe ================================================

ANALOG = users("analog_probe")


def _table_tolerance(points: list[list[int]], y: float) -> float:
    """Half a mV (the driver's input resolution) through the table's slope at y, + rounding."""
    pts = sorted(points, key=lambda p: p[1])
    slopes = [abs((b[1] - a[1]) / (b[0] - a[0])) for a, b in zip(pts, pts[1:], strict=False)]
    i = 0
    while i < len(pts) - 2 and pts[i + 1][1] < y:
        i += 1
    return slopes[i] * 0.5 + 1


@pytest.mark.parametrize(("profile", "sensor"), ANALOG, ids=ids(ANALOG))
def test_analog_probe_reads_the_timeline_inside_its_calibration(
    profile: dict, sensor: dict
) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    kind = sensor["channels"][0]["type"]
    type_id = channels.CHANNEL_TYPES[kind]
    quantity, scale = {"ph": ("ph", 1000), "ammonia": ("ammonia_mg_l", 1000)}[kind]
    points = sensor["params"]["calibration"]
    lo, hi = sorted((points[0][1], points[-1][1]))
    for frac in (0.0, 0.001, 0.1, 0.25, 0.5, 0.77, 0.999, 1.0):
        y = lo + (hi - lo) * frac
        rig.state[name][quantity] = y / scale
        got = rig.value(name, type_id)
        assert abs(got - y) <= _table_tolerance(points, y), (y, got)
    # beyond the table the probe keeps its slope; the driver clamps to the table's ends
    rig.state[name][quantity] = (lo - (hi - lo) * 0.2) / scale
    assert rig.value(name, type_id) == lo
    rig.state[name][quantity] = (hi + (hi - lo) * 0.05) / scale
    assert rig.value(name, type_id) == hi


def test_analog_probe_noise_is_absorbed_by_the_trimmed_mean() -> None:
    rig = Rig(PROFILES["pond-monitor"], {"ph": {"ph": 7.0}})
    adc = rig.buses["ph.adc"]
    samples = {adc.read_uv() for _ in range(8)}
    assert len(samples) == 8  # every sample differs (a 6 mV spike among them)
    assert rig.value("ph", W.CH_PH) == 7000


def test_analog_probe_in_u16_mode_saturates_into_a_range_error() -> None:
    profile = variant(
        PROFILES["pond-monitor"], "ph", input="u16", calibration=[[10000, 10000], [50000, 4000]]
    )
    rig = Rig(profile)
    for ph in (4.0, 5.0, 7.0, 9.99):
        rig.state["ph"]["ph"] = ph
        assert abs(rig.value("ph", W.CH_PH) - ph * 1000) <= 6000 / 40000 * 0.5 + 1
    rig.state["ph"]["ph"] = 1.0  # beyond the ADC's full scale: read_u16 at 65535
    with pytest.raises(RangeError):
        rig.read("ph")


def test_analog_probe_adc_clips_at_the_attenuations_full_scale_and_fails_like_an_adc() -> None:
    profile = variant(PROFILES["pond-monitor"], "ph", atten_db=6)  # 6 dB: 1750 mV full scale
    rig = Rig(profile, {"ph": {"ph": 5.0}})  # 1855 mV: the ADC reads 1750 mV, pH 5.59
    assert rig.value("ph", W.CH_PH) == 7000 - round(3000 * (1750 - 1500) / (2032 - 1500))
    rig.buses["ph.adc"].fail.append(OSError(EIO))
    with pytest.raises(OSError):
        rig.read("ph")


DO = users("do_probe")


@pytest.mark.parametrize(("profile", "sensor"), DO, ids=ids(DO))
def test_do_probe_reads_the_timeline_at_the_water_temperature(profile: dict, sensor: dict) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    water = sensor["params"]["temperature_sensor"]
    for temp in (0.5, 5.0, 15.0, 21.3, 25.0, 32.0):
        for do in (0.0, 0.5, 2.0, 5.0, 7.6, 9.0, 11.0):
            if do > 1.5 * do_saturation_mg_l(temp) * 0.99:
                continue  # beyond 2450 mV (11 dB full scale) the ADC clips
            rig.state[water]["temperature_c"] = temp  # the same water at both probes
            rig.state[name]["do_mg_l"] = do
            rig.read(water)
            got = rig.value(name, W.CH_DISSOLVED_OXYGEN)
            # 0.01 mg/L output; the firmware's 1-degree table vs the Benson & Krause equation
            assert abs(got - do * 100) <= 2, (temp, do, got)


def test_do_probe_with_a_membrane_temperature_coefficient() -> None:
    profile = variant(
        PROFILES["pond-monitor"], "do", saturation_mv=[[1000, 1250], [2000, 1450], [3000, 1700]]
    )
    rig = Rig(profile)
    for temp in (8.0, 10.0, 17.5, 30.0, 34.0):
        rig.state["water_temp"]["temperature_c"] = temp
        rig.state["do"]["do_mg_l"] = 6.5
        rig.read("water_temp")
        assert abs(rig.value("do", W.CH_DISSOLVED_OXYGEN) - 650) <= 2, temp


def test_do_saturation_equation_matches_the_published_values() -> None:
    # Benson & Krause 1984 (APHA 4500-O): 14.62 mg/L at 0 degC, 9.09 at 20, 8.26 at 25
    assert [round(do_saturation_mg_l(t), 2) for t in (0, 20, 25)] == [14.62, 9.09, 8.26]
    for t in range(0, 38):  # the firmware's table agrees within rounding below 38 degC
        assert abs(analog_probe.DO_SATURATION_C01[t] - do_saturation_mg_l(t) * 100) <= 0.53, t


# ==== HX711 ======================================================================================

HX711 = users("hx711")


@pytest.mark.parametrize(("profile", "sensor"), HX711, ids=ids(HX711))
def test_hx711_reads_the_mass_across_its_range(profile: dict, sensor: dict) -> None:
    rig = Rig(profile)
    name = sensor["name"]
    p = sensor["params"]
    max_g = (0x7FFFFF - p["tare_counts"]) * p["cal_grams"] / p["cal_counts"]
    for grams in (0.0, 0.4, 1.0, 499.6, 10_000.0, 120_000.0, max_g - 10):
        rig.state[name]["mass_g"] = grams
        assert abs(rig.value(name, W.CH_WEIGHT) - grams) <= 1, grams
    rig.state[name]["mass_g"] = -250.0  # lifted off its feet: below the tare
    assert rig.value(name, W.CH_WEIGHT) == 0
    rig.state[name]["mass_g"] = max_g + 10  # overload: the output saturates at 0x7FFFFF
    with pytest.raises(RangeError):
        rig.read(name)


@pytest.mark.parametrize("gain", [64, 32])
def test_hx711_gain_selection_by_extra_pulses(gain: int) -> None:
    # the first conversion after power-on is A/128; the profile's gain applies from the second
    profile = variant(PROFILES["collateral-tracker"], "stock_scale", gain=gain)
    rig = Rig(profile, {"stock_scale": {"mass_g": 2500.0}})
    rig.read("stock_scale")
    chip = rig.model("stock_scale")
    assert chip.select == {64: hx711.GAIN_A64, 32: hx711.GAIN_B32}[gain]
    assert abs(rig.value("stock_scale", W.CH_WEIGHT) - 2500) <= 1


def test_hx711_power_down_and_a_broken_chip() -> None:
    rig = Rig(PROFILES["collateral-tracker"], {"stock_scale": {"mass_g": 1000.0}})
    dev = hx711.HX711(rig.buses["stock_scale.dout"], rig.buses["stock_scale.sck"], hx711.GAIN_A64)
    first = dev.read_raw()  # converted at A/128 (power-on)
    assert abs(first - (84250 + 42600)) <= 400  # noise: 400 counts at most (one spike)
    dev.power_down()
    rig.clock.now_ms += 2  # SCK high > 60 us
    with pytest.raises(NotReadyError):
        dev.read_raw()
    dev.power_up()
    chip = rig.model("stock_scale")
    assert chip.power_downs == 1 and chip.select == hx711.GAIN_A128  # reset to A/128
    chip.present = False  # no chip: DOUT floats high
    with pytest.raises(NotReadyError):
        dev.read_raw()


def test_hx711_at_10_sps_dout_stays_high_until_the_next_conversion() -> None:
    rig = Rig(PROFILES["collateral-tracker"], hx711_sps=10)
    dev = hx711.HX711(rig.buses["stock_scale.dout"], rig.buses["stock_scale.sck"])
    with pytest.raises(NotReadyError):  # settling after power-up: 400 ms
        dev.read_raw()
    rig.clock.now_ms += 400
    dev.read_raw()
    with pytest.raises(NotReadyError):
        dev.read_raw()
    rig.clock.now_ms += 100
    dev.read_raw()


def test_hx711_source_at_the_real_10_sps() -> None:
    rig = Rig(PROFILES["collateral-tracker"], {"stock_scale": {"mass_g": 500.0}}, hx711_sps=10)
    rig.run(1000)
    assert abs(rig.value("stock_scale", W.CH_WEIGHT) - 500) <= 1


# ==== tamper switch ==============================================================================

TAMPER = users("tamper")


@pytest.mark.parametrize(("profile", "sensor"), TAMPER, ids=ids(TAMPER))
def test_tamper_latches_an_opening_between_two_polls_through_the_irq(
    profile: dict, sensor: dict
) -> None:
    name = sensor["name"]
    rig = Rig(profile)
    assert rig.value(name, W.CH_TAMPER) == 0
    rig.run(10_000)
    rig.state[name]["open"] = True  # opened for 200 ms, shut again long before the next poll
    rig.run(200)
    rig.state[name]["open"] = False
    rig.run(20_000)
    assert rig.value(name, W.CH_TAMPER) == 1
    assert rig.model(name).edges == 2


def test_tamper_short_bounce_is_not_an_opening_and_edges_need_update() -> None:
    rig = Rig(PROFILES["collateral-tracker"])
    rig.state["door"]["open"] = True
    rig.run(30)  # under debounce_ms (50)
    rig.state["door"]["open"] = False
    rig.run(1000)
    assert rig.value("door", W.CH_TAMPER) == 0
    # without buses.update() the world's edges reach the pin only when the driver reads it
    rig.state["door"]["open"] = True
    rig.clock.now_ms += 5000
    rig.state["door"]["open"] = False
    rig.clock.now_ms += 5000
    assert rig.value("door", W.CH_TAMPER) == 0


def test_tamper_open_at_boot_and_an_active_low_switch() -> None:
    rig = Rig(PROFILES["collateral-tracker"], {"door": {"open": True}})
    assert rig.value("door", W.CH_TAMPER) == 1
    profile = variant(PROFILES["collateral-tracker"], "door", open_level=0)
    rig = Rig(profile)
    pin = rig.buses["door.pin"]
    assert pin.value() == 1 and rig.value("door", W.CH_TAMPER) == 0
    rig.state["door"]["open"] = True
    rig.run(100)
    assert pin.value() == 0 and rig.value("door", W.CH_TAMPER) == 1


# ==== build_buses ================================================================================


def _make_buses_keys(profile: dict, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Return the keys firmware/app.py make_buses gives on a board (host machine shim)."""
    import machine  # tests/shims/machine.py (tests/conftest.py puts tests/shims on sys.path)

    from firmware import app as fw_app

    onewire = types.ModuleType("onewire")
    onewire.OneWire = lambda pin: FakeOneWire()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "onewire", onewire)
    return set(fw_app.make_buses(profile, machine))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_gets_a_complete_bus_dict(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = PROFILES[name]
    rig = Rig(profile)  # default timelines
    assert set(rig.buses) == _make_buses_keys(profile, monkeypatch)
    kinds = {"i2c": FakeI2C, "onewire": FakeOneWire, "uart": SimUART}
    for bus_name, bus in profile["buses"].items():
        assert isinstance(rig.buses[bus_name], kinds[bus["type"]])
    for s in profile["sensors"]:
        for role in s.get("pins") or {}:
            obj = rig.buses[s["name"] + "." + role]
            assert hasattr(obj, "read_uv") if role == "adc" else isinstance(obj, FakePin)
        if s["driver"] != "ble_beacon":
            assert s["name"] in rig.buses.models
    # every source reads without error once the chips are up: the only fault allowed is a GPS
    # without its first sentences yet (the receiver's first burst starts at 1 s of uptime)
    warmup = {"nmea_gps": NotReadyError}
    last: dict[str, Any] = {}
    for i in range(20):
        for s in profile["sensors"]:
            try:
                last[s["name"]] = rig.sources[s["name"]].read()
            except Exception as e:
                assert i <= 1 and isinstance(e, warmup[s["driver"]]), (s["name"], e)
        rig.run(1000)
    for s in profile["sensors"]:
        if s["driver"] != "ble_beacon":  # no beacon in range: nothing to report
            assert last[s["name"]], s["name"]


def test_defaults_are_plausible_readings() -> None:
    rig = Rig(PROFILES["pond-monitor"])
    assert rig.value("water_temp", W.CH_TEMPERATURE) == 2000
    assert abs(rig.value("do", W.CH_DISSOLVED_OXYGEN) - 760) <= 2
    assert rig.value("ph", W.CH_PH) == 7000
    assert abs(rig.value("ammonia", W.CH_AMMONIA) - 200) <= 4
    assert DEFAULTS["tamper"] == {"open": False}


def test_world_forms_and_board_uptime() -> None:
    profile = PROFILES["pond-monitor"]
    seen: list[float] = []

    def timeline(uptime_s: float) -> dict:
        seen.append(uptime_s)
        return {"temperature_c": 10.0 + uptime_s}

    class World:
        def timeline(self, sensor: dict) -> Any:
            return timeline if sensor["name"] == "water_temp" else None

    for world in ({"water_temp": timeline}, Timelines({"water_temp": timeline}), World()):
        clock = Clock(100_000)
        buses = build_buses(profile, world, clock, start_ms=98_000)  # booted 2 s ago
        src = app.make_source(profile["sensors"][0], buses, clock, {}, app.Hooks())
        seen.clear()
        ((_, _, got),) = src.read()
        assert seen == [2.0] and got == 1200  # the conversion latched at 2 s of uptime
    buses = build_buses(profile, {"do": constant(do_mg_l=3.0)}, Clock())
    assert buses.models["do"].output_mv() == pytest.approx(
        1600 * 3.0 / do_saturation_mg_l(20.0)  # water_temp's default 20 degC
    )
    with pytest.raises(ValueError):
        build_buses(profile, None, None)
