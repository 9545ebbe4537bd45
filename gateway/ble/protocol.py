"""BLE protocol v1, gateway side: UUIDs, advertising, Info, frames, reassembly and commands.

The specification is docs/ble-protocol.md; tests/vectors/ble.json pins it. This codec is the
gateway's own (CPython), independent of the firmware's. Every malformed input raises
gateway.errors.WireError with a stable code starting with "ble-"; nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import WireError
from gateway.wire import MAX_RECORD_BYTES

SERVICE_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0000"
INFO_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001"
DATA_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0002"
CONTROL_UUID = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0003"
COMPANY_ID = 0xFFFF  # the SIG's company id for tests and internal use
ID_PREFIX_BYTES = 4
NONE_SEQ = 0xFFFFFFFF  # "no such seq" in Info and END
PENDING_MAX = 0xFFFF  # advertised pending count saturates here

FRAME_CHUNK, FRAME_END, FRAME_STATUS = 0x01, 0x02, 0x03
CMD_SEND_FROM, CMD_ACK, CMD_TIME_SYNC, CMD_STOP = 0x01, 0x02, 0x03, 0x04
END_ALL_SENT, END_MAX_RECORDS, END_JOURNAL_EMPTY = 0, 1, 2
STATUS_OK, STATUS_BAD_COMMAND, STATUS_BAD_ARGUMENT, STATUS_BUSY = 0, 1, 2, 3
STATUS_UNAUTHENTICATED = 4  # the write's tag, counter or the board's link key failed
# Signed OTA update (docs/ota.md): opcodes, the refusal status (arg = reason) and the largest
# OTA_DATA payload at MTU 247 (244-byte write - opcode - offset u32 - 13-byte trailer)
CMD_OTA_BEGIN, CMD_OTA_DATA, CMD_OTA_END = 0x05, 0x06, 0x07
STATUS_REJECTED = 5
OTA_MAX_DATA_BYTES = 226

CHUNK_HEADER_BYTES = 4  # type, msg, index, count
ATT_HEADER_BYTES = 3  # a notification's payload is MTU - 3
MIN_MTU = 23  # the ATT default; frames still work, records split into more chunks

AD_FLAGS = 0x01
AD_COMPLETE_128 = 0x07
AD_INCOMPLETE_128 = 0x06
AD_SHORT_NAME = 0x08
AD_COMPLETE_NAME = 0x09
AD_MANUFACTURER = 0xFF

_INFO_FIXED = struct.Struct(">B16s32s3BIIIIIIB16sB")  # 94 bytes up to and including board_len
INFO_VERSION = 2  # v2: the connection nonce in Info, authenticated commands
MAX_BOARD_NAME_BYTES = 32
_END = struct.Struct(">BBII")
_STATUS = struct.Struct(">BBBI")
_SEND_FROM = struct.Struct(">BIH")
_U32_CMD = struct.Struct(">BI")


@dataclass(frozen=True, slots=True)
class Advert:
    """What a board's advertising says: its device id prefix and its unacked record count."""

    id_prefix: bytes
    pending: int


@dataclass(frozen=True, slots=True)
class Info:
    """The decoded Info characteristic (docs/ble-protocol.md, Info). Seqs are None when unset."""

    device_id: bytes
    public_key: bytes
    firmware: tuple[int, int, int]
    journal_depth: int
    first_seq: int | None
    last_seq: int | None
    last_acked_seq: int | None
    boot: int
    time_s: int
    flags: int
    board: str
    nonce: bytes = bytes(16)  # this connection's nonce: command tags are bound to it

    @property
    def time_synced(self) -> bool:
        """Return True if the device clock is Unix time."""
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One CHUNK frame: piece `index` of `count` of record number `msg` (mod 256)."""

    msg: int
    index: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """END: the board sent what SEND_FROM asked for; last_sent_seq is None if nothing was sent."""

    reason: int
    last_sent_seq: int | None
    journal_depth: int


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS: the answer to one control command."""

    command: int
    status: int
    arg: int


Frame = Chunk | End | Status


def _seq_or_none(value: int) -> int | None:
    return None if value == NONE_SEQ else value


