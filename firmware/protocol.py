"""BLE protocol v2 codec (docs/ble-protocol.md): UUIDs, advertising, Info, frames and commands.

Pure and allocation-light: every encoder writes into a buffer allocated once and returns a
memoryview of it (valid until the next call on the same object). tests/vectors/ble.json pins every
byte; the gateway has its own independent implementation.
"""

import struct

from micropython import const

# Every constant is private: a private const() (ints, strings) is folded into the bytecode and
# takes no RAM on a board, where a public one is a global and an interned name for good.
# firmware/peripheral.py keeps private copies of those it needs; tests/firmware/test_protocol.py
# pins every copy to the value here and the values to tests/vectors/ble.json.
_SERVICE_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0000")
_INFO_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001")
_DATA_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0002")
_CONTROL_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0003")
_COMPANY_ID = const(0xFFFF)  # the SIG's company id for tests and internal use

_FRAME_CHUNK = const(0x01)
_FRAME_END = const(0x02)
_FRAME_STATUS = const(0x03)

_CMD_SEND_FROM = const(0x01)
_CMD_ACK = const(0x02)
_CMD_TIME_SYNC = const(0x03)
_CMD_STOP = const(0x04)
# Signed over-the-air update (docs/ota.md; firmware.ota.Receiver applies them)
_CMD_OTA_BEGIN = const(0x05)  # total_len u32, head_len u16, release_id[16]
_CMD_OTA_DATA = const(0x06)  # offset u32, data (1..OTA_MAX_DATA_BYTES)
_CMD_OTA_END = const(0x07)

_ST_OK = const(0)
_ST_BAD_COMMAND = const(1)
_ST_BAD_ARGUMENT = const(2)
_ST_BUSY = const(3)
_ST_UNAUTHENTICATED = const(4)  # the tag, the counter or the link key failed (firmware.cmdauth)
_ST_REJECTED = const(5)  # an OTA release the board refuses; arg = the reason (firmware.ota R_*)

_END_ALL_SENT = const(0)
_END_LIMIT = const(1)
_END_EMPTY = const(2)

_NONE_SEQ = const(0xFFFFFFFF)  # "no such seq" in Info and END
_INFO_VERSION = const(2)  # v2: Info carries the connection nonce, commands carry tags
_MIN_MTU = const(23)  # the ATT default every central supports
# Requested ATT MTU: the largest record (240 bytes) + the 4-byte CHUNK header fits MTU - 3 = 244.
_PREFERRED_MTU = const(247)
_CHUNK_HEADER_BYTES = const(4)
_ATT_HEADER_BYTES = const(3)  # opcode + handle of an ATT notification
_MAX_COMMAND_BYTES = const(7)  # SEND_FROM: opcode + u32 + u16
_AUTH_TRAILER_BYTES = const(13)  # counter u8 + 12-byte tag after every command (firmware.cmdauth)
_MAX_WRITE_BYTES = const(20)  # _MAX_COMMAND_BYTES + _AUTH_TRAILER_BYTES: one ATT write at MTU 23
# gatts buffer of the control characteristic: larger than the largest write, so a too-long write
# arrives whole (and is refused) instead of being truncated into something else. OTA_DATA fills
# a whole ATT write at MTU 247 (244 bytes), hence 256.
_CONTROL_BUFFER_BYTES = const(256)
# OTA_DATA payload at MTU 247: 244 - opcode - offset u32 - _AUTH_TRAILER_BYTES
_OTA_MAX_DATA_BYTES = const(226)
_MAX_BOARD_NAME_BYTES = const(32)
_NONCE_BYTES = const(16)
_INFO_FIXED_BYTES = const(94)
_MAX_INFO_BYTES = const(126)  # _INFO_FIXED_BYTES + _MAX_BOARD_NAME_BYTES
_END_FRAME_BYTES = const(10)
_STATUS_FRAME_BYTES = const(7)
_ADV_BYTES = const(31)
_MAX_RECORD_BYTES = const(240)  # wire format v1 MAX_RECORD_BYTES
_MAX_CHUNKS = const(255)

_INFO_FMT = const(">B16s32sBBBIIIIIIB16sB")


