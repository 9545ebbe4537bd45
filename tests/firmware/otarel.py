"""Test helper: builds signed release streams as `edgeseal release` does (docs/ota.md), in plain
MicroPython-compatible Python (the firmware's own signer), for the OTA tests in the VM and CPython."""

import hashlib
import struct

from firmware import ota
from firmware.ed25519 import SigningKey

RELEASE_SEED = bytes(range(100, 132))  # the test release key's seed
OTHER_SEED = bytes(range(1, 33))
FACTORY = 0x000100  # (0, 1, 0) packed, the factory image's version in these tests


def hexs(b):
    """Return the lowercase hex of b."""
    return "".join("%02x" % x for x in b)


def manifest_json(version, min_version, files, created="2026-12-07T00:00:00Z"):
    """Return canonical JSON bytes (sorted keys, no spaces) of a release manifest; files is a list
    of (path, content bytes) or (path, size, sha256 hex)."""
    parts = []
    for f in files:
        if len(f) == 2:
            path, size, digest = f[0], len(f[1]), hexs(hashlib.sha256(f[1]).digest())
        else:
            path, size, digest = f
        parts.append('{"path":"%s","sha256":"%s","size":%d}' % (path, digest, size))
    return (
        '{"created":"%s","files":[%s],"min_version":%d,"version":%d}'
        % (created, ",".join(parts), min_version, version)
    ).encode()


def public_key(seed=RELEASE_SEED):
    """Return the release public key of seed."""
    return SigningKey(seed).public_key


def stream(files, version, min_version=0, seed=RELEASE_SEED, manifest=None, sig=None):
    """Return (stream bytes, head_len, release_id) of a release of files [(path, content)]."""
    m = manifest if manifest is not None else manifest_json(version, min_version, files)
    if sig is None:
        sig = SigningKey(seed).sign(ota.DOMAIN + m)
    head = ota.STREAM_MAGIC + struct.pack(">H", len(m)) + m + sig
    body = b"".join(f[1] for f in files)
    return head + body, len(head), hashlib.sha256(m).digest()[:16]


def app_files(tag, n=3, size=300):
    """Return n deterministic application files whose bytes depend on tag."""
    out = []
    for i in range(n):
        b = bytearray(size + 37 * i)
        x = sum(tag.encode()) + i * 7919
        for j in range(len(b)):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            b[j] = (x >> 16) & 0xFF
        name = "firmware/m%d.mpy" % i if i != 2 else "firmware/drivers/d%d.mpy" % i
        out.append((name, bytes(b)))
    return out


def send(rx, data, head_len, rid, chunk=100, start=None, stop=None):
    """Drive Receiver rx: OTA_BEGIN, OTA_DATA chunks from the offset it names up to stop (default:
    everything), then OTA_END when everything was sent. Returns the last (status, arg)."""
    st, off = rx.begin(len(data), head_len, rid)
    if st != ota.ST_OK:
        return st, off
    if start is not None:
        off = start
    end = len(data) if stop is None else stop
    while off < end:
        n = min(chunk, end - off)
        st, nxt = rx.data(off, data[off : off + n])
        if st != ota.ST_OK:
            return st, nxt
        off = nxt
    if end < len(data):
        return ota.ST_OK, off
    return rx.end()


def slot_version(fs, slot_dir):
    """Return the version of the complete release in slot_dir, None when any file is missing or
    damaged (a boot from it would run a broken application)."""
    try:
        f = fs.open(slot_dir + "/" + ota.HEAD_NAME, "rb")
    except OSError:
        return None
    try:
        head = f.read()
    finally:
        f.close()
    m_len = struct.unpack(">H", head[4:6])[0]
    version, _min, files = ota.parse_manifest(head[6 : 6 + m_len])
    buf = bytearray(64)
    for path, _size, digest in files:
        if ota.file_sha256(fs, slot_dir + "/" + path, buf) != digest:
            return None
    return version
