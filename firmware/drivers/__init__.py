"""Sensor drivers on the MicroPython bus API (I2C, OneWire, ADC, UART, Pin), returning scaled integers."""

# Profile driver name -> the module of this package that implements it (docs/drivers.md, "Adding a
# driver"). Each module has, next to its driver code:
# - specs() -> {driver name: spec} for firmware/board.py, a dict with the keys
#     "bus": bus type ("i2c", "onewire", "uart") or None (default None: no bus),
#     "pins": dedicated pin roles, ((role, needs_output, needs_adc), ...) (default ()),
#     "channels": the wire channel types the driver can produce, (type name, ...) (required),
#     "params": {key: (type, required, allowed values tuple or None, minimum int or None)}
#       (default {}; type is int, str or list; unknown keys are rejected),
#     "refs": {param: channel type}: the param names another sensor of the profile whose driver
#       can produce that type (default {}),
#     "check": check(params, channels) raising ValueError for what the table cannot say, or None;
#   specs() is a function so that a running board keeps none of it (only validation calls it);
# - source(sensor, buses, clock, readings, hooks) -> firmware.sampler.Source for firmware/app.py.
# A module is imported only when a profile uses one of its drivers (RAM).
MODULES = {
    "ds18b20": "ds18b20",
    "sht3x": "sht3x",
    "analog_probe": "analog_probe",
    "do_probe": "analog_probe",
    "ina219": "ina219",
    "nmea_gps": "nmea_gps",
    "qmc5883l": "qmc5883l",
    "ble_beacon": "ble_beacon",
    "tamper": "tamper",
    "hx711": "hx711",
}


def module(driver):
    """Return the module implementing profile driver name `driver` (imported on first use), or
    None when no module implements it."""
    name = MODULES.get(driver)
    if name is None:
        return None
    return __import__("firmware.drivers." + name, None, None, ("source",))
