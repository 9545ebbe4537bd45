"""INA219 driver against an I2C register-map fake: datasheet example, flags, energy integration."""

from firmware.drivers.base import RangeError, SensorError
from firmware.drivers.ina219 import INA219, calibration_value
from tests.firmware.fakes import EIO, FakeClock, FakeI2C, raises

ADDR = 0x40


def _w(v):
    return bytes([(v >> 8) & 0xFF, v & 0xFF])


def _datasheet_device(regs=None, clock=None):
    """Registers of the INA219 datasheet 'Configure/Measure/Calculate Example' (Table 3):
    10 A load, 12 V common mode, 2 mOhm shunt, 40 mV shunt range, 16 V bus range."""
    i2c = FakeI2C()
    values = {0x00: 0x019F, 0x01: 0x07D0, 0x02: 0x5D98, 0x03: 0x1766, 0x04: 0x2710, 0x05: 0x5000}
    values.update(regs or {})
    i2c.add_device(ADDR, {r: (v if isinstance(v, list) else _w(v)) for r, v in values.items()})
    clock = clock or FakeClock()
    ina = INA219(
        i2c,
        shunt_uohm=2000,
        current_lsb_ua=1000,
        config=0x019F,
        ticks_ms=clock.ticks_ms,
        ticks_diff=clock.ticks_diff,
    )
    return ina, i2c, clock


def test_calibration_values():
    assert calibration_value(1000, 2000) == 20480  # datasheet example: 0x5000
    assert calibration_value(100, 100000) == 4096  # 0.1 ohm shunt, 100 uA LSB (32 V / 2 A boards)
    assert calibration_value(9, 100000) == 45510  # 45511.1 truncated, bit 0 not implemented
    raises(ValueError, calibration_value, 3, 100000)  # 136533 does not fit 16 bits
    raises(ValueError, calibration_value, 0, 100000)
    raises(ValueError, calibration_value, 1000000, 100000000)  # rounds to 0


def test_datasheet_example_readings():
    ina, _i2c, _clock = _datasheet_device()
    assert ina.calibration == 0x5000
    bus_mv, shunt_uv, current_ma, power_uw = ina.read()
    assert bus_mv == 11980  # 0x5D98 >> 3 = 2995 x 4 mV
    assert shunt_uv == 20000  # 2000 x 10 uV
    assert current_ma == 10000  # 0x2710 x 1 mA
    assert power_uw == 119800000  # 5990 x 20 mW = 119.8 W
    assert ina.conversion_ready is False


def test_configure_writes_config_and_calibration():
    ina, i2c, _clock = _datasheet_device()
    ina.configure()
    writes = [e for e in i2c.log if e[0] == "writeto_mem"]
    assert writes == [
        ("writeto_mem", ADDR, 0x00, b"\x01\x9f"),
        ("writeto_mem", ADDR, 0x05, b"\x50\x00"),
    ]


def test_configure_read_back_mismatch():
    i2c = FakeI2C()
    # A device whose calibration register ignores writes (reads back 0).
    regs = i2c.add_device(ADDR)
    ina = INA219(
        i2c,
        2000,
        1000,
        config=0x019F,
        ticks_ms=FakeClock().ticks_ms,
        ticks_diff=FakeClock().ticks_diff,
    )
    ina.configure()
    regs[0x05] = b"\x00\x00"
    i2c.readonly.add((ADDR, 0x05))
    raises(SensorError, ina.configure)


def test_conversion_ready_and_overflow_flags():
    ina, _i2c, _clock = _datasheet_device({0x02: 0x5D9A})  # CNVR set
    ina.read()
    assert ina.conversion_ready is True
    ina, _i2c, _clock = _datasheet_device({0x02: 0x5D99})  # OVF set
    raises(RangeError, ina.read)


def test_negative_current_gives_negative_power():
    # -10 A: shunt -2000 (0xF830), current -10000 (0xD8F0); the power register stays positive.
    ina, _i2c, _clock = _datasheet_device({0x01: 0xF830, 0x04: 0xD8F0})
    bus_mv, shunt_uv, current_ma, power_uw = ina.read()
    assert (bus_mv, shunt_uv, current_ma, power_uw) == (11980, -20000, -10000, -119800000)


