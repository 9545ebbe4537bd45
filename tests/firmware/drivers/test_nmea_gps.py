"""NMEA GPS driver against a UART fake streaming sentences (split lines, noise, bad checksums)."""

from firmware.drivers.nmea_gps import (
    NmeaError,
    NmeaGps,
    checked_fields,
    coordinate_e7,
    days_from_civil,
)
from tests.firmware.fakes import FakeClock, FakeUART, raises

# The reference sentences of the NMEA 0183 literature (checksums 6A and 47 as published).
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
# 48 deg 07.038' = 48.1173 deg; 11 deg 31.000' = 11.516666.. deg -> 115166667 (nearest).
LAT_E7 = 481173000
LON_E7 = 115166667
UTC_S = 764426119  # 1994-03-23 12:35:19 UTC


def frame(body):
    """Return '$' + body + '*hh' CRLF with the NMEA xor checksum (test-side frame builder)."""
    x = 0
    for c in body.encode():
        x ^= c
    return ("$%s*%02X\r\n" % (body, x)).encode()


def _gps(*chunks):
    clock = FakeClock(start_ms=1000)
    uart = FakeUART(chunks)
    return NmeaGps(uart, ticks_ms=clock.ticks_ms, ticks_diff=clock.ticks_diff), uart, clock


def test_frame_builder_matches_published_checksums():
    assert frame("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W") == RMC
    assert frame("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,") == GGA


def test_rmc_reference_sentence():
    gps, _uart, _clock = _gps(RMC)
    assert gps.poll() == 1
    assert gps.fix.valid
    assert (gps.fix.lat_e7, gps.fix.lon_e7) == (LAT_E7, LON_E7)
    assert gps.fix.utc_s == UTC_S
    assert gps.position() == (LAT_E7, LON_E7)


def test_gga_reference_sentence():
    gps, _uart, _clock = _gps(GGA)
    assert gps.poll() == 1
    fix = gps.fix
    assert (fix.lat_e7, fix.lon_e7) == (LAT_E7, LON_E7)
    assert fix.satellites == 8
    assert fix.hdop_c01 == 90
    assert fix.altitude_cm == 54540


def test_southern_western_gnrmc_with_mode_field():
    # 33 deg 52.1280' S = -33.8688 deg; 151 deg 12.4620' W = -151.2077 deg. Date 29 Feb 2024.
    s = frame("GNRMC,235959.00,A,3352.1280,S,15112.4620,W,0.0,0.0,290224,,,A")
    gps, _uart, _clock = _gps(s)
    assert gps.poll() == 1
    assert (gps.fix.lat_e7, gps.fix.lon_e7) == (-338688000, -1512077000)
    assert gps.fix.utc_s == 19782 * 86400 + 86399


def test_split_lines_across_polls_and_noise():
    half = len(RMC) // 2
    gps, uart, _clock = _gps(b"\x00\xffgarbage\r\n" + RMC[:half])
    assert gps.poll() == 0
    uart.feed(RMC[half:] + GGA[:10])
    assert gps.poll() == 1
    uart.feed(GGA[10:])
    assert gps.poll() == 1
    assert gps.sentences == 2
    assert gps.rejected == 0


def test_two_sentences_in_one_chunk():
    gps, _uart, _clock = _gps(RMC + GGA)
    assert gps.poll() == 2


def test_bad_checksum_rejected_and_fix_unchanged():
    bad = RMC.replace(b"*6A", b"*6B")
    gps, _uart, _clock = _gps(bad)
    assert gps.poll() == 0
    assert gps.rejected == 1
    assert not gps.fix.valid
    assert gps.position() is None


def test_lowercase_checksum_accepted_and_missing_checksum_rejected():
    gps, _uart, _clock = _gps(RMC.replace(b"*6A", b"*6a"))
    assert gps.poll() == 1
    gps, _uart, _clock = _gps(RMC.replace(b"*6A", b""))
    assert gps.poll() == 0
    assert gps.rejected == 1


def test_truncated_sentence_followed_by_new_one():
    gps, _uart, _clock = _gps(RMC[:30] + GGA)
    assert gps.poll() == 1
    assert gps.rejected == 1
    assert gps.fix.satellites == 8


def test_overlong_line_rejected():
    body = "GPRMC," + "1" * 90
    gps, _uart, _clock = _gps(frame(body) + GGA)
    assert gps.poll() == 1
    assert gps.rejected == 1


