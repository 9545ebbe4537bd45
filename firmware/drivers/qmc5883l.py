"""QMC5883L 3-axis magnetometer on machine.I2C and a parking-bay occupancy detector with hysteresis."""

import struct

from micropython import const

from firmware.drivers.base import (
    NoDeviceError,
    NotReadyError,
    RangeError,
    div_round,
    emitter,
    new_source,
)

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_MAGNETIC_FIELD = const(17)
_CH_OCCUPANCY = const(10)
_CH_VEHICLE_COMMITMENT = const(11)
_EV_ARRIVAL = const(6)
_EV_DEPARTURE = const(7)

ADDR_DEFAULT = const(0x0D)
_REG_DATA = const(0x00)  # X LSB, X MSB, Y LSB, Y MSB, Z LSB, Z MSB (little-endian, signed)
_REG_STATUS = const(0x06)
_REG_CONTROL1 = const(0x09)
_REG_CONTROL2 = const(0x0A)
_REG_SET_RESET = const(0x0B)
_REG_CHIP_ID = const(0x0D)
_CHIP_ID = const(0xFF)  # datasheet: chip id register reads 0xFF
_STATUS_DRDY = const(0x01)
_STATUS_OVL = const(0x02)
_CONTROL2_SOFT_RST = const(0x80)
# Datasheet recommends SET/RESET period register = 0x01.
_SET_RESET_PERIOD = const(0x01)
# Control 1: OSR 512 (lowest noise), ODR 10 Hz (a bay changes in seconds), continuous mode.
_OSR_512 = const(0x00)
_ODR_10HZ = const(0x00)
_MODE_CONTINUOUS = const(0x01)
RANGE_2G = const(0x00)  # 12000 LSB/G: best resolution; the Earth field is ~0.5 G
RANGE_8G = const(0x10)  # 3000 LSB/G
# Default thresholds on the L1 deviation |dx|+|dy|+|dz| from the empty-bay baseline, in 0.01 uT.
# A car body over a ground sensor shifts the field by tens of uT; 0.01 uT steps keep integers exact.
# Tune on site: on > off gives hysteresis so a car rocking on the threshold is detected once.
ON_THRESHOLD_C01_DEFAULT = const(1500)
OFF_THRESHOLD_C01_DEFAULT = const(600)
# Consecutive samples beyond a threshold before the state flips (debounces passing traffic).
CONFIRM_SAMPLES_DEFAULT = const(3)
# Samples averaged for the empty-bay baseline.
BASELINE_SAMPLES_DEFAULT = const(16)
# Baseline tracking while vacant: exponential average with weight 2^-6, follows slow temperature
# drift of the sensor and the street without following a parked car (no tracking when occupied).
_DRIFT_SHIFT = const(6)

ARRIVAL = const(1)
DEPARTURE = const(2)


def raw_to_c01(raw, field_range):
    """Return a raw axis value as 0.01 uT: 1 G = 100 uT, 12000 LSB/G (2 G) or 3000 LSB/G (8 G)."""
    if field_range == RANGE_8G:
        return div_round(raw * 10, 3)
    return div_round(raw * 5, 6)


