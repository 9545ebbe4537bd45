"""Chip models of the simulated world: the datasheet parts behind the firmware's real drivers.

Each model sits on a bus fake of tools/sim/buses.py and answers the real driver of
firmware/drivers/ the way the part does (registers, commands, CRCs, timing, saturation), with
its measured quantity taken from a *timeline* at the moment the driver asks. `build_buses()`
returns, for a board profile, exactly the dict firmware/main.py `make_buses` builds on a board
(bus names, "<sensor>.<role>" for dedicated pins and ADCs), with the models attached.

World interface
---------------
    buses = build_buses(profile, world, clock, start_ms=None, hx711_sps=None)

- clock: the board's clock (ticks_ms(), ticks_diff(a, b)); every model reads time from it, so a
  driver that waits must advance it (firmware.app.RealClock.block_ms sleeps; a virtual clock's
  block_ms must move ticks_ms on, or the chips are still converting when the driver reads).
- start_ms: the clock's ticks at the board's boot (default: now); uptime_s = ticks since then / 1000.
- world: None (every sensor gets its defaults), a mapping {sensor name: timeline}, or an object
  with `timeline(sensor) -> timeline | None` (sensor: the profile's sensor dict).
- hx711_sps: None (an HX711 conversion is ready whenever the driver asks) or 10 / 80 (the real
  output rate; LoadCell waits for each conversion).
- waited: the board's blocking waits that took no time on its clock (see BoardTime; the fleet's
  boards use it so that a DS18B20's 750 ms conversion does not stall the shared event loop).
- timeline(uptime_s) -> {quantity: value} in physical units (floats or ints). A quantity the
  timeline leaves out takes the sensor's default (DEFAULTS), so a timeline may script only what
  its story needs. Timelines are called lazily, at the uptime a chip samples (possibly a moment in
  the past: an INA219 conversion that completed 40 ms ago is latched from that moment).

Quantities by driver (DEFAULTS holds the defaults):

    ds18b20       temperature_c                       water/air temperature, degC
    sht3x         temperature_c, humidity_rh          degC, %RH
    ina219        bus_voltage_v, current_a            V at IN- to GND, A from VIN+ to VIN- (>= 0
                                                      import, < 0 export)
    qmc5883l      field_ut [, temperature_c]          (x, y, z) in uT at the sensor
    nmea_gps      fix (bool), lat_deg, lon_deg,       degrees (+N/+E), metres, count, HDOP;
                  altitude_m, satellites, hdop,       utc_s (Unix seconds; default
                  utc_s                               UTC_BASE_S + uptime)
    analog_probe  ph | ammonia_mg_l | turbidity_ntu | battery_v   (by the sensor's channel type)
    do_probe      do_mg_l, temperature_c              mg/L; the water temperature at the probe
                                                      (default: the temperature_sensor's
                                                      timeline, so both see the same water)
    hx711         mass_g                              grams on the platform (above the tare)
    tamper        open (bool)                         the door/lid is open

ble_beacon needs no bus (the radio side is tools/sim/bluetooth.py).

Probes: an analog_probe's output is the inverse of its profile's calibration table (a calibrated
probe; beyond the table the end segments are extended). A do_probe is a galvanic cell whose
output is proportional to % saturation: V = V_sat(T) x DO / DO_sat(T), V_sat(T) from the
profile's saturation_mv points and DO_sat(T) from the Benson & Krause (1984) equation as
published in APHA Standard Methods 4500-O, not from the firmware's table: the model is an
independent check of that table and its interpolation. ADC samples and HX711 conversions carry
a deterministic noise pattern that the drivers' trimmed means cancel (a spike included).

The returned dict is a `SimBuses`: `.models[sensor name]` is each sensor's model (fault
injection: `present`, `corrupt_crc`, `power_cycle()`, ...), `.time` the board time, and
`.update()` delivers what happens between driver calls (a door switch's edges fire the pin IRQ):
call it every few ms (e.g. an asyncio task every 10 ms); everything else is computed lazily when
the driver touches the bus. CPython only (tools/sim/buses.py is the MicroPython-compatible part).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tools.sim.buses import (
    ENODEV,
    FakeADC,
    FakeDS18B20,
    FakeI2C,
    FakeOneWire,
    FakePin,
    FakeUART,
    dallas_crc8,
    sensirion_crc8,
)

Timeline = Callable[[float], Mapping[str, Any]]

# 2024-06-01T00:00:00Z: the GPS's UTC at the board's boot unless a timeline gives utc_s.
UTC_BASE_S = 1_717_200_000

# The channel type of an analog_probe sensor -> (quantity name, table units per physical unit):
# the calibration table's y is in the wire unit of the channel (docs/wire-format.md, Values).
ANALOG_QUANTITIES = {
    "ph": ("ph", 1000),
    "ammonia": ("ammonia_mg_l", 1000),
    "turbidity": ("turbidity_ntu", 10),
    "battery": ("battery_v", 1000),
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "ds18b20": {"temperature_c": 20.0},
    "sht3x": {"temperature_c": 20.0, "humidity_rh": 50.0},
    "ina219": {"bus_voltage_v": 12.0, "current_a": 0.5},
    "qmc5883l": {"field_ut": (21.5, -14.3, 42.6)},  # Earth's field, mid-latitude Europe
    "nmea_gps": {
        "fix": True,
        "lat_deg": 48.1372,
        "lon_deg": 11.5755,
        "altitude_m": 520.0,
        "satellites": 8,
        "hdop": 0.9,
    },
    "analog_probe": {"ph": 7.0, "ammonia_mg_l": 0.2, "turbidity_ntu": 15.0, "battery_v": 3.9},
    "do_probe": {"do_mg_l": 7.6},
    "hx711": {"mass_g": 120_000.0},
    "tamper": {"open": False},
}
_DEFAULT_WATER_C = 20.0  # a do_probe without a temperature from anywhere


def constant(**values: Any) -> Timeline:
    """Return a timeline giving the same quantities at every uptime."""
    return lambda _uptime_s: values


# ==== board time and quantity feeds ==============================================================


class BoardTime:
    """The board's time as its chips see it, and the world's time its timelines are read at.

    Both count from start_ms (default: when built) on the board's clock. waited() (default:
    always 0) is the blocking waits of the drivers that took no time on the clock: a virtual
    board sharing one event loop with others must not really sleep 750 ms for a DS18B20, so its
    block_ms only adds to waited(). The chips count those waits (ms(): a conversion waited for
    is done), the world does not (uptime_s(): the door opens at the same moment for every board).
    """

    def __init__(
        self, clock: Any, start_ms: int | None = None, waited: Callable[[], int] | None = None
    ) -> None:
        self.clock = clock
        self.start_ms = clock.ticks_ms() if start_ms is None else start_ms
        self.waited = waited or (lambda: 0)

    def ms(self) -> int:
        """Return the chips' milliseconds since the board's boot (blocking waits included)."""
        return self.clock.ticks_diff(self.clock.ticks_ms(), self.start_ms) + self.waited()

    def uptime_s(self) -> float:
        """Return the world's seconds since the board's boot (the clock alone)."""
        return self.clock.ticks_diff(self.clock.ticks_ms(), self.start_ms) / 1000

    def world_s(self, ms: float) -> float:
        """Return the world's uptime in seconds at chip time ms (ms() - waited(), as of now)."""
        return (ms - self.waited()) / 1000


