"""On-board entry point: builds the real buses from the profile's pins and runs the app forever."""

from micropython import const

PROFILE_PATH = "board.json"  # the deployed profile (tools copy boards/<name>.json here)
_ATTEN = {0: 0, 6: 2, 11: 3}  # profile atten_db -> machine.ADC.ATTN_* value
_RESET_DELAY_MS = const(5000)
# UART receive buffer: a signature blocks the loop up to ~0.9 s; at 9600 baud that is ~870 bytes
# the GPS poll task must find still buffered (the ESP32 default of 256 would drop them).
_UART_RXBUF_BYTES = const(1024)  # after a crash: long enough to read the traceback on the console


def make_buses(profile, machine):
    """Return {bus name: bus} and {"<sensor>.<role>": Pin/ADC} for profile (a validated dict)."""
    pin = machine.Pin
    buses = {}
    for name, bus in profile["buses"].items():
        kind = bus["type"]
        if kind == "i2c":
            buses[name] = machine.I2C(
                bus["id"], scl=pin(bus["scl"]), sda=pin(bus["sda"]), freq=bus["freq_hz"]
            )
        elif kind == "onewire":
            import onewire

            buses[name] = onewire.OneWire(pin(bus["pin"]))
        elif kind == "uart":
            buses[name] = machine.UART(
                bus["id"], baudrate=bus["baudrate"], tx=bus["tx"], rx=bus["rx"],
                rxbuf=_UART_RXBUF_BYTES,
            )  # fmt: skip
    for sensor in profile["sensors"]:
        pins = sensor.get("pins") or {}
        params = sensor.get("params") or {}
        for role, gpio in pins.items():
            key = sensor["name"] + "." + role
            if role == "adc":
                adc = machine.ADC(pin(gpio))
                adc.atten(_ATTEN.get(params.get("atten_db", 11), 3))
                buses[key] = adc
            elif role == "sck":
                buses[key] = pin(gpio, pin.OUT, value=0)
            else:
                buses[key] = pin(gpio, pin.IN, pin.PULL_UP)
    return buses


def main():
    """Load the profile, build buses, radio, storage and clock, and run until reset."""
    import asyncio
    import os
    import time

    import bluetooth
    import esp32
    import machine

    from firmware import app
    from firmware.fs import VfsFS

    try:
        profile = app.load_profile(PROFILE_PATH)  # validated; firmware.board is unloaded again
        buses = make_buses(profile, machine)
        asyncio.run(
            app.run(
                profile, bluetooth.BLE(), VfsFS(), esp32.NVS("edgeseal"), buses, app.RealClock(),
                os.urandom,
            )
        )  # fmt: skip
    except Exception as e:  # anything unexpected: show it, then start over from durable state
        import sys

        sys.print_exception(e)
        time.sleep_ms(_RESET_DELAY_MS)
        machine.reset()


if __name__ == "__main__":
    main()
