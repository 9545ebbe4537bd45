"""Wire format v1 on the gateway: decode device records, verify signatures and per-device chains.

The specification is docs/wire-format.md; tests/vectors/records.json pins it. Decoding checks
structure only (WireError); `verify_signature` and `DeviceChain` authenticate (SignatureError,
ChainError). Nothing here keeps state except a DeviceChain, which changes only on success.
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from functools import lru_cache
from hashlib import sha256 as _sha256
from typing import NamedTuple

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from gateway.errors import ChainError, SignatureError, WireError

VERSION = 1
READING, HEARTBEAT, EVENT, KEY_ROTATION, CHAIN_SEGMENT = 1, 2, 3, 4, 5
KIND_NAMES = {
    READING: "reading",
    HEARTBEAT: "heartbeat",
    EVENT: "event",
    KEY_ROTATION: "key_rotation",
    CHAIN_SEGMENT: "chain_segment",
}
TIME_SYNCED = 0x01
_KNOWN_FLAGS = TIME_SYNCED

HEADER_BYTES = 64
SIGNATURE_BYTES = 64
MAX_VALUES = 16  # biggest board profile has < 10 channels; bounds decoder work
MAX_BODY_BYTES = 176  # body + signature + 4-byte BLE frame header fit one notification at MTU 247
MAX_RECORD_BYTES = 240  # MAX_BODY_BYTES + 64; with the frame header: 244 bytes, one notification
# How many unsigned records a chain may hold while waiting for a signed successor. A board signs at
# least once per upload and an upload is bounded by its journal; this bounds gateway memory per device.
MAX_PENDING_UNSIGNED = 1024

GENESIS_TAG = b"edgeseal/v1/genesis"
_HEADER = struct.Struct(">BBB16sIII32sB")
_I32 = struct.Struct(">i")

# Ed25519 constants (RFC 8032 5.1).
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


class Ch(IntEnum):
    """Channel type ids of the registry (docs/wire-format.md, Values); the only place they are
    numbered. A member's name, lower-cased, is the registry name; CHANNELS holds its row."""

    TEMPERATURE = 1
    HUMIDITY = 2
    DISSOLVED_OXYGEN = 3
    PH = 4
    AMMONIA = 5
    ENERGY = 6  # cumulative; channel 0 import, channel 1 export
    POWER = 7
    LATITUDE = 8
    LONGITUDE = 9
    OCCUPANCY = 10
    VEHICLE_COMMITMENT = 11
    WEIGHT = 12
    TAMPER = 13
    BATTERY = 14
    VOLTAGE = 15
    CURRENT = 16
    MAGNETIC_FIELD = 17
    DISTANCE = 18
    TURBIDITY = 19
    RSSI = 20
    EVENT_CODE = 21
    EVENT_ARG = 22
    JOURNAL_DEPTH = 23
    UPTIME = 24
    NEW_PUBLIC_KEY = 25
    BREAK_REASON = 26  # chain_segment only: why the board's chain broke (Brk)
    HELD_SEQ = 27  # chain_segment only: seq of the newest record the board still holds


class Brk(IntEnum):
    """Break reasons, the values of a BREAK_REASON value (docs/wire-format.md, Chain segments)."""

    JOURNAL_LOST = 1  # the journal was empty or unreadable while records had existed
    FLASH_FAULT = 2  # the journal was damaged part-way: records after the damage are gone
    REFLASH = 3  # the filesystem was rewritten; the key and seq high-water survived in NVS
    GATEWAY_BEHIND = 4  # the gateway asked for records the board deleted after an ack


class Ev(IntEnum):
    """Event codes, the values of an EVENT_CODE value (docs/wire-format.md, Values)."""

    BOOT = 1
    JOURNAL_OVERFLOW = 2  # event_arg: readings dropped
    TAMPER = 3
    TIME_SYNC = 4  # event_arg: correction in seconds
    SENSOR_FAULT = 5  # event_arg: channel type
    ARRIVAL = 6
    DEPARTURE = 7


class Channel(NamedTuple):
    """One row of the channel registry (docs/wire-format.md, Values)."""

    id: int
    name: str
    unit: str
    scale: int
    width: str  # "i32", "b16" or "b32"
    min: int | None
    max: int | None


