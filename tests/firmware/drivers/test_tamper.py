"""Tamper switch driver against a Pin fake with IRQ edges and an injected millisecond clock."""

from firmware.drivers.tamper import TamperSwitch
from tests.firmware.fakes import FakeClock, FakePin

CLOSED = 0  # switch to GND closed pulls the pin low
OPEN = 1  # pull-up wins when the door opens


def _switch(level=CLOSED, use_irq=True):
    pin = FakePin(level=level)
    clock = FakeClock(start_ms=1000)
    sw = TamperSwitch(
        pin, debounce_ms=50, ticks_ms=clock.ticks_ms, ticks_diff=clock.ticks_diff, use_irq=use_irq
    )
    return sw, pin, clock


def test_pin_configured_with_pull_up_and_both_edges():
    sw, pin, _clock = _switch()
    assert pin.mode == FakePin.IN
    assert pin.pull == FakePin.PULL_UP
    assert pin.trigger == FakePin.IRQ_RISING | FakePin.IRQ_FALLING
    assert pin.handler is not None
    sw.close()
    assert pin.handler is None


def test_closed_at_boot_is_quiet():
    sw, _pin, clock = _switch()
    clock.advance(1000)
    assert sw.poll() == 0
    assert sw.is_open() == 0


def test_open_at_boot_latches():
    sw, _pin, _clock = _switch(level=OPEN)
    assert sw.poll() == 1
    assert sw.openings == 1


def test_bounce_shorter_than_debounce_is_ignored():
    sw, pin, clock = _switch()
    for _ in range(5):
        pin.set_level(OPEN)
        clock.advance(3)
        pin.set_level(CLOSED)
        clock.advance(3)
    clock.advance(100)
    assert sw.poll() == 0
    assert sw.openings == 0


def test_held_open_latches_after_debounce_with_polling():
    sw, pin, clock = _switch(use_irq=False)
    pin.level = OPEN
    assert sw.poll() == 0
    clock.advance(49)
    assert sw.poll() == 0
    clock.advance(1)
    assert sw.poll() == 1
    assert sw.is_open() == 1
    pin.level = CLOSED
    sw.poll()
    clock.advance(60)
    assert sw.poll() == 1  # latched after the door shut again
    assert sw.is_open() == 0
    assert sw.clear() == 0
    assert sw.openings == 1


def test_opening_between_polls_caught_by_irq():
    sw, pin, clock = _switch()
    assert sw.poll() == 0
    clock.advance(100)
    pin.set_level(OPEN)
    clock.advance(80)
    pin.set_level(CLOSED)
    clock.advance(1000)
    assert sw.poll() == 1
    assert sw.openings == 1


def test_bouncy_opening_counts_once():
    sw, pin, clock = _switch()
    for _ in range(4):
        pin.set_level(OPEN)
        clock.advance(2)
        pin.set_level(CLOSED)
        clock.advance(2)
    pin.set_level(OPEN)
    clock.advance(200)
    assert sw.poll() == 1
    assert sw.openings == 1


def test_clear_refused_while_open():
    sw, pin, clock = _switch()
    pin.set_level(OPEN)
    clock.advance(60)
    assert sw.poll() == 1
    assert sw.clear() == 1
    pin.set_level(CLOSED)
    clock.advance(60)
    assert sw.clear() == 0


def test_second_opening_counted():
    sw, pin, clock = _switch()
    for _ in range(2):
        pin.set_level(OPEN)
        clock.advance(60)
        pin.set_level(CLOSED)
        clock.advance(60)
    sw.poll()
    assert sw.openings == 2
