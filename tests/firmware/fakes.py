"""Bus fakes for driver tests: the simulated world's (tools/sim/buses.py), re-exported, and raises()."""

# The fakes live in tools/sim/buses.py, where the virtual boards' chip models (tools/sim/devices.py)
# use them too; they mimic MicroPython's machine/onewire objects and run in the MicroPython VM.
from tools.sim.buses import (  # noqa: F401  (re-exported for the firmware tests)
    EIO,
    ENODEV,
    ETIMEDOUT,
    FakeADC,
    FakeClock,
    FakeDS18B20,
    FakeI2C,
    FakeOneWire,
    FakePin,
    FakeUART,
    dallas_crc8,
    sensirion_crc8,
)


def raises(exc_type, fn, *args, **kwargs):
    """Call fn(*args, **kwargs); return the exc_type instance it raised, fail if it raised nothing.

    Plain-assert stand-in for pytest.raises, usable in the MicroPython VM too.
    """
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised" % exc_type.__name__)
