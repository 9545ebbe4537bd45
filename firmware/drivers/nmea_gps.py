"""GPS receiver on machine.UART: NMEA 0183 RMC/GGA with checksum, position in 1e-7 degrees (integers)."""

from micropython import const

from firmware.drivers.base import SensorError, div_round, emitter, new_source

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_LATITUDE = const(8)
_CH_LONGITUDE = const(9)

# NMEA 0183: a sentence is at most 82 characters including '$' and CR LF.
MAX_SENTENCE_BYTES = const(82)
# Bytes pulled from the UART per poll(): bounds the time one poll() can take (9600 baud = 960 B/s).
_READ_CHUNK_BYTES = const(256)
# Talkers accepted for RMC/GGA: GPS, multi-GNSS, GLONASS, Galileo, BeiDou (two spellings), QZSS.
_TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD", "GQ")
# A fix older than this is not reported as current by position(): the receiver stopped talking.
FIX_MAX_AGE_MS_DEFAULT = const(10000)
_DAYS_TO_1970 = const(
    719468
)  # days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar


class NmeaError(SensorError):
    """A sentence was rejected: bad checksum, bad framing or a malformed field."""


def _digits(s):
    """Return True if s is non-empty and all ASCII digits."""
    return bool(s) and s.isdigit()


def _hex_nibble(b):
    """Return the value of one ASCII hex digit byte (either case); raises NmeaError otherwise."""
    if 0x30 <= b <= 0x39:
        return b - 0x30
    b |= 0x20
    if 0x61 <= b <= 0x66:
        return b - 0x61 + 10
    raise NmeaError("NMEA checksum is not hex")


def checked_fields(line):
    """Return the comma-separated fields of one NMEA sentence after verifying its checksum.

    line: bytes/bytearray of one sentence, with or without trailing CR/LF. fields[0] is the
    address (e.g. 'GPRMC'). Raises NmeaError for a missing '$', a missing or wrong '*hh' checksum,
    non-printable bytes or an over-long sentence.
    """
    n = len(line)
    while n and line[n - 1] in (10, 13):
        n -= 1
    if n < 9 or line[0] != 0x24:  # '$'
        raise NmeaError("NMEA sentence too short or no '$'")
    if n + 2 > MAX_SENTENCE_BYTES:
        raise NmeaError("NMEA sentence longer than 82 bytes")
    if line[n - 3] != 0x2A:  # '*'
        raise NmeaError("NMEA sentence without checksum")
    x = 0
    for i in range(1, n - 3):
        b = line[i]
        if b < 0x20 or b > 0x7E or b == 0x24 or b == 0x2A:
            raise NmeaError("NMEA sentence has an invalid byte")
        x ^= b
    given = (_hex_nibble(line[n - 2]) << 4) | _hex_nibble(line[n - 1])
    if given != x:
        raise NmeaError("NMEA checksum mismatch")
    return bytes(line[1 : n - 3]).decode().split(",")


def coordinate_e7(value, hemisphere, degree_digits):
    """Return a (d)ddmm.mmmm coordinate and its hemisphere letter as signed 1e-7 degrees.

    degree_digits: 2 for latitude (N/S), 3 for longitude (E/W). Integer math only:
    e7 = deg * 10^7 + round(minutes * 10^7 / 60). Raises NmeaError on malformed or out-of-range input.
    """
    if degree_digits == 2:
        limit, pos, neg = 90, "N", "S"
    else:
        limit, pos, neg = 180, "E", "W"
    if hemisphere not in (pos, neg):
        raise NmeaError("bad hemisphere %r" % hemisphere)
    dot = value.find(".")
    whole = value if dot < 0 else value[:dot]
    frac = "" if dot < 0 else value[dot + 1 :]
    if len(whole) != degree_digits + 2 or not _digits(whole) or (frac and not _digits(frac)):
        raise NmeaError("bad coordinate %r" % value)
    if len(frac) > 9:
        frac = frac[:9]  # beyond 1e-9 minutes is below the 1e-7 degree output resolution
    deg = int(whole[:degree_digits])
    minutes = int(whole[degree_digits:])
    if minutes >= 60:
        raise NmeaError("minutes >= 60 in %r" % value)
    scale = 10 ** len(frac)
    scaled_minutes = minutes * scale + (int(frac) if frac else 0)
    e7 = deg * 10000000 + div_round(scaled_minutes * 10000000, 60 * scale)
    if e7 > limit * 10000000:
        raise NmeaError("coordinate %r out of range" % value)
    return -e7 if hemisphere == neg else e7


