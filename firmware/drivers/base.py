"""Shared pieces of the drivers: typed errors, rounding, CRC-8s, default clocks, source() helpers."""


class SensorError(Exception):
    """A reading was rejected: the bus answered but the data is unusable (bad CRC, flag, range)."""


class CRCError(SensorError):
    """The checksum carried by the device does not match its data."""


class NoDeviceError(SensorError):
    """No device answered (1-Wire presence pulse missing, wrong chip id)."""


class NotReadyError(SensorError):
    """The device has no new data yet (conversion running, data-ready flag clear); retry later."""


class RangeError(SensorError):
    """The device reports saturation/overflow or a value outside its datasheet range."""


def div_round(num, den):
    """Return num / den rounded to the nearest integer, halves away from zero.

    Preconditions: num and den are ints, den > 0. Pure integer math (no floats on the ESP32).
    """
    if num >= 0:
        return (num + den // 2) // den
    return -((-num + den // 2) // den)


def crc8_maxim(data, n=-1):
    """Return the Dallas/Maxim 1-Wire CRC-8 (x^8+x^5+x^4+1, reflected 0x8C, init 0) of data[:n].

    n < 0 means the whole buffer. A buffer that ends with its own correct CRC gives 0.
    """
    if n < 0:
        n = len(data)
    crc = 0
    for i in range(n):
        crc ^= data[i]
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0x8C
    return crc


def crc8_sensirion(data, start=0, n=2):
    """Return the Sensirion CRC-8 (poly 0x31, init 0xFF, no reflection, no final xor) of data[start:start+n]."""
    crc = 0xFF
    for i in range(start, start + n):
        crc ^= data[i]
        for _ in range(8):
            crc <<= 1
            if crc & 0x100:
                crc ^= 0x131
    return crc


def default_sleep_ms():
    """Return a sleep_ms(ms) function: time.sleep_ms on MicroPython, a time.sleep wrapper elsewhere."""
    import time

    fn = getattr(time, "sleep_ms", None)
    if fn is not None:
        return fn
    return lambda ms: time.sleep(ms / 1000)


def default_ticks():
    """Return (ticks_ms, ticks_diff): MicroPython's wrap-safe pair, or a monotonic stand-in elsewhere."""
    import time

    ticks_ms = getattr(time, "ticks_ms", None)
    if ticks_ms is not None:
        return ticks_ms, time.ticks_diff
    # Host-only fallback (CPython tests/tools): MicroPython has ticks_ms, its stubs lack monotonic.
    return (lambda: int(time.monotonic() * 1000)), (lambda a, b: a - b)  # pyright: ignore[reportAttributeAccessIssue]


# ---- what every driver module's source() shares (firmware/app.py make_source) -----------------


def channels(sensor):
    """Return [(type_id, channel)] of a profile sensor's channels, in profile order."""
    from firmware.channels import CHANNEL_TYPES

    return [(CHANNEL_TYPES[c["type"]], c["channel"]) for c in sensor["channels"]]


def emitter(sensor, readings):
    """Return emit(pairs) -> [(type_id, channel, value)] for a profile sensor's channels.

    pairs: {type_id: value} for every channel of that type, or {(type_id, channel): value}; a
    channel without a value (or with None) is left out. Every emitted value is also kept in
    readings[sensor name][type_id] (readings is shared between sources: do_probe reads its water
    temperature there), which this call registers.
    """
    chans = channels(sensor)
    last = {}
    readings[sensor["name"]] = last

    def emit(pairs):
        out = []
        for type_id, channel in chans:
            v = pairs.get((type_id, channel), pairs.get(type_id))
            if v is not None:
                out.append((type_id, channel, v))
                last[type_id] = v
        return out

    return emit


def new_source(sensor, read, event_types=()):
    """Return the firmware.sampler.Source of a profile sensor reading read(); its faults are
    reported with the type of its first channel. event_types: see Source."""
    from firmware.channels import CHANNEL_TYPES
    from firmware.sampler import Source

    return Source(sensor["name"], read, CHANNEL_TYPES[sensor["channels"][0]["type"]], event_types)
