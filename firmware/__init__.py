"""Firmware for edgeseal ESP32 sensor boards (MicroPython 1.22+; also imports on CPython for tests)."""