def _row(ch: Ch, unit: str, scale: int, width: str, lo: int | None, hi: int | None) -> Channel:
    return Channel(ch, ch.name.lower(), unit, scale, width, lo, hi)


_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
CHANNELS: dict[int, Channel] = {
    c.id: c
    for c in (
        _row(Ch.TEMPERATURE, "degC", -2, "i32", -27315, 200000),
        _row(Ch.HUMIDITY, "%RH", -2, "i32", 0, 10000),
        _row(Ch.DISSOLVED_OXYGEN, "mg/L", -2, "i32", 0, 10000),
        _row(Ch.PH, "pH", -3, "i32", 0, 14000),
        _row(Ch.AMMONIA, "mg/L", -3, "i32", 0, 1000000),
        _row(Ch.ENERGY, "Wh", 0, "i32", 0, _I32_MAX),
        _row(Ch.POWER, "W", -3, "i32", _I32_MIN, _I32_MAX),
        _row(Ch.LATITUDE, "deg", -7, "i32", -900000000, 900000000),
        _row(Ch.LONGITUDE, "deg", -7, "i32", -1800000000, 1800000000),
        _row(Ch.OCCUPANCY, "bool", 0, "i32", 0, 1),
        _row(Ch.VEHICLE_COMMITMENT, "sha256/128", 0, "b16", None, None),
        _row(Ch.WEIGHT, "kg", -3, "i32", 0, _I32_MAX),
        _row(Ch.TAMPER, "bool", 0, "i32", 0, 1),
        _row(Ch.BATTERY, "V", -3, "i32", 0, 100000),
        _row(Ch.VOLTAGE, "V", -3, "i32", _I32_MIN, _I32_MAX),
        _row(Ch.CURRENT, "A", -3, "i32", _I32_MIN, _I32_MAX),
        _row(Ch.MAGNETIC_FIELD, "uT", -2, "i32", _I32_MIN, _I32_MAX),
        _row(Ch.DISTANCE, "m", -3, "i32", 0, 100000),
        _row(Ch.TURBIDITY, "NTU", -1, "i32", 0, 100000),
        _row(Ch.RSSI, "dBm", 0, "i32", -127, 20),
        _row(Ch.EVENT_CODE, "code", 0, "i32", 1, 65535),
        _row(Ch.EVENT_ARG, "count", 0, "i32", _I32_MIN, _I32_MAX),
        _row(Ch.JOURNAL_DEPTH, "records", 0, "i32", 0, _I32_MAX),
        _row(Ch.UPTIME, "s", 0, "i32", 0, _I32_MAX),
        _row(Ch.NEW_PUBLIC_KEY, "ed25519", 0, "b32", None, None),
        _row(Ch.BREAK_REASON, "code", 0, "i32", 1, 255),
        _row(Ch.HELD_SEQ, "seq", 0, "i32", 0, _I32_MAX),
    )
}
if list(CHANNELS) != list(Ch):  # each type has exactly one row, in id order
    raise AssertionError("CHANNELS must hold one row per Ch member")


def i32_range(type_id: int) -> tuple[int, int]:
    """Return the (min, max) a value of i32 channel type `type_id` must lie in (CHANNELS)."""
    ch = CHANNELS[type_id]
    if ch.min is None or ch.max is None:
        raise ValueError(f"channel type {ch.name} carries bytes, not an i32")
    return ch.min, ch.max


_EVENT_CODE, _NEW_PUBLIC_KEY = int(Ch.EVENT_CODE), int(Ch.NEW_PUBLIC_KEY)  # plain ints: decode loop
_BREAK_REASON, _HELD_SEQ = int(Ch.BREAK_REASON), int(Ch.HELD_SEQ)
_WIDTH_BYTES = {"i32": 4, "b16": 16, "b32": 32}
# Per type: (payload bytes, min, max) with min=None for byte payloads; a flat table keeps decode fast.
_DECODE_TABLE = {
    int(c.id): (_WIDTH_BYTES[c.width], c.min if c.width == "i32" else None, c.max)
    for c in CHANNELS.values()
}


class Value(NamedTuple):
    """One decoded value: registry type id, channel index, scaled int or raw bytes."""

    type: int
    channel: int
    value: int | bytes


