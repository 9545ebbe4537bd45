"""Wire format v1 records on the running board: build one in a buffer allocated once, check and sign it.

The part of firmware/wire.py a board needs after boot (wire.py re-exports all of it): wire.py's
parsing and ids are boot-only and unloaded with the other boot code, this module stays. The
registry values it needs are private copies of wire.py's (tests/firmware/test_wire.py pins
them); the channel table is here, checked against docs/wire-format.md by
tests/gateway/test_channel_table.py.
"""

import struct

from micropython import const

_VERSION = const(1)
_KIND_READING = const(1)
_KIND_HEARTBEAT = const(2)
_KIND_EVENT = const(3)
_KIND_KEY_ROTATION = const(4)
_KIND_CHAIN_SEGMENT = const(5)
_KNOWN_FLAGS = const(0x01)
_HEADER_BYTES = const(64)
_MAX_VALUES = const(16)
_MAX_BODY_BYTES = const(176)
_MAX_RECORD_BYTES = const(240)
_CH_EVENT_CODE = const(21)
_CH_NEW_PUBLIC_KEY = const(25)
_CH_BREAK_REASON = const(26)
_CH_HELD_SEQ = const(27)
_HEADER_FMT = const(">BBB16sIII32sB")

# The channel registry (docs/wire-format.md, Values): one ">Bii" row per type id 1..27, the
# payload width in bytes (4 for i32; 16 or 32 for a byte payload, whose range is 0 .. 0 and
# unused) and the i32 range min .. max, packed in one bytes object: as a dict of 27 tuples it held
# ~1.7 KB of RAM for good. tests/gateway/test_channel_table.py checks every row against the doc.
_CHANNELS = const(
    b"\x04\xff\xff\x95\x4d\x00\x03\x0d\x40"  # 1 temperature: -27315 .. 200000
    b"\x04\x00\x00\x00\x00\x00\x00\x27\x10"  # 2 humidity: 0 .. 10000
    b"\x04\x00\x00\x00\x00\x00\x00\x27\x10"  # 3 dissolved_oxygen: 0 .. 10000
    b"\x04\x00\x00\x00\x00\x00\x00\x36\xb0"  # 4 ph: 0 .. 14000
    b"\x04\x00\x00\x00\x00\x00\x0f\x42\x40"  # 5 ammonia: 0 .. 1000000
    b"\x04\x00\x00\x00\x00\x7f\xff\xff\xff"  # 6 energy: 0 .. 2147483647
    b"\x04\x80\x00\x00\x00\x7f\xff\xff\xff"  # 7 power: -2147483648 .. 2147483647
    b"\x04\xca\x5b\x17\x00\x35\xa4\xe9\x00"  # 8 latitude: -900000000 .. 900000000
    b"\x04\x94\xb6\x2e\x00\x6b\x49\xd2\x00"  # 9 longitude: -1800000000 .. 1800000000
    b"\x04\x00\x00\x00\x00\x00\x00\x00\x01"  # 10 occupancy: 0 .. 1
    b"\x10\x00\x00\x00\x00\x00\x00\x00\x00"  # 11 vehicle_commitment: bytes
    b"\x04\x00\x00\x00\x00\x7f\xff\xff\xff"  # 12 weight: 0 .. 2147483647
    b"\x04\x00\x00\x00\x00\x00\x00\x00\x01"  # 13 tamper: 0 .. 1
    b"\x04\x00\x00\x00\x00\x00\x01\x86\xa0"  # 14 battery: 0 .. 100000
    b"\x04\x80\x00\x00\x00\x7f\xff\xff\xff"  # 15 voltage: -2147483648 .. 2147483647
    b"\x04\x80\x00\x00\x00\x7f\xff\xff\xff"  # 16 current: -2147483648 .. 2147483647
    b"\x04\x80\x00\x00\x00\x7f\xff\xff\xff"  # 17 magnetic_field: -2147483648 .. 2147483647
    b"\x04\x00\x00\x00\x00\x00\x01\x86\xa0"  # 18 distance: 0 .. 100000
    b"\x04\x00\x00\x00\x00\x00\x01\x86\xa0"  # 19 turbidity: 0 .. 100000
    b"\x04\xff\xff\xff\x81\x00\x00\x00\x14"  # 20 rssi: -127 .. 20
    b"\x04\x00\x00\x00\x01\x00\x00\xff\xff"  # 21 event_code: 1 .. 65535
    b"\x04\x80\x00\x00\x00\x7f\xff\xff\xff"  # 22 event_arg: -2147483648 .. 2147483647
    b"\x04\x00\x00\x00\x00\x7f\xff\xff\xff"  # 23 journal_depth: 0 .. 2147483647
    b"\x04\x00\x00\x00\x00\x7f\xff\xff\xff"  # 24 uptime: 0 .. 2147483647
    b"\x20\x00\x00\x00\x00\x00\x00\x00\x00"  # 25 new_public_key: bytes
    b"\x04\x00\x00\x00\x01\x00\x00\x00\xff"  # 26 break_reason: 1 .. 255
    b"\x04\x00\x00\x00\x00\x7f\xff\xff\xff"  # 27 held_seq: 0 .. 2147483647
)
_N_CHANNELS = const(27)
_SPEC_FMT = const(">Bii")
_SPEC_BYTES = const(9)


class WireError(ValueError):
    """A record that violates wire format v1; `code` is the stable code of docs/wire-format.md."""

    def __init__(self, code, message):
        super().__init__(code + ": " + message)
        self.code = code


