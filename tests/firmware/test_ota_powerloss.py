"""Power-cut test of an OTA update: a cut at every write point leaves a board that boots a complete version.

The workload (two updates, trial boots, the confirming upload, a rollback) runs on the simulated
flash (tests/firmware/simflash.py) with the NVS on the same power (tests/shims/esp32.py flash=):
for every write point k it is run again with the power cut at k, the board boots (firmware.ota
boot_select) and must run the factory image or a slot whose every file matches its signed
manifest, with a boot pointer that parses; then the gateway resumes the update and it must end
installed and complete.
"""

from firmware import ota
from tests.firmware.otarel import FACTORY, app_files, public_key, send, slot_version, stream
from tests.firmware.simflash import PowerCut, SimFlash

try:
    import esp32  # the host shims: tests/shims is on sys.path under pytest
except ImportError:  # the MicroPython VM
    from tests.shims import esp32

V2 = 0x000200
V3 = 0x000300
CHUNK_BYTES = 150  # several chunks per file and chunks spanning file boundaries
_R2 = stream(app_files("v2", n=3, size=200), V2)
_R3 = stream(app_files("v3", n=3, size=200), V3, min_version=V2)
# why 20: a resume needs one OTA_BEGIN per attempt; more than a few means it does not converge
MAX_RESUMES = 20


def _nvs(fs, store):
    return esp32.NVS("edgeseal", store, flash=fs)


def _fresh():
    """Return (fs, store) of a provisioned factory board."""
    fs = SimFlash(seed=0x0DA)
    store = {}
    ota.install_release_key(fs, _nvs(fs, store), public_key())
    return fs, store


def workload(fs, store):
    """Update to V2, boot it twice, confirm it; update to V3, boot it past MAX_TRIAL_BOOTS
    unconfirmed: rolled back to V2. Returns nothing."""
    nvs = _nvs(fs, store)
    assert send(ota.Receiver(fs, nvs, FACTORY), *_R2, chunk=CHUNK_BYTES) == (ota.ST_OK, V2)
    ota.boot_select(fs)
    ota.boot_select(fs)
    assert ota.mark_good(fs, nvs)  # what uploaded() does (it swallows errors: here PowerCut)
    assert send(ota.Receiver(fs, nvs, FACTORY), *_R3, chunk=CHUNK_BYTES) == (ota.ST_OK, V3)
    for _ in range(ota.MAX_TRIAL_BOOTS + 1):
        ota.boot_select(fs)
    assert ota.read_pointer(fs)[:3] == ("a", V2, "good")


def _boot_check(fs, where):
    """Boot the board; assert it runs a complete version; return that version."""
    has_pointer = fs.exists(ota.POINTER)
    slot = ota.boot_select(fs)
    p = ota.read_pointer(fs)
    assert not has_pointer or p is not None or slot is None, where + ": pointer does not parse"
    if slot is None:
        assert p is None, where
        return FACTORY
    version = slot_version(fs, slot)
    assert version is not None, where + ": boots an incomplete slot " + slot
    assert version == p[1], where
    return version


def _finish(fs, store, where):
    """Resume as the gateway would until V2 (or later) is installed and confirmed; returns
    nothing. Raises AssertionError when it does not converge."""
    nvs = _nvs(fs, store)
    for _ in range(MAX_RESUMES):
        p = ota.read_pointer(fs)
        if p is not None and p[1] >= V2:
            if p[2] == "trial":
                ota.mark_good(fs, nvs)
                continue
            return
        st, arg = send(ota.Receiver(fs, nvs, FACTORY), *_R2, chunk=CHUNK_BYTES)
        assert st in (ota.ST_OK, ota.ST_BAD_ARGUMENT), where + " status %d %d" % (st, arg)
        if st == ota.ST_OK:
            assert _boot_check(fs, where) == V2
    raise AssertionError(where + ": the update did not converge")


def test_ota_powercut_at_every_write_point():
    fs, store = _fresh()
    snap = fs.snapshot()
    base = {"edgeseal": dict(store["edgeseal"])}
    start = fs.points
    workload(fs, store)
    total = fs.points - start
    assert total > 40, total
    outcomes = {}
    for k in range(1, total + 1):
        fs.restore(snap)
        fs.arm(start + k)
        store = {"edgeseal": dict(base["edgeseal"])}
        try:
            workload(fs, store)
            raise AssertionError("no cut at point %d" % k)
        except PowerCut:
            pass
        where = "cut %d %r" % (k, fs.last_cut)
        fs.disarm()
        fs.remount()
        v = _boot_check(fs, where)
        outcomes[v] = outcomes.get(v, 0) + 1
        _finish(fs, store, where)
        assert slot_version(fs, "ota/" + ota.read_pointer(fs)[0]) >= V2, where
    # both old and new versions were seen after cuts: the test reached both sides of the switch
    assert FACTORY in outcomes and V2 in outcomes and V3 in outcomes, outcomes
    print("ota power-cut: %d write points, booted versions %r" % (total, outcomes))
