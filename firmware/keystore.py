"""Device secrets: the Ed25519 seed (32 random bytes made once at first boot) and the BLE link key
(32 bytes installed at provisioning), in NVS (a file on boards without it)."""

import struct

from micropython import const

from firmware.crc32 import crc32

SEED_BYTES = const(32)
# blob in the NVS namespace main.py opens ("edgeseal"); 15 characters at most
_NVS_KEY = const("dev_key")
_MAGIC = const(b"EK01")
_LINK_NVS_KEY = const("link_key")  # the BLE link key (docs/ble-protocol.md, Key management)
# the link key on boards without NVS (host tools, the simulated fleet)
_LINK_FILE = const("link.bin")
_LINK_MAGIC = const(b"LK01")
_BLOB_BYTES = const(40)  # magic(4) seed(32) crc32(4): the same layout in NVS and in the old file
# why: get_blob raises OSError when the buffer is too small; one spare byte detects a longer blob
_READ_BYTES = const(41)
# "No such key": ESP-IDF's ESP_ERR_NVS_NOT_FOUND (0x1102) surfaces as OSError(-0x1102) on the
# ESP32 port; the host shim (tests/shims/esp32.py) raises ENOENT. Any other OSError is a real
# failure and propagates: a read error must never be taken for "no key" (that would make a new one).
_NVS_NOT_FOUND = const((-0x1102, 2))


class KeyCorrupt(Exception):
    """The stored seed fails its check: never replaced silently (it is the device's identity)."""


def _pack(seed, magic=_MAGIC):
    """Return the 40-byte stored form of seed: magic, seed, CRC-32 (big-endian)."""
    body = magic + seed
    return body + struct.pack(">I", crc32(body))


def _read_file(fs, path, where, magic):
    """Return the 32-byte secret of the key file at path on fs, None when there is no file;
    raises KeyCorrupt when its magic, length or CRC is wrong (where names it in the message)."""
    try:
        f = fs.open(path, "rb")
    except OSError:
        return None
    try:
        blob = f.read(_READ_BYTES)
    finally:
        f.close()
    return _unpack(blob, where, magic)


def _unpack(blob, where, magic=_MAGIC):
    """Return the seed from a stored form; raises KeyCorrupt (naming where) when it is damaged."""
    if len(blob) != _BLOB_BYTES or blob[:4] != magic:
        raise KeyCorrupt(where + " has the wrong size or magic")
    if struct.unpack(">I", blob[36:40])[0] != crc32(blob[:36]):
        raise KeyCorrupt(where + " fails its CRC")
    return bytes(blob[4:36])


class KeyStore:
    """Persists the device's Ed25519 seed. Hand what load_or_create() returns to the signer only:
    never log it, never send it, never keep other references to it.

    nvs: an esp32.NVS object (the board: main.py passes the "edgeseal" namespace), where the seed
    lives under _NVS_KEY, not on the filesystem (ETSI EN 303 645 provision 5.4; with NVS
    encryption it is encrypted at rest, docs/production.md). A key file left by an earlier
    firmware (path on fs) is moved into NVS on the first boot of this version and then deleted.
    nvs None (host tools, the simulated fleet): the seed is the file at path, as before.

    Power cuts: NVS writes one blob atomically (set_blob + commit); the seed is returned only
    after it reads back intact. Migration writes NVS before deleting the file, so at every
    moment the flash holds the key in the file, in NVS or in both. On the file-only path a
    cut while the seed is first written leaves at most a stale temporary file, which the next
    boot deletes before making a fresh seed, so a half-written seed is never used.
    """

    def __init__(self, fs, path="key.bin", nvs=None):
        self._fs = fs
        self._path = path
        self._tmp = path + ".tmp"
        self._nvs = nvs

    def exists(self):
        """Return True when a seed is stored (valid or not), in NVS or in the file."""
        if self._nvs is not None:
            try:
                if _nvs_read(self._nvs) is not None:
                    return True
            except KeyCorrupt:
                return True
        return self._fs.exists(self._path)

    def load_or_create(self, urandom):
        """Return the 32-byte seed, creating it first with urandom(n) -> bytes when there is none.

        Precondition on the board: the radio is active (the ESP32 RNG is only pseudo-random
        before Wi-Fi or Bluetooth is on), which firmware.app.build_board ensures.
        Raises KeyCorrupt when a stored seed is damaged (needs re-provisioning by a person),
        OSError when NVS cannot be read (the caller resets and tries again; nothing is replaced).
        """
        nvs = self._nvs
        if nvs is None:
            return self._file_load_or_create(urandom)
        seed = _nvs_read(nvs)
        if seed is not None:
            self._drop_file(seed)  # a migration cut before the file was deleted
            return seed
        seed = self._read()
        if seed is None:  # first boot: no key anywhere
            self._drop_tmp()
            seed = _new_seed(urandom)
        _nvs_write(nvs, seed)  # a migrated file stays until NVS holds its seed
        self._drop_file(seed)
        return seed

    # ---- the key file ---------------------------------------------------------------------------
    def _drop_file(self, seed):
        """Delete the key file once NVS holds seed. Precondition: NVS holds seed, read back.
        A readable file with another seed raises KeyCorrupt (two identities: a person decides);
        a damaged one is deleted (NVS holds the identity)."""
        try:
            old = self._read()
        except KeyCorrupt:
            old = seed
        if old is not None:
            if old != seed:
                raise KeyCorrupt("key file and NVS hold different keys")
            self._fs.remove(self._path)
        self._drop_tmp()

    def _drop_tmp(self):
        """Delete the temporary file of an interrupted file-only first boot; returns nothing."""
        if self._fs.exists(self._tmp):
            self._fs.remove(self._tmp)

    def _read(self):
        """Return the seed from the file, None when there is no file; raises KeyCorrupt when bad."""
        return _read_file(self._fs, self._path, "key file", _MAGIC)

    def _file_load_or_create(self, urandom):
        """Return the seed of the file, creating it (tmp, flush, rename, read back) when missing."""
        seed = self._read()
        if seed is not None:
            return seed
        self._drop_tmp()
        seed = _new_seed(urandom)
        f = self._fs.open(self._tmp, "wb")
        try:
            f.write(_pack(seed))
            f.flush()
        finally:
            f.close()
        self._fs.rename(self._tmp, self._path)
        if self._read() != seed:
            raise KeyCorrupt("key file did not read back")
        return seed


