"""Wire format v1 on the board: build records in a preallocated buffer, sign them, parse them back.

Specification: docs/wire-format.md; tests/vectors/records.json pins it. The gateway's
implementation (gateway/wire.py) is independent; both must agree with the vectors byte for byte.
"""

import hashlib
import struct

from micropython import const

VERSION = const(1)
KIND_READING = const(1)
KIND_HEARTBEAT = const(2)
KIND_EVENT = const(3)
KIND_KEY_ROTATION = const(4)
KIND_CHAIN_SEGMENT = const(5)  # restarts the chain after lost records; must be signed
TIME_SYNCED = const(0x01)
_KNOWN_FLAGS = const(0x01)

HEADER_BYTES = const(64)
SIGNATURE_BYTES = const(64)
MAX_VALUES = const(16)  # the biggest board profile has < 10 channels; bounds parse work
MAX_BODY_BYTES = const(176)  # + signature + 4-byte frame header: one notification at MTU 247
MAX_RECORD_BYTES = const(240)  # MAX_BODY_BYTES + 64-byte signature

# Channel type ids (docs/wire-format.md, Values); the scale is in the comment.
CH_TEMPERATURE = const(1)  # 0.01 degC
CH_HUMIDITY = const(2)  # 0.01 %RH
CH_DISSOLVED_OXYGEN = const(3)  # 0.01 mg/L
CH_PH = const(4)  # 0.001 pH
CH_AMMONIA = const(5)  # 0.001 mg/L
CH_ENERGY = const(6)  # Wh, cumulative; channel 0 import, 1 export
CH_POWER = const(7)  # mW
CH_LATITUDE = const(8)  # 1e-7 deg
CH_LONGITUDE = const(9)  # 1e-7 deg
CH_OCCUPANCY = const(10)  # 0/1
CH_VEHICLE_COMMITMENT = const(11)  # 16 bytes: SHA-256(salt || vehicle id)[0:16]
CH_WEIGHT = const(12)  # g
CH_TAMPER = const(13)  # 0/1
CH_BATTERY = const(14)  # mV
CH_VOLTAGE = const(15)  # mV
CH_CURRENT = const(16)  # mA
CH_MAGNETIC_FIELD = const(17)  # 0.01 uT
CH_DISTANCE = const(18)  # mm
CH_TURBIDITY = const(19)  # 0.1 NTU
CH_RSSI = const(20)  # dBm
CH_EVENT_CODE = const(21)
CH_EVENT_ARG = const(22)
CH_JOURNAL_DEPTH = const(23)
CH_UPTIME = const(24)  # s
CH_NEW_PUBLIC_KEY = const(25)  # 32 bytes
CH_BREAK_REASON = const(26)  # chain_segment only: a BRK_* code
CH_HELD_SEQ = const(27)  # chain_segment only: newest seq the board still holds

# Break reasons carried in CH_BREAK_REASON (docs/wire-format.md, Chain segments).
BRK_JOURNAL_LOST = const(1)
BRK_FLASH_FAULT = const(2)
BRK_REFLASH = const(3)
BRK_GATEWAY_BEHIND = const(4)

# Event codes carried in CH_EVENT_CODE.
EV_BOOT = const(1)
EV_JOURNAL_OVERFLOW = const(2)
EV_TAMPER = const(3)
EV_TIME_SYNC = const(4)
EV_SENSOR_FAULT = const(5)
EV_ARRIVAL = const(6)
EV_DEPARTURE = const(7)