def _time_s(hhmmss):
    """Return seconds of day from 'hhmmss' or 'hhmmss.ss' (fraction dropped); raises NmeaError."""
    if len(hhmmss) < 6 or not _digits(hhmmss[:6]):
        raise NmeaError("bad UTC time %r" % hhmmss)
    h = int(hhmmss[0:2])
    m = int(hhmmss[2:4])
    s = int(hhmmss[4:6])
    if h > 23 or m > 59 or s > 60:
        raise NmeaError("bad UTC time %r" % hhmmss)
    return h * 3600 + m * 60 + s


def days_from_civil(year, month, day):
    """Return days since 1970-01-01 for a proleptic Gregorian date (integer algorithm, any era)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    mp = month + 9 if month <= 2 else month - 3
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - _DAYS_TO_1970


def _date_days(ddmmyy):
    """Return days since 1970 from RMC 'ddmmyy' (yy < 80 is 20yy, else 19yy); raises NmeaError."""
    if len(ddmmyy) != 6 or not _digits(ddmmyy):
        raise NmeaError("bad date %r" % ddmmyy)
    d = int(ddmmyy[0:2])
    mo = int(ddmmyy[2:4])
    y = int(ddmmyy[4:6])
    if d < 1 or d > 31 or mo < 1 or mo > 12:
        raise NmeaError("bad date %r" % ddmmyy)
    y += 2000 if y < 80 else 1900
    return days_from_civil(y, mo, d)


class Fix:
    """The latest position: lat_e7/lon_e7 (1e-7 deg), utc_s (Unix seconds or None), quality data."""

    def __init__(self):
        self.valid = False
        self.lat_e7 = 0
        self.lon_e7 = 0
        self.utc_s = None
        self.satellites = 0
        self.hdop_c01 = 0
        self.altitude_cm = 0
        self.ticks_ms = None

    def set_position(self, lat_e7, lon_e7, ticks_ms, utc_s=None):
        """Record a valid position received at ticks_ms; utc_s (Unix seconds) is kept if None."""
        self.lat_e7 = lat_e7
        self.lon_e7 = lon_e7
        if utc_s is not None:
            self.utc_s = utc_s
        self.valid = True
        self.ticks_ms = ticks_ms


class NmeaGps:
    """A GPS/GNSS receiver's NMEA stream on a UART (any/read), parsed incrementally by poll()."""

    def __init__(self, uart, ticks_ms=None, ticks_diff=None, fix_max_age_ms=FIX_MAX_AGE_MS_DEFAULT):
        """uart: machine.UART (9600 8N1 for most modules); ticks_ms/ticks_diff: injected clock."""
        if ticks_ms is None:
            from firmware.drivers.base import default_ticks

            ticks_ms, ticks_diff = default_ticks()
        elif ticks_diff is None:
            raise ValueError("ticks_diff is required with ticks_ms")
        self._uart = uart
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.fix_max_age_ms = fix_max_age_ms
        self._line = bytearray(MAX_SENTENCE_BYTES)
        self._len = 0
        self._overflow = False
        self.fix = Fix()
        self.sentences = 0
        self.rejected = 0

    def poll(self):
        """Read what the UART holds, parse every complete sentence; return how many were accepted.

        Partial lines are kept for the next poll; an over-long or '$'-restarted line is dropped.
        """
        accepted = 0
        n = self._uart.any()
        while n > 0:
            data = self._uart.read(min(n, _READ_CHUNK_BYTES))
            if not data:
                break
            for b in data:
                accepted += self._feed(b)
            n = self._uart.any()
        return accepted

    def _feed(self, b):
        if b == 0x24:  # '$' always starts a new sentence; a partial one before it is dropped
            if self._len or self._overflow:
                self.rejected += 1
            self._line[0] = b
            self._len = 1
            self._overflow = False
            return 0
        if b == 0x0A:
            n = self._len
            over = self._overflow
            self._len = 0
            self._overflow = False
            if over:
                self.rejected += 1
                return 0
            if n == 0:
                return 0
            return self._sentence(memoryview(self._line)[:n])
        if self._len == 0:
            return 0  # noise between sentences
        if self._len >= MAX_SENTENCE_BYTES:
            self._overflow = True
            return 0
        self._line[self._len] = b
        self._len += 1
        return 0

    def _sentence(self, line):
        try:
            fields = checked_fields(line)
            if self.parse(fields):
                self.sentences += 1
                return 1
            return 0
        except NmeaError:
            self.rejected += 1
            return 0

    def parse(self, fields):
        """Apply one checked sentence to self.fix; return True if it was RMC or GGA.

        Raises NmeaError on malformed fields; other sentence types are ignored (False).
        """
        address = fields[0]
        if len(address) != 5 or address[:2] not in _TALKERS:
            return False
        kind = address[2:]
        if kind == "RMC":
            self._rmc(fields)
            return True
        if kind == "GGA":
            self._gga(fields)
            return True
        return False

    def _rmc(self, f):
        # RMC: time, status, lat, N/S, lon, E/W, speed, course, date, magvar, E/W[, mode[, nav]]
        if len(f) < 12:
            raise NmeaError("RMC has too few fields")
        fix = self.fix
        mode_ok = len(f) < 13 or f[12] not in ("N", "")
        if f[2] != "A" or not mode_ok:
            fix.valid = False
            return
        lat = coordinate_e7(f[3], f[4], 2)
        lon = coordinate_e7(f[5], f[6], 3)
        utc_s = _date_days(f[9]) * 86400 + _time_s(f[1])
        fix.set_position(lat, lon, self._ticks_ms(), utc_s)

    def _gga(self, f):
        # GGA: time, lat, N/S, lon, E/W, quality, satellites, hdop, alt, M, geoid, M, age, station
        if len(f) < 15:
            raise NmeaError("GGA has too few fields")
        fix = self.fix
        quality = f[6]
        if quality and not _digits(quality):
            raise NmeaError("bad GGA quality %r" % quality)
        if not quality or quality == "0":
            fix.valid = False
            return
        lat = coordinate_e7(f[2], f[3], 2)
        lon = coordinate_e7(f[4], f[5], 3)
        _time_s(f[1])
        sats = int(f[7]) if _digits(f[7]) else 0
        hdop = _decimal_c01(f[8]) if f[8] else 0
        alt = _decimal_c01(f[9]) if f[9] else 0
        fix.satellites = sats
        fix.hdop_c01 = hdop
        fix.altitude_cm = alt
        fix.set_position(lat, lon, self._ticks_ms())

    def position(self):
        """Return (lat_e7, lon_e7) of a valid fix no older than fix_max_age_ms, else None."""
        fix = self.fix
        if not fix.valid or fix.ticks_ms is None:
            return None
        if self._ticks_diff(self._ticks_ms(), fix.ticks_ms) > self.fix_max_age_ms:
            return None
        return fix.lat_e7, fix.lon_e7