class CommandError(ValueError):
    """A control write the board refuses: status is the STATUS code (1 bad command, 2 bad argument),
    opcode the command byte to echo in the STATUS frame (0 when the write was empty)."""

    def __init__(self, status, opcode, message):
        super().__init__(message)
        self.status = status
        self.opcode = opcode


def uuid_bytes_le(uuid_str):
    """Return the 16 bytes of a 128-bit UUID string in little-endian (air) order."""
    raw = bytes.fromhex(uuid_str.replace("-", ""))
    if len(raw) != 16:
        raise ValueError("not a 128-bit UUID")
    out = bytearray(16)
    for i in range(16):
        out[i] = raw[15 - i]
    return bytes(out)


def _hex(data):
    """Return the lowercase hex string of data (binascii works on every port)."""
    import binascii

    return binascii.hexlify(data).decode()


class Advertising:
    """Builds the advertising payload and the scan response of one board (31-byte legacy PDUs)."""

    def __init__(self, dev_id):
        """dev_id: the 16-byte device id; only its first 4 bytes go on air."""
        if len(dev_id) != 16:
            raise ValueError("device id must be 16 bytes")
        buf = bytearray(_ADV_BYTES)
        buf[0:3] = b"\x02\x01\x06"  # flags: LE general discoverable, BR/EDR not supported
        buf[3] = 17
        buf[4] = 0x07  # complete list of 128-bit service UUIDs
        buf[5:21] = uuid_bytes_le(_SERVICE_UUID)
        buf[21] = 9
        buf[22] = 0xFF  # manufacturer specific data
        struct.pack_into("<H", buf, 23, _COMPANY_ID)
        buf[25:29] = dev_id[0:4]
        self._buf = buf
        name = b"es-" + _hex(dev_id[0:4]).encode()
        self.scan_response = bytes([len(name) + 1, 0x09]) + name

    def payload(self, pending):
        """Return the advertising payload (a bytearray reused by the next call) for pending unacked
        records (an int >= 0, saturated at 65535)."""
        if pending > 0xFFFF:
            pending = 0xFFFF
        struct.pack_into(">H", self._buf, 29, pending)
        return self._buf


class InfoEncoder:
    """Encodes the Info characteristic value into a buffer allocated once."""

    def __init__(self, dev_id, public_key, firmware_version, board_name):
        """dev_id 16 bytes, public_key 32 bytes, firmware_version (major, minor, patch) bytes,
        board_name str of at most 32 UTF-8 bytes."""
        name = board_name.encode()
        if len(name) > _MAX_BOARD_NAME_BYTES:
            raise ValueError("board name longer than 32 bytes")
        if len(dev_id) != 16:
            raise ValueError("device id must be 16 bytes")
        self._dev_id = bytes(dev_id)
        self._fw = firmware_version
        self._name = name
        self._buf = bytearray(_INFO_FIXED_BYTES + len(name))
        self._buf[_INFO_FIXED_BYTES:] = name
        self.set_public_key(public_key)

    def set_public_key(self, public_key):
        """Use public_key (32 bytes) from now on (after a key rotation); returns nothing."""
        if len(public_key) != 32:
            raise ValueError("public key must be 32 bytes")
        self._pk = bytes(public_key)

    def encode(self, depth, first_seq, last_seq, last_acked_seq, boot, time_s, flags, nonce):
        """Return the Info value (a memoryview of the internal buffer). Seqs are u32, with -1 or
        _NONE_SEQ meaning "none"; depth, boot and time_s are u32; flags bit 0 is time-synced;
        nonce the 16-byte nonce of the current connection (firmware.cmdauth)."""
        fw = self._fw
        struct.pack_into(
            _INFO_FMT, self._buf, 0, _INFO_VERSION, self._dev_id, self._pk, fw[0], fw[1], fw[2],
            depth, _u32_seq(first_seq), _u32_seq(last_seq), _u32_seq(last_acked_seq),
            boot & 0xFFFFFFFF, time_s & 0xFFFFFFFF, flags, nonce, len(self._name),
        )  # fmt: skip
        return memoryview(self._buf)


def _u32_seq(seq):
    """Return seq as the u32 the wire carries (None or a negative seq becomes _NONE_SEQ)."""
    if seq is None or seq < 0:
        return _NONE_SEQ
    return seq