_I32_MIN = const(-2147483648)
_I32_MAX = const(2147483647)
# type id -> (payload bytes, min, max); min is None for byte payloads.
_CHANNELS = {
    1: (4, -27315, 200000),
    2: (4, 0, 10000),
    3: (4, 0, 10000),
    4: (4, 0, 14000),
    5: (4, 0, 1000000),
    6: (4, 0, _I32_MAX),
    7: (4, _I32_MIN, _I32_MAX),
    8: (4, -900000000, 900000000),
    9: (4, -1800000000, 1800000000),
    10: (4, 0, 1),
    11: (16, None, None),
    12: (4, 0, _I32_MAX),
    13: (4, 0, 1),
    14: (4, 0, 100000),
    15: (4, _I32_MIN, _I32_MAX),
    16: (4, _I32_MIN, _I32_MAX),
    17: (4, _I32_MIN, _I32_MAX),
    18: (4, 0, 100000),
    19: (4, 0, 100000),
    20: (4, -127, 20),
    21: (4, 1, 65535),
    22: (4, _I32_MIN, _I32_MAX),
    23: (4, 0, _I32_MAX),
    24: (4, 0, _I32_MAX),
    25: (32, None, None),
    26: (4, 1, 255),
    27: (4, 0, _I32_MAX),
}
_HEADER_FMT = ">BBB16sIII32sB"
# Value types a board profile may name, by wire registry name -> type id (docs/wire-format.md,
# Values). Here rather than in firmware/board.py so the running firmware needs no profile code.
CHANNEL_TYPES = {
    "temperature": CH_TEMPERATURE,
    "humidity": CH_HUMIDITY,
    "dissolved_oxygen": CH_DISSOLVED_OXYGEN,
    "ph": CH_PH,
    "ammonia": CH_AMMONIA,
    "energy": CH_ENERGY,
    "power": CH_POWER,
    "latitude": CH_LATITUDE,
    "longitude": CH_LONGITUDE,
    "occupancy": CH_OCCUPANCY,
    "vehicle_commitment": CH_VEHICLE_COMMITMENT,
    "weight": CH_WEIGHT,
    "tamper": CH_TAMPER,
    "battery": CH_BATTERY,
    "voltage": CH_VOLTAGE,
    "current": CH_CURRENT,
    "magnetic_field": CH_MAGNETIC_FIELD,
    "distance": CH_DISTANCE,
    "turbidity": CH_TURBIDITY,
    "rssi": CH_RSSI,
}

_GENESIS_TAG = b"edgeseal/v1/genesis"


class WireError(ValueError):
    """A record that violates wire format v1; `code` is the stable code of docs/wire-format.md."""

    def __init__(self, code, message):
        super().__init__(code + ": " + message)
        self.code = code


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


def check_value(type_id, value):
    """Return the payload width of type_id; raise WireError if the type or the value is invalid."""
    spec = _CHANNELS.get(type_id)
    if spec is None:
        raise WireError("unknown-channel", "channel type %d is not in the registry" % type_id)
    width, lo, hi = spec
    if lo is None:
        if not isinstance(value, (bytes, bytearray)) or len(value) != width:
            raise WireError("value-overflow", "type %d needs %d bytes" % (type_id, width))
    elif not isinstance(value, int) or not lo <= value <= hi:
        raise WireError("value-overflow", "type %d value outside [%d, %d]" % (type_id, lo, hi))
    return width


def check_kind(kind, types):
    """Raise WireError("kind-rules") unless the list of value types fits the record kind."""
    n_events = types.count(CH_EVENT_CODE)
    n_keys = types.count(CH_NEW_PUBLIC_KEY)
    n_breaks = types.count(CH_BREAK_REASON)
    n_segment = n_breaks + types.count(CH_HELD_SEQ)
    if n_segment and kind != KIND_CHAIN_SEGMENT:
        ok = False
    elif kind == KIND_READING:
        ok = len(types) > 0 and not n_events and not n_keys
    elif kind == KIND_HEARTBEAT:
        ok = not n_events and not n_keys
    elif kind == KIND_EVENT:
        ok = n_events == 1 and not n_keys
    elif kind == KIND_KEY_ROTATION:
        ok = len(types) == 1 and n_keys == 1
    elif kind == KIND_CHAIN_SEGMENT:
        ok = n_breaks == 1 and len(types) == n_segment and n_segment <= 2
    else:
        raise WireError("bad-kind", "kind %d is not defined" % kind)
    if not ok:
        raise WireError("kind-rules", "values do not fit record kind %d" % kind)


