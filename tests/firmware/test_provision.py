"""firmware/provision.py (run over USB by `edgeseal board provision`): the identity, its signed
attestation and the link-key install, on the shims' NVS and BLE. Runs under CPython and in the VM."""

from firmware import provision
from firmware.ed25519 import verify
from firmware.keystore import load_link_key
from firmware.wire import device_id
from tests.shims.bluetooth import BLE
from tests.shims.esp32 import NVS

MAC = b"\x24\x0a\xc4\x12\x34\x56"


def _rand(n):
    return bytes((7 * i + 3) & 0xFF for i in range(n))


def _hex(s):
    import binascii

    return binascii.unhexlify(s)


def test_identity_is_made_once_and_attested():
    nvs = NVS("edgeseal")
    none = provision.identity(BLE(), nvs, _rand, MAC, create=False)
    assert none["public_key"] is None and none["link_key_id"] is None  # info never makes a key
    first = provision.identity(BLE(), nvs, _rand, MAC)
    again = provision.identity(BLE(), nvs, _rand, MAC)
    assert first == again and first["mac"] == "240ac4123456"
    pk = _hex(first["public_key"])
    dev = device_id(pk)
    assert _hex(first["device_id"]) == dev
    msg = provision.attestation_message(dev, MAC, _hex(first["firmware_hash"]))
    assert verify(pk, msg, _hex(first["attestation"]))
    assert not verify(pk, msg + b"x", _hex(first["attestation"]))


def test_the_link_key_fingerprint_follows_the_install():
    from firmware.fs import VfsFS
    from firmware.keystore import install_link_key

    nvs = NVS("edgeseal")
    key = bytes(range(32))
    install_link_key(VfsFS(), nvs, key)
    assert load_link_key(VfsFS(), nvs) == key
    got = provision.identity(BLE(), nvs, _rand, MAC, create=False)
    assert _hex(got["link_key_id"]) == provision.link_key_id(key)
