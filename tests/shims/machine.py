"""Host stand-in for MicroPython's `machine` module, delegating to the bus fakes (never deployed).

Constructors take the same arguments as on the ESP32 (bus id, pins, frequency, ...) and return the
fakes of tests/firmware/fakes.py, so code written for the board (firmware/main.py, the drivers)
runs on CPython. Tests reach the fake devices through the returned objects (add_device, feed, ...).
"""

import time as _time

from tests.firmware.fakes import FakeADC, FakeI2C, FakePin, FakeUART

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_reset_cause = PWRON_RESET
_unique_id = b"\x24\x0a\xc4\x00\x00\x01"


def reset_cause():
    """Return the cause of the last reset (PWRON_RESET unless a test set another)."""
    return _reset_cause


def set_reset_cause(cause):
    """Test hook: make reset_cause() return cause."""
    global _reset_cause
    _reset_cause = cause


def unique_id():
    """Return the chip's 6-byte id (the base MAC on the ESP32)."""
    return _unique_id


def reset():
    """On the board this reboots; on the host it raises SystemExit so a test can see it."""
    raise SystemExit("machine.reset()")


def soft_reset():
    raise SystemExit("machine.soft_reset()")


def freq(hz=None):
    """Return the CPU frequency (240 MHz); setting it is accepted and ignored."""
    return 240000000


def idle():
    return None


# Sleep as the ESP32 port does it (docs: machine.lightsleep / machine.deepsleep, RTC.memory):
# lightsleep returns after ms with RAM kept; deepsleep never returns -- the chip resets and the
# next boot sees reset_cause() == DEEPSLEEP_RESET with RTC memory kept. On the host deepsleep
# raises SystemExit (the "reset") after setting both. A test can set a hook that receives the
# sleep length instead of really sleeping (a simulated clock advances it); `sleeps` logs
# (kind, ms) of every call.
RTC_MEMORY_MAX = 2048  # MICROPY_HW_RTC_USER_MEM_MAX of the esp32 port
_rtc_memory = b""
_sleep_hook = None
sleeps = []


def set_sleep_hook(fn):
    """Test hook: fn(ms) is called for every light or deep sleep instead of time.sleep (None
    restores real sleeping); clears the sleep log."""
    global _sleep_hook
    _sleep_hook = fn
    del sleeps[:]


def power_on():
    """Test hook: a power cycle -- reset cause PWRON_RESET and RTC memory cleared."""
    global _reset_cause, _rtc_memory
    _reset_cause = PWRON_RESET
    _rtc_memory = b""


def lightsleep(ms=None):
    """Sleep ms milliseconds with RAM kept (None: until a wake source; here: return at once)."""
    sleeps.append(("light", ms))
    if _sleep_hook is not None:
        _sleep_hook(ms or 0)
    elif ms:
        _time.sleep(ms / 1000)


def deepsleep(ms=None):
    """Deep sleep, then the wake is a reset: sets reset_cause() to DEEPSLEEP_RESET, keeps RTC
    memory, and raises SystemExit (the host's stand-in for the reset)."""
    global _reset_cause
    sleeps.append(("deep", ms))
    if _sleep_hook is not None:
        _sleep_hook(ms or 0)
    _reset_cause = DEEPSLEEP_RESET
    raise SystemExit("machine.deepsleep()")


class Pin(FakePin):
    """machine.Pin(id, mode=-1, pull=-1, value=None)."""

    def __init__(self, id, mode=-1, pull=-1, value=None):
        super().__init__(level=0 if value is None else value)
        self.id = id
        self.init(mode, pull, value)


class I2C(FakeI2C):
    """machine.I2C(id, scl=None, sda=None, freq=400000): a FakeI2C with no devices yet."""

    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        super().__init__()
        self.id = id
        self.scl = scl
        self.sda = sda
        self.freq = freq


class SoftI2C(I2C):
    """machine.SoftI2C(scl, sda, freq=400000)."""

    def __init__(self, scl=None, sda=None, freq=400000, timeout=50000):
        super().__init__(-1, scl, sda, freq, timeout)


class UART(FakeUART):
    """machine.UART(id, baudrate=9600, tx=None, rx=None, ...): a FakeUART with nothing queued."""

    def __init__(self, id=1, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None, **kw):
        super().__init__()
        self.id = id
        self.baudrate = baudrate
        self.tx = tx
        self.rx = rx

    def init(self, *args, **kwargs):
        return None

    def deinit(self):
        return None


class ADC(FakeADC):
    """machine.ADC(pin, atten=...): reads mid-scale until a test queues values."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=None):
        super().__init__(u16=(32768,), uv=(1650000,))
        self.pin = pin
        self.attenuation = atten

    def atten(self, value):
        self.attenuation = value

    def width(self, value):
        return None


class RTC:
    """machine.RTC: datetime() get/set as an 8-tuple (year, month, day, weekday, h, m, s, us)."""

    def __init__(self):
        self._dt = (2000, 1, 1, 5, 0, 0, 0, 0)

    def datetime(self, dt=None):
        if dt is None:
            return self._dt
        self._dt = tuple(dt)
        return None

    def init(self, dt):
        self._dt = tuple(dt)

    def memory(self, data=None):
        """Return the RTC user memory (b"" after power-on), or store data (at most RTC_MEMORY_MAX
        bytes, else ValueError): kept across deep sleep and resets, shared by every RTC()."""
        global _rtc_memory
        if data is None:
            return _rtc_memory
        if len(data) > RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        _rtc_memory = bytes(data)
        return None


class WDT:
    """machine.WDT(timeout=ms): feed() is counted, nothing ever fires on the host."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    """Return the pulse length in us from pin.pulses (a list a test fills), else -1 (timeout)."""
    pulses = getattr(pin, "pulses", None)
    if pulses:
        return pulses.pop(0)
    return -1
