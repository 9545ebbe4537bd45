"""Tests of the sequence/boot counter: reservation in blocks, reboots, power cuts, corrupt slots."""

import sys

from firmware import seqcounter
from firmware.seqcounter import FileKV, NvsKV, SeqCounter, SeqExhausted
from tests.firmware.simflash import TEAR_MODES, PowerCut, SimFlash
from tests.firmware.vectors import check_copies, private_const

SEQ_LIMIT = private_const(seqcounter, "_SEQ_LIMIT", 0x100000000)  # seqs are u32 on the wire


def boot(fs, floor=0, block=4):
    return SeqCounter(FileKV(fs, "st"), floor, block)


def test_first_boot_starts_at_one_and_increases():
    c = boot(SimFlash())
    assert c.boot_count == 1
    got = [c.next() for _ in range(10)]
    assert got == list(range(1, 11))
    assert c.peek() == 11


def test_reboots_never_repeat_and_count_boots():
    fs = SimFlash()
    handed = 0
    for n in range(1, 6):
        c = boot(fs.remount())
        assert c.boot_count == n
        first = c.next()
        assert first > handed and first - handed <= 4  # a reboot skips at most block - 1 seqs
        handed = first
        for _ in range(n * 3):
            handed = c.next()


def test_reserves_in_blocks():
    fs = SimFlash()
    c = boot(fs, block=8)
    start = fs.points
    for _ in range(8):
        c.next()
    assert fs.points == start  # first block was reserved at boot
    c.next()
    assert fs.points > start  # the ninth seq needed one more reservation
    after = fs.points
    for _ in range(7):
        c.next()
    assert fs.points == after


def _workload(fs, handed, boots):
    """Boot and hand out seqs several times; records every handed seq and completed boot count."""
    for n in range(4):
        c = boot(fs.remount())
        boots.append(c.boot_count)
        for _ in range(3 + n * 2):
            handed.append(c.next())


def test_power_cut_at_every_write_point_never_repeats_a_seq():
    dry = SimFlash()
    _workload(dry, [], [])
    total = dry.points
    for tear in range(len(TEAR_MODES)):
        for k in range(1, total + 1):
            fs = SimFlash(k, tear)
            fs.arm(k)
            handed = []
            boots = []
            try:
                _workload(fs, handed, boots)
                raise AssertionError("cut not reached")
            except PowerCut:
                pass
            c = boot(fs.remount())
            seq = c.next()
            assert not handed or seq > max(handed), "seq reused after cut at %d" % k
            assert not boots or c.boot_count > max(boots)
            assert c.next() == seq + 1


def test_both_slots_corrupt_falls_back_to_the_floor():
    fs = SimFlash()
    c = boot(fs)
    for _ in range(9):
        c.next()
    for p in ("st/seq_a", "st/seq_b"):
        fs.files[p][6] ^= 0x40
    c2 = boot(fs.remount(), floor=500)
    assert c2.next() == 501


def test_damaged_older_slot_is_ignored():
    fs = SimFlash()
    c = boot(fs)
    for _ in range(6):
        c.next()  # boot reserved 1..4 (gen 1, slot b), then 5..8 (gen 2, slot a)
    fs.files["st/seq_b"] = bytearray(fs.files["st/seq_b"][:7])  # an older slot torn: ignored
    c2 = boot(fs.remount())
    assert c2.next() == 9


def test_u32_space_exhaustion_is_an_error():
    fs = SimFlash()
    c = boot(fs, floor=SEQ_LIMIT - 3)
    assert c.next() == SEQ_LIMIT - 2
    assert c.next() == SEQ_LIMIT - 1
    try:
        c.next()
        raise AssertionError("seq wrapped")
    except SeqExhausted:
        pass
    try:
        boot(fs.remount())
        raise AssertionError("seq space reused after reboot")
    except SeqExhausted:
        pass


class _FakeNVS:
    """Stand-in for esp32.NVS: blobs per key, visible after commit()."""

    store = {}

    def __init__(self, namespace):
        self.ns = namespace
        self.pending = {}

    def get_blob(self, key, buf):
        blob = _FakeNVS.store.get((self.ns, key))
        if blob is None or len(blob) > len(buf):
            raise OSError(2)
        buf[: len(blob)] = blob
        return len(blob)

    def set_blob(self, key, value):
        self.pending[key] = bytes(value)

    def commit(self):
        for key in self.pending:
            _FakeNVS.store[(self.ns, key)] = self.pending[key]
        self.pending = {}


class _FakeEsp32:
    NVS = _FakeNVS


def test_nvs_backend_with_a_fake_esp32_module():
    saved = sys.modules.get("esp32")
    sys.modules["esp32"] = _FakeEsp32
    try:
        kv = NvsKV("edgeseal-test")
        assert kv.get("seq_a") is None
        c = SeqCounter(kv, 0, 4)
        got = [c.next() for _ in range(6)]
        c2 = SeqCounter(NvsKV("edgeseal-test"), 0, 4)
        assert c2.boot_count == 2 and c2.next() > got[-1]
    finally:
        if saved is None:
            del sys.modules["esp32"]
        else:
            sys.modules["esp32"] = saved


def test_nvs_backend_over_an_nvs_object():
    # firmware.app.build_board hands NvsKV the esp32.NVS object main.py opened.
    nvs = _FakeNVS("edgeseal-obj")
    kv = NvsKV(nvs)
    assert kv.get("seq_a") is None
    kv.put("seq_a", b"x" * 64)
    assert kv.get("seq_a") == b"x" * 64  # set_blob + commit: read back through the 64-byte buffer
    nvs.set_blob("seq_b", b"staged")
    assert kv.get("seq_b") is None  # not committed
    c = SeqCounter(NvsKV(_FakeNVS("edgeseal-obj2")), 0, 4)
    got = [c.next() for _ in range(6)]
    c2 = SeqCounter(NvsKV(_FakeNVS("edgeseal-obj2")), 0, 4)
    assert c2.boot_count == 2 and c2.next() > got[-1]


def test_private_copies_of_seqcounter_constants_match():
    # firmware/power.py keeps copies (_KEYS, _SEQ_BLOCK) under the same names
    assert check_copies("firmware/seqcounter.py", seqcounter, ("_KEYS", "_SEQ_BLOCK")) == 2
