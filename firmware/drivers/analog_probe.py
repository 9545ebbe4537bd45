"""Analog water-quality probes on machine.ADC: piecewise-linear calibration tables, integer outputs."""

from micropython import const

from firmware.drivers.base import RangeError, channels, div_round, emitter, new_source

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_DISSOLVED_OXYGEN = const(3)
_CH_TEMPERATURE = const(1)

INPUT_MV = const(0)  # table x in mV, read with ADC.read_uv() (ESP32: eFuse-calibrated)
INPUT_U16 = const(1)  # table x in raw counts, read with ADC.read_u16() (0..65535)
# Samples per reading: the ESP32 SAR ADC has a few LSB of noise; the min and max sample are dropped
# and the rest averaged (trimmed mean), so one spike cannot move the reading.
DEFAULT_SAMPLES = const(8)
_U16_FULL_SCALE = const(65535)  # read_u16() at the rail: the input is saturated, value unknown


def trimmed_sum(read, samples, rail=None):
    """Return the sum of samples readings of read() minus the smallest and the largest one.

    Precondition: samples >= 3. Raises RangeError if any reading equals rail (ADC saturated).
    """
    total = 0
    lo = None
    hi = None
    for _ in range(samples):
        v = read()
        if v == rail:
            raise RangeError("ADC input at full scale")
        total += v
        if lo is None or v < lo:
            lo = v
        if hi is None or v > hi:
            hi = v
    if lo is None or hi is None:
        raise ValueError("samples must be >= 3 (min and max are dropped)")
    return total - lo - hi


class CalibrationTable:
    """Piecewise-linear map from an input (mV or counts) to a scaled integer output.

    points: sequence of (x, y) int pairs, x strictly increasing, y strictly monotonic (rising or
    falling throughout). Inputs outside [x_first, x_last] clamp to the end outputs.
    """

    def __init__(self, points):
        """Validate and keep points; raises ValueError naming the first offending point."""
        if len(points) < 2:
            raise ValueError("calibration table needs at least 2 points")
        xs = []
        ys = []
        for p in points:
            if len(p) != 2:
                raise ValueError("calibration point must be (x, y)")
            x, y = p
            if not isinstance(x, int) or not isinstance(y, int) or isinstance(x, bool):
                raise ValueError("calibration points must be integers")
            xs.append(x)
            ys.append(y)
        rising = ys[1] > ys[0]
        for i in range(1, len(xs)):
            if xs[i] <= xs[i - 1]:
                raise ValueError("calibration x not strictly increasing at point %d" % i)
            if (ys[i] > ys[i - 1]) != rising or ys[i] == ys[i - 1]:
                raise ValueError("calibration y not strictly monotonic at point %d" % i)
        self.xs = tuple(xs)
        self.ys = tuple(ys)

    def evaluate(self, x):
        """Return (y, clamped): the interpolated output (nearest int) and whether x was clamped."""
        xs = self.xs
        ys = self.ys
        if x <= xs[0]:
            return ys[0], x < xs[0]
        last = len(xs) - 1
        if x >= xs[last]:
            return ys[last], x > xs[last]
        i = 1
        while xs[i] < x:
            i += 1
        x0 = xs[i - 1]
        y0 = ys[i - 1]
        return y0 + div_round((ys[i] - y0) * (x - x0), xs[i] - x0), False


