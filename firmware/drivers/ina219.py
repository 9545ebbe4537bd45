"""TI INA219 current/power monitor on machine.I2C, with energy integrated over injected time."""

import struct

from micropython import const

from firmware.drivers.base import (
    RangeError,
    SensorError,
    default_ticks,
    div_round,
    emitter,
    new_source,
)

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_CURRENT = const(16)
_CH_ENERGY = const(6)
_CH_POWER = const(7)
_CH_VOLTAGE = const(15)

ADDR_DEFAULT = const(0x40)  # A1 = A0 = GND
_REG_CONFIG = const(0x00)
_REG_SHUNT = const(0x01)
_REG_BUS = const(0x02)
_REG_POWER = const(0x03)
_REG_CURRENT = const(0x04)
_REG_CALIBRATION = const(0x05)
# Configuration register fields (datasheet "Configuration Register (00h)").
CONFIG_RESET = const(0x8000)
BRNG_32V = const(0x2000)
PG_40MV = const(0x0000)
PG_80MV = const(0x0800)
PG_160MV = const(0x1000)
PG_320MV = const(0x1800)
ADC_12BIT = const(0x3)  # BADC/SADC code: 12-bit, one sample, 532 us
ADC_12BIT_128X = const(0xF)  # 128 averaged samples, 68.1 ms: smooths inverter ripple for metering
MODE_SHUNT_BUS_CONTINUOUS = const(0x7)
# Default: 32 V bus range, /8 gain (+-320 mV), 12-bit x128 averaging on both, continuous: a meter
# samples every few seconds, so the slowest, quietest conversion is the right trade.
CONFIG_DEFAULT = const(
    BRNG_32V | PG_320MV | (ADC_12BIT_128X << 7) | (ADC_12BIT_128X << 3) | MODE_SHUNT_BUS_CONTINUOUS
)
# Bus voltage register: bits 15..3 are the value in 4 mV steps, bit 1 CNVR, bit 0 OVF.
_BUS_MV_PER_LSB = const(4)
_BUS_CNVR = const(0x0002)
_BUS_OVF = const(0x0001)
_SHUNT_UV_PER_LSB = const(10)  # shunt voltage register LSB: 10 uV, two's complement
_POWER_LSB_PER_CURRENT_LSB = const(20)  # datasheet: Power_LSB = 20 x Current_LSB
# Cal = trunc(0.04096 / (Current_LSB[A] * R_shunt[ohm])) = 40_960_000_000 / (LSB[uA] * R[uohm]).
_CAL_NUMERATOR = const(40960000000)
# Energy bookkeeping: power in uW times ms is nJ; trapezoids are summed doubled (half-nJ units), so
# one Wh is 2 * 3600 J * 1e9 nJ/J. Integers are exact: nothing is lost to rounding over any run time.
_HALF_NJ_PER_WH = const(7200000000000)
# A gap longer than this (missed samples, a stalled loop) is not bridged: the power before and after
# says nothing about what happened in between. The gap is counted instead (see .gaps).
MAX_GAP_MS_DEFAULT = const(60000)


def calibration_value(current_lsb_ua, shunt_uohm):
    """Return the calibration register value for Current_LSB (uA) and R_shunt (micro-ohm).

    Bit 0 of the register is not implemented, so the value is truncated to even. Raises ValueError
    if it does not fit 1..0xFFFE (choose a larger current LSB or a larger shunt).
    """
    if current_lsb_ua <= 0 or shunt_uohm <= 0:
        raise ValueError("current LSB and shunt must be positive")
    cal = _CAL_NUMERATOR // (current_lsb_ua * shunt_uohm)
    if cal < 2 or cal > 0xFFFF:
        raise ValueError("calibration value %d out of range 2..65534" % cal)
    return cal & 0xFFFE