def chunk_data_bytes(mtu):
    """Return the record bytes one CHUNK carries at ATT MTU mtu (precondition: mtu >= 23)."""
    if mtu < _MIN_MTU:
        raise ValueError("ATT MTU below 23")
    return mtu - _ATT_HEADER_BYTES - _CHUNK_HEADER_BYTES


def chunk_count(record_len, mtu):
    """Return how many CHUNK frames carry a record of record_len bytes at ATT MTU mtu."""
    per = chunk_data_bytes(mtu)
    return (record_len + per - 1) // per


class Framer:
    """Encodes CHUNK, END and STATUS frames into buffers allocated once (no per-frame garbage)."""

    def __init__(self):
        self._chunk = bytearray(_CHUNK_HEADER_BYTES + _MAX_RECORD_BYTES)
        self._chunk_mv = memoryview(self._chunk)
        self._end = bytearray(_END_FRAME_BYTES)
        self._status = bytearray(_STATUS_FRAME_BYTES)

    def chunks(self, record, msg, mtu):
        """Yield the CHUNK frames of record (bytes-like, 1..240 bytes) at ATT MTU mtu (>= 23).

        Each frame is a memoryview of one shared buffer: send it before asking for the next.
        msg is the record counter modulo 256. Raises ValueError on a bad size or MTU.
        """
        n = len(record)
        if n == 0 or n > _MAX_RECORD_BYTES:
            raise ValueError("record size outside 1..240")
        per = chunk_data_bytes(mtu)
        if per > _MAX_RECORD_BYTES:
            per = _MAX_RECORD_BYTES
        count = (n + per - 1) // per
        if count > _MAX_CHUNKS:
            raise ValueError("record needs more than 255 chunks")
        buf = self._chunk
        mv = self._chunk_mv
        src = memoryview(record)
        off = 0
        for i in range(count):
            take = n - off
            if take > per:
                take = per
            buf[0] = _FRAME_CHUNK
            buf[1] = msg & 0xFF
            buf[2] = i
            buf[3] = count
            mv[_CHUNK_HEADER_BYTES : _CHUNK_HEADER_BYTES + take] = src[off : off + take]
            off += take
            yield mv[: _CHUNK_HEADER_BYTES + take]

    def end(self, reason, last_sent_seq, journal_depth):
        """Return the END frame (memoryview of a shared buffer); last_sent_seq -1/None = none."""
        struct.pack_into(
            ">BBII", self._end, 0, _FRAME_END, reason, _u32_seq(last_sent_seq), journal_depth
        )
        return memoryview(self._end)

    def status(self, command, status, arg):
        """Return the STATUS frame (memoryview of a shared buffer) answering opcode command."""
        struct.pack_into(
            ">BBBI", self._status, 0, _FRAME_STATUS, command & 0xFF, status, arg & 0xFFFFFFFF
        )
        return memoryview(self._status)


def parse_command(data):
    """Return (opcode, arg1, arg2) of a control write (bytes-like).

    SEND_FROM -> (1, seq, max_records); ACK -> (2, seq, 0); TIME_SYNC -> (3, unix_time_s, 0);
    STOP -> (4, 0, 0). Raises CommandError(status 1) for an empty write, an unknown opcode or a
    wrong length. Range checks that need the board's state (status 2) are the caller's.
    """
    n = len(data)
    if n == 0:
        raise CommandError(_ST_BAD_COMMAND, 0, "empty command")
    op = data[0]
    if op == _CMD_SEND_FROM:
        if n != 7:
            raise CommandError(_ST_BAD_COMMAND, op, "SEND_FROM needs 7 bytes")
        seq, limit = struct.unpack_from(">IH", data, 1)
        return op, seq, limit
    if op in (_CMD_ACK, _CMD_TIME_SYNC):
        if n != 5:
            raise CommandError(_ST_BAD_COMMAND, op, "command needs 5 bytes")
        return op, struct.unpack_from(">I", data, 1)[0], 0
    if op == _CMD_STOP:
        if n != 1:
            raise CommandError(_ST_BAD_COMMAND, op, "STOP takes no argument")
        return op, 0, 0
    raise CommandError(_ST_BAD_COMMAND, op, "unknown opcode")
