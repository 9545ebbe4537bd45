"""Tests of firmware/ota.py: release checks, staging, resume, the slot switch, trial boot and rollback."""

import struct
import sys

from firmware import ota
from tests.firmware.otarel import (
    FACTORY,
    OTHER_SEED,
    app_files,
    manifest_json,
    public_key,
    send,
    slot_version,
    stream,
)
from tests.firmware.simflash import SimFlash
from tests.firmware.vectors import source_consts

try:
    import esp32  # the host shims: tests/shims is on sys.path under pytest
except ImportError:  # the MicroPython VM
    from tests.shims import esp32

V2 = 0x000200
V3 = 0x000300


def _board(key=True, nvs=True):
    """Return (fs, nvs, receiver) of a factory board with the test release key installed."""
    fs = SimFlash(seed=7)
    store = esp32.NVS("edgeseal", {}) if nvs else None
    if key:
        ota.install_release_key(fs, store, public_key())
    return fs, store, ota.Receiver(fs, store, FACTORY)


def _stage_empty(fs):
    return not fs.exists("ota/stage")


def test_install_and_update_then_trial_then_good():
    fs, nvs, rx = _board()
    files = app_files("v2")
    data, head_len, rid = stream(files, V2)
    assert send(rx, data, head_len, rid) == (ota.ST_OK, V2)
    assert rx.switched and _stage_empty(fs)
    assert ota.read_pointer(fs) == ("a", V2, "trial", 0, ota.FACTORY, FACTORY)
    assert ota.boot_select(fs) == "ota/a"
    assert ota.read_pointer(fs)[3] == 1  # the trial boot is counted
    assert slot_version(fs, "ota/a") == V2
    for path, content in files:
        f = fs.open("ota/a/" + path, "rb")
        assert f.read() == content
        f.close()
    rx2 = ota.Receiver(fs, nvs, FACTORY)
    assert rx2.uploaded() is True and rx2.uploaded() is False
    assert ota.read_pointer(fs)[2] == "good" and ota.get_floor(nvs) == V2
    assert ota.boot_select(fs) == "ota/a" and ota.read_pointer(fs)[3] == 0


def test_next_update_goes_to_the_other_slot_and_remembers_the_previous():
    fs, nvs, rx = _board()
    data, hl, rid = stream(app_files("v2"), V2)
    send(rx, data, hl, rid)
    ota.mark_good(fs, nvs)
    data, hl, rid = stream(app_files("v3"), V3, min_version=V2)
    assert send(ota.Receiver(fs, nvs, FACTORY), data, hl, rid) == (ota.ST_OK, V3)
    assert ota.read_pointer(fs) == ("b", V3, "trial", 0, "a", V2)
    assert slot_version(fs, "ota/b") == V3 and slot_version(fs, "ota/a") == V2


def test_update_refused_while_a_trial_version_is_unconfirmed():
    fs, nvs, rx = _board()
    data, hl, rid = stream(app_files("v2"), V2)
    send(rx, data, hl, rid)
    data, hl, rid = stream(app_files("v3"), V3)
    assert ota.Receiver(fs, nvs, FACTORY).begin(len(data), hl, rid) == (ota.ST_BUSY, 0)


def _rejected(data, hl, rid, reason, key=True):
    fs, nvs, rx = _board(key=key)
    before = ota.read_pointer(fs)
    assert send(rx, data, hl, rid) == (ota.ST_REJECTED, reason)
    assert ota.read_pointer(fs) == before and not rx.switched
    assert _stage_empty(fs)
    for path in fs.files:  # nothing of the release stays staged
        assert not path.startswith("ota/a/"), path
    assert rx.data(hl, data[hl : hl + 10])[0] == ota.ST_BUSY  # dead until a new OTA_BEGIN


def test_bad_signature_is_rejected():
    data, hl, rid = stream(app_files("v2"), V2)
    bad = bytearray(data)
    bad[hl - 1] ^= 1
    _rejected(bytes(bad), hl, rid, ota.R_SIGNATURE)


def test_release_signed_with_another_key_is_rejected():
    data, hl, rid = stream(app_files("v2"), V2, seed=OTHER_SEED)
    _rejected(data, hl, rid, ota.R_SIGNATURE)


def test_no_release_key_no_update():
    data, hl, rid = stream(app_files("v2"), V2)
    _rejected(data, hl, rid, ota.R_NO_KEY, key=False)


