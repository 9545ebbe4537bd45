"""Frozen-modules manifest of the production firmware image (MicroPython manifest syntax).

Build (docs/production.md): from micropython/ports/esp32,
    make BOARD=ESP32_GENERIC_C3 FROZEN_MANIFEST=/path/to/edgeseal/firmware/manifest.py
The firmware's bytecode and interned names then stay in flash instead of the heap (the largest
item of the .mpy-on-filesystem heap budget: docs/firmware-runtime.md, Memory), and a frozen
main.py runs at power-on before any main.py on the filesystem. Not a module of the firmware:
MicroPython's build runs it (package(), module() and include() come from its manifestfile.py).
tests/firmware/test_manifest.py checks that it lists every firmware module.
"""

# pyright: reportUndefinedVariable=false
# ruff: noqa: F821

# The port's own frozen modules (asyncio, neopixel, the esp32 helpers, ...).
include("$(PORT_DIR)/boards/manifest.py")

# The application package, every module of it except this file and the entry point. Listed, not
# globbed: a new module must be added here on purpose (the test above fails until it is).
package(
    "firmware",
    files=(
        "__init__.py",
        "app.py",
        "board.py",
        "channels.py",
        "cmdauth.py",
        "crc32.py",
        "ed25519.py",
        "ed25519_extra.py",
        "fs.py",
        "journal.py",
        "keystore.py",
        "ota.py",
        "otaboot.py",
        "peripheral.py",
        "power.py",
        "protocol.py",
        "record.py",
        "provision.py",
        "runtime.py",
        "sampler.py",
        "scan.py",
        "seqcounter.py",
        "sha512.py",
        "wire.py",
        "drivers/__init__.py",
        "drivers/analog_probe.py",
        "drivers/base.py",
        "drivers/ble_beacon.py",
        "drivers/ds18b20.py",
        "drivers/hx711.py",
        "drivers/ina219.py",
        "drivers/nmea_gps.py",
        "drivers/qmc5883l.py",
        "drivers/sht3x.py",
        "drivers/tamper.py",
    ),
    base_path="..",
)

# The entry point, frozen as `main`: the esp32 port runs a frozen main.py at boot (pyexec looks
# for a frozen module first), so the image runs the firmware even with an empty filesystem.
module("main.py")