class Feed:
    """One sensor's physical quantities: its defaults overlaid by its timeline, on board time."""

    def __init__(
        self,
        time: BoardTime,
        defaults: Mapping[str, Any],
        timeline: Timeline | None = None,
        fallback: Callable[[float], Mapping[str, Any]] | None = None,
    ) -> None:
        """fallback(uptime_s): quantities used where the timeline gives none, before defaults."""
        self.time = time
        self.defaults = dict(defaults)
        self.timeline = timeline
        self.fallback = fallback

    def at(self, uptime_s: float) -> dict[str, Any]:
        """Return the quantities at uptime_s."""
        values = dict(self.defaults)
        if self.fallback is not None:
            values.update(self.fallback(uptime_s))
        if self.timeline is not None:
            values.update(self.timeline(uptime_s))
        return values

    def at_ms(self, ms: float) -> dict[str, Any]:
        """Return the quantities at chip time ms (BoardTime.ms), in the world's time."""
        return self.at(self.time.world_s(ms))

    def now(self) -> dict[str, Any]:
        """Return the quantities at the board's uptime now."""
        return self.at(self.time.uptime_s())


def _nearest(x: float) -> int:
    """Return x rounded to the nearest integer, halves away from zero (as the firmware rounds)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


# ==== DS18B20 on 1-Wire ==========================================================================

# tCONV max per resolution 9..12 bits (datasheet): 93.75, 187.5, 375, 750 ms.
DS18B20_CONVERSION_MS = {9: 93.75, 10: 187.5, 11: 375.0, 12: 750.0}


def ds18b20_raw(temperature_c: float, resolution_bits: int) -> int:
    """Return the temperature register (signed 1/16 degC) a DS18B20 latches for temperature_c.

    Nearest step of the resolution (1/2 degC at 9 bits .. 1/16 at 12), saturating at the 12-bit
    register's ends (-128 .. +127.9375 degC: outside -55..125 degC the part is unspecified, and
    the driver rejects such values). The low bits the datasheet calls undefined at 9..11 bits are
    set to 1, so a driver that does not mask them reads the error.
    """
    step = 1 << (12 - resolution_bits)
    raw = _nearest(temperature_c * 16 / step) * step
    raw = _clamp(raw, -2048, 2048 - step)
    return raw | (step - 1)


def ds18b20_rom(name: str) -> bytes:
    """Return a valid DS18B20 ROM code (family 0x28, serial from name, Maxim CRC-8)."""
    body = b"\x28" + hashlib.sha256(name.encode()).digest()[:6]
    return body + bytes([dallas_crc8(body)])


class DS18B20Model(FakeDS18B20):
    """A DS18B20: Convert T latches the timeline's temperature_c, visible after tCONV.

    The scratchpad holds the power-on 85 degC until the first conversion completes; a Read
    Scratchpad before tCONV elapsed returns the previous value, as the part does. The resolution
    is the config register's (Write Scratchpad sets it; power-on 12 bits). Faults: bad_crc
    (FakeDS18B20), removing it from the bus's devices (no presence pulse).
    """

    def __init__(self, rom: bytes, feed: Feed) -> None:
        super().__init__(rom)
        self.feed = feed
        self._pending: int | None = None
        self._ready_ms = 0.0

    def resolution_bits(self) -> int:
        """Return the resolution (9..12 bits) set in the config register."""
        return 9 + ((self.config >> 5) & 3)

    def convert(self) -> None:
        self.conversions += 1
        bits = self.resolution_bits()
        self._pending = ds18b20_raw(self.feed.now()["temperature_c"], bits)
        self._ready_ms = self.feed.time.ms() + DS18B20_CONVERSION_MS[bits]

    def converting(self) -> bool:
        """Return True while a conversion runs (its result is not in the scratchpad yet)."""
        if self._pending is not None and self.feed.time.ms() >= self._ready_ms:
            self.temp_raw = self._pending
            self._pending = None
        return self._pending is not None

    def scratchpad(self) -> bytes:
        self.converting()
        return super().scratchpad()


# ==== SHT3x on I2C ===============================================================================

# Single-shot commands without clock stretching -> max duration in ms (datasheet, table 4);
# with clock stretching the sensor holds SCL until done, so the read is answered at once.
_SHT3X_SINGLE_SHOT_MS = {0x2400: 15, 0x240B: 6, 0x2416: 4}
_SHT3X_STRETCHED = (0x2C06, 0x2C0D, 0x2C10)
_SHT3X_STATUS_AFTER_RESET = 0x8010  # alert pending, system reset detected
_SHT3X_STATUS_CLEARABLE = 0x8C10  # alert, RH/T tracking alerts, reset detected (Clear Status)
_SHT3X_STATUS_HEATER = 0x2000
_SHT3X_STATUS_CMD_FAILED = 0x0002


def sht3x_raw(temperature_c: float, humidity_rh: float) -> tuple[int, int]:
    """Return the (T, RH) words: T = -45 + 175 raw/65535, RH = 100 raw/65535 (datasheet 4.13),
    nearest, clipped to 0..65535 (-45..130 degC, 0..100 %RH: the part has no overflow flag)."""
    t = _clamp(_nearest((temperature_c + 45) / 175 * 65535), 0, 65535)
    rh = _clamp(_nearest(humidity_rh / 100 * 65535), 0, 65535)
    return t, rh


def _sht3x_word(word: int, bad: bool = False) -> bytes:
    data = bytes([word >> 8, word & 0xFF])
    crc = sensirion_crc8(data)
    return data + bytes([crc ^ 0x01 if bad else crc])


class SHT3xModel:
    """An SHT3x: single-shot measure, then a 6-byte read (T, CRC, RH, CRC); status register.

    The measurement latches the timeline at the command; reading before its duration elapsed,
    reading twice, or reading with nothing measured is NACKed (OSError ENODEV), as the part does
    in no-clock-stretching mode. Faults: present = False (NACK everything), corrupt_crc = n (the
    next n frames carry a wrong CRC on their first word).
    """

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.present = True
        self.corrupt_crc = 0
        self.measurements = 0
        self.status = _SHT3X_STATUS_AFTER_RESET
        self._out: bytes | None = None
        self._ready_ms = 0.0

    def _frame(self, words: tuple[int, ...]) -> bytes:
        bad = self.corrupt_crc > 0
        if bad:
            self.corrupt_crc -= 1
        out = b""
        for i, w in enumerate(words):
            out += _sht3x_word(w, bad and i == 0)
        return out

    def i2c_write(self, data: bytes) -> None:
        if not self.present:
            raise OSError(ENODEV)
        if len(data) < 2:
            return  # no complete command: nothing happens
        cmd = (data[0] << 8) | data[1]
        now = self.feed.time.ms()
        if cmd in _SHT3X_SINGLE_SHOT_MS or cmd in _SHT3X_STRETCHED:
            v = self.feed.now()
            self.measurements += 1
            self._out = self._frame(sht3x_raw(v["temperature_c"], v["humidity_rh"]))
            self._ready_ms = now + _SHT3X_SINGLE_SHOT_MS.get(cmd, 0)
        elif cmd == 0x30A2:  # soft reset: aborts a measurement, status back to its reset value
            self._out = None
            self.status = _SHT3X_STATUS_AFTER_RESET  # the heater is off after a reset
        elif cmd == 0xF32D:  # read status
            self._out = self._frame((self.status,))
            self._ready_ms = now
        elif cmd == 0x3041:  # clear status
            self.status &= ~_SHT3X_STATUS_CLEARABLE & 0xFFFF
        elif cmd == 0x306D:
            self.status |= _SHT3X_STATUS_HEATER
        elif cmd == 0x3066:
            self.status &= ~_SHT3X_STATUS_HEATER & 0xFFFF
        else:
            self.status |= _SHT3X_STATUS_CMD_FAILED

    def i2c_read_into(self, buf: bytearray) -> None:
        if not self.present or self._out is None or self.feed.time.ms() < self._ready_ms:
            raise OSError(ENODEV)  # busy or nothing to send: the address is not acknowledged
        out, self._out = self._out, None
        for i in range(len(buf)):
            buf[i] = out[i] if i < len(out) else 0xFF


# ==== INA219 on I2C ==============================================================================

_INA219_CONFIG_POR = 0x399F
# ADC setting (BADC/SADC code) -> conversion time in ms (datasheet table 5); codes 0..7 use the
# low two bits (9..12 bits), 8..15 are 12 bits with 1..128 samples averaged.
_INA219_ADC_MS = {0: 0.084, 1: 0.148, 2: 0.276, 3: 0.532}
_INA219_AVG_MS = {8: 0.532, 9: 1.06, 10: 2.13, 11: 4.26, 12: 8.51, 13: 17.02, 14: 34.05, 15: 68.10}


def _ina219_adc_ms(code: int) -> float:
    return _INA219_AVG_MS[code] if code >= 8 else _INA219_ADC_MS[code & 3]


class INA219Model:
    """An INA219: register map computed from the timeline's bus_voltage_v and current_a.

    shunt_uohm: the board's shunt (the chip measures I x R_shunt). Registers (datasheet 8.6):
    config 00h (power-on 399Fh; RST bit 15 resets everything), shunt 01h (10 uV LSB, saturating at
    +-4000 x PGA: +-320 mV at /8), bus 02h (4 mV LSB in bits 15..3, 0..16 V or 0..32 V by BRNG;
    CNVR bit 1 set when a conversion completes, cleared by reading power or writing config; OVF
    bit 0 when current or power do not fit their registers), power 03h = |current| x bus / 5000,
    current 04h = shunt x calibration / 4096 (signed, truncated), calibration 05h (bit 0 reads 0;
    power-on 0: current and power read 0). Conversions run at the configured ADC times in
    continuous modes (one after a config write in triggered modes, none in power-down); each
    latches the timeline at its completion. A read of more than 2 bytes repeats the register.
    Faults: present = False (NACK), power_cycle() (the chip loses config and calibration).
    """

    def __init__(self, feed: Feed, shunt_uohm: int) -> None:
        self.feed = feed
        self.shunt_uohm = shunt_uohm
        self.present = True
        self.power_cycle()

    def power_cycle(self) -> None:
        """Reset every register to its power-on value, as a brown-out does."""
        self.config = _INA219_CONFIG_POR
        self.calibration = 0
        self._ptr = 0
        self._sample: tuple[float, float] | None = None  # (V, A) of the latest conversion
        self._restart()

    def _restart(self) -> None:
        self._epoch_ms = self.feed.time.ms()
        self._seen = 0  # conversions latched since the epoch
        self._cleared = 0  # conversions done when CNVR was last cleared

    def _cycle_ms(self) -> float | None:
        mode = self.config & 7
        if mode in (0, 4):
            return None
        t = 0.0
        if mode & 1:
            t += _ina219_adc_ms((self.config >> 3) & 0xF)
        if mode & 2:
            t += _ina219_adc_ms((self.config >> 7) & 0xF)
        return t

    def _done(self) -> int:
        """Latch the latest completed conversion; return how many completed since the epoch."""
        cycle = self._cycle_ms()
        if cycle is None:
            return self._seen
        k = int((self.feed.time.ms() - self._epoch_ms) // cycle)
        if self.config & 7 < 4:  # triggered: one conversion per config write
            k = min(k, 1)
        if k > self._seen:
            v = self.feed.at_ms(self._epoch_ms + k * cycle)
            self._sample = (float(v["bus_voltage_v"]), float(v["current_a"]))
            self._seen = k
        return k

    def registers(self) -> tuple[int, int, int, int, bool]:
        """Return (shunt, bus BD, power, current, ovf) of the latest conversion (signed ints)."""
        volts, amps = self._sample if self._sample is not None else (0.0, 0.0)
        pga = (self.config >> 11) & 3
        shunt_max = 4000 << pga
        shunt = _clamp(_nearest(amps * self.shunt_uohm / 10), -shunt_max, shunt_max)
        bus_max = 8000 if self.config & 0x2000 else 4000
        bd = _clamp(_nearest(volts * 250), 0, bus_max)  # 4 mV LSB
        current = int(shunt * self.calibration / 4096)  # truncated toward zero
        power = abs(current) * bd // 5000
        ovf = not -32768 <= current <= 32767 or power > 0xFFFF
        return shunt, bd, power & 0xFFFF, current, ovf

    def _read(self, reg: int) -> int:
        if reg == 0:
            return self.config
        if reg == 5:
            return self.calibration
        done = self._done()
        shunt, bd, power, current, ovf = self.registers()
        if reg == 1:
            return shunt & 0xFFFF
        if reg == 2:
            return (bd << 3) | (2 if done > self._cleared else 0) | (1 if ovf else 0)
        if reg == 3:
            self._cleared = done
            return power
        if reg == 4:
            return current & 0xFFFF
        return 0

    def i2c_write(self, data: bytes) -> None:
        if not self.present:
            raise OSError(ENODEV)
        if not data:
            return
        self._ptr = data[0]
        if len(data) < 3:
            return
        value = (data[1] << 8) | data[2]
        if self._ptr == 0:
            self._done()  # what converted under the old configuration stays in the registers
            if value & 0x8000:
                sample = self._sample
                self.power_cycle()
                self._sample = sample
            else:
                self.config = value
                self._restart()
        elif self._ptr == 5:
            self.calibration = value & 0xFFFE

    def i2c_read_into(self, buf: bytearray) -> None:
        if not self.present:
            raise OSError(ENODEV)
        value = self._read(self._ptr)
        word = (value >> 8, value & 0xFF)
        for i in range(len(buf)):
            buf[i] = word[i & 1]


# ==== QMC5883L on I2C ============================================================================

_QMC_ODR_HZ = (10, 50, 100, 200)  # control 1 bits 3:2
_QMC_LSB_PER_GAUSS = {0: 12000, 1: 3000}  # control 1 bits 5:4: 2 G, 8 G


class QMC5883LModel:
    """A QMC5883L: standby after power-on and soft reset; converts only once configured.

    Registers: data 00h-05h (X, Y, Z little-endian signed), status 06h (DRDY bit 0 set by a new
    sample and cleared by reading any data register; OVL bit 1 when an axis exceeds the int16
    output, which saturates; DOR bit 2 when a sample was skipped unread), temperature 07h-08h
    (100 LSB/degC, relative), control 1 09h (OSR, RNG, ODR, MODE), control 2 0Ah (SOFT_RST,
    ROL_PNT, INT_ENB), SET/RESET period 0Bh, 0Ch reads 01h, chip id 0Dh = FFh. Continuous mode
    samples at the ODR from the control-1 write (the first after one period) and latches the
    timeline's field_ut then; 1 G = 100 uT, 12000 LSB/G at 2 G, 3000 LSB/G at 8 G. The register
    pointer increments after each byte (and rolls 06h -> 00h with ROL_PNT). Faults: present =
    False (NACK), power_cycle() (the chip forgets its configuration and stops converting).
    """

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.present = True
        self.power_cycle()

    def power_cycle(self) -> None:
        """Reset every register to its power-on value (standby: no conversions)."""
        self.control1 = 0
        self.control2 = 0
        self.set_reset = 0
        self._ptr = 0
        self._data = (0, 0, 0)
        self._ovl = False
        self._restart()

    def _restart(self) -> None:
        self._epoch_ms = self.feed.time.ms()
        self._seen = 0
        self._read_k = 0

    def _done(self) -> int:
        if self.control1 & 3 != 1:  # standby (00) or reserved: no new samples
            return self._seen
        period_ms = 1000 / _QMC_ODR_HZ[(self.control1 >> 2) & 3]
        k = int((self.feed.time.ms() - self._epoch_ms) // period_ms)
        if k > self._seen:
            ut = self.feed.at_ms(self._epoch_ms + k * period_ms)["field_ut"]
            lsb_per_ut = _QMC_LSB_PER_GAUSS.get((self.control1 >> 4) & 3, 12000) / 100
            raw = [_nearest(float(a) * lsb_per_ut) for a in ut]
            self._ovl = any(r > 32767 or r < -32768 for r in raw)
            self._data = tuple(_clamp(r, -32768, 32767) for r in raw)
            self._seen = k
        return k

    def _status(self, done: int) -> int:
        drdy = done > self._read_k
        dor = done > self._read_k + 1
        return (1 if drdy else 0) | (2 if self._ovl else 0) | (4 if dor else 0)

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == 0x09:
            self._done()
            self.control1 = value
            self._restart()
        elif reg == 0x0A:
            if value & 0x80:
                self.power_cycle()
            else:
                self.control2 = value & 0x41
        elif reg == 0x0B:
            self.set_reset = value

    def i2c_write(self, data: bytes) -> None:
        if not self.present:
            raise OSError(ENODEV)
        if not data:
            return
        self._ptr = data[0]
        for b in data[1:]:
            self._write_reg(self._ptr, b)
            self._ptr += 1

    def i2c_read_into(self, buf: bytearray) -> None:
        if not self.present:
            raise OSError(ENODEV)
        done = self._done()
        data = b"".join(v.to_bytes(2, "little", signed=True) for v in self._data)
        temp = _nearest(float(self.feed.now().get("temperature_c", 20.0)) * 100)
        regs = (
            data
            + bytes([self._status(done)])
            + _clamp(temp, -32768, 32767).to_bytes(2, "little", signed=True)
            + bytes([self.control1, self.control2, self.set_reset, 0x01, 0xFF])
        )
        touched_data = False
        ptr = self._ptr
        for i in range(len(buf)):
            buf[i] = regs[ptr] if ptr < len(regs) else 0
            touched_data = touched_data or ptr < 6
            ptr += 1
            if self.control2 & 0x40 and ptr == 7:
                ptr = 0
        self._ptr = ptr
        if touched_data:
            self._read_k = done


# ==== NMEA GPS on UART ===========================================================================


def nmea_sentence(body: str) -> bytes:
    """Return '$' + body + '*hh' CR LF, hh the XOR of body's bytes (NMEA 0183)."""
    x = 0
    for b in body.encode():
        x ^= b
    return b"$%s*%02X\r\n" % (body.encode(), x)


