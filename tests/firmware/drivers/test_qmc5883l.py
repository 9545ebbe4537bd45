"""QMC5883L driver against an I2C register fake, and the occupancy detector on sample traces."""

from firmware.drivers.base import NoDeviceError, NotReadyError, RangeError
from firmware.drivers.qmc5883l import (
    ARRIVAL,
    DEPARTURE,
    QMC5883L,
    RANGE_8G,
    OccupancyDetector,
)
from tests.firmware.fakes import EIO, FakeI2C, raises

ADDR = 0x0D


def _le(v):
    v &= 0xFFFF
    return bytes([v & 0xFF, v >> 8])


def _mag(x, y, z, status=0x01, chip_id=0xFF, field_range=0):
    i2c = FakeI2C()
    data = _le(x) + _le(y) + _le(z)
    regs = {i: data[i : i + 1] for i in range(6)}
    regs[0x06] = bytes([status])
    regs[0x0D] = bytes([chip_id])
    i2c.add_device(ADDR, regs)
    return QMC5883L(i2c, field_range=field_range), i2c


def test_configure_sequence():
    mag, i2c = _mag(0, 0, 0)
    mag.configure()
    writes = [e for e in i2c.log if e[0] == "writeto_mem"]
    assert writes == [
        ("writeto_mem", ADDR, 0x0A, b"\x80"),  # soft reset
        ("writeto_mem", ADDR, 0x0B, b"\x01"),  # SET/RESET period, as the datasheet recommends
        ("writeto_mem", ADDR, 0x09, b"\x01"),  # OSR 512, 2 G, 10 Hz, continuous
    ]
    mag, i2c = _mag(0, 0, 0, field_range=RANGE_8G)
    mag.configure()
    assert i2c.log[-1] == ("writeto_mem", ADDR, 0x09, b"\x11")


def test_wrong_chip_id():
    mag, _i2c = _mag(0, 0, 0, chip_id=0x00)
    raises(NoDeviceError, mag.configure)


def test_read_little_endian_signed_and_scaled():
    # 2 G range: 12000 LSB/G, 1 G = 100 uT. 6000 LSB = 0.5 G = 50 uT = 5000 x 0.01 uT.
    mag, i2c = _mag(6000, -6000, 0)
    assert mag.read_raw() == (6000, -6000, 0)
    assert mag.read_c01() == (5000, -5000, 0)
    assert ("readfrom_mem_into", ADDR, 0x06, 1) in i2c.log
    assert ("readfrom_mem_into", ADDR, 0x00, 6) in i2c.log


def test_raw_edges():
    # -32768 LSB at 2 G = -2.7307 G = -273.07 uT -> -27307; 32767 -> 27306 (27305.8).
    mag, _i2c = _mag(-32768, 32767, 1)
    assert mag.read_c01() == (-27307, 27306, 1)
    # 8 G range: 3000 LSB/G, 3000 LSB = 100 uT = 10000; 1 LSB = 3.33 -> 3.
    mag, _i2c = _mag(3000, -1, 1, field_range=RANGE_8G)
    assert mag.read_c01() == (10000, -3, 3)


def test_data_not_ready_and_overflow():
    mag, _i2c = _mag(1, 2, 3, status=0x00)
    raises(NotReadyError, mag.read_raw)
    mag, _i2c = _mag(1, 2, 3, status=0x03)
    raises(RangeError, mag.read_raw)
    mag, _i2c = _mag(1, 2, 3, status=0x05)  # DOR (a sample was skipped) is not an error
    assert mag.read_raw() == (1, 2, 3)


def test_bus_error():
    mag, i2c = _mag(1, 2, 3)
    i2c.fail.append(OSError(EIO))
    assert raises(OSError, mag.read_raw).args[0] == EIO


BASE = (2000, -1000, 4000)


def _calibrated(**kw):
    det = OccupancyDetector(**kw)
    noise = (0, 20, -20, 10, -10, 0, 5, -5)
    for i in range(det.baseline_samples):
        n = noise[i % len(noise)]
        assert det.update(BASE[0] + n, BASE[1] - n, BASE[2]) is None
    assert det.calibrated
    return det


def _feed(det, dev_x, count):
    return [det.update(BASE[0] + dev_x, BASE[1], BASE[2]) for _ in range(count)]


def test_baseline_is_the_mean():
    det = _calibrated()
    assert det.baseline_c01() == BASE


def test_arrival_and_departure_detected_once():
    det = _calibrated()
    events = _feed(det, 3000, 10)
    assert events == [None, None, ARRIVAL] + [None] * 7
    assert det.occupied == 1
    assert det.deviation_c01 == 3000
    events = _feed(det, 100, 10)
    assert events == [None, None, DEPARTURE] + [None] * 7
    assert det.occupied == 0


def test_short_blip_is_ignored():
    det = _calibrated()
    assert _feed(det, 3000, 2) + _feed(det, 0, 1) + _feed(det, 3000, 2) == [None] * 5
    assert det.occupied == 0


def test_hysteresis_band_keeps_state():
    det = _calibrated()
    _feed(det, 3000, 3)
    # Between off (600) and on (1500): a parked car whose signature weakens stays parked.
    assert _feed(det, 1000, 20) == [None] * 20
    assert det.occupied == 1
    # A value hovering around the on threshold while vacant does not flap.
    det = _calibrated()
    events = []
    for i in range(20):
        events += _feed(det, 1600 if i % 2 else 1400, 1)
    assert events == [None] * 20
    assert det.occupied == 0


def test_slow_drift_followed_while_vacant():
    det = _calibrated()
    events = []
    for i in range(1, 3001):
        events.append(det.update(BASE[0] + i, BASE[1], BASE[2]))
    assert ARRIVAL not in events
    bx = det.baseline_c01()[0]
    assert BASE[0] + 3000 - bx < 600  # the baseline followed 30 uT of drift
    assert _feed(det, 3000 + 3000, 3)[-1] == ARRIVAL


def test_no_tracking_while_occupied():
    det = _calibrated()
    _feed(det, 3000, 3)
    _feed(det, 3000, 500)
    assert det.baseline_c01() == BASE


def test_recalibrate_and_argument_checks():
    det = _calibrated()
    _feed(det, 3000, 3)
    det.recalibrate()
    assert not det.calibrated
    assert det.occupied == 0
    raises(ValueError, OccupancyDetector, 500, 600)
    raises(ValueError, OccupancyDetector, 1500, 0)
    raises(ValueError, OccupancyDetector, 1500, 600, 0)
