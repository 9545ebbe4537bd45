"""Device seed store: 32 random bytes made once at first boot, kept with a CRC, written new-then-renamed."""

import struct

from micropython import const

from firmware.crc32 import crc32

SEED_BYTES = const(32)
_MAGIC = b"EK01"
_FILE_BYTES = const(40)  # magic(4) seed(32) crc32(4)


class KeyCorrupt(Exception):
    """The stored seed fails its check: never replaced silently (it is the device's identity)."""


class KeyStore:
    """Persists the device's Ed25519 seed. Hand what load_or_create() returns to the signer only:
    never log it, never send it, never keep other references to it.

    A cut while the seed is first written leaves at most a stale temporary file, which the next
    boot deletes before making a fresh seed: a seed is returned only after its file was renamed
    into place and read back intact, so a half-written seed is never used.
    """

    def __init__(self, fs, path="key.bin"):
        self._fs = fs
        self._path = path
        self._tmp = path + ".tmp"

    def exists(self):
        """Return True when a seed file is in place (valid or not)."""
        return self._fs.exists(self._path)

    def _read(self):
        """Return the seed from the file, None when there is no file; raises KeyCorrupt when bad."""
        try:
            f = self._fs.open(self._path, "rb")
        except OSError:
            return None
        try:
            blob = f.read(_FILE_BYTES + 1)
        finally:
            f.close()
        if len(blob) != _FILE_BYTES or blob[:4] != _MAGIC:
            raise KeyCorrupt("key file has the wrong size or magic")
        if struct.unpack(">I", blob[36:40])[0] != crc32(blob[:36]):
            raise KeyCorrupt("key file fails its CRC")
        return bytes(blob[4:36])

    def load_or_create(self, urandom):
        """Return the 32-byte seed, creating it first with urandom(n) -> bytes when there is none.

        Raises KeyCorrupt when a seed file exists but is damaged (needs re-provisioning by a person).
        """
        seed = self._read()
        if seed is not None:
            return seed
        if self._fs.exists(self._tmp):
            self._fs.remove(self._tmp)
        seed = bytes(urandom(SEED_BYTES))
        if len(seed) != SEED_BYTES:
            raise ValueError("urandom returned the wrong length")
        body = _MAGIC + seed
        f = self._fs.open(self._tmp, "wb")
        try:
            f.write(body + struct.pack(">I", crc32(body)))
            f.flush()
        finally:
            f.close()
        self._fs.rename(self._tmp, self._path)
        if self._read() != seed:
            raise KeyCorrupt("key file did not read back")
        return seed