def nmea_coordinate(value_deg: float, degree_digits: int) -> tuple[str, str]:
    """Return ((d)ddmm.mmmmm, hemisphere) for signed degrees: 5 decimals of minutes, as u-blox
    receivers send (1e-5 minute = 1.7e-7 degree)."""
    pos, neg = ("N", "S") if degree_digits == 2 else ("E", "W")
    a = abs(value_deg)
    deg = int(a)
    m5 = _nearest((a - deg) * 60 * 100_000)
    if m5 >= 60 * 100_000:
        deg, m5 = deg + 1, m5 - 60 * 100_000
    text = f"{deg:0{degree_digits}d}{m5 // 100_000:02d}.{m5 % 100_000:05d}"
    return text, neg if value_deg < 0 else pos


class SimUART(FakeUART):
    """machine.UART with a receive ring buffer of rxbuf bytes fed by a device on the other end.

    device.transmit(uart) pushes what arrived up to now through receive(); bytes that do not fit
    are dropped (the ESP32 UART driver keeps the oldest bytes when its buffer is full) and counted
    in overruns. Writes are logged in written (FakeUART).
    """

    def __init__(self, baudrate: int = 9600, rxbuf: int = 256, device: Any = None) -> None:
        super().__init__()
        self.baudrate = baudrate
        self.rxbuf = rxbuf
        self.device = device
        self.overruns = 0
        self._rx = bytearray()

    def room(self) -> int:
        """Return how many bytes the receive buffer can take now."""
        return self.rxbuf - len(self._rx)

    def receive(self, data: bytes) -> None:
        """Buffer data as received on RX (what does not fit is dropped)."""
        room = self.room()
        if len(data) > room:
            self.overruns += len(data) - room
            data = data[:room]
        self._rx += data

    def feed(self, data: bytes) -> None:
        self.receive(bytes(data))

    def _pump(self) -> None:
        if self.device is not None:
            self.device.transmit(self)

    def any(self) -> int:
        self._pump()
        return len(self._rx)

    def read(self, nbytes: int = -1) -> bytes | None:
        self._pump()
        if not self._rx:
            return None
        n = len(self._rx) if nbytes < 0 else min(nbytes, len(self._rx))
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    def readline(self) -> bytes | None:
        self._pump()
        i = self._rx.find(b"\n")
        return self.read() if i < 0 else self.read(i + 1)

    def readinto(self, buf: bytearray) -> int | None:
        data = self.read(len(buf))
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)


