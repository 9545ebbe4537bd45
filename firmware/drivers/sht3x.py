"""Sensirion SHT3x humidity/temperature sensor on machine.I2C: single-shot, CRC-checked, 0.01 units."""

from micropython import const

from firmware.drivers.base import (
    CRCError,
    crc8_sensirion,
    default_sleep_ms,
    div_round,
    emitter,
    new_source,
)

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_HUMIDITY = const(2)
_CH_TEMPERATURE = const(1)

_ADDR_DEFAULT = const(0x44)  # ADDR pin low; 0x45 with ADDR high
# Single shot, high repeatability, clock stretching disabled (datasheet table "measurement commands"):
# the sensor NACKs reads until the result is ready, so a busy bus is never held by the sensor.
_CMD_MEASURE_HIGH = const(b"\x24\x00")
_CMD_SOFT_RESET = const(b"\x30\xa2")
_CMD_READ_STATUS = const(b"\xf3\x2d")
_CMD_CLEAR_STATUS = const(b"\x30\x41")
# Max measurement duration at high repeatability is 15 ms (datasheet); 1 ms margin for the clock.
_MEASURE_MS = const(16)
# Soft reset: sensor ready again after at most 1.5 ms.
_RESET_MS = const(2)
# Status register bits.
_STATUS_ALERT = const(0x8000)
_STATUS_HEATER = const(0x2000)
_STATUS_RESET_DETECTED = const(0x0010)
_STATUS_CMD_FAILED = const(0x0002)
_STATUS_WRITE_CRC_FAILED = const(0x0001)


def raw_to_temperature_c01(raw):
    """Return T = -45 + 175 * raw / 65535 degC as 0.01 degC (int, nearest). raw: 0..65535."""
    return -4500 + div_round(17500 * raw, 65535)


def raw_to_humidity_c01(raw):
    """Return RH = 100 * raw / 65535 %RH as 0.01 %RH (int, nearest). raw: 0..65535."""
    return div_round(10000 * raw, 65535)


class SHT3x:
    """An SHT30/31/35 on an I2C bus (writeto/readfrom_into), measured in single-shot mode."""

    def __init__(self, i2c, addr=_ADDR_DEFAULT, sleep_ms=None):
        """i2c: machine.I2C; addr: 0x44 or 0x45; sleep_ms: injected delay function."""
        self._i2c = i2c
        self.addr = addr
        self._sleep_ms = sleep_ms or default_sleep_ms()
        self._buf = bytearray(6)
        self._buf3 = bytearray(3)

    def _check(self, buf, start):
        """Return the big-endian word at buf[start] after checking the CRC byte that follows it."""
        if crc8_sensirion(buf, start, 2) != buf[start + 2]:
            raise CRCError("SHT3x CRC mismatch")
        return (buf[start] << 8) | buf[start + 1]

    def soft_reset(self):
        """Send a soft reset and wait until the sensor accepts commands again; returns None."""
        self._i2c.writeto(self.addr, _CMD_SOFT_RESET)
        self._sleep_ms(_RESET_MS)

    def read_status(self):
        """Return the 16-bit status register (CRC checked); see the STATUS_* bit constants."""
        self._i2c.writeto(self.addr, _CMD_READ_STATUS)
        self._i2c.readfrom_into(self.addr, self._buf3)
        return self._check(self._buf3, 0)

    def clear_status(self):
        """Clear the alert/reset flags of the status register; returns None."""
        self._i2c.writeto(self.addr, _CMD_CLEAR_STATUS)

    def start(self):
        """Start a high-repeatability single-shot measurement; return the ms to wait before read()."""
        self._i2c.writeto(self.addr, _CMD_MEASURE_HIGH)
        return _MEASURE_MS

    def read(self):
        """Return (temperature_c01, humidity_c01) of the measurement started by start().

        Precondition: _MEASURE_MS elapsed since start(). Raises CRCError on either word's CRC;
        OSError from the bus unchanged (a NACK here means the sensor has no result).
        """
        buf = self._buf
        self._i2c.readfrom_into(self.addr, buf)
        t_raw = self._check(buf, 0)
        rh_raw = self._check(buf, 3)
        return raw_to_temperature_c01(t_raw), raw_to_humidity_c01(rh_raw)

    def measure(self):
        """Start, wait _MEASURE_MS, and return (temperature_c01, humidity_c01)."""
        self._sleep_ms(self.start())
        return self.read()


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {"sht3x": {"bus": "i2c", "channels": ("temperature", "humidity")}}


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of an sht3x profile sensor: measure() (blocking through
    clock.block_ms) into its temperature and humidity channels."""
    emit = emitter(sensor, readings)
    dev = SHT3x(buses[sensor["bus"]], sensor["address"], getattr(clock, "block_ms", None))

    def read():
        t, rh = dev.measure()
        return emit({_CH_TEMPERATURE: t, _CH_HUMIDITY: rh})

    return new_source(sensor, read)