class INA219:
    """An INA219 on an I2C bus (readfrom_mem_into/writeto_mem), calibrated to direct mA and mW.

    update() reads one sample and integrates signed power over the time since the previous one
    (trapezoids) into forward (current >= 0, VIN+ to VIN-) and reverse energy counters.
    """

    def __init__(
        self,
        i2c,
        shunt_uohm,
        current_lsb_ua,
        addr=ADDR_DEFAULT,
        config=CONFIG_DEFAULT,
        ticks_ms=None,
        ticks_diff=None,
        max_gap_ms=MAX_GAP_MS_DEFAULT,
    ):
        """i2c: machine.I2C; shunt_uohm: shunt resistance in micro-ohm (0.1 ohm = 100000);
        current_lsb_ua: current register LSB in uA, >= max expected current / 32768.
        ticks_ms/ticks_diff: injected clock (time.ticks_ms / time.ticks_diff on the board)."""
        self._i2c = i2c
        self.addr = addr
        self.config = config
        self.current_lsb_ua = current_lsb_ua
        self.calibration = calibration_value(current_lsb_ua, shunt_uohm)
        if ticks_ms is None:
            ticks_ms, ticks_diff = default_ticks()
        elif ticks_diff is None:
            raise ValueError("ticks_diff is required with ticks_ms")
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.max_gap_ms = max_gap_ms
        self._buf = bytearray(2)
        self._last_ms = None
        self._last_uw = 0
        self._fwd_half_nj = 0
        self._rev_half_nj = 0
        self.energy_fwd_wh = 0
        self.energy_rev_wh = 0
        self.gaps = 0
        self.conversion_ready = False

    def _read_u16(self, reg):
        self._i2c.readfrom_mem_into(self.addr, reg, self._buf)
        return (self._buf[0] << 8) | self._buf[1]

    def _read_s16(self, reg):
        self._i2c.readfrom_mem_into(self.addr, reg, self._buf)
        return struct.unpack(">h", self._buf)[0]

    def _write_u16(self, reg, value):
        self._buf[0] = value >> 8
        self._buf[1] = value & 0xFF
        self._i2c.writeto_mem(self.addr, reg, self._buf)

    def configure(self):
        """Write the configuration and calibration registers and verify them; returns None.

        Raises SensorError if a register reads back differently (wrong device, failed write).
        """
        self._write_u16(_REG_CONFIG, self.config)
        self._write_u16(_REG_CALIBRATION, self.calibration)
        if (
            self._read_u16(_REG_CONFIG) != self.config
            or self._read_u16(_REG_CALIBRATION) != self.calibration
        ):
            raise SensorError("INA219 config/calibration read-back mismatch")

    def read(self):
        """Return (bus_mv, shunt_uv, current_ma, power_uw) of the latest conversion.

        power_uw is signed like the current. Raises RangeError when OVF is set (current/power
        overflowed: raise the PGA range or the current LSB), SensorError when the calibration
        register was lost (device reset; it is rewritten, the next read is valid). Sets
        conversion_ready from CNVR (False: no new conversion since the previous read).
        """
        bus = self._read_u16(_REG_BUS)
        if bus & _BUS_OVF:
            raise RangeError("INA219 math overflow (OVF)")
        self.conversion_ready = bool(bus & _BUS_CNVR)
        if self._read_u16(_REG_CALIBRATION) != self.calibration:
            self.configure()
            raise SensorError("INA219 lost its calibration (reset?); reconfigured")
        shunt_uv = self._read_s16(_REG_SHUNT) * _SHUNT_UV_PER_LSB
        current_raw = self._read_s16(_REG_CURRENT)
        # Reading the power register clears CNVR, so it is read last.
        power_uw = self._read_u16(_REG_POWER) * _POWER_LSB_PER_CURRENT_LSB * self.current_lsb_ua
        if current_raw < 0:
            power_uw = -power_uw
        bus_mv = (bus >> 3) * _BUS_MV_PER_LSB
        return bus_mv, shunt_uv, div_round(current_raw * self.current_lsb_ua, 1000), power_uw

    def update(self):
        """Read one sample, integrate energy since the previous update, return (bus_mv, current_ma, power_mw).

        The first update (and the first after a gap over max_gap_ms or a failed read) only sets
        the starting point. On an exception nothing is integrated and the next update restarts.
        """
        now = self._ticks_ms()
        try:
            bus_mv, _shunt_uv, current_ma, power_uw = self.read()
        except Exception:
            self._last_ms = None
            raise
        if self._last_ms is not None:
            dt_ms = self._ticks_diff(now, self._last_ms)
            if dt_ms < 0 or dt_ms > self.max_gap_ms:
                self.gaps += 1
            else:
                self._integrate((self._last_uw + power_uw) * dt_ms)
        self._last_ms = now
        self._last_uw = power_uw
        return bus_mv, current_ma, div_round(power_uw, 1000)

    def _integrate(self, half_nj):
        if half_nj >= 0:
            self._fwd_half_nj += half_nj
            if self._fwd_half_nj >= _HALF_NJ_PER_WH:
                wh = self._fwd_half_nj // _HALF_NJ_PER_WH
                self.energy_fwd_wh += wh
                self._fwd_half_nj -= wh * _HALF_NJ_PER_WH
        else:
            self._rev_half_nj -= half_nj
            if self._rev_half_nj >= _HALF_NJ_PER_WH:
                wh = self._rev_half_nj // _HALF_NJ_PER_WH
                self.energy_rev_wh += wh
                self._rev_half_nj -= wh * _HALF_NJ_PER_WH

    def energy_fwd_uwh(self):
        """Return forward energy in uWh including the sub-Wh remainder (truncated), for diagnostics."""
        return self.energy_fwd_wh * 1000000 + self._fwd_half_nj // 7200000

    def energy_rev_uwh(self):
        """Return reverse energy in uWh including the sub-Wh remainder (truncated)."""
        return self.energy_rev_wh * 1000000 + self._rev_half_nj // 7200000

    def restore_energy(self, fwd_wh, rev_wh):
        """Set the cumulative counters (e.g. from flash after a reboot); remainders restart at 0."""
        self.energy_fwd_wh = fwd_wh
        self.energy_rev_wh = rev_wh
        self._fwd_half_nj = 0
        self._rev_half_nj = 0


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def _check(params, chans):
    """Raise ValueError unless the calibration value of the shunt and current LSB fits 16 bits."""
    calibration_value(params["current_lsb_ua"], params["shunt_uohm"])


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "ina219": {
            "bus": "i2c",
            # energy: channel 0 import (current >= 0), channel 1 export
            "channels": ("energy", "power", "voltage", "current"),
            "params": {
                "shunt_uohm": (int, True, None, None),
                "current_lsb_ua": (int, True, None, None),
                "config": (int, False, None, None),
                "max_gap_ms": (int, False, None, None),
            },
            "check": _check,
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of an ina219 profile sensor: update() (integrating energy on the
    clock's ticks) into voltage, current, power and energy (channel 0 import, 1 export, whole Wh).

    The chip is configured before the first read (it powers up with calibration 0); a chip
    that loses its calibration later is reconfigured by INA219.read itself."""
    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    kw = {"ticks_ms": clock.ticks_ms, "ticks_diff": clock.ticks_diff}
    for key in ("config", "max_gap_ms"):
        if key in params:
            kw[key] = params[key]
    dev = INA219(
        buses[sensor["bus"]], params["shunt_uohm"], params["current_lsb_ua"], sensor["address"],
        **kw,
    )  # fmt: skip

    configured = [False]

    def read():
        if not configured[0]:  # power-on calibration is 0: configure before the first read
            dev.configure()
            configured[0] = True
        bus_mv, current_ma, power_mw = dev.update()
        return emit(
            {
                _CH_VOLTAGE: bus_mv,
                _CH_CURRENT: current_ma,
                _CH_POWER: power_mw,
                (_CH_ENERGY, 0): dev.energy_fwd_uwh() // 1000000,  # import
                (_CH_ENERGY, 1): dev.energy_rev_uwh() // 1000000,  # export
            }
        )

    return new_source(sensor, read)