class NmeaGpsModel:
    """A GNSS receiver at 1 Hz: at every whole second of uptime it sends RMC then GGA.

    Byte i of a burst reaches the UART (i + 1) x 10 bits / baudrate after the second (8N1), so a
    poll in the middle of a burst finds half a sentence. Fix: RMC status A, mode A, GGA quality
    1 with satellites, HDOP, altitude; no fix: RMC status V, mode N and GGA quality 0 with empty
    position fields, as receivers send before a fix. talker: "GP" (GPS) or e.g. "GN". Faults:
    present = False (silent), corrupt_checksum = n (the next n sentences carry a wrong checksum).
    Bursts that fall wholly inside a full UART buffer are skipped (counted in skipped_bursts).
    """

    def __init__(self, feed: Feed, baudrate: int = 9600, talker: str = "GP") -> None:
        self.feed = feed
        self.baudrate = baudrate
        self.talker = talker
        self.present = True
        self.corrupt_checksum = 0
        self.skipped_bursts = 0
        self.bursts = 0
        self._next_s = 1  # the next burst's second of uptime
        self._burst = b""
        self._burst_ms = 0.0
        self._sent = 0

    def sentences(self, uptime_s: int) -> bytes:
        """Return the burst the receiver sends at uptime_s (RMC, GGA)."""
        v = self.feed.at(uptime_s)
        utc = v.get("utc_s")
        utc_s = UTC_BASE_S + uptime_s if utc is None else utc
        t = datetime.fromtimestamp(int(utc_s), UTC)
        hms = f"{t.hour:02d}{t.minute:02d}{t.second:02d}.00"
        date = f"{t.day:02d}{t.month:02d}{t.year % 100:02d}"
        tk = self.talker
        if v["fix"]:
            lat, ns = nmea_coordinate(float(v["lat_deg"]), 2)
            lon, ew = nmea_coordinate(float(v["lon_deg"]), 3)
            rmc = f"{tk}RMC,{hms},A,{lat},{ns},{lon},{ew},0.000,,{date},,,A"
            sats, hdop, alt = int(v["satellites"]), float(v["hdop"]), float(v["altitude_m"])
            gga = (
                f"{tk}GGA,{hms},{lat},{ns},{lon},{ew},1,{sats:02d},{hdop:.2f},{alt:.1f},M,47.0,M,,"
            )
        else:
            rmc = f"{tk}RMC,{hms},V,,,,,,,{date},,,N"
            gga = f"{tk}GGA,{hms},,,,,0,00,99.99,,,,,,"
        out = b""
        for body in (rmc, gga):
            line = nmea_sentence(body)
            if self.corrupt_checksum > 0:
                self.corrupt_checksum -= 1
                line = line[:-3] + (b"0" if line[-3:-2] != b"0" else b"1") + line[-2:]
            out += line
        return out

    def _byte_ms(self) -> float:
        return 10_000 / self.baudrate

    def transmit(self, uart: SimUART) -> None:
        """Push every byte sent up to now into uart."""
        now = self.feed.time.ms()
        while True:
            if self._sent >= len(self._burst):
                if self._next_s * 1000 > now:
                    return
                latest_s = int(now // 1000)
                if uart.room() == 0 and self._next_s < latest_s:
                    self.skipped_bursts += latest_s - self._next_s  # dropped whole: buffer full
                    self._next_s = latest_s
                self._burst = self.sentences(self._next_s) if self.present else b""
                self._burst_ms = self._next_s * 1000
                self._sent = 0
                self._next_s += 1
                self.bursts += 1
            arrived = min(len(self._burst), int((now - self._burst_ms) / self._byte_ms()))
            if arrived > self._sent:
                uart.receive(self._burst[self._sent : arrived])
                self._sent = arrived
            if self._sent < len(self._burst):
                return


# ==== analog probes on the ADC ===================================================================

# ESP32 ADC per attenuation code (machine.ADC.ATTN_0DB .. ATTN_11DB): the upper end of the range
# Espressif documents as measurable (ESP-IDF "ADC attenuation": 950, 1250, 1750, 2450 mV). The
# model is linear from 0 to that full scale and saturates there; the ESP32's dead zone below
# ~100-150 mV and its non-linearity near full scale are not modelled.
ADC_FULL_SCALE_MV = {0: 950.0, 1: 1250.0, 2: 1750.0, 3: 2450.0}
# Deterministic sample noise, one period per trimmed mean of 8: the min and the max are dropped
# and the rest cancel, as the driver's trimmed mean intends (a spike of 6 mV / 60 counts included).
_ADC_NOISE_UV = (300, -300, 200, -200, 6000, 100, -100, -500)
_ADC_NOISE_U16 = (3, -3, 2, -2, 60, 1, -1, -5)


class ProbeADC(FakeADC):
    """machine.ADC on a probe's output: read_uv() microvolts, read_u16() counts of full scale.

    output_mv() gives the probe's output now; readings saturate at the attenuation's full scale
    (read_u16 reaches 65535 there: the driver's RangeError), with deterministic noise unless
    noise=False. fail (FakeADC) raises queued OSErrors.
    """

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, output_mv: Callable[[], float], attenuation: int = 3, noise: bool = True):
        super().__init__()
        self.output_mv = output_mv
        self.attenuation = attenuation
        self.noise = noise
        self._i = 0

    def atten(self, value: int) -> None:
        self.attenuation = value

    def width(self, value: int) -> None:
        return None

    def full_scale_mv(self) -> float:
        """Return the full-scale input in mV at the current attenuation."""
        return ADC_FULL_SCALE_MV[self.attenuation]

    def _sample(self, noise: tuple[int, ...]) -> tuple[float, int]:
        self.reads += 1
        if self.fail:
            raise self.fail.pop(0)
        n = noise[self._i % len(noise)] if self.noise else 0
        self._i += 1
        return _clamp_f(self.output_mv(), 0.0, self.full_scale_mv()), n

    def read_uv(self) -> int:
        mv, n = self._sample(_ADC_NOISE_UV)
        return _clamp(_nearest(mv * 1000) + n, 0, _nearest(self.full_scale_mv() * 1000))

    def read_u16(self) -> int:
        mv, n = self._sample(_ADC_NOISE_U16)
        return _clamp(_nearest(mv / self.full_scale_mv() * 65535) + n, 0, 65535)


