"""Analog probe driver against an ADC fake: calibration tables, trimmed mean, clamping, DO compensation."""

from firmware.drivers.analog_probe import (
    DO_SATURATION_C01,
    INPUT_MV,
    INPUT_U16,
    AnalogProbe,
    CalibrationTable,
    DissolvedOxygenProbe,
    do_saturation_c01,
)
from firmware.drivers.base import RangeError
from tests.firmware.fakes import EIO, FakeADC, raises

# pH behind an amplifier with 1650 mV offset: +177 mV/pH step falling with pH (buffers 4, 7, 10).
PH_TABLE = ((1473, 10000), (1650, 7000), (1827, 4000))


def test_table_rejects_bad_shapes():
    raises(ValueError, CalibrationTable, ((0, 0),))
    raises(ValueError, CalibrationTable, ((0, 0), (0, 1)))  # x not increasing
    raises(ValueError, CalibrationTable, ((0, 0), (10, 5), (5, 6)))
    raises(ValueError, CalibrationTable, ((0, 0), (10, 5), (20, 3)))  # y not monotonic
    raises(ValueError, CalibrationTable, ((0, 0), (10, 5), (20, 5)))  # y flat
    raises(ValueError, CalibrationTable, ((0, 0.5), (10, 5)))  # float
    raises(ValueError, CalibrationTable, ((0, 0, 1), (10, 5)))


def test_table_interpolates_and_clamps():
    t = CalibrationTable(PH_TABLE)
    assert t.evaluate(1650) == (7000, False)
    # 7000 + (4000 - 7000) * 50 / 177 = 7000 - 847.46 -> 6153
    assert t.evaluate(1700) == (6153, False)
    # 10000 + (7000 - 10000) * 100 / 177 = 10000 - 1694.9 -> 8305
    assert t.evaluate(1573) == (8305, False)
    assert t.evaluate(1473) == (10000, False)
    assert t.evaluate(1827) == (4000, False)
    assert t.evaluate(1900) == (4000, True)
    assert t.evaluate(0) == (10000, True)


def test_ph_probe_rising_two_point_exact_midpoint():
    # Buffers pH 4.00 at 1500 mV and 7.00 at 2032 mV: 1766 mV is the exact midpoint -> pH 5.500.
    adc = FakeADC(uv=[1766000])
    probe = AnalogProbe(adc, CalibrationTable(((1500, 4000), (2032, 7000))))
    assert probe.read() == 5500
    assert probe.last_input == 1766
    assert probe.last_clamped is False
    assert adc.reads == 8


def test_trimmed_mean_drops_one_spike_each_way():
    adc = FakeADC(uv=[1765000, 1767000, 9999999, 1766000, 1000, 1766000, 1766000, 1766000])
    probe = AnalogProbe(adc, CalibrationTable(PH_TABLE))
    # (1765000 + 1767000 + 4 * 1766000) / 6 = 1766000 uV -> 1766 mV
    assert probe.read_input() == 1766


def test_microvolt_rounding():
    adc = FakeADC(uv=[1500499, 1500499, 1500499])
    probe = AnalogProbe(adc, CalibrationTable(PH_TABLE), samples=3)
    assert probe.read_input() == 1500
    adc = FakeADC(uv=[1500500, 1500500, 1500500])
    probe = AnalogProbe(adc, CalibrationTable(PH_TABLE), samples=3)
    assert probe.read_input() == 1501


def test_clamped_reading_is_flagged():
    probe = AnalogProbe(FakeADC(uv=[2500000]), CalibrationTable(PH_TABLE))
    assert probe.read() == 4000
    assert probe.last_clamped is True


def test_u16_mode_and_saturation():
    # Ammonia ISE: log response approximated by segments, x in raw counts, y in 0.001 mg/L.
    table = CalibrationTable(((10000, 0), (20000, 100), (30000, 1000), (40000, 10000)))
    probe = AnalogProbe(FakeADC(u16=[25000]), table, input_mode=INPUT_U16, samples=5)
    assert probe.read() == 550  # 100 + 900 * 5000 / 10000
    probe = AnalogProbe(
        FakeADC(u16=[25000, 25000, 65535, 25000, 25000]), table, input_mode=INPUT_U16, samples=5
    )
    raises(RangeError, probe.read)


def test_max_input_in_mv_mode():
    probe = AnalogProbe(FakeADC(uv=[3100000]), CalibrationTable(PH_TABLE), max_input=3100)
    raises(RangeError, probe.read)


def test_adc_error_propagates():
    adc = FakeADC(uv=[1650000])
    adc.fail.append(OSError(EIO))
    probe = AnalogProbe(adc, CalibrationTable(PH_TABLE))
    assert raises(OSError, probe.read).args[0] == EIO


def test_constructor_checks():
    raises(ValueError, AnalogProbe, FakeADC(uv=[0]), CalibrationTable(PH_TABLE), INPUT_MV, 2)
    raises(ValueError, AnalogProbe, FakeADC(uv=[0]), CalibrationTable(PH_TABLE), 7)


def test_do_saturation_table_values():
    assert len(DO_SATURATION_C01) == 41
    for i in range(1, 41):
        assert DO_SATURATION_C01[i] < DO_SATURATION_C01[i - 1]
    # Published solubilities (fresh water, 1 atm): 14.62 mg/L at 0, 9.09 at 20, 8.26 at 25, 7.56 at 30.
    assert do_saturation_c01(0) == 1462
    assert do_saturation_c01(2000) == 909
    assert do_saturation_c01(2500) == 826
    assert do_saturation_c01(3000) == 756
    # 25.50 degC: 826 + (811 - 826) * 0.5 = 818.5 -> 818 (the half rounds away from zero: -7.5 -> -8)
    assert do_saturation_c01(2550) == 818
    assert do_saturation_c01(-500) == 1462
    assert do_saturation_c01(4500) == 641


def test_do_probe_single_point_calibration():
    # Calibrated in air-saturated water: 1600 mV means 100 % saturation.
    probe = DissolvedOxygenProbe(FakeADC(uv=[800000]), ((2500, 1600),))
    assert probe.read_c01(2500) == 413  # 50 % of 8.26 mg/L
    probe = DissolvedOxygenProbe(FakeADC(uv=[1600000]), ((2500, 1600),))
    assert probe.read_c01(2000) == 909  # same voltage at 20 degC is 100 % of 9.09 mg/L
    probe = DissolvedOxygenProbe(FakeADC(uv=[0]), ((2500, 1600),))
    assert probe.read_c01(2500) == 0  # anoxic water


def test_do_probe_temperature_compensated_saturation_voltage():
    # Membrane output rises with temperature: 1400 mV at 15 degC, 1800 mV at 30 degC.
    probe = DissolvedOxygenProbe(FakeADC(uv=[1800000]), ((1500, 1400), (3000, 1800)))
    assert probe.saturation_mv(2000) == 1533  # 1400 + 400 * 5 / 15 = 1533.3
    assert probe.read_c01(3000) == 756  # full saturation at 30 degC
    # At 20 degC 1800 mV is 1800/1533 of saturation: 1800 * 909 / 1533 = 1067.3 -> 1067
    assert probe.read_c01(2000) == 1067
    raises(ValueError, DissolvedOxygenProbe, FakeADC(uv=[0]), ((2500, 0),))