def _decimal_c01(text):
    """Return a decimal string like '-12.34' or '0.9' as an int in 1/100 units (nearest)."""
    neg = text.startswith("-")
    if neg:
        text = text[1:]
    dot = text.find(".")
    whole = text if dot < 0 else text[:dot]
    frac = "" if dot < 0 else text[dot + 1 :]
    if not _digits(whole) or (frac and not _digits(frac)):
        raise NmeaError("bad decimal %r" % text)
    scale = 10 ** len(frac)
    value = div_round((int(whole) * scale + (int(frac) if frac else 0)) * 100, scale)
    return -value if neg else value


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "nmea_gps": {
            "bus": "uart",
            "channels": ("latitude", "longitude"),
            "params": {"fix_max_age_ms": (int, False, None, None)},
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of an nmea_gps profile sensor: poll(), then the position of a
    current fix into latitude/longitude (NotReadyError without one: a fault, journaled once per
    lost-fix episode). Adds poll() to hooks.pollers (the board drains the UART between samples)."""
    from firmware.drivers.base import NotReadyError

    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    dev = NmeaGps(
        buses[sensor["bus"]], clock.ticks_ms, clock.ticks_diff,
        params.get("fix_max_age_ms", FIX_MAX_AGE_MS_DEFAULT),
    )  # fmt: skip
    hooks.pollers.append(dev.poll)

    def read():
        dev.poll()
        pos = dev.position()
        if pos is None:  # a fault; the sampler journals it once per lost-fix episode
            raise NotReadyError("no current GPS fix")
        return emit({_CH_LATITUDE: pos[0], _CH_LONGITUDE: pos[1]})

    return new_source(sensor, read)
