"""SHT3x driver against an I2C fake replaying measurement frames (word + Sensirion CRC-8)."""

from firmware.drivers.base import CRCError
from firmware.drivers.sht3x import SHT3x
from tests.firmware.fakes import EIO, ENODEV, FakeClock, FakeI2C, raises, sensirion_crc8


def _word(w, bad=False):
    b = bytes([w >> 8, w & 0xFF])
    crc = sensirion_crc8(b)
    return b + bytes([crc ^ 0x01 if bad else crc])


def _sensor(frames, addr=0x44):
    i2c = FakeI2C()
    i2c.add_device(addr)
    i2c.responses[addr].extend(frames)
    clock = FakeClock()
    return SHT3x(i2c, addr=addr, sleep_ms=clock.sleep_ms), i2c, clock


def test_measure_0x6666():
    # T = -45 + 175 * 26214 / 65535 = 24.99989 degC -> 2500; RH = 100 * 26214 / 65535 = 39.9994 -> 4000.
    sensor, i2c, clock = _sensor([_word(0x6666) + _word(0x6666)])
    assert sensor.measure() == (2500, 4000)
    assert i2c.log == [("writeto", 0x44, b"\x24\x00"), ("readfrom_into", 0x44, 6)]
    assert clock.sleeps == [16]


def test_measure_edges_and_midscale():
    # raw 0 -> -45.00 degC, 0 %RH; raw 0xFFFF -> +130.00 degC, 100.00 %RH;
    # raw 0x8000: T = -45 + 175 * 32768 / 65535 = 42.50134 -> 4250; RH = 50.00076 -> 5000.
    # raw 0x4CCD (19661): T = -45 + 52.5036 = 7.5036 -> 750; RH = 30.0008 -> 3000.
    cases = (
        (0x0000, 0x0000, -4500, 0),
        (0xFFFF, 0xFFFF, 13000, 10000),
        (0x8000, 0x8000, 4250, 5000),
        (0x4CCD, 0x4CCD, 750, 3000),
    )
    for t_raw, rh_raw, t, rh in cases:
        sensor, _i2c, _clock = _sensor([_word(t_raw) + _word(rh_raw)])
        assert sensor.measure() == (t, rh), hex(t_raw)


def test_crc_error_on_either_word():
    sensor, _i2c, _clock = _sensor([_word(0x6666, bad=True) + _word(0x6666)])
    raises(CRCError, sensor.measure)
    sensor, _i2c, _clock = _sensor([_word(0x6666) + _word(0x6666, bad=True)])
    raises(CRCError, sensor.measure)


def test_floating_bus_all_ones_fails_crc():
    sensor, _i2c, _clock = _sensor([b"\xff" * 6])
    raises(CRCError, sensor.measure)


def test_nack_while_measuring_is_oserror():
    sensor, _i2c, _clock = _sensor([])
    e = raises(OSError, sensor.measure)
    assert e.args[0] == ENODEV


def test_missing_device_and_bus_error():
    sensor, i2c, _clock = _sensor([_word(1) + _word(1)], addr=0x45)
    sensor.addr = 0x44
    assert raises(OSError, sensor.measure).args[0] == ENODEV
    sensor.addr = 0x45
    i2c.fail.append(OSError(EIO))
    assert raises(OSError, sensor.measure).args[0] == EIO


def test_nonblocking_start_then_read():
    sensor, i2c, _clock = _sensor([_word(0x6666) + _word(0x8000)], addr=0x45)
    assert sensor.start() == 16
    assert sensor.read() == (2500, 5000)
    assert i2c.log[0] == ("writeto", 0x45, b"\x24\x00")


def test_status_register():
    sensor, i2c, _clock = _sensor([_word(0x8010)])
    status = sensor.read_status()
    assert status == 0x8010
    assert i2c.log[0] == ("writeto", 0x44, b"\xf3\x2d")
    sensor, i2c, _clock = _sensor([_word(0x8010, bad=True)])
    raises(CRCError, sensor.read_status)


def test_soft_reset_and_clear_status_commands():
    sensor, i2c, clock = _sensor([])
    sensor.soft_reset()
    sensor.clear_status()
    assert i2c.log == [("writeto", 0x44, b"\x30\xa2"), ("writeto", 0x44, b"\x30\x41")]
    assert clock.sleeps == [2]