def parse_manufacturer_data(manufacturer_data: Mapping[int, bytes]) -> Advert | None:
    """Return the Advert in bleak-style manufacturer data ({company id: payload}), or None.

    None means "not one of ours" (no COMPANY_ID entry). An entry of the wrong length raises
    WireError("ble-bad-advert").
    """
    payload = manufacturer_data.get(COMPANY_ID)
    if payload is None:
        return None
    payload = bytes(payload)
    if len(payload) != ID_PREFIX_BYTES + 2:
        raise WireError("ble-bad-advert", f"manufacturer data is {len(payload)} bytes, expected 6")
    return Advert(payload[:ID_PREFIX_BYTES], struct.unpack(">H", payload[4:])[0])


def parse_ad_structures(data: bytes) -> list[tuple[int, bytes]]:
    """Return the (AD type, payload) pairs of raw advertising data, in order.

    Raises WireError("ble-bad-advert") if a length byte runs past the end. A zero length byte ends
    the data (it is padding), as the Core spec allows.
    """
    data = bytes(data)
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        length = data[pos]
        if length == 0:
            break
        if pos + 1 + length > len(data):
            raise WireError("ble-bad-advert", f"AD structure at {pos} runs past {len(data)} bytes")
        out.append((data[pos + 1], data[pos + 2 : pos + 1 + length]))
        pos += 1 + length
    return out


def service_uuids_in(ad: list[tuple[int, bytes]]) -> list[str]:
    """Return the 128-bit service UUIDs (lower-case, dashed) listed in parsed AD structures."""
    out = []
    for ad_type, payload in ad:
        if ad_type in (AD_COMPLETE_128, AD_INCOMPLETE_128):
            for i in range(0, len(payload) - 15, 16):
                h = payload[i : i + 16][::-1].hex()
                out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def manufacturer_data_in(ad: list[tuple[int, bytes]]) -> dict[int, bytes]:
    """Return {company id: payload} from parsed AD structures (company id is little-endian)."""
    return {
        int.from_bytes(p[:2], "little"): p[2:]
        for t, p in ad
        if t == AD_MANUFACTURER and len(p) >= 2
    }


def local_name_in(ad: list[tuple[int, bytes]]) -> str | None:
    """Return the (complete or short) local name in parsed AD structures, or None."""
    for ad_type, payload in ad:
        if ad_type in (AD_COMPLETE_NAME, AD_SHORT_NAME):
            return payload.decode("utf-8", "replace")
    return None


def parse_advertising(adv: bytes) -> Advert | None:
    """Return the Advert of raw advertising data, or None if it lacks our service or company id."""
    ad = parse_ad_structures(adv)
    if SERVICE_UUID not in service_uuids_in(ad):
        return None
    return parse_manufacturer_data(manufacturer_data_in(ad))


def encode_advertising(device_id: bytes, pending: int) -> bytes:
    """Return the 31-byte advertising payload of a board (used by test peripherals)."""
    uuid_le = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
    mfr = (
        struct.pack("<H", COMPANY_ID)
        + device_id[:ID_PREFIX_BYTES]
        + struct.pack(">H", min(pending, PENDING_MAX))
    )
    return (
        b"\x02\x01\x06"
        + bytes([17, AD_COMPLETE_128])
        + uuid_le
        + bytes([len(mfr) + 1])
        + b"\xff"
        + mfr
    )


def encode_scan_response(device_id: bytes) -> bytes:
    """Return a board's scan response: the complete local name es-<id prefix hex>."""
    name = b"es-" + device_id[:ID_PREFIX_BYTES].hex().encode()
    return bytes([len(name) + 1, AD_COMPLETE_NAME]) + name


def decode_info(data: bytes) -> Info:
    """Return the Info encoded in data; raise WireError("ble-bad-info") if malformed."""
    data = bytes(data)
    if len(data) < _INFO_FIXED.size:
        raise WireError(
            "ble-bad-info", f"info is {len(data)} bytes, shorter than {_INFO_FIXED.size}"
        )
    (version, dev_id, pk, fw_major, fw_minor, fw_patch, depth, first, last, acked, boot, time_s,
     flags, nonce, board_len) = _INFO_FIXED.unpack_from(data)  # fmt: skip
    if version != INFO_VERSION:
        raise WireError("ble-bad-info", f"info_version {version} is not {INFO_VERSION}")
    if board_len > MAX_BOARD_NAME_BYTES:
        raise WireError("ble-bad-info", f"board_len {board_len} exceeds {MAX_BOARD_NAME_BYTES}")
    if len(data) != _INFO_FIXED.size + board_len:
        raise WireError(
            "ble-bad-info", f"info is {len(data)} bytes, expected {_INFO_FIXED.size + board_len}"
        )
    try:
        board = data[_INFO_FIXED.size :].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("ble-bad-info", "board name is not UTF-8") from None
    return Info(
        device_id=dev_id,
        public_key=pk,
        firmware=(fw_major, fw_minor, fw_patch),
        journal_depth=depth,
        first_seq=_seq_or_none(first),
        last_seq=_seq_or_none(last),
        last_acked_seq=_seq_or_none(acked),
        boot=boot,
        time_s=time_s,
        flags=flags,
        board=board,
        nonce=nonce,
    )


