"""Periodic passive BLE scanning for firmware.peripheral.Peripheral.set_scan_listener (beacon boards).

Imported on the first set_scan_listener call, so a board without a beacon sensor never holds this
code or its names in RAM. The Peripheral owns the radio and its IRQ handler: it forwards
_IRQ_SCAN_RESULT / _IRQ_SCAN_DONE here (result(), done()) and calls step() on every pass of its
serving loop (docs/firmware-runtime.md, BLE peripheral behaviour).
"""

from micropython import const

# Scanning for vehicle beacons: a 1.5 s scan every 3 s, listening 50 ms of every 100 ms: ~25 %
# radio duty. A tag advertising every 100 ms is heard ~7 times per scan, so a reader needing 2
# hits per scan misses a present tag in < 1 % of scans.
SCAN_PERIOD_MS = const(3000)
SCAN_DURATION_MS = const(1500)
SCAN_INTERVAL_US = const(100000)
SCAN_WINDOW_US = const(50000)
# A scan whose _IRQ_SCAN_DONE never came is given up this long after its planned end.
_SCAN_GRACE_MS = const(1000)


class Scanner:
    """The scan schedule of one Peripheral p (its radio, clock and error counter).

    scans: scans started so far (diagnostics and tests).
    """

    def __init__(self, p):
        self._p = p
        self._on_result = None
        self._on_done = None
        self._timing = (SCAN_PERIOD_MS, SCAN_DURATION_MS, SCAN_INTERVAL_US, SCAN_WINDOW_US)
        self._scanning = False
        self._scan_at = 0
        self.scans = 0

    def listen(
        self, on_result, on_done=None, period_ms=SCAN_PERIOD_MS, duration_ms=SCAN_DURATION_MS,
        interval_us=SCAN_INTERVAL_US, window_us=SCAN_WINDOW_US,
    ):  # fmt: skip
        """Scan with gap_scan(duration_ms, interval_us, window_us) every period_ms (passive,
        always, also while connected), the first one now; on_result=None stops scanning.
        Returns nothing (Peripheral.set_scan_listener documents the callbacks)."""
        self._on_result = on_result
        self._on_done = on_done
        self._timing = (period_ms, duration_ms, interval_us, window_us)
        self._scan_at = self._p._clock.ticks_ms()
        if on_result is None and self._scanning:
            self.stop()

    def result(self, data):
        """IRQ context, _IRQ_SCAN_RESULT: hand (addr_type, addr, adv_type, rssi, adv_data) to the
        listener, adv_data copied (MicroPython reuses its buffer); returns nothing."""
        fn = self._on_result
        if fn is not None:
            fn(data[0], data[1], data[2], data[3], bytes(data[4]))

    def done(self):
        """IRQ context, _IRQ_SCAN_DONE: the scan ended; tell the listener. Returns nothing."""
        self._scanning = False
        fn = self._on_done
        if fn is not None:
            fn()

    def stop(self):
        """End the running scan, if any (gap_scan(None) also delivers _IRQ_SCAN_DONE); returns
        nothing."""
        if not self._scanning:
            return
        self._scanning = False
        try:
            self._p._ble.gap_scan(None)
        except OSError:
            self._p.errors += 1

    def step(self):
        """Start the next scan when one is due (the Peripheral calls it every pass); returns
        nothing."""
        if self._on_result is None:
            return
        p = self._p
        clock = p._clock
        now = clock.ticks_ms()
        period_ms, duration_ms, interval_us, window_us = self._timing
        if self._scanning:
            # _IRQ_SCAN_DONE lost (or never sent): do not stop scanning forever
            if clock.ticks_diff(now, self._scan_at) < duration_ms + _SCAN_GRACE_MS - period_ms:
                return
            self.stop()
        if clock.ticks_diff(now, self._scan_at) < 0:
            return
        self._scan_at += period_ms
        if clock.ticks_diff(self._scan_at, now) <= 0:  # fell behind: next one a period from now
            self._scan_at = now + period_ms
        try:
            p._ble.gap_scan(duration_ms, interval_us, window_us)
        except OSError:
            p.errors += 1
            return
        self._scanning = True
        self.scans += 1
