"""Per-device record sequence counter and boot counter that never repeat, even across power cuts."""

import struct

from micropython import const

from firmware.crc32 import crc32
from firmware.fs import join

# Seqs are reserved ahead in blocks: one flash write per _SEQ_BLOCK readings (plus one per boot).
# Bigger blocks wear the flash less but skip up to _SEQ_BLOCK - 1 seqs at every reboot (the gateway
# sees a gap, explained by the boot counter change). 32 at one reading every 10 s is one small write
# every ~5 min, which LittleFS's wear levelling spreads over the partition; gaps stay small.
_SEQ_BLOCK = const(32)
_SEQ_LIMIT = const(0x100000000)  # seqs are u32 on the wire: 0 .. 2**32 - 1

_SLOT_BYTES = const(20)
_BLOB_BYTES = const(64)  # what a KV get() returns at most (a slot is _SLOT_BYTES)
_MAGIC = const(b"SQ01")
_KEYS = const(("seq_a", "seq_b"))


class SeqExhausted(Exception):
    """Every u32 sequence number has been handed out; the device needs a new identity."""


class FileKV:
    """Key-value store of small blobs, one file per key (works on LittleFS and on the simulated flash).

    put() is not atomic by itself (a cut can leave the file empty or torn); callers that need
    atomicity keep two alternating keys with a CRC, like SeqCounter does.
    """

    def __init__(self, fs, directory="state"):
        self._fs = fs
        self._dir = directory
        if directory:
            fs.mkdir(directory)

    def get(self, key):
        """Return the bytes stored under key, or None when there are none."""
        path = join(self._dir, key)
        try:
            f = self._fs.open(path, "rb")
        except OSError:
            return None
        try:
            return f.read(_BLOB_BYTES)
        finally:
            f.close()

    def put(self, key, value):
        """Store value (at most 64 bytes) under key; returns once flushed to the filesystem."""
        f = self._fs.open(join(self._dir, key), "wb")
        try:
            f.write(value)
            f.flush()
        finally:
            f.close()


class NvsKV:
    """Key-value store of small blobs in the ESP32's NVS (esp32.NVS, atomic per set_blob + commit).

    nvs: an esp32.NVS object (main.py passes esp32.NVS("edgeseal") to app.build_board), or a
    namespace name to open one with (imports esp32: only on the board, or with a stand-in module).
    """

    def __init__(self, nvs):
        if isinstance(nvs, str):
            import esp32  # only on the board

            nvs = esp32.NVS(nvs)
        self._nvs = nvs
        self._buf = bytearray(_BLOB_BYTES)

    def get(self, key):
        """Return the bytes stored under key, or None when there are none."""
        try:
            n = self._nvs.get_blob(key, self._buf)
        except OSError:
            return None
        return bytes(self._buf[:n])

    def put(self, key, value):
        """Store value (at most 64 bytes) under key and commit (durable when this returns)."""
        self._nvs.set_blob(key, value)
        self._nvs.commit()


def _pack(gen, limit, boot):
    """Return one slot: magic, generation, reserved limit (exclusive), boot count, CRC-32."""
    body = _MAGIC + struct.pack(">III", gen, limit & 0xFFFFFFFF, boot)
    return body + struct.pack(">I", crc32(body))


def _unpack(blob):
    """Return (gen, limit, boot) from a slot, or None when it is missing, short or corrupt."""
    if blob is None or len(blob) != _SLOT_BYTES or blob[:4] != _MAGIC:
        return None
    if struct.unpack(">I", blob[16:20])[0] != crc32(blob[:16]):
        return None
    gen, limit, boot = struct.unpack(">III", blob[4:16])
    if limit == 0 and gen > 0:
        limit = _SEQ_LIMIT  # stored as 0 once the whole u32 range is reserved
    return gen, limit, boot


class SeqCounter:
    """Hands out strictly increasing u32 seqs; after any power cut the next seq is greater than every
    seq handed out before it. State lives in two alternating KV slots (generation + CRC); a cut can
    only tear the slot being written, so the other one still holds the previous reservation.

    kv: FileKV or NvsKV. floor: a seq known to be used already (the journal's last seq), so a lost
    store can never make seqs repeat. block: seqs reserved per flash write (_SEQ_BLOCK).
    Constructing the counter counts a boot (boot_count) and persists it with a first reservation.
    """

    def __init__(self, kv, floor=0, block=_SEQ_BLOCK):
        if block < 1:
            raise ValueError("block must be >= 1")
        self._kv = kv
        self._block = block
        state = None
        for key in _KEYS:
            s = _unpack(kv.get(key))
            if s is not None and (state is None or s[0] > state[0]):
                state = s
        if state is None:
            gen, limit, boot = 0, 1, 0  # first boot: seqs start at 1
        else:
            gen, limit, boot = state
        self._gen = gen
        self._next = max(limit, floor + 1)
        self._limit = self._next
        self.boot_count = (boot + 1) & 0xFFFFFFFF
        self._reserve()

    def _reserve(self):
        """Persist a new reservation block starting at self._next; returns once it is durable."""
        if self._next >= _SEQ_LIMIT:
            raise SeqExhausted("u32 seq space exhausted")
        limit = min(self._next + self._block, _SEQ_LIMIT)
        gen = self._gen + 1
        self._kv.put(_KEYS[gen & 1], _pack(gen, limit, self.boot_count))
        self._gen = gen
        self._limit = limit

    def next(self):
        """Return the next seq (reserving a new block on flash first when the current one is used up)."""
        if self._next >= self._limit:
            self._reserve()
        seq = self._next
        self._next = seq + 1
        return seq

    def peek(self):
        """Return the seq next() would return, without handing it out."""
        return self._next


# The chain mark: one small blob beside the seq slots (NVS on a board), written before the first
# record ever journaled and after every chain segment the board starts. It is what tells, at boot,
# an empty journal of a new board from a journal that lost its records (docs/wire-format.md, Chain
# segments): layout magic "CH01", u32 journal corrupt entries already answered by a segment, CRC-32.
_MARK_KEY = const("chain")
_MARK_MAGIC = const(b"CH01")
_MARK_BYTES = const(12)


def load_mark(kv):
    """Return the corrupt-entry count the chain mark holds, -1 when no mark was ever written.

    A mark that exists but fails its check (a torn write on a FileKV) counts as written with
    count 0: a spurious chain segment is harmless, a missing one cuts the board off.
    """
    blob = kv.get(_MARK_KEY)
    if blob is None or len(blob) == 0:
        return -1
    if (
        len(blob) != _MARK_BYTES
        or blob[:4] != _MARK_MAGIC
        or struct.unpack(">I", blob[8:12])[0] != crc32(blob[:8])
    ):
        return 0
    return struct.unpack(">I", blob[4:8])[0]


def store_mark(kv, corrupt_seen):
    """Write the chain mark with corrupt_seen (u32); returns once the KV says it is durable."""
    body = _MARK_MAGIC + struct.pack(">I", corrupt_seen & 0xFFFFFFFF)
    kv.put(_MARK_KEY, body + struct.pack(">I", crc32(body)))
