"""Wire format v1 on the board: the registry's values, device ids, chain hashes, parsing records.

Specification: docs/wire-format.md; tests/vectors/records.json pins it. The gateway's
implementation (gateway/wire.py) is independent; both must agree with the vectors byte for byte.
Building, checking and signing records is firmware/record.py, re-exported here. On a board this
module is boot-only (the device id, the chain head): unloaded once the board is built
(firmware.app), while firmware.record stays.
"""

import hashlib
import struct

from micropython import const

# The resident part (firmware/record.py), re-exported: wire.RecordBuilder, wire.sign etc. stay.
from firmware.record import RecordBuilder, WireError, check_kind, check_value, sign, value_width

__all__ = ["RecordBuilder", "WireError", "check_kind", "check_value", "sign", "value_width"]
__all__ += ["device_id", "genesis_hash", "record_hash", "parse"]

# The registry's numbers (record kinds, flags, sizes, channel types, break reasons, event codes)
# are private constants: MicroPython folds `_X = const(...)` into the bytecode and keeps neither a
# global nor an interned name for it, ~50 names a board would otherwise hold in RAM for good. A
# firmware module that needs one keeps its own private copy, and tests/firmware/test_wire.py
# pins every such copy to the value here; tests/gateway/test_channel_table.py checks these against
# docs/wire-format.md. Host code (CPython) reads them as wire.CH_TEMPERATURE etc. (__getattr__).
_VERSION = const(1)
_KIND_READING = const(1)
_KIND_HEARTBEAT = const(2)
_KIND_EVENT = const(3)
_KIND_KEY_ROTATION = const(4)
_KIND_CHAIN_SEGMENT = const(5)  # restarts the chain after lost records; must be signed
_TIME_SYNCED = const(0x01)
_KNOWN_FLAGS = const(0x01)

_HEADER_BYTES = const(64)
_SIGNATURE_BYTES = const(64)
_MAX_VALUES = const(16)  # the biggest board profile has < 10 channels; bounds parse work
_MAX_BODY_BYTES = const(176)  # + signature + 4-byte frame header: one notification at MTU 247
_MAX_RECORD_BYTES = const(240)  # _MAX_BODY_BYTES + 64-byte signature

# Channel type ids (docs/wire-format.md, Values); the scale is in the comment.
_CH_TEMPERATURE = const(1)  # 0.01 degC
_CH_HUMIDITY = const(2)  # 0.01 %RH
_CH_DISSOLVED_OXYGEN = const(3)  # 0.01 mg/L
_CH_PH = const(4)  # 0.001 pH
_CH_AMMONIA = const(5)  # 0.001 mg/L
_CH_ENERGY = const(6)  # Wh, cumulative; channel 0 import, 1 export
_CH_POWER = const(7)  # mW
_CH_LATITUDE = const(8)  # 1e-7 deg
_CH_LONGITUDE = const(9)  # 1e-7 deg
_CH_OCCUPANCY = const(10)  # 0/1
_CH_VEHICLE_COMMITMENT = const(11)  # 16 bytes: SHA-256(salt || vehicle id)[0:16]
_CH_WEIGHT = const(12)  # g
_CH_TAMPER = const(13)  # 0/1
_CH_BATTERY = const(14)  # mV
_CH_VOLTAGE = const(15)  # mV
_CH_CURRENT = const(16)  # mA
_CH_MAGNETIC_FIELD = const(17)  # 0.01 uT
_CH_DISTANCE = const(18)  # mm
_CH_TURBIDITY = const(19)  # 0.1 NTU
_CH_RSSI = const(20)  # dBm
_CH_EVENT_CODE = const(21)
_CH_EVENT_ARG = const(22)
_CH_JOURNAL_DEPTH = const(23)
_CH_UPTIME = const(24)  # s
_CH_NEW_PUBLIC_KEY = const(25)  # 32 bytes
_CH_BREAK_REASON = const(26)  # chain_segment only: a BRK_* code
_CH_HELD_SEQ = const(27)  # chain_segment only: newest seq the board still holds

