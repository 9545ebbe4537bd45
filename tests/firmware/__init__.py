"""Firmware tests: plain test_* functions with assert, run by pytest and inside the MicroPython VM."""