def test_downgrade_and_same_version_are_rejected():
    for version in (FACTORY, FACTORY - 1):
        data, hl, rid = stream(app_files("old"), version)
        _rejected(data, hl, rid, ota.R_DOWNGRADE)


def test_anti_rollback_floor_in_nvs():
    fs, nvs, rx = _board()
    nvs.set_i32(ota.FLOOR_NVS, V3)
    nvs.commit()
    data, hl, rid = stream(app_files("v2"), V2)
    assert send(rx, data, hl, rid) == (ota.ST_REJECTED, ota.R_DOWNGRADE)


def test_min_version_above_the_running_one_is_rejected():
    data, hl, rid = stream(app_files("v3"), V3, min_version=V2)
    _rejected(data, hl, rid, ota.R_MIN_VERSION)


def test_bad_manifests_are_rejected():
    files = app_files("v2")
    bad_paths = ("../main.py", "main.py", "firmware/../x.mpy", "/firmware/a.mpy", "firmware//a")
    for path in bad_paths:
        m = manifest_json(V2, 0, [(path, files[0][1])])
        data, hl, rid = stream([(path, files[0][1])], V2, manifest=m)
        _rejected(data, hl, rid, ota.R_FORMAT)
    m = manifest_json(V2, 0, files[:1])  # the stream carries more bytes than the manifest lists
    data, hl, rid = stream(files, V2, manifest=m)
    _rejected(data, hl, rid, ota.R_FORMAT)
    for m in (b"[]", b"{}", b'{"version":2,"min_version":0,"files":[]}', b"\xff"):
        data, hl, rid = stream(files[:1], V2, manifest=m)
        _rejected(data, hl, rid, ota.R_FORMAT)


def test_file_hash_mismatch_is_sent_again_and_never_installed():
    fs, nvs, rx = _board()
    files = app_files("v2")
    data, hl, rid = stream(files, V2)
    bad = bytearray(data)
    bad[hl + 5] ^= 0xFF  # first file, as if garbled on the way
    st, arg = send(rx, bytes(bad), hl, rid)
    assert (st, arg) == (ota.ST_BAD_ARGUMENT, hl)  # resend that file from its start
    assert rx.end() == (ota.ST_REJECTED, ota.R_INCOMPLETE)
    assert ota.read_pointer(fs) is None
    off = hl
    while off < len(data):  # the sender resumes from arg with good bytes
        st, off = rx.data(off, data[off : off + 100])
        assert st == ota.ST_OK
    assert rx.end() == (ota.ST_OK, V2)


def test_wrong_offset_names_the_expected_one():
    fs, nvs, rx = _board()
    data, hl, rid = stream(app_files("v2"), V2)
    assert rx.data(0, data[:10]) == (ota.ST_BUSY, 0)  # no OTA_BEGIN yet
    assert rx.begin(len(data), hl, rid) == (ota.ST_OK, 0)
    assert rx.data(5, data[5:10]) == (ota.ST_BAD_ARGUMENT, 0)
    assert rx.data(0, data[:50]) == (ota.ST_OK, 50)
    assert rx.data(0, data[:50]) == (ota.ST_BAD_ARGUMENT, 50)  # a repeat changes nothing
    assert rx.data(50, b"x" * len(data)) == (ota.ST_BAD_ARGUMENT, 50)  # past the end
    assert rx.begin(len(data), 10, rid) == (ota.ST_BAD_ARGUMENT, 0)


def test_resume_after_disconnect_and_after_reboot():
    fs, nvs, rx = _board()
    data, hl, rid = stream(app_files("v2", n=4), V2)
    mid = hl + 450
    assert send(rx, data, hl, rid, stop=mid) == (ota.ST_OK, mid)
    rx.session_end()  # the link dropped
    assert rx.data(mid, data[mid : mid + 10])[0] == ota.ST_BUSY
    assert rx.begin(len(data), hl, rid) == (ota.ST_OK, mid)  # same connection object, resumes
    rx.session_end()
    fs.remount()  # and a reboot
    rx = ota.Receiver(fs, nvs, FACTORY)
    assert send(rx, data, hl, rid, stop=len(data) - 7)[0] == ota.ST_OK
    rx = ota.Receiver(fs, nvs, FACTORY)
    assert rx.begin(len(data), hl, rid) == (ota.ST_OK, len(data) - 7)
    assert send(rx, data, hl, rid) == (ota.ST_OK, V2)
    assert slot_version(fs, "ota/a") == V2