def value_width(type_id):
    """Return the payload width in bytes of channel type type_id (4 for an i32, 16 or 32 for a
    byte payload); raise WireError("unknown-channel") if the registry has no such type."""
    if not 0 < type_id <= _N_CHANNELS:
        raise WireError("unknown-channel", "channel type %d is not in the registry" % type_id)
    return _CHANNELS[_SPEC_BYTES * (type_id - 1)]


def check_value(type_id, value):
    """Return the payload width of type_id; raise WireError if the type or the value is invalid."""
    width = value_width(type_id)
    if width != 4:
        if not isinstance(value, (bytes, bytearray)) or len(value) != width:
            raise WireError("value-overflow", "type %d needs %d bytes" % (type_id, width))
        return width
    _, lo, hi = struct.unpack_from(_SPEC_FMT, _CHANNELS, _SPEC_BYTES * (type_id - 1))
    if not isinstance(value, int) or not lo <= value <= hi:
        raise WireError("value-overflow", "type %d value outside [%d, %d]" % (type_id, lo, hi))
    return width


def check_kind(kind, types):
    """Raise WireError("kind-rules") unless the list of value types fits the record kind."""
    n_events = types.count(_CH_EVENT_CODE)
    n_keys = types.count(_CH_NEW_PUBLIC_KEY)
    n_breaks = types.count(_CH_BREAK_REASON)
    n_segment = n_breaks + types.count(_CH_HELD_SEQ)
    if n_segment and kind != _KIND_CHAIN_SEGMENT:
        ok = False
    elif kind == _KIND_READING:
        ok = len(types) > 0 and not n_events and not n_keys
    elif kind == _KIND_HEARTBEAT:
        ok = not n_events and not n_keys
    elif kind == _KIND_EVENT:
        ok = n_events == 1 and not n_keys
    elif kind == _KIND_KEY_ROTATION:
        ok = len(types) == 1 and n_keys == 1
    elif kind == _KIND_CHAIN_SEGMENT:
        ok = n_breaks == 1 and len(types) == n_segment and n_segment <= 2
    else:
        raise WireError("bad-kind", "kind %d is not defined" % kind)
    if not ok:
        raise WireError("kind-rules", "values do not fit record kind %d" % kind)


class RecordBuilder:
    """Builds one record at a time in a buffer allocated once (_MAX_RECORD_BYTES)."""

    def __init__(self, dev_id):
        """dev_id: the board's 16-byte device id (device_id(first public key))."""
        if len(dev_id) != 16:
            raise ValueError("device id must be 16 bytes")
        self._dev_id = bytes(dev_id)
        self._buf = bytearray(_MAX_RECORD_BYTES)
        self._mv = memoryview(self._buf)
        self._len = 0
        self._types = []
        self._pairs = []
        self._kind = 0

    def begin(self, kind, seq, boot, time_s, prev_hash, flags=0):
        """Start a record; preconditions: u32 seq/boot/time_s, 32-byte prev_hash, known flags."""
        if flags & ~_KNOWN_FLAGS:
            raise WireError("reserved-flags", "reserved flag bits set")
        if kind < _KIND_READING or kind > _KIND_CHAIN_SEGMENT:
            raise WireError("bad-kind", "kind %d is not defined" % kind)
        struct.pack_into(
            _HEADER_FMT, self._buf, 0, _VERSION, kind, flags, self._dev_id, seq, boot, time_s,
            prev_hash, 0,
        )  # fmt: skip
        self._kind = kind
        self._len = _HEADER_BYTES
        self._types = []
        self._pairs = []

    def add(self, type_id, channel, value):
        """Append one value (scaled int, or bytes for b16/b32 types); raise WireError if invalid."""
        if not self._len:
            raise ValueError("begin() first")
        width = check_value(type_id, value)
        if len(self._types) >= _MAX_VALUES:
            raise WireError("too-many-values", "more than %d values" % _MAX_VALUES)
        pair = (type_id << 8) | channel
        if pair in self._pairs:
            raise WireError("duplicate-channel", "type %d channel %d twice" % (type_id, channel))
        end = self._len + 2 + width
        if end > _MAX_BODY_BYTES:
            raise WireError("too-large", "body would exceed %d bytes" % _MAX_BODY_BYTES)
        buf = self._buf
        buf[self._len] = type_id
        buf[self._len + 1] = channel
        if width == 4:
            struct.pack_into(">i", buf, self._len + 2, value)
        else:
            self._mv[self._len + 2 : end] = value
        self._len = end
        self._types.append(type_id)
        self._pairs.append(pair)
        buf[_HEADER_BYTES - 1] = len(self._types)

    def finish(self):
        """Return the unsigned record (the body) as bytes; raise WireError if kind rules fail."""
        if not self._len:
            raise ValueError("begin() first")
        check_kind(self._kind, self._types)
        out = bytes(self._mv[: self._len])
        self._len = 0
        return out

    def body_len(self):
        """Return the length in bytes of the body begun so far (0 before begin())."""
        return self._len

    def seal(self, signing_key=None):
        """Finish the record in the buffer and return a memoryview of it, valid until the next
        begin(): the body, or body || Ed25519 signature when signing_key (.sign(msg)) is given.
        Raise WireError if kind rules fail. finish() and sign() without their copies: only the
        signature is allocated (the running board appends records this way)."""
        n = self._len
        if not n:
            raise ValueError("begin() first")
        check_kind(self._kind, self._types)
        self._len = 0
        mv = self._mv
        if signing_key is None:
            return mv[:n]
        mv[n : n + 64] = signing_key.sign(mv[:n])
        return mv[: n + 64]


def sign(body, signing_key):
    """Return body || Ed25519 signature; signing_key has .sign(msg) (firmware.ed25519.SigningKey)."""
    return body + signing_key.sign(body)