class AnalogProbe:
    """A probe (pH, ammonia, ...) behind an ADC channel, read as a trimmed mean through a table."""

    def __init__(self, adc, table, input_mode=INPUT_MV, samples=DEFAULT_SAMPLES, max_input=None):
        """adc: machine.ADC; table: CalibrationTable (x in mV or counts per input_mode).

        samples >= 3. max_input: an averaged input at or above it raises RangeError (saturation);
        defaults to the u16 full scale in INPUT_U16 mode and to no check in INPUT_MV mode.
        """
        if samples < 3:
            raise ValueError("samples must be >= 3 (min and max are dropped)")
        if input_mode not in (INPUT_MV, INPUT_U16):
            raise ValueError("input_mode must be INPUT_MV or INPUT_U16")
        self._adc = adc
        self.table = table
        self.input_mode = input_mode
        self.samples = samples
        if max_input is None and input_mode == INPUT_U16:
            max_input = _U16_FULL_SCALE
        self.max_input = max_input
        self.last_input = None
        self.last_clamped = False

    def read_input(self):
        """Return the trimmed-mean input: mV (nearest, from microvolts) or u16 counts.

        Raises RangeError when the input is saturated (a u16 sample at full scale, or the mean at or
        above max_input); OSError from the ADC unchanged.
        """
        if self.input_mode == INPUT_MV:
            value = div_round(
                trimmed_sum(self._adc.read_uv, self.samples), (self.samples - 2) * 1000
            )
        else:
            total = trimmed_sum(self._adc.read_u16, self.samples, _U16_FULL_SCALE)
            value = div_round(total, self.samples - 2)
        if self.max_input is not None and value >= self.max_input:
            raise RangeError("ADC input saturated (%d)" % value)
        self.last_input = value
        return value

    def read(self):
        """Return the calibrated value as the table's scaled int; last_clamped tells if clamped."""
        value, clamped = self.table.evaluate(self.read_input())
        self.last_clamped = clamped
        return value


# Oxygen solubility in fresh water at 760 mmHg, 0..40 degC in 1 degC steps, in 0.01 mg/L
# (Benson & Krause 1984, as tabulated by USGS DOTABLES / Standard Methods 4500-O).
DO_SATURATION_C01 = (
    1462, 1422, 1383, 1346, 1311, 1277, 1245, 1214, 1184, 1156,
    1129, 1103, 1078, 1054, 1031, 1008, 987, 966, 947, 928,
    909, 891, 874, 858, 842, 826, 811, 797, 783, 769,
    756, 743, 731, 718, 707, 695, 684, 673, 663, 653,
    641,
)  # fmt: skip


def do_saturation_c01(temperature_c01):
    """Return oxygen saturation in 0.01 mg/L at temperature_c01 (0.01 degC), clamped to 0..40 degC."""
    if temperature_c01 <= 0:
        return DO_SATURATION_C01[0]
    if temperature_c01 >= 4000:
        return DO_SATURATION_C01[40]
    i = temperature_c01 // 100
    frac = temperature_c01 - i * 100
    y0 = DO_SATURATION_C01[i]
    return y0 + div_round((DO_SATURATION_C01[i + 1] - y0) * frac, 100)


class DissolvedOxygenProbe:
    """A galvanic DO probe (output mV proportional to O2 partial pressure), air-saturation calibrated.

    DO = V * DO_sat(T) / V_sat(T), where V_sat(T) is the probe's output at 100 % saturation at water
    temperature T: one calibration point (V_sat constant) or several (interpolated, which models the
    membrane's temperature coefficient; clamped outside the calibrated temperatures).
    """

    def __init__(self, adc, saturation_points, samples=DEFAULT_SAMPLES):
        """adc: machine.ADC (read_uv); saturation_points: one or more (temperature_c01, mV) pairs
        measured in air-saturated water. samples >= 3."""
        if samples < 3:
            raise ValueError("samples must be >= 3 (min and max are dropped)")
        if len(saturation_points) == 1:
            mv = saturation_points[0][1]
            self._sat = None
        else:
            self._sat = CalibrationTable(saturation_points)
            mv = min(self._sat.ys)
        if not isinstance(mv, int) or mv <= 0:
            raise ValueError("saturation mV must be a positive integer")
        self._flat_mv = mv  # V_sat when _sat is None (one point); unused with a table
        self._adc = adc
        self.samples = samples
        self.last_input = None

    def saturation_mv(self, temperature_c01):
        """Return the probe's expected output in mV at 100 % saturation at temperature_c01."""
        if self._sat is None:
            return self._flat_mv
        return self._sat.evaluate(temperature_c01)[0]

    def read_c01(self, temperature_c01):
        """Return dissolved oxygen in 0.01 mg/L at water temperature temperature_c01 (0.01 degC).

        Precondition: temperature_c01 is the water temperature (e.g. from a DS18B20 in the pond).
        """
        total_uv = trimmed_sum(self._adc.read_uv, self.samples)
        n = self.samples - 2
        self.last_input = div_round(total_uv, n * 1000)
        # Keep microvolts in the product so sub-mV resolution is not rounded away.
        return div_round(
            total_uv * do_saturation_c01(temperature_c01),
            n * 1000 * self.saturation_mv(temperature_c01),
        )


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def _check_analog(params, chans):
    """Raise ValueError unless "calibration" makes a CalibrationTable and there is one channel."""
    try:
        CalibrationTable([tuple(p) if isinstance(p, list) else p for p in params["calibration"]])
    except (TypeError, ValueError) as e:
        raise ValueError("calibration: %s" % e) from None
    if len(chans) != 1:
        raise ValueError("an analog probe produces exactly one channel")


