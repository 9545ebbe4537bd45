"""On-board entry point: BLE active first, then firmware.runtime.main (docs/firmware-runtime.md, Boot).

Kept to a few lines on purpose: MicroPython compiles main.py from source at power-on (unless it is
frozen), and that compilation is the only Python allocation before the radio is active.
"""


def main():
    """Activate BLE before anything else allocates, then run the board until reset."""
    import bluetooth

    ble = bluetooth.BLE()
    ble.active(True)  # first: NimBLE's memory before the Python heap grows (MicroPython #14293)
    from firmware import runtime

    runtime.main(ble)


if __name__ == "__main__":
    main()
