"""Tests of the shared driver helpers: CRC-8 variants against published vectors, integer rounding."""

from firmware.drivers.base import crc8_maxim, crc8_sensirion, div_round
from tests.firmware.fakes import dallas_crc8, sensirion_crc8

# Maxim application note 27 worked example: family 02, serial 00000001B81C, CRC A2.
AN27_ROM = bytes([0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00, 0xA2])


def test_crc8_maxim_an27_example():
    assert crc8_maxim(AN27_ROM[:7]) == 0xA2
    assert crc8_maxim(AN27_ROM) == 0  # a buffer ending in its own CRC checks to zero
    assert crc8_maxim(AN27_ROM, 7) == 0xA2


def test_fake_dallas_crc_agrees_with_an27():
    assert dallas_crc8(AN27_ROM[:7]) == 0xA2


def test_crc8_maxim_power_on_scratchpad():
    # DS18B20 power-on scratchpad as commonly captured from parts: 85 degC, TH 75, TL 70, 12 bit.
    pad = bytes([0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0x1C])
    assert crc8_maxim(pad) == 0
    assert dallas_crc8(pad[:8]) == 0x1C


def test_crc8_sensirion_datasheet_example():
    # SHT3x datasheet, CRC properties: CRC(0xBEEF) = 0x92.
    assert crc8_sensirion(b"\xbe\xef") == 0x92
    assert sensirion_crc8(b"\xbe\xef") == 0x92
    assert crc8_sensirion(b"\x00\xbe\xef", 1, 2) == 0x92


def test_crc_implementations_agree_on_all_single_bytes():
    for b in range(256):
        data = bytes([b, 0x5A])
        assert crc8_maxim(data) == dallas_crc8(data)
        assert crc8_sensirion(data) == sensirion_crc8(data)


def test_div_round_halves_away_from_zero():
    assert div_round(5, 2) == 3
    assert div_round(-5, 2) == -3
    assert div_round(4, 3) == 1
    assert div_round(-4, 3) == -1
    assert div_round(0, 7) == 0
    assert div_round(10**15 + 1, 2) == 500000000000001
