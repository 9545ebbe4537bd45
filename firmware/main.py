"""On-board entry point: BLE active first, then firmware.runtime.main (docs/firmware-runtime.md, Boot).

Kept to a few lines on purpose: MicroPython compiles main.py from source at power-on (unless it is
frozen), and that compilation is the only Python allocation before the radio is active.
"""


def main():
    """Activate BLE before anything else allocates, then run the board until reset."""
    import bluetooth

    ble = bluetooth.BLE()
    ble.active(True)  # first: NimBLE's memory before the Python heap grows (MicroPython #14293)
    from firmware import otaboot  # the image's own copy (not all of firmware.ota: docs/ota.md)

    otaboot.boot_app()  # docs/ota.md: the slot goes first on sys.path, or the image's firmware runs
    try:
        from firmware import runtime
    except Exception:  # a trial version that does not even import: back to the previous one
        otaboot.import_failed()
        import machine

        machine.reset()
    otaboot = None  # the runtime imported: let boot_app's module go (it left sys.modules already)
    runtime.main(ble)  # pyright: ignore[reportPossiblyUnbound] (reset() does not return)


if __name__ == "__main__":
    main()