class QMC5883L:
    """A QMC5883L (GY-271 boards) on an I2C bus (readfrom_mem_into/writeto_mem)."""

    def __init__(self, i2c, addr=ADDR_DEFAULT, field_range=RANGE_2G):
        """i2c: machine.I2C; field_range: RANGE_2G or RANGE_8G."""
        if field_range not in (RANGE_2G, RANGE_8G):
            raise ValueError("field_range must be RANGE_2G or RANGE_8G")
        self._i2c = i2c
        self.addr = addr
        self.field_range = field_range
        self._b1 = bytearray(1)
        self._b6 = bytearray(6)

    def _write(self, reg, value):
        self._b1[0] = value
        self._i2c.writeto_mem(self.addr, reg, self._b1)

    def _read_reg(self, reg):
        self._i2c.readfrom_mem_into(self.addr, reg, self._b1)
        return self._b1[0]

    def configure(self):
        """Check the chip id, soft-reset and start continuous 10 Hz measurement; returns None.

        Raises NoDeviceError if the chip id is not 0xFF (e.g. an HMC5883L answers at 0x1E instead).
        """
        if self._read_reg(_REG_CHIP_ID) != _CHIP_ID:
            raise NoDeviceError("QMC5883L chip id mismatch")
        self._write(_REG_CONTROL2, _CONTROL2_SOFT_RST)
        self._write(_REG_SET_RESET, _SET_RESET_PERIOD)
        self._write(_REG_CONTROL1, _OSR_512 | self.field_range | _ODR_10HZ | _MODE_CONTINUOUS)

    def read_raw(self):
        """Return (x, y, z) raw signed counts of a new sample.

        Raises NotReadyError if DRDY is clear (no sample since the last read), RangeError if OVL is
        set (some axis beyond the range: a magnet on the sensor, or use RANGE_8G).
        """
        status = self._read_reg(_REG_STATUS)
        if not status & _STATUS_DRDY:
            raise NotReadyError("QMC5883L data not ready")
        self._i2c.readfrom_mem_into(self.addr, _REG_DATA, self._b6)
        if status & _STATUS_OVL:
            raise RangeError("QMC5883L overflow (OVL)")
        return struct.unpack("<hhh", self._b6)

    def read_c01(self):
        """Return (x, y, z) in 0.01 uT (same preconditions and errors as read_raw())."""
        x, y, z = self.read_raw()
        r = self.field_range
        return raw_to_c01(x, r), raw_to_c01(y, r), raw_to_c01(z, r)


def _shr_round(value, shift):
    """Return value / 2**shift rounded to nearest, halves away from zero (symmetric for negatives)."""
    half = 1 << (shift - 1)
    if value >= 0:
        return (value + half) >> shift
    return -((-value + half) >> shift)


class OccupancyDetector:
    """Bay occupancy from magnetic samples: baseline, hysteresis and confirmation counts.

    Feed it samples with update(x, y, z) (0.01 uT); the first baseline_samples build the empty-bay
    baseline. update() returns ARRIVAL or DEPARTURE exactly once per change, else None.
    """

    def __init__(
        self,
        on_threshold_c01=ON_THRESHOLD_C01_DEFAULT,
        off_threshold_c01=OFF_THRESHOLD_C01_DEFAULT,
        confirm_samples=CONFIRM_SAMPLES_DEFAULT,
        baseline_samples=BASELINE_SAMPLES_DEFAULT,
    ):
        """Precondition: 0 < off_threshold_c01 < on_threshold_c01, confirm_samples >= 1."""
        if not 0 < off_threshold_c01 < on_threshold_c01:
            raise ValueError("need 0 < off_threshold < on_threshold")
        if confirm_samples < 1 or baseline_samples < 1:
            raise ValueError("confirm_samples and baseline_samples must be >= 1")
        self.on_threshold_c01 = on_threshold_c01
        self.off_threshold_c01 = off_threshold_c01
        self.confirm_samples = confirm_samples
        self.baseline_samples = baseline_samples
        self.recalibrate()

    def recalibrate(self):
        """Start collecting a new empty-bay baseline (the bay must be empty now); returns None."""
        self._sum = [0, 0, 0]
        self._count = 0
        self._acc = None  # baseline in fixed point (value << _DRIFT_SHIFT), per axis
        self.occupied = 0
        self._streak = 0
        self.deviation_c01 = 0

    @property
    def calibrated(self):
        """True once the baseline is complete."""
        return self._acc is not None

    def baseline_c01(self):
        """Return the current baseline (x, y, z) in 0.01 uT; raises NotReadyError until calibrated."""
        a = self._acc
        if a is None:
            raise NotReadyError("QMC5883L baseline not complete")
        return (
            _shr_round(a[0], _DRIFT_SHIFT),
            _shr_round(a[1], _DRIFT_SHIFT),
            _shr_round(a[2], _DRIFT_SHIFT),
        )

    def update(self, x, y, z):
        """Consume one sample (0.01 uT); return ARRIVAL, DEPARTURE or None."""
        if self._acc is None:
            s = self._sum
            s[0] += x
            s[1] += y
            s[2] += z
            self._count += 1
            if self._count >= self.baseline_samples:
                n = self._count
                self._acc = [
                    div_round(s[0] << _DRIFT_SHIFT, n),
                    div_round(s[1] << _DRIFT_SHIFT, n),
                    div_round(s[2] << _DRIFT_SHIFT, n),
                ]
            return None
        bx, by, bz = self.baseline_c01()
        dev = abs(x - bx) + abs(y - by) + abs(z - bz)
        self.deviation_c01 = dev
        if self.occupied:
            if dev <= self.off_threshold_c01:
                self._streak += 1
                if self._streak >= self.confirm_samples:
                    self.occupied = 0
                    self._streak = 0
                    return DEPARTURE
            else:
                self._streak = 0
            return None
        if dev >= self.on_threshold_c01:
            self._streak += 1
            if self._streak >= self.confirm_samples:
                self.occupied = 1
                self._streak = 0
                return ARRIVAL
            return None
        self._streak = 0
        if dev <= self.off_threshold_c01:
            a = self._acc
            a[0] += x - _shr_round(a[0], _DRIFT_SHIFT)
            a[1] += y - _shr_round(a[1], _DRIFT_SHIFT)
            a[2] += z - _shr_round(a[2], _DRIFT_SHIFT)
        return None


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------