class Record(NamedTuple):
    """A structurally valid record. `body` is what the signature covers; `raw` is every byte.

    A NamedTuple: immutable, and built several times faster than a frozen dataclass (ingest
    decodes every record; see tools/bench_ingest.py).
    """

    version: int
    kind: int
    flags: int
    device_id: bytes
    seq: int
    boot: int
    time_s: int
    prev_hash: bytes
    values: tuple[Value, ...]
    body: bytes
    signature: bytes | None
    raw: bytes
    record_hash: bytes

    @property
    def signed(self) -> bool:
        """Return True if the record carries a signature."""
        return self.signature is not None

    @property
    def time_synced(self) -> bool:
        """Return True if time_s is Unix time (else seconds since boot)."""
        return bool(self.flags & TIME_SYNCED)

    def value(self, type_id: int, channel: int = 0) -> int | bytes | None:
        """Return the value of (type_id, channel), or None if the record has none."""
        for v in self.values:
            if v.type == type_id and v.channel == channel:
                return v.value
        return None

    def to_json(self) -> dict:
        """Return a JSON-friendly decoded view (units and scales from the registry)."""
        vals = []
        for v in self.values:
            ch = CHANNELS[v.type]
            item: dict = {"type": ch.name, "channel": v.channel, "unit": ch.unit}
            if isinstance(v.value, bytes):
                item["hex"] = v.value.hex()
            else:
                item["raw"] = v.value
                item["scale"] = ch.scale
            vals.append(item)
        return {
            "version": self.version,
            "kind": KIND_NAMES[self.kind],
            "time_synced": self.time_synced,
            "device_id": self.device_id.hex(),
            "seq": self.seq,
            "boot": self.boot,
            "time_s": self.time_s,
            "prev_hash": self.prev_hash.hex(),
            "record_hash": self.record_hash.hex(),
            "values": vals,
            "signature": self.signature.hex() if self.signature else None,
        }


def device_id_for(public_key: bytes) -> bytes:
    """Return the device id of a device whose first key is public_key: SHA-256(pk)[0:16]."""
    return hashlib.sha256(public_key).digest()[:16]


def genesis_hash(device_id: bytes) -> bytes:
    """Return the prev_hash of a device's first record: SHA-256("edgeseal/v1/genesis" || id)."""
    return hashlib.sha256(GENESIS_TAG + device_id).digest()


