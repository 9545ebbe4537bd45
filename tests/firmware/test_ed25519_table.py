"""The signer's fixed-base table on flash (firmware.ed25519.TableFile, issue 12 item 3).

Signatures made with the table read from a file must be byte-identical to those made with the
table in RAM; a missing, damaged or half-written file is rebuilt; a flash that cannot hold it
leaves the table in RAM. Runs under CPython and in the MicroPython VM.
"""

import sys

from firmware import ed25519, ed25519_extra
from firmware.crc32 import crc32
from tests.firmware.simflash import PowerCut, SimFlash

PATH = "ed25519.tbl"
SEED = bytes(range(32))
MSGS = (b"", b"x", bytes(range(100)), bytes(176))


def _check_signs_like_ram(table):
    """Assert that a key using table signs every message as the RAM-table key does."""
    ram = ed25519.SigningKey(SEED)
    key = ed25519.SigningKey(SEED, table)
    assert key.public_key == ram.public_key
    for m in MSGS:
        assert key.sign(m) == ram.sign(m), m


def test_table_constants_agree_with_the_built_table():
    tb = ed25519._table_bytes()
    assert len(tb) == 12288
    assert crc32(tb) == ed25519.TABLE_CRC32
    # const() names are module attributes on CPython only (MicroPython inlines them)
    for name, want in (("_TABLE_BYTES", 12288), ("_ENTRY_BYTES", 96)):
        for mod in (ed25519, ed25519_extra):
            assert getattr(mod, name, want) == want, (mod, name)


def test_first_boot_writes_the_file_and_later_boots_reuse_it():
    fs = SimFlash()
    first = ed25519.TableFile(fs, PATH)
    assert first.built and not first.in_ram
    assert bytes(fs.files[PATH]) == bytes(ed25519._table_bytes())
    assert not fs.exists(PATH + ".tmp")
    _check_signs_like_ram(first)
    first.close()
    points = fs.points
    again = ed25519.TableFile(fs.remount(), PATH)
    assert not again.built and not again.in_ram
    assert fs.points == points  # nothing written
    _check_signs_like_ram(again)


def test_a_damaged_file_is_rebuilt():
    good = bytes(ed25519._table_bytes())
    flipped = bytearray(good)
    flipped[5000] ^= 0x10
    for bad in (flipped, good[:-1], good + b"\x00", b""):
        fs = SimFlash()
        f = fs.open(PATH, "wb")
        f.write(bad)
        f.close()
        t = ed25519.TableFile(fs, PATH)
        assert t.built and not t.in_ram, len(bad)
        assert bytes(fs.files[PATH]) == good
        _check_signs_like_ram(t)


def test_a_power_cut_while_writing_the_table_is_repaired_at_the_next_boot():
    total = SimFlash()
    ed25519.TableFile(total, PATH)
    for k in range(1, total.points + 1):
        fs = SimFlash(seed=k)
        fs.arm(k)
        try:
            ed25519.TableFile(fs, PATH)
            cut = False
        except PowerCut:
            cut = True
        assert cut, k
        fs.disarm()
        t = ed25519.TableFile(fs.remount(), PATH)
        assert not t.in_ram, k
        assert bytes(fs.files[PATH]) == bytes(ed25519._table_bytes()), k
        _check_signs_like_ram(t)


class _ForgetfulFlash(SimFlash):
    """A flash whose files read back one byte short (a failing chip)."""

    def size(self, path):
        return super().size(path) - 1


def test_a_flash_that_cannot_hold_the_table_leaves_it_in_ram():
    t = ed25519.TableFile(_ForgetfulFlash(), PATH)
    assert t.built and t.in_ram
    _check_signs_like_ram(t)


class _FullFlash(SimFlash):
    """A flash with no room left: creating a file fails (ENOSPC)."""

    def open(self, path, mode):
        if mode == "wb":
            raise OSError(28)
        return super().open(path, mode)


def test_a_full_flash_leaves_the_table_in_ram_and_the_board_signing():
    t = ed25519.TableFile(_FullFlash(), PATH)
    assert t.built and t.in_ram
    _check_signs_like_ram(t)


def test_the_build_does_not_leave_the_extra_module_loaded():
    import firmware

    name = "firmware.ed25519_extra"
    saved = sys.modules.pop(name)
    saved_table = ed25519._TABLE
    ed25519._TABLE = None  # as at a board's first boot: nothing built yet
    delattr(firmware, "ed25519_extra")
    try:
        t = ed25519.TableFile(SimFlash(), PATH)
        assert t.built
        assert name not in sys.modules
        assert not hasattr(firmware, "ed25519_extra")
        assert ed25519._TABLE is None  # the RAM copy was not kept either
    finally:
        sys.modules[name] = saved
        firmware.ed25519_extra = saved
        ed25519._TABLE = saved_table
