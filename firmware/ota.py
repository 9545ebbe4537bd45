"""Signed over-the-air update of the application: release check, staging, atomic slot switch, trial boot, rollback.

docs/ota.md is the reference. In short: a release is a manifest (version, min_version, files with
size and sha256) signed with Ed25519 by the release key the board learned at provisioning
(install_release_key). The gateway sends it as one byte stream (OTA_BEGIN / OTA_DATA / OTA_END,
docs/ble-protocol.md) that the board stages into the slot it does not run ("ota/a" or "ota/b"),
appending chunk by chunk, so a disconnect or a power cut resumes from what reached flash. The
signature, the version rules and every file hash are checked before the switch; the switch is one
rename of the boot pointer "ota/boot". The new version boots in trial: boot_select counts its boots,
mark_good (the first acked upload) keeps it, and MAX_TRIAL_BOOTS boots without one, or an import
failure, roll back to the previous slot (or the factory image). The boot side (boot_select,
boot_app, import_failed and the pointer they read) lives in firmware/otaboot.py, so that main.py
imports only that small module at every power-on, and runs from the MicroPython image's own copy:
its pointer format ("EOB1") must never change. This module re-exports it.
"""

import hashlib
import struct

from micropython import const

from firmware.fs import join
from firmware.otaboot import (  # the boot side, re-exported: ota.boot_app and the rest stay valid
    _rm,
    boot_app,  # noqa: F401
    boot_select,  # noqa: F401
    import_failed,  # noqa: F401
    read_pointer,
    roll_back,  # noqa: F401
    write_pointer,
)

# The boot side's constants (private in firmware/otaboot.py, which every power-on imports: no
# names in RAM there), published here; tests/firmware/test_ota.py pins them to otaboot's.
MAX_TRIAL_BOOTS = const(3)
OTA_DIR = "ota"
POINTER = "ota/boot"
SLOTS = ("a", "b")
FACTORY = "-"

DOMAIN = b"edgeseal/release/v1\n"  # prefixed to the manifest bytes before signing
STREAM_MAGIC = b"ESR1"  # first 4 bytes of the stream: magic, manifest_len u16, manifest, signature
HEAD_FIXED_BYTES = const(6)
SIG_BYTES = const(64)
RELEASE_ID_BYTES = const(16)  # sha256(manifest)[0:16]: names the release in OTA_BEGIN
# why 8 KB: 40 files of ~120 bytes of JSON each fit; the manifest is the only thing held in RAM
# whole (it is what the signature covers), so it is bounded well below the heap.
MAX_MANIFEST_BYTES = const(8192)
MAX_FILES = const(64)  # the firmware has ~30 modules
MAX_PATH_BYTES = const(64)
MAX_FILE_BYTES = const(262144)  # no single module is near this; bounds a hostile manifest
_HASH_CHUNK_BYTES = const(256)  # read buffer of the streaming file hash

_STAGE = "ota/stage"
_STAGE_TMP = "ota/stage.tmp"
_STAGE_MAGIC = b"EOS1"
_STAGE_FMT = ">4sIH16sB"  # magic, total_len, head_len, release_id, slot letter
HEAD_NAME = "release.bin"  # the stream head (magic, manifest, signature), kept in the slot

REL_KEY_NVS = "rel_key"  # NVS blob: "RK01" || key || crc32 (like keystore's link key)
REL_KEY_FILE = "relkey.bin"  # the same blob on boards without NVS (host tools, simulated fleet)
_REL_MAGIC = b"RK01"
FLOOR_NVS = "ota_floor"  # NVS i32: the highest version this board ever marked good

# STATUS codes the OTA commands answer with (firmware.protocol ST_*), and the reject reasons
ST_OK = const(0)
ST_BAD_COMMAND = const(1)
ST_BAD_ARGUMENT = const(2)
ST_BUSY = const(3)
ST_REJECTED = const(5)
R_FORMAT = const(1)  # malformed head or manifest, or lengths that do not add up
R_SIGNATURE = const(2)  # the signature does not verify under the release key
R_NO_KEY = const(3)  # no release key installed: the board takes no update
R_DOWNGRADE = const(4)  # version not above the running one or below the anti-rollback floor
R_MIN_VERSION = const(5)  # the running version is below the release's min_version
R_INCOMPLETE = const(6)  # OTA_END before every file was staged and verified


def pack_version(v):
    """Return the u24 version int of a (major, minor, patch) tuple, the order of Info's bytes."""
    return (v[0] << 16) | (v[1] << 8) | v[2]


