"""Sensor drivers on the MicroPython bus API (I2C, OneWire, ADC, UART, Pin), returning scaled integers."""
