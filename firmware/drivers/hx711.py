"""HX711 24-bit load-cell ADC bit-banged on two machine.Pin objects, weight in grams (integers)."""

from micropython import const

from firmware.drivers.base import (
    NotReadyError,
    RangeError,
    default_sleep_ms,
    div_round,
    emitter,
    new_source,
)

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_WEIGHT = const(12)

# Extra SCK pulses after the 24 data bits select the next conversion (datasheet table "Input
# channel and gain selection"): 25 = channel A gain 128, 26 = channel B gain 32, 27 = A gain 64.
GAIN_A128 = const(1)
GAIN_B32 = const(2)
GAIN_A64 = const(3)
_RAW_MAX = const(0x7FFFFF)  # output saturates at 0x7FFFFF / 0x800000 (datasheet)
_RAW_MIN = const(-0x800000)
# Readings per weight sample: min and max dropped (trimmed mean) against vibration spikes.
SAMPLES_DEFAULT = const(5)
# A conversion takes 100 ms at the 10 SPS rate (RATE pin low; 12.5 ms at 80 SPS): a sample's
# readings wait for DOUT this long each, polling every _READY_POLL_MS.
READY_TIMEOUT_MS = const(150)
_READY_POLL_MS = const(5)


class HX711:
    """An HX711 with DOUT (input) and PD_SCK (output) on GPIOs; read_raw() returns signed counts."""

    def __init__(self, dout, sck, gain=GAIN_A128, sleep_ms=None):
        """dout, sck: machine.Pin; gain: GAIN_A128 / GAIN_B32 / GAIN_A64 (applies from the next read);
        sleep_ms: the blocking delay read_raw polls DOUT with (default: time.sleep_ms)."""
        if gain not in (GAIN_A128, GAIN_B32, GAIN_A64):
            raise ValueError("gain must be GAIN_A128, GAIN_B32 or GAIN_A64")
        self._dout = dout
        self._sck = sck
        self.gain = gain
        self._sleep_ms = sleep_ms or default_sleep_ms()
        dout.init(dout.IN)
        sck.init(sck.OUT, value=0)

    def ready(self):
        """Return True when DOUT is low (a conversion is waiting)."""
        return self._dout.value() == 0

    def read_raw(self, ready_timeout_ms=0):
        """Return the 24-bit two's complement conversion as a signed int.

        Waits up to ready_timeout_ms for DOUT to go low (a conversion ready; 0: do not wait).
        Raises NotReadyError if DOUT is still high (10 or 80 SPS: poll again), RangeError when the output
        is saturated (0x7FFFFF or 0x800000: overload or a broken bridge wire). SCK high must stay
        under 60 us or the chip powers down; each bit here is a few us of Python.
        """
        dout = self._dout
        sck = self._sck
        waited_ms = 0
        while dout.value():
            if waited_ms >= ready_timeout_ms:
                raise NotReadyError("HX711 conversion not ready")
            self._sleep_ms(_READY_POLL_MS)
            waited_ms += _READY_POLL_MS
        raw = 0
        for _ in range(24):
            sck.value(1)
            sck.value(0)
            raw = (raw << 1) | dout.value()
        for _ in range(self.gain):
            sck.value(1)
            sck.value(0)
        if raw & 0x800000:
            raw -= 0x1000000
        if raw >= _RAW_MAX or raw <= _RAW_MIN:
            raise RangeError("HX711 output saturated")
        return raw

    def power_down(self):
        """Hold SCK high (> 60 us) to power the chip down; the next read_raw() wakes it."""
        self._sck.value(0)
        self._sck.value(1)

    def power_up(self):
        """Return SCK low; the chip resets to channel A gain 128 and needs ~400 ms to settle."""
        self._sck.value(0)


class LoadCell:
    """Weight from an HX711: grams = (counts - tare) * cal_grams / cal_counts (two-point scale)."""

    def __init__(self, hx, tare_counts, cal_counts, cal_grams, samples=SAMPLES_DEFAULT):
        """cal_counts: reading minus tare with a reference mass of cal_grams on the cell (non-zero)."""
        if cal_counts == 0 or cal_grams <= 0 or samples < 3:
            raise ValueError("need cal_counts != 0, cal_grams > 0, samples >= 3")
        self._hx = hx
        self.tare_counts = tare_counts
        self.cal_counts = cal_counts
        self.cal_grams = cal_grams
        self.samples = samples

    def read_counts(self):
        """Return the trimmed mean of `samples` raw readings (nearest count), each waited for up to
        READY_TIMEOUT_MS (one conversion at 10 SPS); errors as read_raw()."""
        total = 0
        lo = None
        hi = None
        for _ in range(self.samples):
            v = self._hx.read_raw(READY_TIMEOUT_MS)
            total += v
            lo = v if lo is None or v < lo else lo
            hi = v if hi is None or v > hi else hi
        if lo is None or hi is None:
            raise ValueError("samples must be >= 3")
        return div_round(total - lo - hi, self.samples - 2)

    def tare(self):
        """Take the current reading as zero (empty platform); returns the new tare in counts."""
        self.tare_counts = self.read_counts()
        return self.tare_counts

    def read_grams(self):
        """Return the weight in grams (int, nearest); negative values mean below the tare."""
        num = (self.read_counts() - self.tare_counts) * self.cal_grams
        if self.cal_counts < 0:
            return div_round(-num, -self.cal_counts)
        return div_round(num, self.cal_counts)


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def _check(params, chans):
    """Raise ValueError unless the two-point scale is usable (cal_counts != 0, cal_grams > 0)."""
    if params["cal_counts"] == 0:
        raise ValueError("cal_counts must not be 0")
    if params["cal_grams"] <= 0:
        raise ValueError("cal_grams must be positive")


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "hx711": {
            "pins": (("dout", False, False), ("sck", True, False)),
            "channels": ("weight",),
            "params": {
                "gain": (int, False, (128, 64, 32), None),
                "tare_counts": (int, True, None, None),
                "cal_counts": (int, True, None, None),
                "cal_grams": (int, True, None, None),
                "samples": (int, False, None, 3),  # the trimmed mean drops the min and the max
            },
            "check": _check,
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of an hx711 profile sensor on the pins buses["<sensor>.dout"] and
    ["<sensor>.sck"]: LoadCell.read_grams() into its weight channel, 0 below the tare."""
    name = sensor["name"]
    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    gain = {128: GAIN_A128, 32: GAIN_B32, 64: GAIN_A64}[params.get("gain", 128)]
    cell = LoadCell(
        HX711(buses[name + ".dout"], buses[name + ".sck"], gain, getattr(clock, "block_ms", None)),
        params["tare_counts"], params["cal_counts"], params["cal_grams"],
        params.get("samples", SAMPLES_DEFAULT),
    )  # fmt: skip

    def read():
        # below the tare is drift or noise around an empty platform (the wire type is >= 0)
        return emit({_CH_WEIGHT: max(0, cell.read_grams())})

    return new_source(sensor, read)
