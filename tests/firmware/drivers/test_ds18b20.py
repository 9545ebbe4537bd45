"""DS18B20 driver against a 1-Wire fake that answers with scratchpads (datasheet values, CRCs)."""

from firmware.drivers.base import CRCError, NoDeviceError, RangeError, SensorError
from firmware.drivers.ds18b20 import DS18B20, PowerOnValueError, check_rom
from tests.firmware.fakes import EIO, FakeClock, FakeDS18B20, FakeOneWire, dallas_crc8, raises


def _rom(serial):
    body = bytes([0x28]) + bytes(serial)
    return body + bytes([dallas_crc8(body)])


ROM_A = _rom([0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
ROM_B = _rom([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x10])

# DS18B20 datasheet, "Temperature/Data Relationship" table (12-bit), with the expected value in
# 0.01 degC worked by hand: 25.0625 -> 2506 (nearest), 10.125 -> 1012.5 -> 1013 (half away from 0).
DATASHEET_TABLE = (
    (0x07D0, 12500),  # +125
    (0x0191, 2506),  # +25.0625
    (0x00A2, 1013),  # +10.125
    (0x0008, 50),  # +0.5
    (0x0000, 0),  # 0
    (0xFFF8, -50),  # -0.5
    (0xFF5E, -1013),  # -10.125
    (0xFE6F, -2506),  # -25.0625
    (0xFC90, -5500),  # -55
)


def _sensor(temps=(), config=0x7F, rom=None):
    dev = FakeDS18B20(ROM_A, temps=temps, config=config)
    ow = FakeOneWire([dev])
    clock = FakeClock()
    return DS18B20(ow, rom=rom, sleep_ms=clock.sleep_ms), dev, ow, clock


def test_datasheet_temperature_table():
    for raw, expected in DATASHEET_TABLE:
        sensor, _dev, _ow, clock = _sensor(temps=[raw])
        assert sensor.measure_c01() == expected, hex(raw)
        assert clock.sleeps == [750]


def test_plus_85_power_on_value_read_without_conversion_is_rejected():
    sensor, dev, _ow, _clock = _sensor()
    dev.scratchpads.append(bytes([0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0x1C]))
    raises(PowerOnValueError, sensor.read_c01)
    dev.scratchpads.append(bytes([0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0x1C]))
    assert sensor.read_c01(accept_power_on=True) == 8500


def test_85_after_lost_conversion_is_retried():
    # First conversion did not happen (sensor browned out): scratchpad still 0x0550.
    sensor, dev, _ow, clock = _sensor(temps=[0x0550, 0x0191])
    assert sensor.measure_c01() == 2506
    assert dev.conversions == 2
    assert clock.sleeps == [750, 750]


def test_genuine_85_confirmed_by_second_conversion():
    sensor, dev, _ow, _clock = _sensor(temps=[0x0550, 0x0550])
    assert sensor.measure_c01() == 8500
    assert dev.conversions == 2


def test_skip_rom_command_sequence():
    sensor, _dev, ow, _clock = _sensor(temps=[0x0191])
    sensor.measure_c01()
    assert ow.log == [
        ("reset",),
        ("write", b"\xcc"),
        ("write", b"\x44"),
        ("reset",),
        ("write", b"\xcc"),
        ("write", b"\xbe"),
        ("read", 9),
    ]


def test_match_rom_addresses_each_sensor():
    a = FakeDS18B20(ROM_A, temps=[0x0191])
    b = FakeDS18B20(ROM_B, temps=[0xFC90])
    ow = FakeOneWire([a, b])
    clock = FakeClock()
    sa = DS18B20(ow, rom=ROM_A, sleep_ms=clock.sleep_ms)
    sb = DS18B20(ow, rom=bytearray(ROM_B), sleep_ms=clock.sleep_ms)
    assert sa.measure_c01() == 2506
    assert sb.measure_c01() == -5500
    assert ("write", b"\x55" + ROM_B) in ow.log


def test_bad_crc_raises_crc_error():
    sensor, dev, _ow, _clock = _sensor(temps=[0x0191])
    dev.bad_crc = True
    raises(CRCError, sensor.measure_c01)


def test_corrupted_byte_fails_crc():
    sensor, dev, _ow, _clock = _sensor()
    pad = bytearray([0x91, 0x01, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0x00])
    pad[8] = dallas_crc8(pad[:8])
    pad[0] ^= 0x10  # one flipped data bit after the CRC was computed
    dev.scratchpads.append(bytes(pad))
    raises(CRCError, sensor.read_c01)


def test_no_presence_pulse():
    ow = FakeOneWire([])
    sensor = DS18B20(ow, sleep_ms=FakeClock().sleep_ms)
    raises(NoDeviceError, sensor.measure_c01)


def test_unselected_rom_reads_all_ones_and_is_rejected():
    ow = FakeOneWire([FakeDS18B20(ROM_A)])
    sensor = DS18B20(ow, rom=ROM_B, sleep_ms=FakeClock().sleep_ms)
    e = raises(SensorError, sensor.read_c01)
    assert isinstance(e, CRCError)


def test_all_zero_scratchpad_has_valid_crc_but_is_rejected():
    sensor, dev, _ow, _clock = _sensor()
    dev.scratchpads.append(bytes(9))
    e = raises(SensorError, sensor.read_c01)
    assert not isinstance(e, CRCError)


def test_bus_error_propagates_as_oserror():
    sensor, _dev, ow, _clock = _sensor(temps=[0x0191])
    ow.fail.append(OSError(EIO))
    e = raises(OSError, sensor.measure_c01)
    assert e.args[0] == EIO


def test_out_of_range_raw_rejected():
    sensor, _dev, _ow, _clock = _sensor(temps=[0x07E0])  # +126 degC
    raises(RangeError, sensor.measure_c01)
    sensor, _dev, _ow, _clock = _sensor(temps=[0xFC80])  # -56 degC
    raises(RangeError, sensor.measure_c01)


def test_lower_resolutions_mask_undefined_bits_and_wait_less():
    # 0x0191 with undefined low bits: 9-bit clears bits 2..0 -> 0x0190 = 25.0 degC.
    for config, wait_ms, raw, expected in (
        (0x1F, 94, 0x0191, 2500),
        (0x3F, 188, 0x0193, 2500),
        (0x5F, 375, 0x0191, 2500),
        (0x1F, 94, 0xFF5E, -1050),  # 0xFF58 = -168/16 = -10.5 degC
    ):
        sensor, _dev, _ow, clock = _sensor(temps=[raw], config=config)
        sensor.resolution_bits = 9 + ((config >> 5) & 3)
        assert sensor.measure_c01() == expected
        assert clock.sleeps == [wait_ms]


def test_configure_writes_and_verifies_resolution():
    sensor, dev, ow, _clock = _sensor()
    sensor.resolution_bits = 10
    sensor.configure()
    assert ("write", b"\x4e\x7f\x80\x3f") in ow.log
    assert dev.config == 0x3F
    assert sensor.start_conversion() == 188


def test_configure_read_back_mismatch():
    sensor, dev, _ow, _clock = _sensor()
    # A part that ignores the write keeps 12-bit config; the read-back is 0x7F, not 0x1F.
    dev.scratchpads.append(bytes([0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0x1C]))
    sensor.resolution_bits = 9
    raises(SensorError, sensor.configure)


def test_check_rom():
    assert check_rom(bytearray(ROM_A)) == ROM_A
    raises(ValueError, check_rom, ROM_A[:7])
    raises(ValueError, check_rom, ROM_A[:7] + bytes([ROM_A[7] ^ 1]))
    # Maxim AN27 example ROM has a valid CRC but family 0x02 (not a DS18B20).
    raises(ValueError, check_rom, bytes([0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00, 0xA2]))
    raises(ValueError, DS18B20, FakeOneWire(), None, 13)