def _clamp_f(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def invert_table(points: list[list[int]], y: float) -> float:
    """Return the input x at which the piecewise-linear calibration table gives y.

    points: [[x, y], ...] (x rising, y strictly monotonic). Beyond the table the end segments
    are extended: the probe keeps its slope where the calibration stops (the driver clamps).
    """
    pts = sorted(points, key=lambda p: p[1])
    i = 1
    while i < len(pts) - 1 and pts[i][1] < y:
        i += 1
    (x0, y0), (x1, y1) = pts[i - 1], pts[i]
    return x0 + (x1 - x0) * (y - y0) / (y1 - y0)


def do_saturation_mg_l(temperature_c: float) -> float:
    """Return the oxygen solubility of fresh water at 1 atm in mg/L (Benson & Krause 1984).

    The equation of APHA Standard Methods 4500-O / USGS: ln C = -139.34411 + 1.575701e5/T -
    6.642308e7/T^2 + 1.243800e10/T^3 - 8.621949e11/T^4, T in kelvin: an independent, continuous
    published source for the firmware's 1-degree table (9.09 mg/L at 20 degC, 8.26 at 25).
    """
    t = temperature_c + 273.15
    return math.exp(
        -139.34411 + 1.575701e5 / t - 6.642308e7 / t**2 + 1.243800e10 / t**3 - 8.621949e11 / t**4
    )


def do_probe_mv(do_mg_l: float, temperature_c: float, saturation_mv: list[list[int]]) -> float:
    """Return a galvanic DO probe's output in mV: proportional to the oxygen partial pressure,
    i.e. to % saturation, V = V_sat(T) x DO / DO_sat(T). V_sat(T) is the probe's output in
    air-saturated water from the profile's saturation_mv [[temperature_c01, mV], ...] points
    (one point: constant; several: linear between them, constant beyond)."""
    pts = sorted(saturation_mv)
    t01 = temperature_c * 100
    if len(pts) == 1 or t01 <= pts[0][0]:
        v_sat = float(pts[0][1])
    elif t01 >= pts[-1][0]:
        v_sat = float(pts[-1][1])
    else:
        i = 1
        while pts[i][0] < t01:
            i += 1
        (t0, v0), (t1, v1) = pts[i - 1], pts[i]
        v_sat = v0 + (v1 - v0) * (t01 - t0) / (t1 - t0)
    return v_sat * do_mg_l / do_saturation_mg_l(temperature_c)


# ==== HX711 on two pins ==========================================================================

_HX711_GAINS = {1: ("A", 128), 2: ("B", 32), 3: ("A", 64)}  # pulses after the 24 data bits
_HX711_RAW_MAX = 0x7FFFFF
_HX711_RAW_MIN = -0x800000
# Deterministic noise, one period per trimmed mean of 5 (the driver's default): min and max
# dropped, the rest cancel; the +400 count spike stands for a knock on the platform.
_HX711_NOISE = (3, 400, -3, 0, -6)


class HX711Chip:
    """An HX711 behind a DOUT/PD_SCK pin pair (dout, sck: machine.Pin stand-ins).

    DOUT low = a conversion is ready; each SCK rising edge shifts out the next of 24 bits (two's
    complement, MSB first; the conversion is latched at the first edge); 1-3 more pulses select
    the next conversion's input and gain (25: A/128, 26: B/32, 27: A/64; power-on A/128). counts
    = tare_counts + mass_g x cal_counts / cal_grams at the profile's gain on its channel (A for
    128/64, B for 32); the other channel reads 0 (nothing connected), the other gain on the same
    channel scales the counts. Saturates at 0x7FFFFF / 0x800000. SCK held high for at least
    power_down_ms (the datasheet's 60 us; ticks are whole ms, so the default is 2) powers the chip
    down: DOUT reads high, and SCK low again resets it to A/128.

    sps: None (default) has a new conversion ready as soon as the previous one was read; 10 or 80
    models the real output rate: DOUT stays high until the next conversion completes (1/sps
    after the previous one, 400 ms / 50 ms settling after power-up). Faults: present = False (no
    chip: DOUT floats high).
    """

    def __init__(
        self,
        feed: Feed,
        tare_counts: int,
        cal_counts: int,
        cal_grams: int,
        gain: int = 128,
        sps: int | None = None,
        power_down_ms: int = 2,
        noise: bool = True,
    ) -> None:
        self.feed = feed
        self.tare_counts = tare_counts
        self.cal_counts = cal_counts
        self.cal_grams = cal_grams
        self.profile_channel = "B" if gain == 32 else "A"
        self.profile_gain = gain
        self.sps = sps
        self.power_down_ms = power_down_ms
        self.noise = noise
        self.present = True
        self.conversions = 0
        self.power_downs = 0
        self.dout = HX711DoutPin(self)
        self.sck = HX711SckPin(self)
        self._sck_high_ms: int | None = None
        self._reset(self.feed.time.ms())

    def _reset(self, now: int) -> None:
        self.select = 1  # A/128 after power-on
        self.powered = True
        self._pulses = 0
        self._word = 0
        self._epoch_ms = now  # conversions complete at epoch + settle + k / sps
        self._read_k = -1

    # -- conversions --

    def _period_ms(self) -> float:
        return 1000 / self.sps if self.sps else 0.0

    def _completed(self, now: int) -> int:
        """Return the index of the latest completed conversion since the epoch (-1: none)."""
        settle_ms = 400 if self.sps == 10 else 50
        if now - self._epoch_ms < settle_ms:
            return -1
        return int((now - self._epoch_ms - settle_ms) // self._period_ms())

    def ready(self) -> bool:
        """Return True when a conversion waits to be read (DOUT low)."""
        if not self.present or not self.powered:
            return False
        if not self.sps:
            return True
        return self._completed(self.feed.time.ms()) > self._read_k

    def counts(self, mass_g: float) -> int:
        """Return the signed output for mass_g on the input and gain selected now (no noise)."""
        channel, gain = _HX711_GAINS[self.select]
        if channel != self.profile_channel:
            return 0
        scaled = (self.tare_counts + mass_g * self.cal_counts / self.cal_grams) * gain
        return _clamp(_nearest(scaled / self.profile_gain), _HX711_RAW_MIN, _HX711_RAW_MAX)

    def _convert(self) -> int:
        now = self.feed.time.ms()
        n = _HX711_NOISE[self.conversions % len(_HX711_NOISE)] if self.noise else 0
        self.conversions += 1
        if self.sps:
            self._read_k = self._completed(now)
        raw = self.counts(float(self.feed.now()["mass_g"]))
        if _HX711_RAW_MIN < raw < _HX711_RAW_MAX:
            raw = _clamp(raw + n, _HX711_RAW_MIN, _HX711_RAW_MAX)
        return raw & 0xFFFFFF

    # -- the pins --

    def _check_power_down(self, now: int) -> None:
        if (
            self.powered
            and self._sck_high_ms is not None
            and now - self._sck_high_ms >= self.power_down_ms
        ):
            self.powered = False
            self.power_downs += 1

    def sck_edge(self, level: int) -> None:
        """SCK driven to level by the MCU."""
        now = self.feed.time.ms()
        if level:
            if self._sck_high_ms is not None:
                return
            self._sck_high_ms = now
            if not self.powered or not self.present:
                return
            if self._pulses == 0:
                if not self.ready():
                    return  # DOUT high: a pulse now shifts nothing
                self._word = self._convert()
            self._pulses += 1
            return
        if self._sck_high_ms is None:
            return
        self._check_power_down(now)
        self._sck_high_ms = None
        if not self.powered:
            self._reset(now)  # SCK low after power-down: reset to A/128, conversions restart

    def dout_level(self) -> int:
        """Return the DOUT level now."""
        now = self.feed.time.ms()
        self._check_power_down(now)
        if not self.present or not self.powered:
            return 1
        if self._pulses > 24 and self._sck_high_ms is None:
            self.select = min(self._pulses - 24, 3)  # the read ended: next input and gain
            self._pulses = 0
        if 1 <= self._pulses <= 24:
            return (self._word >> (24 - self._pulses)) & 1
        if self._pulses > 24:
            return 1  # the 25th edge pulls DOUT high
        return 0 if self.ready() else 1


class HX711DoutPin(FakePin):
    """The HX711's DOUT as a machine.Pin input."""

    def __init__(self, chip: HX711Chip) -> None:
        super().__init__(level=1)
        self.chip = chip

    def value(self, x: int | None = None) -> int | None:
        if x is None:
            self.level = self.chip.dout_level()
            return self.level
        return super().value(x)


class HX711SckPin(FakePin):
    """The HX711's PD_SCK as a machine.Pin output: every write is an edge for the chip."""

    def __init__(self, chip: HX711Chip) -> None:
        super().__init__(level=0)
        self.chip = chip

    def init(self, mode: int = -1, pull: int = -1, value: int | None = None) -> None:
        super().init(mode, pull, value)
        if value is not None:
            self.chip.sck_edge(1 if value else 0)

    def value(self, x: int | None = None) -> int | None:
        if x is None:
            return self.level
        self.level = 1 if x else 0  # not logged: a load cell clocks 25+ edges per reading
        self.chip.sck_edge(self.level)
        return None


# ==== tamper switch on a pin =====================================================================


class SwitchPin(FakePin):
    """A door/tamper switch on a machine.Pin input: level = open_level while the timeline's open.

    Edges are found when the driver reads the pin and when update() runs (call it every few ms:
    an opening between two driver polls reaches the driver only through its IRQ). Each edge
    bounces `bounce` times (contact bounce, all within the same tick) and fires the IRQ handler
    per enabled edge, as FakePin.set_level does.
    """

    def __init__(self, feed: Feed, open_level: int = 1, bounce: int = 2) -> None:
        self.feed = feed
        self.open_level = open_level
        self.bounce = bounce
        self.edges = 0
        self._busy = False
        super().__init__(level=self._target())

    def _target(self) -> int:
        return self.open_level if self.feed.now()["open"] else 1 - self.open_level

    def update(self) -> None:
        """Move the pin to the timeline's level now, firing the IRQ for every edge."""
        if self._busy:
            return
        self._busy = True
        try:
            level = self._target()
            if level != self.level:
                old = self.level
                self.edges += 1
                for _ in range(self.bounce):
                    self.set_level(level)
                    self.set_level(old)
                self.set_level(level)
        finally:
            self._busy = False

    def value(self, x: int | None = None) -> int | None:
        if x is None:
            self.update()
            return self.level
        return super().value(x)


# ==== the board ==================================================================================


class Timelines:
    """The simplest world: {sensor name: timeline}; a sensor not named keeps its defaults."""

    def __init__(self, timelines: Mapping[str, Timeline] | None = None) -> None:
        self.timelines = dict(timelines or {})

    def timeline(self, sensor: dict) -> Timeline | None:
        """Return the timeline of the profile sensor, or None."""
        return self.timelines.get(sensor["name"])


class SimBuses(dict):
    """What build_buses returns: the bus dict of firmware/app.py make_buses, plus the models."""

    def __init__(self, time: BoardTime) -> None:
        super().__init__()
        self.time = time
        self.models: dict[str, Any] = {}

    def update(self) -> None:
        """Deliver what happened since the last call that the drivers see only by interrupt."""
        for model in self.models.values():
            fn = getattr(model, "update", None)
            if fn is not None:
                fn()


_LOG_TRANSFERS = 256  # transfers kept in a simulated bus's log (the fakes keep all of them)


def _rxbuf_bytes() -> int:
    """Return the UART receive buffer firmware/app.py make_buses configures."""
    from firmware.app import _UART_RXBUF_BYTES

    return _UART_RXBUF_BYTES


def _defaults(sensor: dict) -> dict[str, Any]:
    driver = sensor["driver"]
    if driver == "analog_probe":
        name = ANALOG_QUANTITIES[sensor["channels"][0]["type"]][0]
        return {name: DEFAULTS["analog_probe"][name]}
    return DEFAULTS.get(driver, {})


def _probe_adc(sensor: dict, feed: Feed, feeds: Mapping[str, Feed], atten: int) -> ProbeADC:
    """Return the ADC of an analog_probe (the inverse of its calibration table) or a do_probe."""
    params = sensor.get("params") or {}
    if sensor["driver"] == "do_probe":
        water = feeds.get(params["temperature_sensor"])
        if water is None:
            feed.fallback = lambda t: {"temperature_c": _DEFAULT_WATER_C}
        else:
            feed.fallback = lambda t: {"temperature_c": water.at(t)["temperature_c"]}
        points = params["saturation_mv"]

        def do_mv() -> float:
            v = feed.now()
            return do_probe_mv(float(v["do_mg_l"]), float(v["temperature_c"]), points)

        return ProbeADC(do_mv, atten)
    quantity, scale = ANALOG_QUANTITIES[sensor["channels"][0]["type"]]
    table = params["calibration"]
    u16 = params.get("input") == "u16"

    def probe_mv() -> float:
        x = invert_table(table, float(feed.now()[quantity]) * scale)
        return x * adc.full_scale_mv() / 65535 if u16 else x  # u16 tables are in counts

    adc = ProbeADC(probe_mv, atten)
    return adc


def build_buses(
    profile: dict,
    world: Any = None,
    clock: Any = None,
    start_ms: int | None = None,
    hx711_sps: int | None = None,
    waited: Callable[[], int] | None = None,
) -> SimBuses:
    """Return the buses of a board profile with every sensor's chip model attached.

    Same keys as firmware/app.py make_buses: every bus name, and "<sensor>.<role>" for every
    dedicated pin (ADCs included). world, clock, start_ms: see the module docstring (clock is
    required). hx711_sps: None (conversions always ready) or the HX711's real 10/80 SPS.
    waited(): the board's blocking waits that took no time on its clock (BoardTime).
    """
    if clock is None:
        raise ValueError("build_buses needs the board's clock (ticks_ms/ticks_diff)")
    if world is None:
        world = Timelines()
    elif isinstance(world, Mapping):
        world = Timelines(world)
    from firmware.app import _ATTEN

    time = BoardTime(clock, start_ms, waited)
    buses = SimBuses(time)
    for name, bus in profile["buses"].items():
        kind = bus["type"]
        if kind == "i2c":
            buses[name] = FakeI2C()
        elif kind == "onewire":
            buses[name] = FakeOneWire()
        elif kind == "uart":
            buses[name] = SimUART(bus["baudrate"], _rxbuf_bytes())
        if kind in ("i2c", "onewire"):  # a board runs for days: keep the latest transfers only
            buses[name].log = deque(maxlen=_LOG_TRANSFERS)
    feeds = {s["name"]: Feed(time, _defaults(s), world.timeline(s)) for s in profile["sensors"]}
    for sensor in profile["sensors"]:
        name = sensor["name"]
        driver = sensor["driver"]
        params = sensor.get("params") or {}
        feed = feeds[name]
        model: Any = None
        if driver == "ds18b20":
            rom = params.get("rom")
            model = DS18B20Model(bytes.fromhex(rom) if rom else ds18b20_rom(name), feed)
            buses[sensor["bus"]].devices.append(model)
        elif driver == "sht3x":
            model = buses[sensor["bus"]].attach(sensor["address"], SHT3xModel(feed))
        elif driver == "ina219":
            model = INA219Model(feed, params["shunt_uohm"])
            buses[sensor["bus"]].attach(sensor["address"], model)
        elif driver == "qmc5883l":
            model = buses[sensor["bus"]].attach(sensor["address"], QMC5883LModel(feed))
        elif driver == "nmea_gps":
            uart = buses[sensor["bus"]]
            model = NmeaGpsModel(feed, uart.baudrate)
            uart.device = model
        elif driver in ("analog_probe", "do_probe"):
            model = _probe_adc(sensor, feed, feeds, _ATTEN.get(params.get("atten_db", 11), 3))
            buses[name + ".adc"] = model
        elif driver == "hx711":
            model = HX711Chip(
                feed, params["tare_counts"], params["cal_counts"], params["cal_grams"],
                params.get("gain", 128), hx711_sps,
            )  # fmt: skip
            buses[name + ".dout"] = model.dout
            buses[name + ".sck"] = model.sck
        elif driver == "tamper":
            model = SwitchPin(feed, params.get("open_level", 1))
            buses[name + ".pin"] = model
        if model is not None:
            buses.models[name] = model
        for role in sensor.get("pins") or {}:  # a driver without a model: plain pins, as a board
            key = name + "." + role
            if key not in buses:
                buses[key] = FakeADC(u16=(32768,), uv=(1650000,)) if role == "adc" else FakePin()
    return buses
