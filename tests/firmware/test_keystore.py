"""Tests of the device seed store: created once, stable across reboots, never half-written."""

import os

from firmware.fs import VfsFS
from firmware.keystore import SEED_BYTES, KeyCorrupt, KeyStore
from tests.firmware.simflash import TEAR_MODES, PowerCut, SimFlash


class Rand:
    """Deterministic urandom stand-in that remembers every seed it produced."""

    def __init__(self, start=1):
        self.x = start
        self.made = []

    def __call__(self, n):
        out = bytearray(n)
        for i in range(n):
            self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = (self.x >> 16) & 0xFF
        self.made.append(bytes(out))
        return bytes(out)


def test_created_once_then_reloaded():
    fs = SimFlash()
    rand = Rand()
    seed = KeyStore(fs).load_or_create(rand)
    assert len(seed) == SEED_BYTES and rand.made == [seed]
    assert KeyStore(fs.remount()).load_or_create(rand) == seed
    assert len(rand.made) == 1  # no new randomness once a seed exists
    assert KeyStore(fs).exists()


def test_torn_first_boot_never_yields_a_half_key():
    dry = SimFlash()
    KeyStore(dry).load_or_create(Rand())
    total = dry.points
    assert total >= 4  # open tmp, write, flush, rename
    for tear in range(len(TEAR_MODES)):
        for k in range(1, total + 1):
            fs = SimFlash(k, tear)
            fs.arm(k)
            rand = Rand()
            try:
                KeyStore(fs).load_or_create(rand)
                raise AssertionError("cut not reached")
            except PowerCut:
                pass
            first = rand.made[0]
            seed = KeyStore(fs.remount()).load_or_create(rand)
            assert seed in rand.made, "a key that was never generated"
            if len(rand.made) == 1:
                assert seed == first  # the rename had landed: the first seed is kept
            assert KeyStore(fs.remount()).load_or_create(rand) == seed
            assert not fs.exists("key.bin.tmp")


def test_corrupt_key_file_raises_instead_of_replacing():
    for damage in ("flip", "short", "long"):
        fs = SimFlash()
        KeyStore(fs).load_or_create(Rand())
        if damage == "flip":
            fs.files["key.bin"][10] ^= 0x01
        elif damage == "short":
            fs.files["key.bin"] = bytearray(fs.files["key.bin"][:20])
        else:
            fs.files["key.bin"].extend(b"\x00")
        try:
            KeyStore(fs.remount()).load_or_create(Rand(7))
            raise AssertionError("damaged key accepted")
        except KeyCorrupt:
            pass


def test_stale_temp_file_is_discarded():
    fs = SimFlash()
    f = fs.open("key.bin.tmp", "wb")
    f.write(b"EK01" + b"\x55" * 10)
    f.close()
    rand = Rand()
    seed = KeyStore(fs).load_or_create(rand)
    assert seed == rand.made[0] and not fs.exists("key.bin.tmp")


def test_short_urandom_is_rejected():
    try:
        KeyStore(SimFlash()).load_or_create(lambda n: b"\x01" * (n - 1))
        raise AssertionError("short seed accepted")
    except ValueError:
        pass


def test_on_the_real_filesystem():
    path = "/tmp/edgeseal_key_test.bin"
    for p in (path, path + ".tmp"):
        if VfsFS().exists(p):
            os.remove(p)
    try:
        rand = Rand(3)
        seed = KeyStore(VfsFS(), path).load_or_create(rand)
        assert KeyStore(VfsFS(), path).load_or_create(rand) == seed and len(rand.made) == 1
    finally:
        os.remove(path)


def test_link_key_install_and_load_in_a_file_and_in_nvs():
    from firmware.keystore import install_link_key, load_link_key

    try:
        import esp32  # the host shim
    except ImportError:  # the MicroPython VM
        from tests.shims import esp32
    key = bytes(range(32))
    fs = SimFlash()
    assert load_link_key(fs, None) is None  # not provisioned
    install_link_key(fs, None, key)
    assert load_link_key(fs.remount(), None) == key
    install_link_key(fs, None, bytes(32))  # re-provisioning replaces it
    assert load_link_key(fs, None) == bytes(32)
    nvs = esp32.NVS("edgeseal", {})
    assert load_link_key(fs, nvs) is None  # NVS, not the file, on a board
    install_link_key(fs, nvs, key)
    assert load_link_key(SimFlash(), nvs) == key
    nvs.set_blob("link_key", b"LK01" + bytes(36))  # a damaged blob is never taken for a key
    try:
        load_link_key(fs, nvs)
    except KeyCorrupt:
        pass
    else:
        raise AssertionError("a damaged link key was loaded")
    try:
        install_link_key(fs, None, b"short")
    except ValueError:
        return
    raise AssertionError("a short link key was installed")