def _nvs_read(nvs, key=_NVS_KEY, magic=_MAGIC):
    """Return the seed in nvs, None when there is none; raises KeyCorrupt when it is damaged."""
    buf = bytearray(_READ_BYTES)
    try:
        n = nvs.get_blob(key, buf)
    except OSError as e:
        if e.args and e.args[0] in _NVS_NOT_FOUND:
            return None
        raise
    return _unpack(memoryview(buf)[:n], "NVS " + key, magic)


def _nvs_write(nvs, seed):
    """Store seed in nvs and commit; returns once it reads back (raises KeyCorrupt if not)."""
    nvs.set_blob(_NVS_KEY, _pack(seed))
    nvs.commit()
    if _nvs_read(nvs) != seed:
        raise KeyCorrupt("NVS key did not read back")


def _new_seed(urandom):
    """Return SEED_BYTES fresh bytes from urandom; raises ValueError on a short answer."""
    seed = bytes(urandom(SEED_BYTES))
    if len(seed) != SEED_BYTES:
        raise ValueError("urandom returned the wrong length")
    return seed


# ---- the BLE link key ---------------------------------------------------------------------------
def load_secret(fs, nvs, path, nvs_key, magic, where):
    """Return the 32-byte secret stored as blob nvs_key in nvs (or, when nvs is None, in the
    file at path on fs), None when there is none. Raises KeyCorrupt when it is damaged (where
    names the file), OSError when NVS cannot be read."""
    if nvs is not None:
        return _nvs_read(nvs, nvs_key, magic)
    return _read_file(fs, path, where, magic)


def install_secret(fs, nvs, key, path, nvs_key, magic, what):
    """Store key (32 bytes) under magic as blob nvs_key in nvs (or the file at path, written
    to path.tmp and renamed), replacing any earlier one; returns once it reads back. Raises
    ValueError for a key of another length, KeyCorrupt when it does not read back."""
    if len(key) != SEED_BYTES:
        raise ValueError(what + " must be 32 bytes")
    key = bytes(key)
    if nvs is not None:
        nvs.set_blob(nvs_key, _pack(key, magic))
        nvs.commit()
    else:
        tmp = path + ".tmp"
        f = fs.open(tmp, "wb")
        try:
            f.write(_pack(key, magic))
            f.flush()
        finally:
            f.close()
        fs.rename(tmp, path)
    if load_secret(fs, nvs, path, nvs_key, magic, what + " file") != key:
        raise KeyCorrupt(what + " did not read back")


def load_link_key(fs, nvs, path=_LINK_FILE):
    """Return the 32-byte link key installed at provisioning, or None when there is none (the
    board then refuses every control command and keeps its records). nvs: the esp32.NVS of the
    "edgeseal" namespace, or None for the file at path on fs. Raises KeyCorrupt when the stored
    key is damaged, OSError when NVS cannot be read."""
    return load_secret(fs, nvs, path, _LINK_NVS_KEY, _LINK_MAGIC, "link key file")


def install_link_key(fs, nvs, key, path=_LINK_FILE):
    """Store key (32 bytes) as the link key, replacing any earlier one; returns once it reads back
    (raises KeyCorrupt if not). Provisioning runs it (tools/sim/fleet.py for virtual boards;
    docs/ble-protocol.md shows the interim one-liner for real boards)."""
    install_secret(fs, nvs, key, path, _LINK_NVS_KEY, _LINK_MAGIC, "link key")
    return True