def running_version(fs, factory_version):
    """Return the u24 version the board runs: the pointer's, or factory_version (a u24 int)."""
    p = read_pointer(fs)
    return factory_version if p is None else p[1]


def mark_good(fs, nvs):
    """Confirm a trial version (its first upload was acked) and raise the anti-rollback floor to
    it; returns True when this call confirmed it (False: nothing in trial)."""
    p = read_pointer(fs)
    if p is None or p[2] != "trial":
        return False
    write_pointer(fs, p[0], p[1], "good", 0, p[4], p[5])
    if nvs is not None and p[1] > get_floor(nvs):
        nvs.set_i32(FLOOR_NVS, p[1])
        nvs.commit()
    return True


def get_floor(nvs):
    """Return the anti-rollback floor (0 when none or no NVS)."""
    if nvs is None:
        return 0
    try:
        return nvs.get_i32(FLOOR_NVS)
    except OSError:
        return 0


# ---- the release key -----------------------------------------------------------------------------
def install_release_key(fs, nvs, key, path=REL_KEY_FILE):
    """Store key (the 32-byte Ed25519 public key releases are signed with), replacing any earlier
    one; returns once it reads back (raises ValueError if not). Provisioning runs it, with the
    link key. nvs: esp32.NVS("edgeseal"), or None for the file at path on fs. The stored form
    is firmware.keystore's (magic "RK01", key, CRC-32)."""
    from firmware import keystore

    try:
        keystore.install_secret(fs, nvs, key, path, REL_KEY_NVS, _REL_MAGIC, "release key")
    except keystore.KeyCorrupt as e:
        raise ValueError(str(e)) from None


def load_release_key(fs, nvs, path=REL_KEY_FILE):
    """Return the installed release key, or None (none, or a damaged one: no update is taken)."""
    from firmware import keystore

    try:
        return keystore.load_secret(fs, nvs, path, REL_KEY_NVS, _REL_MAGIC, "release key file")
    except (keystore.KeyCorrupt, OSError):
        return None


# ---- the manifest --------------------------------------------------------------------------------
def _path_ok(p):
    """Return True for a manifest path the board may write: under firmware/, no '..', plain names."""
    if not isinstance(p, str) or len(p) > MAX_PATH_BYTES or not p.startswith("firmware/"):
        return False
    for part in p.split("/"):
        if part in ("", ".", ".."):
            return False
        for c in part:
            if not (c.isalpha() or c.isdigit() or c in "_-."):
                return False
    return True