def encode_info(info: Info) -> bytes:
    """Return the Info characteristic value for info (used by test peripherals)."""
    board = info.board.encode()

    def seq(s: int | None) -> int:
        return NONE_SEQ if s is None else s

    return (
        _INFO_FIXED.pack(
            INFO_VERSION,
            info.device_id,
            info.public_key,
            *info.firmware,
            info.journal_depth,
            seq(info.first_seq),
            seq(info.last_seq),
            seq(info.last_acked_seq),
            info.boot,
            info.time_s,
            info.flags,
            info.nonce,
            len(board),
        )  # fmt: skip
        + board
    )


def decode_frame(data: bytes) -> Frame:
    """Return the Chunk, End or Status in one notification; raise WireError if malformed.

    Codes: "ble-empty-frame", "ble-unknown-frame", "ble-bad-frame" (wrong length or a CHUNK whose
    count is 0 or whose index is not below count).
    """
    data = bytes(data)
    if not data:
        raise WireError("ble-empty-frame", "a notification with no bytes")
    kind = data[0]
    if kind == FRAME_CHUNK:
        if len(data) < CHUNK_HEADER_BYTES + 1:
            raise WireError("ble-bad-frame", f"CHUNK of {len(data)} bytes carries no data")
        msg, index, count = data[1], data[2], data[3]
        if count == 0 or index >= count:
            raise WireError("ble-bad-frame", f"CHUNK index {index} of count {count}")
        return Chunk(msg, index, count, data[CHUNK_HEADER_BYTES:])
    if kind == FRAME_END:
        if len(data) != _END.size:
            raise WireError("ble-bad-frame", f"END is {len(data)} bytes, expected {_END.size}")
        _, reason, last_sent, depth = _END.unpack(data)
        return End(reason, _seq_or_none(last_sent), depth)
    if kind == FRAME_STATUS:
        if len(data) != _STATUS.size:
            raise WireError(
                "ble-bad-frame", f"STATUS is {len(data)} bytes, expected {_STATUS.size}"
            )
        _, command, status, arg = _STATUS.unpack(data)
        return Status(command, status, arg)
    raise WireError("ble-unknown-frame", f"frame type 0x{kind:02x} is not defined")


def encode_chunks(record: bytes, msg: int, mtu: int) -> list[bytes]:
    """Return the CHUNK frames that carry record at ATT MTU mtu (used by test peripherals).

    Preconditions: MIN_MTU <= mtu, 0 <= msg < 256, record fits 255 chunks.
    """
    per = mtu - ATT_HEADER_BYTES - CHUNK_HEADER_BYTES
    pieces = [record[i : i + per] for i in range(0, len(record), per)]
    return [bytes([FRAME_CHUNK, msg, i, len(pieces)]) + p for i, p in enumerate(pieces)]


def encode_end(reason: int, last_sent_seq: int | None, journal_depth: int) -> bytes:
    """Return an END frame (used by test peripherals)."""
    last = NONE_SEQ if last_sent_seq is None else last_sent_seq
    return _END.pack(FRAME_END, reason, last, journal_depth)


def encode_status(command: int, status: int, arg: int = 0) -> bytes:
    """Return a STATUS frame (used by test peripherals)."""
    return _STATUS.pack(FRAME_STATUS, command, status, arg)


def encode_send_from(seq: int, max_records: int = 0) -> bytes:
    """Return SEND_FROM(seq, max_records); max_records 0 means no limit."""
    return _SEND_FROM.pack(CMD_SEND_FROM, seq, max_records)