# Break reasons carried in _CH_BREAK_REASON (docs/wire-format.md, Chain segments).
_BRK_JOURNAL_LOST = const(1)
_BRK_FLASH_FAULT = const(2)
_BRK_REFLASH = const(3)
_BRK_GATEWAY_BEHIND = const(4)

# Event codes carried in _CH_EVENT_CODE.
_EV_BOOT = const(1)
_EV_JOURNAL_OVERFLOW = const(2)
_EV_TAMPER = const(3)
_EV_TIME_SYNC = const(4)
_EV_SENSOR_FAULT = const(5)
_EV_ARRIVAL = const(6)
_EV_DEPARTURE = const(7)

_HEADER_FMT = const(">BBB16sIII32sB")

_GENESIS_TAG = const(b"edgeseal/v1/genesis")


def __getattr__(name):
    """Return the registry constant `_<name>` for host code (wire.KIND_READING on CPython, where
    private constants are module attributes); raise AttributeError otherwise, as on a board, where
    they are folded into the bytecode and this module has no such attribute."""
    value = globals().get("_" + name) if name[:1].isupper() else None
    if not isinstance(value, int):
        raise AttributeError(name)
    return value


def device_id(public_key):
    """Return the 16-byte device id of a device whose first public key is public_key."""
    return hashlib.sha256(public_key).digest()[:16]


def genesis_hash(dev_id):
    """Return the prev_hash of a device's first record: SHA-256("edgeseal/v1/genesis" || id)."""
    h = hashlib.sha256(_GENESIS_TAG)
    h.update(dev_id)
    return h.digest()


def record_hash(record, body_len=None):
    """Return SHA-256 of the record's body (the signature is excluded); body_len from parse()."""
    if body_len is None:
        body_len = parse(record)[8]
    return hashlib.sha256(memoryview(record)[:body_len]).digest()


def parse(record):
    """Return (kind, flags, device_id, seq, boot, time_s, prev_hash, values, body_len, signed).

    values is a list of (type, channel, value) tuples. Raises WireError with the codes of
    docs/wire-format.md on any structural fault. Does not verify the signature.
    """
    n = len(record)
    if n == 0:
        raise WireError("empty", "no bytes")
    if record[0] != _VERSION:
        raise WireError("bad-version", "version %d is not supported" % record[0])
    if n < _HEADER_BYTES:
        raise WireError("truncated", "shorter than the header")
    _, kind, flags, dev_id, seq, boot, time_s, prev, n_values = struct.unpack_from(
        _HEADER_FMT, record, 0
    )
    if kind < _KIND_READING or kind > _KIND_CHAIN_SEGMENT:
        raise WireError("bad-kind", "kind %d is not defined" % kind)
    if flags & ~_KNOWN_FLAGS:
        raise WireError("reserved-flags", "reserved flag bits set")
    if n_values > _MAX_VALUES:
        raise WireError("too-many-values", "%d values" % n_values)
    values = []
    pairs = []
    pos = _HEADER_BYTES
    for _ in range(n_values):
        if pos + 2 > n:
            raise WireError("truncated", "value header past the end")
        type_id = record[pos]
        channel = record[pos + 1]
        width = value_width(type_id)
        end = pos + 2 + width
        if end > n:
            raise WireError("truncated", "value past the end")
        pair = (type_id << 8) | channel
        if pair in pairs:
            raise WireError("duplicate-channel", "type %d channel %d twice" % (type_id, channel))
        pairs.append(pair)
        if width != 4:
            value = bytes(record[pos + 2 : end])
        else:
            value = struct.unpack_from(">i", record, pos + 2)[0]
        check_value(type_id, value)
        values.append((type_id, channel, value))
        pos = end
    if pos > _MAX_BODY_BYTES:
        raise WireError("too-large", "body exceeds %d bytes" % _MAX_BODY_BYTES)
    extra = n - pos
    if extra != 0 and extra != _SIGNATURE_BYTES:
        if extra < _SIGNATURE_BYTES:
            raise WireError("bad-signature-length", "%d bytes after the body" % extra)
        raise WireError("trailing-garbage", "%d bytes after the signature" % (extra - 64))
    check_kind(kind, [v[0] for v in values])
    return kind, flags, dev_id, seq, boot, time_s, prev, values, pos, extra == _SIGNATURE_BYTES