def test_a_different_release_restarts_the_stage():
    fs, nvs, rx = _board()
    d2, hl2, rid2 = stream(app_files("v2"), V2)
    send(rx, d2, hl2, rid2, stop=hl2 + 200)
    d3, hl3, rid3 = stream(app_files("v3"), V3)
    assert rx.begin(len(d3), hl3, rid3) == (ota.ST_OK, 0)
    assert send(rx, d3, hl3, rid3) == (ota.ST_OK, V3)
    assert slot_version(fs, "ota/a") == V3


def test_trial_that_never_uploads_rolls_back():
    fs, nvs, rx = _board()
    data, hl, rid = stream(app_files("v2"), V2)
    send(rx, data, hl, rid)
    for _ in range(ota.MAX_TRIAL_BOOTS):
        assert ota.boot_select(fs) == "ota/a"
    assert ota.boot_select(fs) is None  # back to the factory image
    assert ota.read_pointer(fs) is None and ota.get_floor(nvs) == 0
    assert ota.Receiver(fs, nvs, FACTORY).uploaded() is False


def test_rollback_to_the_previous_slot_and_after_an_import_failure():
    fs, nvs, rx = _board()
    send(rx, *stream(app_files("v2"), V2))
    ota.mark_good(fs, nvs)
    send(ota.Receiver(fs, nvs, FACTORY), *stream(app_files("v3"), V3))
    assert ota.boot_select(fs) == "ota/b"
    assert ota.import_failed(fs=fs) == "ota/a"
    assert ota.read_pointer(fs) == ("a", V2, "good", 0, "a", V2)
    assert ota.boot_select(fs) == "ota/a"
    assert ota.import_failed(fs=fs) == "ota/a"  # a good version stays


def test_boot_app_puts_the_slot_first_and_forgets_the_image_modules():
    fs, nvs, rx = _board()
    send(rx, *stream(app_files("v2"), V2))
    saved_path = list(sys.path)
    saved = {}
    for name in list(sys.modules):
        if name == "firmware" or name.startswith("firmware."):
            saved[name] = sys.modules[name]
    try:
        assert ota.boot_app("/flash/", fs) == "ota/a"
        assert sys.path[0] == "/flash/ota/a"
        assert not [n for n in sys.modules if n == "firmware" or n.startswith("firmware.")]
    finally:
        sys.path[:] = saved_path
        for name in saved:
            sys.modules[name] = saved[name]


def test_release_key_storage():
    fs = SimFlash()
    assert ota.load_release_key(fs, None) is None
    ota.install_release_key(fs, None, public_key())
    assert ota.load_release_key(fs, None) == public_key()
    f = fs.open(ota.REL_KEY_FILE, "wb")
    f.write(b"RK01" + bytes(36))  # bad CRC
    f.close()
    assert ota.load_release_key(fs, None) is None
    nvs = esp32.NVS("edgeseal", {})
    ota.install_release_key(fs, nvs, public_key())
    assert ota.load_release_key(fs, nvs) == public_key()
    try:
        ota.install_release_key(fs, nvs, b"short")
        raise AssertionError("accepted a short key")
    except ValueError:
        pass


def test_command_parsing():
    fs, nvs, rx = _board()
    data, hl, rid = stream(app_files("v2"), V2)
    begin = bytes([ota.OP_BEGIN]) + struct.pack(">IH", len(data), hl) + rid
    assert rx.command(ota.OP_BEGIN, memoryview(begin)) == (ota.ST_OK, 0)
    cmd = bytes([ota.OP_DATA]) + struct.pack(">I", 0) + data[:100]
    assert rx.command(ota.OP_DATA, memoryview(cmd)) == (ota.ST_OK, 100)
    for bad in (begin[:-1], bytes([ota.OP_DATA, 0, 0, 0, 0]), bytes([ota.OP_END, 0])):
        try:
            rx.command(bad[0], memoryview(bad))
            raise AssertionError("accepted %r" % bad)
        except ValueError:
            pass
    assert rx.command(ota.OP_END, memoryview(bytes([ota.OP_END]))) == (
        ota.ST_REJECTED,
        ota.R_INCOMPLETE,
    )


def test_ota_publishes_the_boot_sides_private_constants():
    # firmware/otaboot.py keeps them private (main.py imports it at every power-on: no names in
    # RAM); firmware.ota publishes the same values under the public names
    boot = source_consts("firmware/otaboot.py")
    for name in ("MAX_TRIAL_BOOTS", "OTA_DIR", "POINTER", "SLOTS", "FACTORY"):
        assert getattr(ota, name) == boot["_" + name], name