def encode_ack(seq: int) -> bytes:
    """Return ACK(seq): the board drops every record with seq <= seq."""
    return _U32_CMD.pack(CMD_ACK, seq)


def encode_time_sync(unix_time_s: int) -> bytes:
    """Return TIME_SYNC(unix_time_s)."""
    return _U32_CMD.pack(CMD_TIME_SYNC, unix_time_s)


def encode_stop() -> bytes:
    """Return STOP."""
    return bytes([CMD_STOP])


def encode_ota_begin(total_len: int, head_len: int, release_id: bytes) -> bytes:
    """Return OTA_BEGIN(total_len u32, head_len u16, release_id 16 bytes) (docs/ota.md)."""
    if len(release_id) != 16:
        raise ValueError("release_id must be 16 bytes")
    return struct.pack(">BIH", CMD_OTA_BEGIN, total_len, head_len) + release_id


def encode_ota_data(offset: int, data: bytes) -> bytes:
    """Return OTA_DATA(offset u32, data): 1..OTA_MAX_DATA_BYTES bytes of the release stream."""
    if not 0 < len(data) <= OTA_MAX_DATA_BYTES:
        raise ValueError("OTA_DATA carries 1..226 bytes")
    return struct.pack(">BI", CMD_OTA_DATA, offset) + data


def encode_ota_end() -> bytes:
    """Return OTA_END."""
    return bytes([CMD_OTA_END])


_COMMAND_LENGTHS = {CMD_SEND_FROM: _SEND_FROM.size, CMD_ACK: 5, CMD_TIME_SYNC: 5, CMD_STOP: 1}


def decode_command(data: bytes) -> tuple[int, tuple[int, ...]]:
    """Return (opcode, arguments) of a control command (without its counter and tag: see
    gateway.ble.auth.open_command); raise WireError("ble-bad-command").

    Used by test peripherals; a board answers a bad command with STATUS status 1.
    """
    data = bytes(data)
    if not data or data[0] not in _COMMAND_LENGTHS:
        raise WireError("ble-bad-command", "empty command or unknown opcode")
    op = data[0]
    if len(data) != _COMMAND_LENGTHS[op]:
        raise WireError("ble-bad-command", f"opcode {op} with {len(data)} bytes")
    if op == CMD_SEND_FROM:
        return op, _SEND_FROM.unpack(data)[1:]
    if op in (CMD_ACK, CMD_TIME_SYNC):
        return op, (_U32_CMD.unpack(data)[1],)
    return op, ()


class Reassembler:
    """Joins CHUNK frames of one connection into records (docs/ble-protocol.md, Reassembly).

    A chunk that does not continue the record in progress (other msg, other count, not the next
    index) drops that record and is counted in `dropped_records`; a chunk that cannot start a
    record (index > 0 with nothing in progress) is counted in `dropped_chunks`. The gateway then
    asks again from its last committed seq + 1, so a drop costs a resend, never a wrong record.
    """

    def __init__(self) -> None:
        """Start with no record in progress."""
        self.dropped_records = 0
        self.dropped_chunks = 0
        self._msg = -1
        self._count = 0
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def in_progress(self) -> bool:
        """Return True if part of a record has arrived."""
        return bool(self._parts)

    def reset(self) -> None:
        """Drop the record in progress (counted) and wait for a chunk with index 0."""
        if self._parts:
            self.dropped_records += 1
        self._parts = []
        self._size = 0

    def feed(self, chunk: Chunk) -> bytes | None:
        """Return the record chunk completes, or None; raise WireError("ble-record-too-large").

        The oversized record is dropped (state reset) before the error is raised.
        """
        if self._parts and not (
            chunk.msg == self._msg
            and chunk.count == self._count
            and chunk.index == len(self._parts)
        ):
            self.reset()
        if not self._parts:
            if chunk.index != 0:
                self.dropped_chunks += 1
                return None
            self._msg, self._count = chunk.msg, chunk.count
        self._parts.append(chunk.data)
        self._size += len(chunk.data)
        if self._size > MAX_RECORD_BYTES:
            self.reset()
            raise WireError(
                "ble-record-too-large", f"chunks of msg {chunk.msg} exceed {MAX_RECORD_BYTES} bytes"
            )
        if len(self._parts) == self._count:
            record = b"".join(self._parts)
            self._parts = []
            self._size = 0
            return record
        return None