def decode_record(data: bytes) -> Record:
    """Return the Record encoded in data; raise WireError (with a stable code) if malformed.

    Checks structure only: version, kind, flags, lengths, registry types and ranges, kind rules.
    The signature, if present, is not verified here (see verify_signature).
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n == 0:
        raise WireError("empty", "no bytes")
    if data[0] != VERSION:
        raise WireError("bad-version", f"version {data[0]} is not supported (expected {VERSION})")
    if n < HEADER_BYTES:
        raise WireError("truncated", f"{n} bytes is shorter than the {HEADER_BYTES}-byte header")
    version, kind, flags, dev_id, seq, boot, time_s, prev_hash, n_values = _HEADER.unpack_from(data)
    if kind not in KIND_NAMES:
        raise WireError("bad-kind", f"kind {kind} is not defined")
    if flags & ~_KNOWN_FLAGS:
        raise WireError("reserved-flags", f"reserved flag bits set: 0x{flags:02x}")
    if n_values > MAX_VALUES:
        raise WireError("too-many-values", f"{n_values} values exceeds MAX_VALUES={MAX_VALUES}")
    values = []
    seen = set()
    n_events = n_keys = 0
    pos = HEADER_BYTES
    table = _DECODE_TABLE
    unpack_i32 = _I32.unpack_from
    for _ in range(n_values):
        if pos + 2 > n:
            raise WireError("truncated", f"value header at offset {pos} runs past {n} bytes")
        type_id = data[pos]
        channel = data[pos + 1]
        spec = table.get(type_id)
        if spec is None:
            raise WireError("unknown-channel", f"channel type {type_id} is not in the registry")
        width, lo, hi = spec
        end = pos + 2 + width
        if end > n:
            raise WireError("truncated", f"value at offset {pos} runs past {n} bytes")
        key = type_id << 8 | channel
        if key in seen:
            raise WireError("duplicate-channel", f"type {type_id} channel {channel} appears twice")
        seen.add(key)
        if type_id == _EVENT_CODE:
            n_events += 1
        elif type_id == _NEW_PUBLIC_KEY:
            n_keys += 1
        if lo is None:
            value: int | bytes = data[pos + 2 : end]
        else:
            value = unpack_i32(data, pos + 2)[0]
            if not lo <= value <= hi:  # type: ignore[operator]
                raise WireError(
                    "value-overflow",
                    f"{CHANNELS[type_id].name} value {value} outside [{lo}, {hi}]",
                )
        values.append(Value(type_id, channel, value))
        pos = end
    body_len = pos
    if body_len > MAX_BODY_BYTES:
        raise WireError("too-large", f"body of {body_len} bytes exceeds {MAX_BODY_BYTES}")
    extra = n - body_len
    if extra == 0:
        signature = None
        body = data
    elif extra == SIGNATURE_BYTES:
        signature = data[body_len:]
        body = data[:body_len]
    elif extra < SIGNATURE_BYTES:
        raise WireError("bad-signature-length", f"{extra} bytes after the body (0 or 64 allowed)")
    else:
        raise WireError("trailing-garbage", f"{extra - SIGNATURE_BYTES} bytes after the signature")
    _check_kind_rules(kind, len(values), n_events, n_keys, seen)
    return Record(
        version,
        kind,
        flags,
        dev_id,
        seq,
        boot,
        time_s,
        prev_hash,
        tuple(values),
        body,
        signature,
        data,
        _sha256(body).digest(),
    )


def _check_kind_rules(kind: int, n_values: int, n_events: int, n_keys: int, seen: set[int]) -> None:
    """Raise WireError("kind-rules") unless the value counts fit the kind (docs/wire-format.md).

    seen: the record's (type << 8 | channel) keys; BREAK_REASON and HELD_SEQ values are counted
    from it (they are allowed in a chain_segment only, so the decode loop does not count them).
    """
    n_segment = n_breaks = 0
    for key in seen:
        if key >> 8 == _BREAK_REASON:
            n_breaks += 1
        if key >> 8 == _HELD_SEQ or key >> 8 == _BREAK_REASON:
            n_segment += 1
    if n_segment and kind != CHAIN_SEGMENT:
        ok = False
    elif kind == READING:
        ok = n_values > 0 and not n_events and not n_keys
    elif kind == HEARTBEAT:
        ok = not n_events and not n_keys
    elif kind == EVENT:
        ok = n_events == 1 and not n_keys
    elif kind == KEY_ROTATION:
        ok = n_values == 1 and n_keys == 1
    else:  # CHAIN_SEGMENT: one reason, at most one held seq, nothing else
        ok = n_breaks == 1 and n_values == n_segment and n_segment <= 2
    if not ok:
        raise WireError("kind-rules", f"values do not fit record kind {KIND_NAMES[kind]}")


def _decode_point_y(enc: bytes) -> tuple[int, int] | None:
    """Return the affine point (x, y) encoded in enc (RFC 8032 5.1.3), or None if not canonical."""
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    sign = enc[31] >> 7
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _point_double(pt: tuple[int, int]) -> tuple[int, int]:
    """Return 2*pt in affine twisted Edwards coordinates (enough for a small-order test)."""
    x, y = pt
    xx, yy, xy = x * x % _P, y * y % _P, x * y % _P
    dxy = _D * xx * yy % _P
    x3 = 2 * xy * pow(1 + dxy, _P - 2, _P) % _P
    y3 = (yy + xx) * pow(1 - dxy, _P - 2, _P) % _P
    return x3, y3


@lru_cache(maxsize=4096)
def check_public_key(public_key: bytes) -> None:
    """Raise SignatureError("bad-public-key") unless public_key is a canonical, not small-order point.

    Cached per key: this is per device, not per record.
    """
    if len(public_key) != 32:
        raise SignatureError("bad-public-key", f"public key is {len(public_key)} bytes, not 32")
    pt = _decode_point_y(public_key)
    if pt is None:
        raise SignatureError("bad-public-key", "public key is not a canonical curve point")
    for _ in range(3):
        pt = _point_double(pt)
    if pt == (0, 1):
        raise SignatureError("bad-public-key", "public key has small order")


def verify_signature(record: Record, public_key: bytes) -> None:
    """Return None if record.signature is a valid Ed25519 signature of record.body by public_key.

    Raises SignatureError: "unsigned", "non-canonical-signature" (S >= L), "bad-public-key",
    "bad-signature". Policy: docs/wire-format.md, Signature policy (libsodium's, RFC 8032 5.1.7).
    """
    sig = record.signature
    if sig is None:
        raise SignatureError("unsigned", f"record seq {record.seq} carries no signature")
    check_public_key(public_key)
    if int.from_bytes(sig[32:], "little") >= _L:
        raise SignatureError("non-canonical-signature", "signature scalar S is not below L")
    try:
        crypto_sign_open(sig + record.body, public_key)
    except BadSignatureError:
        raise SignatureError(
            "bad-signature", f"signature of seq {record.seq} does not verify"
        ) from None


class DeviceChain:
    """One device's hash chain as the gateway has committed it, plus records in waiting.

    push() authenticates records one at a time in arrival order (docs/wire-format.md, Chain
    signing, Chain segments). Records wait in `pending` while no signed record vouches for them:
    unsigned records that link to the committed head, then, after a record that does not link
    (`detached_at`, its index in pending), a *detached run* that only a signed chain_segment
    reaching it through prev_hash links may accept. finish() raises "chain-break" if a detached
    run was never vouched for. push() changes state only when it returns; on an error nothing
    changes.
    """

    def __init__(
        self,
        device_id: bytes,
        public_key: bytes,
        last_seq: int | None = None,
        last_hash: bytes | None = None,
    ) -> None:
        """Start from a committed high-water mark, or from genesis when last_seq is None."""
        check_public_key(public_key)
        self.device_id = device_id
        self.public_key = public_key
        self.last_seq = last_seq
        self.last_hash = last_hash if last_hash is not None else genesis_hash(device_id)
        self.pending: list[Record] = []
        self.detached_at: int | None = None  # index in pending of the first record after a break
        self._run_key = public_key  # the key after the rotations signed inside the detached run
        self.breaks: list[ChainBreak] = []  # segments accepted across a break, oldest first

    def _tip(self) -> tuple[int | None, bytes]:
        if self.pending:
            return self.pending[-1].seq, self.pending[-1].record_hash
        return self.last_seq, self.last_hash

    def push(self, record: Record) -> list[Record]:
        """Return the records (oldest first) that record makes authentic; [] if it must wait.

        Raises SignatureError("wrong-device") for another device's record, ChainError
        "replayed-seq" for a seq not above the tip, "chain-break" for a second break inside a
        detached run, SignatureError("unsigned") for an unsigned key rotation or chain_segment,
        ("unsigned-run") past MAX_PENDING_UNSIGNED waiting records, and the codes of
        verify_signature for a bad signature.
        """
        if record.device_id != self.device_id:
            raise SignatureError("wrong-device", "record belongs to another device")
        tip_seq, tip_hash = self._tip()
        if tip_seq is not None and record.seq <= tip_seq:
            raise ChainError("replayed-seq", f"seq {record.seq} is not above {tip_seq}")
        linked = record.prev_hash == tip_hash
        if not linked and self.detached_at is not None:
            raise ChainError("chain-break", f"seq {record.seq} breaks the chain a second time")
        if record.signature is None and record.kind in (KEY_ROTATION, CHAIN_SEGMENT):
            raise SignatureError("unsigned", f"a {KIND_NAMES[record.kind]} must be signed")
        detached = self.detached_at
        if record.signature is None or (
            record.kind != CHAIN_SEGMENT and (detached is not None or not linked)
        ):
            return self._wait(record, linked)  # only a chain_segment vouches for a break
        key = self._run_key if detached is not None else self.public_key
        verify_signature(record, key)
        if not linked:  # the segment itself breaks: every waiting record is orphaned
            self.breaks.append(self._segment_break(record, len(self.pending)))
            authentic = [record]
        elif detached is not None:  # the segment vouches for the detached run it reaches
            self.breaks.append(self._segment_break(record, detached))
            authentic = self.pending[detached:] + [record]
        else:
            if record.kind == CHAIN_SEGMENT:  # linked, yet it names lost records
                self.breaks.append(self._segment_break(record, None))
            authentic = self.pending + [record]
        self.pending, self.detached_at = [], None
        self.public_key = self._run_key = _rotated(record, key)
        self.last_seq, self.last_hash = record.seq, record.record_hash
        return authentic

    def _wait(self, record: Record, linked: bool) -> list[Record]:
        """Keep record in pending (it starts a detached run when it does not link); return [].

        A signed record in a detached run is verified now (with the run's key, which a signed
        key rotation in the run switches); it cannot vouch for the break. Raises as push().
        """
        if len(self.pending) >= MAX_PENDING_UNSIGNED:
            raise SignatureError(
                "unsigned-run", f"more than {MAX_PENDING_UNSIGNED} records wait in a row"
            )
        key = self._run_key if self.detached_at is not None else self.public_key
        if record.signature is not None:
            verify_signature(record, key)
            key = _rotated(record, key)
        if not linked:
            self.detached_at = len(self.pending)
        self._run_key = key
        self.pending.append(record)
        return []

    def _segment_break(self, segment: Record, first: int | None) -> ChainBreak:
        """Return the ChainBreak a signed chain_segment vouches for. first: index in pending of
        the first record after the break (len(pending) when the segment itself breaks), or None
        when nothing breaks (the segment links: it only names seqs skipped since the tip)."""
        if first is None:
            tip_seq = self.pending[-1].seq if self.pending else self.last_seq
            return segment_break(segment, tip_seq, segment.seq, 0)
        after = self.pending[first].seq if first < len(self.pending) else segment.seq
        return segment_break(segment, self.last_seq, after, first)

    def finish(self) -> None:
        """Return None if no detached run waits; else raise ChainError("chain-break") naming its
        first record (no signed chain_segment vouched for the break). Changes nothing."""
        if self.detached_at is not None:
            first = self.pending[self.detached_at]
            raise ChainError(
                "chain-break",
                f"seq {first.seq} prev_hash does not match the chain and no chain_segment "
                "vouches for the break",
            )


def _rotated(record: Record, key: bytes) -> bytes:
    """Return the key that signs after record: its new key if it is a (verified) key rotation."""
    if record.kind != KEY_ROTATION:
        return key
    new_key = record.value(Ch.NEW_PUBLIC_KEY)
    assert isinstance(new_key, bytes)
    check_public_key(new_key)
    return new_key


class ChainBreak(NamedTuple):
    """A break a chain_segment record names: the seqs the verifier lacks and why.

    missing_from..missing_to (inclusive; empty when from > to) is the seq range between the
    verifier's head and the first record after the break in which records may have existed; the
    verifier never saw them (absence of data). orphaned: unsigned records that linked to the head
    but lost every signed successor in the break (never accepted, part of the missing range).
    """

    seq: int  # the segment record's seq
    reason: int  # a Brk value (unknown codes are kept as they are)
    held_seq: int | None  # newest seq the board still held, None if it held nothing
    missing_from: int
    missing_to: int
    orphaned: int

    @property
    def reason_name(self) -> str:
        """Return the reason's stable name (journal-lost, ...), or "reason-<n>" if unknown."""
        try:
            return Brk(self.reason).name.lower().replace("_", "-")
        except ValueError:
            return f"reason-{self.reason}"


def segment_break(
    record: Record, head_seq: int | None, after_seq: int, orphaned: int
) -> ChainBreak:
    """Return the ChainBreak chain_segment `record` names: seqs above head_seq and below
    after_seq (the first record after the break) are missing; orphaned as in ChainBreak.

    Precondition: record is a decoded chain_segment (decode_record checked its values).
    """
    reason = held = None
    for v in record.values:
        if v.type == Ch.BREAK_REASON:
            reason = v.value
        elif v.type == Ch.HELD_SEQ:
            held = v.value
    assert isinstance(reason, int) and (held is None or isinstance(held, int))
    start = 0 if head_seq is None else head_seq + 1
    return ChainBreak(record.seq, reason, held, start, after_seq - 1, orphaned)