# First conversion after configure() at 10 Hz (datasheet ODR) plus margin.
_SETTLE_MS = const(110)


def _check(params, chans):
    """Raise ValueError unless 0 < off_threshold_c01 < on_threshold_c01 (defaults included)."""
    on = params.get("on_threshold_c01", ON_THRESHOLD_C01_DEFAULT)
    off = params.get("off_threshold_c01", OFF_THRESHOLD_C01_DEFAULT)
    if not 0 < off < on:
        raise ValueError("need 0 < off_threshold_c01 < on_threshold_c01")


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "qmc5883l": {
            "bus": "i2c",
            # magnetic_field: the detector's deviation from the empty-bay baseline
            "channels": ("occupancy", "magnetic_field"),
            "params": {
                "field_range_gauss": (int, False, (2, 8), None),
                "on_threshold_c01": (int, False, None, None),
                "off_threshold_c01": (int, False, None, None),
                "confirm_samples": (int, False, None, 1),
                "baseline_samples": (int, False, None, 1),
            },
            "check": _check,
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of a qmc5883l profile sensor: configure once (again after any
    failed read), read_c01(), OccupancyDetector.update() into occupancy and magnetic_field; nothing
    while the baseline is collected. Arrival/departure set the Source's event, which carries the
    vehicle commitment of the same sample."""
    params = sensor.get("params") or {}
    block = getattr(clock, "block_ms", None)
    emit = emitter(sensor, readings)
    dev = QMC5883L(
        buses[sensor["bus"]], sensor["address"],
        RANGE_8G if params.get("field_range_gauss") == 8 else RANGE_2G,
    )  # fmt: skip
    det = OccupancyDetector(
        params.get("on_threshold_c01", ON_THRESHOLD_C01_DEFAULT),
        params.get("off_threshold_c01", OFF_THRESHOLD_C01_DEFAULT),
        params.get("confirm_samples", CONFIRM_SAMPLES_DEFAULT),
        params.get("baseline_samples", BASELINE_SAMPLES_DEFAULT),
    )
    configured = [False]

    def read():
        if not configured[0]:
            dev.configure()
            configured[0] = True
            if block is not None:
                block(_SETTLE_MS)
        try:
            x, y, z = dev.read_c01()
        except Exception:
            configured[0] = False  # a reset chip stops converting: configure it again
            raise
        if not det.calibrated:
            det.update(x, y, z)
            return []  # collecting the empty-bay baseline: nothing to report yet, no fault
        change = det.update(x, y, z)
        if change == ARRIVAL:
            src.event = _EV_ARRIVAL
        elif change == DEPARTURE:
            src.event = _EV_DEPARTURE
        return emit({_CH_OCCUPANCY: det.occupied, _CH_MAGNETIC_FIELD: det.deviation_c01})

    # the arrival/departure event carries the vehicle commitment of the same sample (if any)
    src = new_source(sensor, read, (_CH_VEHICLE_COMMITMENT,))
    return src