def test_edge_registers():
    # Bus register all ones: 8191 x 4 mV = 32.764 V; shunt -32768 x 10 uV = -327.68 mV.
    ina, _i2c, _clock = _datasheet_device({0x02: 0xFFF8, 0x01: 0x8000, 0x04: 0x7FFF, 0x03: 0xFFFF})
    bus_mv, shunt_uv, current_ma, power_uw = ina.read()
    assert bus_mv == 32764
    assert shunt_uv == -327680
    assert current_ma == 32767
    assert power_uw == 65535 * 20 * 1000


def test_lost_calibration_is_rewritten():
    ina, i2c, _clock = _datasheet_device({0x05: [b"\x00\x00", b"\x50\x00"]})
    raises(SensorError, ina.read)
    assert ("writeto_mem", ADDR, 0x05, b"\x50\x00") in i2c.log
    assert ina.read()[2] == 10000


def test_energy_exact_watt_hour():
    # 120 W (power register 6000 x 20 mW) for 30 s in 1 s steps = 3600 J = 1 Wh exactly.
    ina, _i2c, clock = _datasheet_device({0x03: 6000})
    assert ina.update() == (11980, 10000, 120000)
    for _ in range(30):
        clock.advance(1000)
        ina.update()
    assert ina.energy_fwd_wh == 1
    assert ina.energy_fwd_uwh() == 1000000
    assert ina.energy_rev_wh == 0


def test_energy_trapezoid_on_a_ramp():
    # 120 W then 0 W one second later: the trapezoid is 60 J = 16666.67 uWh.
    ina, i2c, clock = _datasheet_device({0x03: [_w(6000), _w(0)]})
    ina.update()
    clock.advance(1000)
    ina.update()
    assert ina.energy_fwd_uwh() == 16666
    assert ina.energy_fwd_wh == 0


def test_sub_wh_remainder_is_kept():
    # 20 mW (power register 1) for 360 x 10 s = 72 J = 20000 uWh: per-step rounding to Wh, mWh
    # or even mWs would lose it (each step is 0.2 J = 0.0556 mWh).
    ina, _i2c, clock = _datasheet_device({0x03: 1})
    ina.update()
    for _ in range(360):
        clock.advance(10000)
        ina.update()
    assert ina.energy_fwd_wh == 0
    assert ina.energy_fwd_uwh() == 20000


def test_reverse_energy():
    ina, _i2c, clock = _datasheet_device({0x01: 0xF830, 0x04: 0xD8F0, 0x03: 6000})
    ina.update()
    for _ in range(60):
        clock.advance(1000)
        ina.update()
    assert ina.energy_rev_wh == 2
    assert ina.energy_fwd_wh == 0


def test_gap_is_not_bridged():
    ina, _i2c, clock = _datasheet_device({0x03: 6000})
    ina.update()
    clock.advance(60001)
    ina.update()
    assert ina.gaps == 1
    assert ina.energy_fwd_uwh() == 0
    clock.advance(1000)
    ina.update()
    assert ina.energy_fwd_uwh() == 33333  # 120 W x 1 s


def test_bus_error_restarts_integration():
    ina, i2c, clock = _datasheet_device({0x03: 6000})
    ina.update()
    clock.advance(1000)
    i2c.fail.append(OSError(EIO))
    assert raises(OSError, ina.update).args[0] == EIO
    clock.advance(1000)
    ina.update()  # restarts: the interval around the failure is not counted
    assert ina.energy_fwd_uwh() == 0
    clock.advance(1000)
    ina.update()
    assert ina.energy_fwd_uwh() == 33333


def test_ticks_wraparound():
    # MicroPython ticks_ms wraps at 2**30; ticks_diff handles it.
    period = 1 << 30

    class WrapClock(FakeClock):
        def ticks_ms(self):
            return self.now_ms % period

        def ticks_diff(self, a, b):
            return ((a - b + period // 2) % period) - period // 2

    clock = WrapClock(start_ms=period - 500)
    ina, _i2c, _clock = _datasheet_device({0x03: 6000}, clock)
    ina.update()
    clock.advance(1000)  # crosses the wrap
    ina.update()
    assert ina.gaps == 0
    assert ina.energy_fwd_uwh() == 33333


def test_restore_energy():
    ina, _i2c, clock = _datasheet_device({0x03: 6000})
    ina.restore_energy(1234, 5)
    ina.update()
    for _ in range(30):
        clock.advance(1000)
        ina.update()
    assert ina.energy_fwd_wh == 1235
    assert ina.energy_rev_wh == 5