class RecordBuilder:
    """Builds one record at a time in a buffer allocated once (MAX_RECORD_BYTES)."""

    def __init__(self, dev_id):
        """dev_id: the board's 16-byte device id (device_id(first public key))."""
        if len(dev_id) != 16:
            raise ValueError("device id must be 16 bytes")
        self._dev_id = bytes(dev_id)
        self._buf = bytearray(MAX_RECORD_BYTES)
        self._mv = memoryview(self._buf)
        self._len = 0
        self._types = []
        self._pairs = []
        self._kind = 0

    def begin(self, kind, seq, boot, time_s, prev_hash, flags=0):
        """Start a record; preconditions: u32 seq/boot/time_s, 32-byte prev_hash, known flags."""
        if flags & ~_KNOWN_FLAGS:
            raise WireError("reserved-flags", "reserved flag bits set")
        if kind < KIND_READING or kind > KIND_CHAIN_SEGMENT:
            raise WireError("bad-kind", "kind %d is not defined" % kind)
        struct.pack_into(
            _HEADER_FMT, self._buf, 0, VERSION, kind, flags, self._dev_id, seq, boot, time_s,
            prev_hash, 0,
        )  # fmt: skip
        self._kind = kind
        self._len = HEADER_BYTES
        self._types = []
        self._pairs = []

    def add(self, type_id, channel, value):
        """Append one value (scaled int, or bytes for b16/b32 types); raise WireError if invalid."""
        if not self._len:
            raise ValueError("begin() first")
        width = check_value(type_id, value)
        if len(self._types) >= MAX_VALUES:
            raise WireError("too-many-values", "more than %d values" % MAX_VALUES)
        pair = (type_id << 8) | channel
        if pair in self._pairs:
            raise WireError("duplicate-channel", "type %d channel %d twice" % (type_id, channel))
        end = self._len + 2 + width
        if end > MAX_BODY_BYTES:
            raise WireError("too-large", "body would exceed %d bytes" % MAX_BODY_BYTES)
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
        buf[HEADER_BYTES - 1] = len(self._types)

    def finish(self):
        """Return the unsigned record (the body) as bytes; raise WireError if kind rules fail."""
        if not self._len:
            raise ValueError("begin() first")
        check_kind(self._kind, self._types)
        out = bytes(self._mv[: self._len])
        self._len = 0
        return out


def sign(body, signing_key):
    """Return body || Ed25519 signature; signing_key has .sign(msg) (firmware.ed25519.SigningKey)."""
    return body + signing_key.sign(body)


def parse(record):
    """Return (kind, flags, device_id, seq, boot, time_s, prev_hash, values, body_len, signed).

    values is a list of (type, channel, value) tuples. Raises WireError with the codes of
    docs/wire-format.md on any structural fault. Does not verify the signature.
    """
    n = len(record)
    if n == 0:
        raise WireError("empty", "no bytes")
    if record[0] != VERSION:
        raise WireError("bad-version", "version %d is not supported" % record[0])
    if n < HEADER_BYTES:
        raise WireError("truncated", "shorter than the header")
    _, kind, flags, dev_id, seq, boot, time_s, prev, n_values = struct.unpack_from(
        _HEADER_FMT, record, 0
    )
    if kind < KIND_READING or kind > KIND_CHAIN_SEGMENT:
        raise WireError("bad-kind", "kind %d is not defined" % kind)
    if flags & ~_KNOWN_FLAGS:
        raise WireError("reserved-flags", "reserved flag bits set")
    if n_values > MAX_VALUES:
        raise WireError("too-many-values", "%d values" % n_values)
    values = []
    pairs = []
    pos = HEADER_BYTES
    for _ in range(n_values):
        if pos + 2 > n:
            raise WireError("truncated", "value header past the end")
        type_id = record[pos]
        channel = record[pos + 1]
        spec = _CHANNELS.get(type_id)
        if spec is None:
            raise WireError("unknown-channel", "channel type %d is not in the registry" % type_id)
        end = pos + 2 + spec[0]
        if end > n:
            raise WireError("truncated", "value past the end")
        pair = (type_id << 8) | channel
        if pair in pairs:
            raise WireError("duplicate-channel", "type %d channel %d twice" % (type_id, channel))
        pairs.append(pair)
        if spec[1] is None:
            value = bytes(record[pos + 2 : end])
        else:
            value = struct.unpack_from(">i", record, pos + 2)[0]
        check_value(type_id, value)
        values.append((type_id, channel, value))
        pos = end
    if pos > MAX_BODY_BYTES:
        raise WireError("too-large", "body exceeds %d bytes" % MAX_BODY_BYTES)
    extra = n - pos
    if extra != 0 and extra != SIGNATURE_BYTES:
        if extra < SIGNATURE_BYTES:
            raise WireError("bad-signature-length", "%d bytes after the body" % extra)
        raise WireError("trailing-garbage", "%d bytes after the signature" % (extra - 64))
    check_kind(kind, [v[0] for v in values])
    return kind, flags, dev_id, seq, boot, time_s, prev, values, pos, extra == SIGNATURE_BYTES