def _check_do(params, chans):
    """Raise ValueError unless "saturation_mv" is one or more [temperature_c01, positive mV]."""
    from firmware.board import is_int  # only called while firmware.board validates

    points = params["saturation_mv"]
    if not points:
        raise ValueError("saturation_mv needs at least one [temperature_c01, mV] point")
    for p in points:
        if (
            not isinstance(p, list)
            or len(p) != 2
            or not is_int(p[0])
            or not is_int(p[1])
            or p[1] <= 0
        ):
            raise ValueError("saturation_mv points are [temperature_c01, positive mV]")


def specs():
    """Return {driver name: spec} of this module's profile drivers (fields: firmware/drivers)."""
    adc = (("adc", False, True),)  # an ADC1 pin (ADC2 is shared with the radio)
    atten = (int, True, (0, 6, 11), None)
    samples = (int, False, None, 3)  # the trimmed mean drops the min and the max
    return {
        "analog_probe": {
            "pins": adc,
            "channels": ("ph", "ammonia", "turbidity", "battery"),
            "params": {
                "atten_db": atten,
                "input": (str, False, ("mv", "u16"), None),
                "samples": samples,
                "calibration": (list, True, None, None),  # [[x, y], ...]
            },
            "check": _check_analog,
        },
        "do_probe": {
            "pins": adc,
            "channels": ("dissolved_oxygen",),
            "params": {
                "atten_db": atten,
                "samples": samples,
                "saturation_mv": (list, True, None, None),  # [[temperature_c01, mV], ...]
                "temperature_sensor": (str, True, None, None),
            },
            "refs": {"temperature_sensor": "temperature"},
            "check": _check_do,
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of an analog_probe or do_probe profile sensor on the ADC
    buses["<sensor>.adc"]: the calibrated value into its one channel; dissolved oxygen at the
    water temperature last read by the sensor named in "temperature_sensor" (ValueError while
    there is none)."""
    name = sensor["name"]
    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    if sensor["driver"] == "do_probe":
        dev = DissolvedOxygenProbe(
            buses[name + ".adc"],
            [tuple(p) for p in params["saturation_mv"]],
            params.get("samples", DEFAULT_SAMPLES),
        )
        ref = params["temperature_sensor"]

        def read():
            t = readings.get(ref, {}).get(_CH_TEMPERATURE)
            if t is None:
                raise ValueError("no water temperature from " + ref)
            return emit({_CH_DISSOLVED_OXYGEN: dev.read_c01(t)})

        return new_source(sensor, read)
    table = CalibrationTable([tuple(p) for p in params["calibration"]])
    mode = INPUT_U16 if params.get("input") == "u16" else INPUT_MV
    probe = AnalogProbe(buses[name + ".adc"], table, mode, params.get("samples", DEFAULT_SAMPLES))
    type_id = channels(sensor)[0][0]

    def read_probe():
        return emit({type_id: probe.read()})

    return new_source(sensor, read_probe)
