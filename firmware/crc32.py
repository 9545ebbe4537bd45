"""CRC-32 (IEEE 802.3, the zlib/binascii polynomial) for the journal and the small state files."""

try:
    from binascii import crc32 as _native_crc32
except ImportError:  # MicroPython builds without MICROPY_PY_BINASCII_CRC32
    _native_crc32 = None

from array import array

# The table is split into 16-bit halves so that every intermediate value stays a small int on
# MicroPython (small ints are 31-bit on the ESP32; a 32-bit table would allocate a long int per byte).
# Built on first use (1 KB), so boards whose binascii has crc32 never spend the RAM.
_tables = None


def _make_tables():
    """Return (lo, hi): the two 256-entry half tables of the reflected polynomial 0xEDB88320."""
    lo = array("H", bytes(512))
    hi = array("H", bytes(512))
    for i in range(256):
        c_lo = i
        c_hi = 0
        for _ in range(8):
            if c_lo & 1:
                c_lo = ((c_lo >> 1) | ((c_hi & 1) << 15)) ^ 0x8320
                c_hi = (c_hi >> 1) ^ 0xEDB8
            else:
                c_lo = (c_lo >> 1) | ((c_hi & 1) << 15)
                c_hi = c_hi >> 1
        lo[i] = c_lo
        hi[i] = c_hi
    return lo, hi


def crc32_table(data, crc=0):
    """Return the CRC-32 of data (any buffer) continued from crc, computed with the 256-entry table."""
    global _tables
    if _tables is None:
        _tables = _make_tables()
    lo_t, hi_t = _tables
    crc ^= 0xFFFFFFFF
    lo = crc & 0xFFFF
    hi = crc >> 16
    for b in data:
        i = (lo ^ b) & 0xFF
        lo = ((lo >> 8) | ((hi & 0xFF) << 8)) ^ lo_t[i]
        hi = (hi >> 8) ^ hi_t[i]
    return ((hi << 16) | lo) ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """Return the CRC-32 of data continued from crc: binascii.crc32 when present, else the table."""
    if _native_crc32 is not None:
        return _native_crc32(data, crc)  # unsigned on MicroPython and on CPython 3
    return crc32_table(data, crc)
