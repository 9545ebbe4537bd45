"""HX711 driver against Pin fakes replaying the DOUT bit stream of 24-bit two's complement words."""

from firmware.drivers.base import NotReadyError, RangeError
from firmware.drivers.hx711 import GAIN_A64, GAIN_A128, GAIN_B32, HX711, READY_TIMEOUT_MS, LoadCell
from tests.firmware.fakes import FakePin, raises


def _bits(word):
    """DOUT levels for one conversion: ready (0), then 24 bits MSB first."""
    return [0] + [(word >> (23 - i)) & 1 for i in range(24)]


def _hx(words, gain=GAIN_A128):
    levels = []
    for w in words:
        levels += _bits(w)
    dout = FakePin(level=1, levels=levels)
    sck = FakePin()
    return HX711(dout, sck, gain), dout, sck


def test_pins_configured():
    _hx_, dout, sck = _hx([])
    assert dout.mode == FakePin.IN
    assert sck.mode == FakePin.OUT
    assert sck.level == 0


def test_twos_complement_words():
    # 0x000001 = 1, 0x7FFFFE = 8388606, 0xFFFFFF = -1, 0x800001 = -8388607, 0x123456 = 1193046.
    for word, expected in (
        (0x000001, 1),
        (0x7FFFFE, 8388606),
        (0xFFFFFF, -1),
        (0x800001, -8388607),
        (0x123456, 1193046),
    ):
        hx, _dout, _sck = _hx([word])
        assert hx.read_raw() == expected, hex(word)


def test_clock_pulses_select_gain():
    for gain, pulses in ((GAIN_A128, 25), (GAIN_B32, 26), (GAIN_A64, 27)):
        hx, _dout, sck = _hx([0x000100], gain)
        hx.read_raw()
        assert sck.writes == [1, 0] * pulses
        assert sck.level == 0  # SCK left low: high for > 60 us would power the chip down


def test_not_ready_and_saturation():
    hx, _dout, _sck = _hx([])
    raises(NotReadyError, hx.read_raw)  # DOUT idles high
    hx, _dout, _sck = _hx([0x7FFFFF])
    raises(RangeError, hx.read_raw)
    hx, _dout, _sck = _hx([0x800000])
    raises(RangeError, hx.read_raw)
    raises(ValueError, HX711, FakePin(), FakePin(), 4)


def test_load_cell_grams():
    # Tare 100000 counts; a 5000 g reference mass reads 100000 + 213000 -> 42.6 counts/g.
    # 100000 + 106500 counts = 2500 g; trimmed mean drops the 0x7FFF00 spike and the 0 dip.
    words = [100000 + 106500] * 3 + [0x7FFF00, 0]
    hx, _dout, _sck = _hx(words)
    cell = LoadCell(hx, tare_counts=100000, cal_counts=213000, cal_grams=5000)
    assert cell.read_grams() == 2500
    # Inverted bridge wiring (negative counts per gram) still gives positive grams.
    hx, _dout, _sck = _hx([100000 - 213] * 5)
    cell = LoadCell(hx, tare_counts=100000, cal_counts=-213000, cal_grams=5000)
    assert cell.read_grams() == 5  # 213 * 5000 / 213000
    raises(ValueError, LoadCell, hx, 0, 0, 5000)


def test_tare():
    hx, _dout, _sck = _hx([0xFFFF00] * 5 + [0xFFFF00 + 4260] * 5)
    cell = LoadCell(hx, tare_counts=0, cal_counts=4260, cal_grams=100)
    assert cell.tare() == -256
    assert cell.read_grams() == 100


def test_a_sample_waits_for_each_conversion():
    # At the chip's 10 SPS DOUT goes high after a read and low again ~100 ms later: every reading
    # of a sample waits for it (polling DOUT between blocking sleeps), up to READY_TIMEOUT_MS.
    levels = []
    for _ in range(5):
        levels += [1] * 19 + _bits(1000)  # busy for 19 polls (~95 ms), then a conversion
    slept = []
    dout = FakePin(level=1, levels=levels)
    hx = HX711(dout, FakePin(), GAIN_A128, slept.append)
    cell = LoadCell(hx, tare_counts=0, cal_counts=1000, cal_grams=1)
    assert cell.read_grams() == 1
    assert len(slept) == 5 * 19 and set(slept) == {5}
    # a chip that never gets ready: NotReadyError once the wait is over, not a hang
    slept.clear()
    hx = HX711(FakePin(level=1), FakePin(), GAIN_A128, slept.append)
    raises(NotReadyError, hx.read_raw, READY_TIMEOUT_MS)
    assert sum(slept) == READY_TIMEOUT_MS
