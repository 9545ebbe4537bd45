"""Provisioning over USB serial: the board's identity, its attestation and the link-key install.

Not part of the boot: `edgeseal board provision` / `info` (gateway/boardctl) import it through
the raw REPL, with the firmware stopped (mpremote interrupts main.py and soft-resets first).
Each entry point prints one JSON line the host parses. The key is made by the firmware's own
KeyStore, after the radio is on, exactly as the boot makes it (firmware/app.py build_board).
"""

import binascii
import hashlib
import json
import os

ATTEST_DOMAIN = b"edgeseal/v1/attest"  # separates attestations from records and commands
LINK_ID_DOMAIN = b"edgeseal/v1/link-id"  # a public fingerprint of the link key (never the key)
FIRMWARE_DIR = "firmware"
ENTRY_FILE = "main.py"
_DIR_BIT = 0x4000  # S_IFDIR in os.stat modes
_CHUNK_BYTES = 512


def _hex(b):
    return binascii.hexlify(b).decode()


def _files(d, out):
    """Append the paths of every file under directory d (recursively) to out; returns out."""
    for name in os.listdir(d):
        p = d + "/" + name
        if os.stat(p)[0] & _DIR_BIT:
            _files(p, out)
        else:
            out.append(p)
    return out


def file_sha256(path):
    """Return the SHA-256 digest (32 bytes) of the file at path."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK_BYTES)
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return h.digest()


def firmware_hash():
    """Return SHA-256 over the sorted lines "<path> <sha256 hex>\\n" of every file under
    firmware/ plus main.py (gateway/boardctl/deploy.py firmware_hash computes the same on the
    host from what it deployed). Missing files are left out."""
    try:
        paths = _files(FIRMWARE_DIR, [])
    except OSError:
        paths = []
    try:
        os.stat(ENTRY_FILE)
        paths.append(ENTRY_FILE)
    except OSError:
        pass
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.encode() + b" " + _hex(file_sha256(p)).encode() + b"\n")
    return h.digest()


def link_key_id(key):
    """Return the 8-byte public fingerprint SHA-256(LINK_ID_DOMAIN || key)[0:8] of a link key."""
    return hashlib.sha256(LINK_ID_DOMAIN + key).digest()[:8]


def attestation_message(dev_id, mac, fw_hash):
    """Return the signed message of an attestation: domain, device id, chip MAC, firmware hash."""
    return ATTEST_DOMAIN + dev_id + mac + fw_hash


def _release_key(fs, nvs):
    """Return the installed OTA release key (firmware/ota.py), None without one or without OTA."""
    try:
        from firmware.ota import load_release_key
    except ImportError:
        return None
    return load_release_key(fs, nvs)


def identity(ble, nvs, urandom, mac, create=True):
    """Return {public_key, device_id, mac, firmware_hash, attestation, link_key_id, release_key}
    (hex strings; link_key_id / release_key None when not installed; public_key, device_id and
    attestation None when create is False and no key exists).
    Makes the device key first when there is none and create is True (radio on first: the RNG).
    Raises KeyCorrupt for a damaged stored key (never replaced here)."""
    from firmware.fs import VfsFS
    from firmware.keystore import KeyStore, load_link_key

    fs = VfsFS()
    store = KeyStore(fs, nvs=nvs)
    link = load_link_key(fs, nvs)
    out = {"mac": _hex(mac), "link_key_id": None if link is None else _hex(link_key_id(link))}
    rel = _release_key(fs, nvs)
    out["release_key"] = None if rel is None else _hex(rel)
    out["firmware_hash"] = _hex(firmware_hash())
    if not create and not store.exists():
        out["public_key"] = out["device_id"] = out["attestation"] = None
        return out
    if not ble.active(True):
        raise OSError("BLE did not become active")
    seed = store.load_or_create(urandom)
    from firmware.ed25519 import SigningKey
    from firmware.wire import device_id

    key = SigningKey(seed)
    seed = None
    dev_id = device_id(key.public_key)
    fw = binascii.unhexlify(out["firmware_hash"])
    out["public_key"] = _hex(key.public_key)
    out["device_id"] = _hex(dev_id)
    out["attestation"] = _hex(key.sign(attestation_message(dev_id, mac, fw)))
    return out


def _port():
    """Return (ble, nvs, mac) of this board: the port modules main.py uses."""
    import bluetooth
    import esp32
    import machine

    from firmware.runtime import NVS_NAMESPACE

    return bluetooth.BLE(), esp32.NVS(NVS_NAMESPACE), machine.unique_id()


def print_identity(create=True):
    """Print identity() of this board as one JSON line (the host's `provision` and `info`)."""
    ble, nvs, mac = _port()
    print(json.dumps(identity(ble, nvs, os.urandom, mac, create)))


def print_install_link_key(key_hex):
    """Install the link key (64 hex) in NVS and print {"link_key_id": ...} once it reads back."""
    from firmware.fs import VfsFS
    from firmware.keystore import install_link_key

    _, nvs, _ = _port()
    key = binascii.unhexlify(key_hex)
    install_link_key(VfsFS(), nvs, key)
    print(json.dumps({"link_key_id": _hex(link_key_id(key))}))


def print_install_release_key(key_hex):
    """Install the OTA release public key (64 hex, firmware/ota.py install_release_key) and print
    {"release_key": ...} once it reads back."""
    from firmware.fs import VfsFS
    from firmware.ota import install_release_key

    _, nvs, _ = _port()
    install_release_key(VfsFS(), nvs, binascii.unhexlify(key_hex))
    print(json.dumps({"release_key": key_hex}))