def parse_manifest(manifest):
    """Return (version, min_version, files) of manifest bytes (canonical JSON, docs/ota.md), files
    a list of (path, size, sha256 bytes); raises ValueError when it is not a valid manifest."""
    import binascii
    import json

    try:
        m = json.loads(manifest)
        version = m["version"]
        min_version = m["min_version"]
        entries = m["files"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("manifest") from None
    if not isinstance(version, int) or not isinstance(min_version, int):
        raise ValueError("version")
    if not 0 < version < 0x1000000 or not 0 <= min_version <= version:
        raise ValueError("version range")
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_FILES:
        raise ValueError("files")
    files = []
    seen = set()
    for e in entries:
        try:
            path, size, digest = e["path"], e["size"], binascii.unhexlify(e["sha256"])
        except (ValueError, KeyError, TypeError):
            raise ValueError("file entry") from None
        if not _path_ok(path) or path in seen or not isinstance(size, int):
            raise ValueError("file path")
        if not 0 <= size <= MAX_FILE_BYTES or len(digest) != 32:
            raise ValueError("file size or hash")
        seen.add(path)
        files.append((path, size, digest))
    return version, min_version, files


def check_release(head, key, running, floor):
    """Check a complete stream head (magic, manifest_len, manifest, signature) against the release
    key and the version rules; return (0, parsed manifest) or (reason R_*, None).

    Rules (docs/ota.md): Ed25519 over DOMAIN || manifest (RFC 8032 verify, firmware.ed25519);
    version > running and version >= floor (anti-rollback); running >= min_version.
    """
    if key is None:
        return R_NO_KEY, None
    if len(head) < HEAD_FIXED_BYTES + SIG_BYTES or bytes(head[0:4]) != STREAM_MAGIC:
        return R_FORMAT, None
    m_len = struct.unpack(">H", bytes(head[4:6]))[0]
    if len(head) != HEAD_FIXED_BYTES + m_len + SIG_BYTES or m_len > MAX_MANIFEST_BYTES:
        return R_FORMAT, None
    manifest = bytes(head[HEAD_FIXED_BYTES : HEAD_FIXED_BYTES + m_len])
    from firmware.ed25519 import verify

    if not verify(key, DOMAIN + manifest, bytes(head[HEAD_FIXED_BYTES + m_len :])):
        return R_SIGNATURE, None
    try:
        parsed = parse_manifest(manifest)
    except ValueError:
        return R_FORMAT, None
    if parsed[0] <= running or parsed[0] < floor:
        return R_DOWNGRADE, None
    if running < parsed[1]:
        return R_MIN_VERSION, None
    return 0, parsed


def file_sha256(fs, path, buf):
    """Return the sha256 digest of the file at path, read through buf (a bytearray); None when
    the file cannot be read."""
    h = hashlib.sha256()
    mv = memoryview(buf)
    try:
        f = fs.open(path, "rb")
    except OSError:
        return None
    try:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    finally:
        f.close()
    return h.digest()


def _size(fs, path):
    try:
        return fs.size(path)
    except OSError:
        return -1


def clear_tree(fs, d):
    """Remove every file under directory d (directories stay, empty); returns nothing."""
    try:
        names = fs.listdir(d)
    except OSError:
        return
    for name in names:
        p = join(d, name)
        try:
            fs.listdir(p)
        except OSError:
            _rm(fs, p)
            continue
        clear_tree(fs, p)


def _mkdirs(fs, path):
    """Create every parent directory of the file at path; returns nothing."""
    i = path.find("/")
    while i >= 0:
        fs.mkdir(path[:i])
        i = path.find("/", i + 1)


def _append(fs, path, data):
    """Append data to the file at path and close it (so it is on flash); returns nothing."""
    f = fs.open(path, "ab")
    try:
        f.write(data)
    finally:
        f.close()


# ---- the receiver --------------------------------------------------------------------------------
class Receiver:
    """The board's side of OTA_BEGIN / OTA_DATA / OTA_END (docs/ota.md): stages a release stream
    into the idle slot and switches to it. Every method returns (status, arg) for the STATUS frame.

    fs: firmware.fs interface; nvs: esp32.NVS or None (release key file, no floor);
    factory_version: the image's own version (u24, pack_version(FIRMWARE_VERSION)).
    switched: True once OTA_END switched; the caller then resets the board.
    """

    def __init__(self, fs, nvs, factory_version):
        self._fs = fs
        self._nvs = nvs
        self._factory = factory_version
        self._buf = bytearray(_HASH_CHUNK_BYTES)
        self._reset()
        self.switched = False
        self.on_switch = None
        self.errors = 0

    def _reset(self):
        self._total = 0
        self._head_len = 0
        self._rid = b""
        self._slot = None
        self._off = -1  # the next stream offset expected; -1: no OTA_BEGIN on this connection
        self._files = []  # the verified manifest's files, once the head is in
        self._head_ok = False  # the head is staged and verified
        self._version = 0
        self._next = 0  # files[0:_next] are staged and verified

    def session_end(self):
        """The connection ended: a new one must send OTA_BEGIN again; returns nothing."""
        self._off = -1

    def _head_path(self):
        return join(join(OTA_DIR, self._slot), HEAD_NAME)

    def _file_path(self, i):
        return join(join(OTA_DIR, self._slot), self._files[i][0])

    def begin(self, total_len, head_len, rid):
        """OTA_BEGIN: start or resume the release named rid; returns (ST_OK, offset to send from),
        (ST_BUSY, 0) while a trial version is unconfirmed (its fallback slot must stay), or
        (ST_BAD_ARGUMENT, 0) for impossible lengths."""
        if head_len < HEAD_FIXED_BYTES + SIG_BYTES or head_len > total_len:
            return ST_BAD_ARGUMENT, 0
        fs = self._fs
        p = read_pointer(fs)
        if p is not None and p[2] == "trial":
            return ST_BUSY, 0
        slot = "a" if p is None or p[0] == "b" else "b"
        st = self._read_stage()
        self._reset()
        self.switched = False
        self._total, self._head_len, self._rid, self._slot = total_len, head_len, bytes(rid), slot
        if st != (total_len, head_len, bytes(rid), slot):
            fs.mkdir(OTA_DIR)
            _rm(fs, _STAGE)  # first: a cut below leaves no stage record naming a half-cleared slot
            fs.mkdir(join(OTA_DIR, slot))
            clear_tree(fs, join(OTA_DIR, slot))
            f = fs.open(_STAGE_TMP, "wb")
            try:
                f.write(struct.pack(_STAGE_FMT, _STAGE_MAGIC, total_len, head_len, rid, ord(slot)))
                f.flush()
            finally:
                f.close()
            fs.rename(_STAGE_TMP, _STAGE)
            self._off = 0
            return ST_OK, 0
        return self._resume()

    def _read_stage(self):
        try:
            f = self._fs.open(_STAGE, "rb")
        except OSError:
            return None
        try:
            raw = f.read(32)
        finally:
            f.close()
        if len(raw) != struct.calcsize(_STAGE_FMT):
            return None
        magic, total, head, rid, slot = struct.unpack(_STAGE_FMT, raw)
        if magic != _STAGE_MAGIC:
            return None
        return (total, head, rid, chr(slot))

    def _resume(self):
        """Find how much of the staged release is on flash and sound; returns (status, offset)."""
        fs = self._fs
        hp = self._head_path()
        n = _size(fs, hp)
        if n < self._head_len:
            self._off = max(n, 0)
            return ST_OK, self._off
        if n > self._head_len:
            _rm(fs, hp)
            self._off = 0
            return ST_OK, 0
        st, arg = self._head_done()
        if st != ST_OK:
            return st, arg
        base = self._head_len
        for i in range(len(self._files)):
            size = self._files[i][1]
            path = self._file_path(i)
            n = _size(fs, path)
            if n == size and file_sha256(fs, path, self._buf) == self._files[i][2]:
                base += size
                self._next = i + 1
                continue
            if n < 0 or n >= size:  # missing, or complete but damaged (a torn write): again
                _rm(fs, path)
                n = 0
            self._off = base + n
            return ST_OK, self._off
        self._off = base
        return ST_OK, base

    def _head_done(self):
        """The head is staged: check it (rid, signature, versions, lengths); returns (status, arg)
        with ST_OK and the offset after it, else the head is removed."""
        fs = self._fs
        hp = self._head_path()
        f = fs.open(hp, "rb")
        try:
            head = f.read(self._head_len)
        finally:
            f.close()
        m_len = self._head_len - HEAD_FIXED_BYTES - SIG_BYTES
        manifest = head[HEAD_FIXED_BYTES : HEAD_FIXED_BYTES + m_len]
        if hashlib.sha256(manifest).digest()[:RELEASE_ID_BYTES] != self._rid:
            _rm(fs, hp)  # not what OTA_BEGIN named: torn on flash or garbled; send it again
            self._off = 0
            return ST_BAD_ARGUMENT, 0
        running = running_version(fs, self._factory)
        key = load_release_key(fs, self._nvs)
        reason, parsed = check_release(head, key, running, get_floor(self._nvs))
        head = manifest = None
        if reason == 0 and parsed is not None:
            total = self._head_len
            for _p, size, _d in parsed[2]:
                total += size
            if total != self._total:
                reason = R_FORMAT
        if reason or parsed is None:
            self._reject()
            return ST_REJECTED, reason
        self._version = parsed[0]
        self._files = parsed[2]
        self._head_ok = True
        self._next = 0
        self._off = self._head_len
        return ST_OK, self._off

    def _reject(self):
        """Drop the staged release (it can never be installed); returns nothing."""
        _rm(self._fs, _STAGE)
        clear_tree(self._fs, join(OTA_DIR, self._slot))
        self._reset()

    def data(self, offset, chunk):
        """OTA_DATA: append chunk (bytes-like) at stream offset; returns (ST_OK, next offset),
        (ST_BAD_ARGUMENT, expected offset) when offset is not the expected one or a file failed
        its hash (the sender resumes from arg), (ST_REJECTED, reason) when the release is refused
        (the stage is dropped), (ST_BUSY, 0) without an OTA_BEGIN on this connection."""
        if self._off < 0:
            return ST_BUSY, 0
        if offset != self._off or offset + len(chunk) > self._total:
            return ST_BAD_ARGUMENT, self._off
        fs = self._fs
        mv = memoryview(chunk)
        while len(mv):
            if not self._head_ok:  # the head
                take = min(len(mv), self._head_len - self._off)
                _append(fs, self._head_path(), mv[:take])
                self._off += take
                mv = mv[take:]
                if self._off == self._head_len:
                    st, arg = self._head_done()
                    if st != ST_OK:
                        return st, arg
                continue
            i = self._next
            if i >= len(self._files):
                return ST_BAD_ARGUMENT, self._off
            start = self._file_start(i)
            size = self._files[i][1]
            path = self._file_path(i)
            if self._off == start:
                _mkdirs(fs, path)
                _rm(fs, path)
            take = min(len(mv), start + size - self._off)
            if take:
                _append(fs, path, mv[:take])
            else:  # an empty file
                fs.open(path, "wb").close()
            self._off += take
            mv = mv[take:]
            if self._off == start + size:
                if file_sha256(fs, path, self._buf) != self._files[i][2]:
                    _rm(fs, path)
                    self._off = start
                    return ST_BAD_ARGUMENT, start
                self._next = i + 1
        return ST_OK, self._off

    def _file_start(self, i):
        off = self._head_len
        for j in range(i):
            off += self._files[j][1]
        return off

    def end(self):
        """OTA_END: switch to the staged release when it is complete (every file verified);
        returns (ST_OK, version) and sets switched, or (ST_REJECTED, R_INCOMPLETE)."""
        if self._off < 0 or not self._head_ok:
            return ST_REJECTED, R_INCOMPLETE
        # a file staged on an earlier connection and verified in _resume counts; an empty
        # trailing file may still be missing (data() never ran for it)
        fs = self._fs
        while self._next < len(self._files) and self._files[self._next][1] == 0:
            path = self._file_path(self._next)
            _mkdirs(fs, path)
            fs.open(path, "wb").close()
            self._next += 1
        if self._next != len(self._files) or self._off != self._total:
            return ST_REJECTED, R_INCOMPLETE
        p = read_pointer(fs)
        if p is None:
            prev, prev_version = FACTORY, self._factory
        else:
            prev, prev_version = p[0], p[1]
        write_pointer(fs, self._slot, self._version, "trial", 0, prev, prev_version)
        _rm(fs, _STAGE)  # after the switch: a cut before it leaves a stage that resumes at the end
        version = self._version
        self._reset()
        self.switched = True
        return ST_OK, version

    def uploaded(self):
        """An upload of this version was acked: confirm a trial version (mark_good); returns True
        when it confirmed one. Cheap when there is nothing to confirm (one pointer read). A flash
        error is counted in errors and tried again at the next ack."""
        try:
            return mark_good(self._fs, self._nvs)
        except Exception:
            self.errors += 1
            return False

    def restart(self):
        """Boot into the switched version: on_switch() when set (tests, the simulated fleet), else
        machine.reset(); returns only from on_switch."""
        if self.on_switch is not None:
            self.on_switch()
            return
        import machine

        machine.reset()

    def command(self, op, cmd):
        """Apply one authenticated OTA command (cmd: opcode and arguments, without the trailer);
        returns (status, arg). Raises ValueError on a wrong length (the caller answers STATUS 1)."""
        n = len(cmd)
        if op == OP_BEGIN:
            if n != 23:
                raise ValueError("OTA_BEGIN needs 23 bytes")
            total, head = struct.unpack_from(">IH", cmd, 1)
            return self.begin(total, head, bytes(cmd[7:23]))
        if op == OP_DATA:
            if n < 6:
                raise ValueError("OTA_DATA needs data")
            return self.data(struct.unpack_from(">I", cmd, 1)[0], memoryview(cmd)[5:])
        if n != 1:
            raise ValueError("OTA_END takes no argument")
        return self.end()


OP_BEGIN = const(0x05)
OP_DATA = const(0x06)
OP_END = const(0x07)


# ---- the peripheral's side (firmware.peripheral imports these once OTA starts) -------------------
# After OTA_END switched slots: time for the STATUS notification to leave before the reset.
OTA_RESET_DELAY_MS = const(300)


def receiver_for(ota_args, firmware_version):
    """Return a Receiver over ota_args = (fs, nvs) for a board running firmware_version (major,
    minor, patch); raise ValueError when ota_args is None (the Peripheral was given no storage)."""
    if ota_args is None:
        raise ValueError("no OTA storage given")
    return Receiver(ota_args[0], ota_args[1], pack_version(firmware_version))


async def serve_command(p, cmd):
    """Apply an authenticated OTA command for the firmware.peripheral.Peripheral p (Receiver.command)
    and answer it with STATUS; after a switch, stop serving and restart into the new version.
    cmd: opcode and arguments, without the trailer. Returns nothing."""
    op = cmd[0]
    try:
        rx = p.ota_receiver()
        status, arg = rx.command(op, cmd)
    except ValueError:
        p.bad_commands += 1
        await p._status(op, ST_BAD_COMMAND, 0)
        return
    except Exception:  # flash trouble: nothing confirmed, the gateway resumes later
        p.errors += 1
        await p._status(op, ST_BUSY, 0)
        return
    await p._status(op, status, arg)
    if rx.switched:
        await p._clock.sleep_ms(OTA_RESET_DELAY_MS)
        p.stop()
        rx.restart()