def test_non_printable_byte_rejected():
    raises(NmeaError, checked_fields, b"$GPRMC,\x01*01\r\n")
    raises(NmeaError, checked_fields, b"GPRMC,123519*00")
    raises(NmeaError, checked_fields, b"$GPRMC,1*zz")


def test_void_status_invalidates_fix():
    gps, uart, _clock = _gps(RMC)
    gps.poll()
    uart.feed(frame("GPRMC,123520,V,,,,,,,230394,,"))
    assert gps.poll() == 1
    assert not gps.fix.valid
    assert gps.position() is None


def test_mode_n_invalidates_fix():
    gps, _uart, _clock = _gps(frame("GNRMC,123519,A,4807.038,N,01131.000,E,0,0,230394,,,N"))
    gps.poll()
    assert not gps.fix.valid


def test_gga_quality_zero_invalidates_fix():
    gps, _uart, _clock = _gps(frame("GPGGA,123519,,,,,0,00,,,M,,M,,"))
    assert gps.poll() == 1
    assert not gps.fix.valid


def test_stale_fix_not_reported():
    gps, _uart, clock = _gps(RMC)
    gps.poll()
    clock.advance(10000)
    assert gps.position() == (LAT_E7, LON_E7)
    clock.advance(1)
    assert gps.position() is None


def test_other_sentences_ignored():
    gps, _uart, _clock = _gps(frame("GPGSV,1,1,00") + frame("XXRMC,1") + RMC)
    assert gps.poll() == 1
    assert gps.rejected == 0


def test_malformed_fields_rejected():
    for body in (
        "GPRMC,123519,A,4807.038,X,01131.000,E,0,0,230394,,",  # bad hemisphere
        "GPRMC,123519,A,48O7.038,N,01131.000,E,0,0,230394,,",  # letter O
        "GPRMC,123519,A,4860.000,N,01131.000,E,0,0,230394,,",  # 60 minutes
        "GPRMC,123519,A,48070.38,N,01131.000,E,0,0,230394,,",  # wrong degree width
        "GPRMC,123519,A,4807.038,N,01131.000,E,0,0,320394,,",  # day 32
        "GPRMC,126019,A,4807.038,N,01131.000,E,0,0,230394,,",  # minute 60
        "GPRMC,123519,A,4807.038,N",  # too few fields
        "GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,46.9,M,,",
    ):
        gps, _uart, _clock = _gps(frame(body))
        assert gps.poll() == 0, body
        assert gps.rejected == 1, body
        assert not gps.fix.valid


def test_coordinate_edges():
    assert coordinate_e7("0000.0000", "N", 2) == 0
    assert coordinate_e7("9000.0000", "S", 2) == -900000000
    assert coordinate_e7("18000.0000", "E", 3) == 1800000000
    assert coordinate_e7("17959.99999", "W", 3) == -1799999998  # 59.99999' = 0.9999998333 deg
    assert coordinate_e7("17959.9999999", "W", 3) == -1800000000  # rounds up to exactly 180 deg
    assert coordinate_e7("4807", "N", 2) == 481166667  # no fraction: 48 + 7/60
    assert coordinate_e7("0000.00003", "N", 2) == 5  # 0.00003' = 5e-7 deg
    raises(NmeaError, coordinate_e7, "9000.0001", "N", 2)
    raises(NmeaError, coordinate_e7, "18000.0001", "E", 3)
    raises(NmeaError, coordinate_e7, "", "N", 2)
    raises(NmeaError, coordinate_e7, "4807.-38", "N", 2)


def test_days_from_civil():
    assert days_from_civil(1970, 1, 1) == 0
    assert days_from_civil(1969, 12, 31) == -1
    assert days_from_civil(2000, 1, 1) == 10957
    assert days_from_civil(2000, 3, 1) == 11017
    assert days_from_civil(2024, 2, 29) == 19782
    assert days_from_civil(2079, 12, 31) == 40176


def test_uart_read_returning_none():
    class EmptyReadUART(FakeUART):
        def any(self):
            return 5

        def read(self, nbytes=-1):
            return None

    gps = NmeaGps(EmptyReadUART(), ticks_ms=FakeClock().ticks_ms, ticks_diff=FakeClock().ticks_diff)
    assert gps.poll() == 0
