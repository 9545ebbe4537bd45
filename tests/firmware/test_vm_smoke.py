"""Smoke test that the firmware package imports the same way under CPython and MicroPython."""

import firmware


def test_firmware_package_imports():
    assert firmware.__name__ == "firmware"
