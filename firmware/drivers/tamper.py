"""Door/tamper switch on a machine.Pin with pull-up: time-debounced, latching, IRQ-assisted."""

from micropython import const

from firmware.drivers.base import default_ticks, emitter, new_source

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_TAMPER = const(13)

# A level must hold this long to count: contact bounce on reed and micro switches lasts < 20 ms.
DEBOUNCE_MS_DEFAULT = const(50)
# With the pull-up, a closed switch (door shut, magnet present) pulls the pin to 0; open reads 1.
OPEN_LEVEL_DEFAULT = const(1)


class TamperSwitch:
    """A normally-closed switch to GND on a Pin with pull-up; an opening latches `tamper`.

    The pin IRQ (both edges) records level changes between polls, so an opening that lasted at
    least debounce_ms is latched even if the door is shut again before the next poll().
    """

    def __init__(
        self,
        pin,
        debounce_ms=DEBOUNCE_MS_DEFAULT,
        open_level=OPEN_LEVEL_DEFAULT,
        ticks_ms=None,
        ticks_diff=None,
        use_irq=True,
    ):
        """pin: machine.Pin (configured here as input with pull-up); ticks_*: injected clock."""
        if ticks_ms is None:
            ticks_ms, ticks_diff = default_ticks()
        elif ticks_diff is None:
            raise ValueError("ticks_diff is required with ticks_ms")
        self._pin = pin
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.debounce_ms = debounce_ms
        self.open_level = open_level
        pin.init(pin.IN, pin.PULL_UP)
        now = ticks_ms()
        level = pin.value()
        self._raw = level
        self._raw_since = now
        self._stable = level
        self.tamper = 1 if level == open_level else 0
        self.openings = self.tamper
        if use_irq:
            self._handler = self._irq  # bound once: no allocation inside the IRQ
            pin.irq(handler=self._handler, trigger=pin.IRQ_RISING | pin.IRQ_FALLING)

    def _irq(self, pin):
        self._sample(pin.value(), self._ticks_ms())

    def _sample(self, level, now):
        """Track the raw level and commit it as stable after debounce_ms (allocation-free)."""
        if level != self._raw:
            if (
                self._raw != self._stable
                and self._ticks_diff(now, self._raw_since) >= self.debounce_ms
            ):
                self._commit(self._raw)
            self._raw = level
            self._raw_since = now
        elif level != self._stable and self._ticks_diff(now, self._raw_since) >= self.debounce_ms:
            self._commit(level)

    def _commit(self, level):
        self._stable = level
        if level == self.open_level:
            self.tamper = 1
            self.openings += 1

    def poll(self):
        """Sample the pin now; return the latched tamper flag (0/1)."""
        self._sample(self._pin.value(), self._ticks_ms())
        return self.tamper

    def is_open(self):
        """Return 1 if the debounced switch state is open now, else 0 (call poll() first)."""
        return 1 if self._stable == self.open_level else 0

    def clear(self):
        """Clear the latch if the switch is closed now; return the tamper flag after clearing."""
        self.poll()
        if self._stable != self.open_level:
            self.tamper = 0
        return self.tamper

    def close(self):
        """Detach the IRQ handler; returns None."""
        self._pin.irq(handler=None)


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "tamper": {
            "pins": (("pin", False, False),),
            "channels": ("tamper",),
            "params": {
                "debounce_ms": (int, False, None, 1),
                "open_level": (int, False, (0, 1), None),
            },
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of a tamper profile sensor on the pin buses["<sensor>.pin"]:
    poll() (the latched opening) into its tamper channel."""
    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    kw = {"ticks_ms": clock.ticks_ms, "ticks_diff": clock.ticks_diff}
    if "debounce_ms" in params:
        kw["debounce_ms"] = params["debounce_ms"]
    if "open_level" in params:
        kw["open_level"] = params["open_level"]
    dev = TamperSwitch(buses[sensor["name"] + ".pin"], **kw)

    def read():
        return emit({_CH_TAMPER: dev.poll()})

    return new_source(sensor, read)
