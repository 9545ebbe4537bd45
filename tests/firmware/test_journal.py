"""Tests of the flash journal: append, iterate, ack, compaction, torn tails, corruption, full policy."""

import os

from firmware import crc32 as crcmod
from firmware import journal as journal_module
from firmware.fs import VfsFS, join
from firmware.journal import (
    MAX_RECORD_BYTES,
    Journal,
    JournalFull,
)
from tests.firmware.simflash import SimFlash
from tests.firmware.vectors import private_const

# the journal persists its dropped-record count at the first drop, then every this many
DROP_PERSIST_EVERY = private_const(journal_module, "_DROP_PERSIST_EVERY", 16)

J_MAX_BYTES = 2048
J_SEGMENT_BYTES = 512
HDR = 12


def rec(seq, n=40):
    """Return deterministic record bytes for seq."""
    out = bytearray(n)
    for i in range(n):
        out[i] = (seq * 7 + i * 13) & 0xFF
    return bytes(out)


def mount(fs, directory="j"):
    return Journal(fs, directory, J_MAX_BYTES, J_SEGMENT_BYTES)


def seg_paths(fs, directory="j"):
    return sorted(p for p in fs.files if p.startswith(directory + "/") and p.endswith(".seg"))


def entries(data):
    """Return [(offset, kind, seq)] of a segment's bytes (test-side parser, trusts the lengths).

    Entry layout: crc32 u32, magic u8, kind u8, len u16, seq u32, payload."""
    out = []
    off = 0
    while off + HDR <= len(data):
        n = (data[off + 6] << 8) | data[off + 7]
        out.append((off, data[off + 5], int.from_bytes(bytes(data[off + 8 : off + 12]), "big")))
        off += HDR + n
    return out


def find_record(fs, seq):
    """Return (path, offset) of the entry of record seq."""
    for p in seg_paths(fs):
        for off, kind, s in entries(fs.files[p]):
            if kind <= 1 and s == seq:
                return p, off
    raise AssertionError("record not on flash")


def test_crc32_table_matches_reference():
    assert crcmod.crc32_table(b"123456789") == 0xCBF43926
    assert crcmod.crc32(b"123456789") == 0xCBF43926
    data = bytes((i * 37 + 11) & 0xFF for i in range(700))
    assert crcmod.crc32_table(data) == crcmod.crc32(data)
    assert crcmod.crc32_table(data[300:], crcmod.crc32_table(data[:300])) == crcmod.crc32(data)
    assert crcmod.crc32(memoryview(data)[5:9]) == crcmod.crc32_table(data[5:9])
    assert crcmod.crc32_table(b"") == 0


def test_append_iterate_in_order():
    fs = SimFlash()
    j = mount(fs)
    assert j.last() is None and j.last_seq == -1
    want = []
    for seq in range(1, 21):
        r = rec(seq, 1 + (seq * 29) % 120)
        j.append(seq, r)
        want.append((seq, r))
    assert list(j.iter_from(0)) == want
    assert list(j.iter_from(7)) == want[6:]
    assert list(j.iter_from(100)) == []
    assert j.last() == want[-1]
    assert len(seg_paths(fs)) > 1  # rolled over segments
    j2 = mount(fs.remount())
    assert list(j2.iter_from(0)) == want
    assert j2.last() == want[-1] and j2.corrupt_count == 0 and j2.torn_bytes == 0
    assert j2.used_bytes == j.used_bytes


def test_full_size_and_empty_records():
    fs = SimFlash()
    j = mount(fs)
    j.append(1, b"")
    j.append(2, bytes(range(MAX_RECORD_BYTES)))
    assert list(mount(fs.remount()).iter_from(0)) == [(1, b""), (2, bytes(range(MAX_RECORD_BYTES)))]


def test_rejects_bad_input_and_writes_nothing():
    fs = SimFlash()
    j = mount(fs)
    j.append(5, rec(5))
    used = j.used_bytes
    for seq, r in (
        (6, bytes(MAX_RECORD_BYTES + 1)),
        (5, rec(5)),
        (4, rec(4)),
        (2**32, b"x"),
        (-1, b"x"),
    ):
        try:
            j.append(seq, r)
            raise AssertionError("accepted a bad append")
        except ValueError:
            pass
    assert j.used_bytes == used and j.dropped_count == 0
    assert list(j.iter_from(0)) == [(5, rec(5))]


def test_ack_is_cumulative_and_compacts_segments():
    fs = SimFlash()
    j = mount(fs)
    for seq in range(1, 31):
        j.append(seq, rec(seq))
    n_segs = len(seg_paths(fs))
    used = j.used_bytes
    j.ack(12)
    assert j.acked_seq == 12
    assert [s for s, _ in j.iter_from(0)] == list(range(13, 31))
    assert [s for s, _ in j.iter_from(20)] == list(range(20, 31))
    assert len(seg_paths(fs)) < n_segs and j.used_bytes < used
    j.ack(5)  # older ack: nothing changes
    assert j.acked_seq == 12
    j2 = mount(fs.remount())
    assert j2.acked_seq == 12 and [s for s, _ in j2.iter_from(0)] == list(range(13, 31))
    j2.ack(1000)  # clamps to the newest record
    assert j2.acked_seq == 30 and list(j2.iter_from(0)) == []
    assert len(seg_paths(fs)) == 1  # only the segment holding the chain head stays
    assert j2.last() == (30, rec(30))


def test_iterate_while_appending_and_acking():
    fs = SimFlash()
    j = mount(fs)
    for seq in range(1, 11):
        j.append(seq, rec(seq))
    it = j.iter_from(3)
    got = [next(it)[0], next(it)[0]]
    for seq in range(11, 25):
        j.append(seq, rec(seq))
    j.ack(8)  # compaction may delete the segment being iterated
    for seq, data in it:
        assert data == rec(seq)
        got.append(seq)
    assert got == [3, 4] + list(range(9, 25))


def test_restart_recovers_last_after_everything_acked():
    fs = SimFlash()
    j = mount(fs)
    for seq in range(1, 40):
        try:
            j.append(seq, rec(seq, 90))
        except JournalFull:
            j.ack(seq - 1)
            j.append(seq, rec(seq, 90))
    j.ack(39)
    j2 = mount(fs.remount())
    assert j2.last() == (39, rec(39, 90))
    assert list(j2.iter_from(0)) == []
    try:
        j2.append(39, b"again")
        raise AssertionError("seq reused")
    except ValueError:
        pass
    j2.append(40, b"next")
    j3 = mount(fs.remount())
    assert list(j3.iter_from(0)) == [(40, b"next")]
    assert j3.last() == (40, b"next")


def test_torn_tail_truncated_at_mount():
    base = SimFlash()
    j = mount(base)
    for seq in range(1, 6):
        j.append(seq, rec(seq))
    good = base.snapshot()
    whole = bytes(base.files[seg_paths(base)[-1]])
    entry = whole[-(HDR + 40) :]  # a complete entry to tear
    for tail in (entry[:3], entry[:HDR], entry[: HDR + 20], entry[:-1], b"\xff" * 30, b"\x00" * 5):
        fs = SimFlash().restore(good)
        path = seg_paths(fs)[-1]
        fs.files[path].extend(tail)
        j = mount(fs)
        assert j.torn_bytes == len(tail) and j.corrupt_count == 0
        assert bytes(fs.files[path]) == whole
        assert [s for s, _ in j.iter_from(0)] == [1, 2, 3, 4, 5]
        j.append(6, rec(6))
        j2 = mount(fs.remount())
        assert j2.corrupt_count == 0 and j2.torn_bytes == 0
        assert list(j2.iter_from(0))[-1] == (6, rec(6)) and j2.last() == (6, rec(6))


def test_torn_first_entry_of_new_segment_is_dropped():
    fs = SimFlash()
    j = mount(fs)
    seq = 0
    while len(seg_paths(fs)) < 2:
        seq += 1
        j.append(seq, rec(seq))
    newest = seg_paths(fs)[-1]
    fs.files[newest] = bytearray(fs.files[newest][:5])  # only 5 bytes of its first entry landed
    j2 = mount(fs.remount())
    assert newest not in fs.files and j2.torn_bytes == 5
    assert j2.last() == (seq - 1, rec(seq - 1))
    assert [s for s, _ in j2.iter_from(0)] == list(range(1, seq))


def test_corruption_in_the_middle_is_reported_not_returned():
    fs = SimFlash()
    j = mount(fs)
    for seq in range(1, 25):
        j.append(seq, rec(seq))
    path, off = find_record(fs, 7)
    fs.files[path][off + HDR + 3] ^= 0x10  # payload bit flip
    path, off = find_record(fs, 12)
    fs.files[path][off + 4] ^= 0xFF  # magic destroyed: needs a resync
    path, off = find_record(fs, 16)
    fs.files[path][off + 7] ^= 0x01  # length field flipped
    j2 = mount(fs.remount())
    assert j2.corrupt_count == 3
    got = list(j2.iter_from(0))
    assert [s for s, _ in got] == [s for s in range(1, 25) if s not in (7, 12, 16)]
    for seq, data in got:
        assert data == rec(seq)


def test_corruption_inside_newest_segment_is_not_taken_for_a_torn_tail():
    fs = SimFlash()
    j = mount(fs)
    for seq in range(1, 6):
        j.append(seq, rec(seq))
    path, off = find_record(fs, 2)
    assert path == seg_paths(fs)[-1]
    size = len(fs.files[path])
    fs.files[path][off + HDR] ^= 0x01
    j2 = mount(fs.remount())
    assert j2.corrupt_count == 1 and j2.torn_bytes == 0 and len(fs.files[path]) == size
    assert [s for s, _ in j2.iter_from(0)] == [1, 3, 4, 5]


def test_full_journal_refuses_counts_and_reports_drops():
    fs = SimFlash()
    j = mount(fs)
    stored = []
    seq = 0
    drops = 0
    while drops < 3:
        seq += 1
        try:
            j.append(seq, rec(seq, 100))
            stored.append(seq)
        except JournalFull:
            drops += 1
            assert j.dropped_count == drops
            assert not j.room_for(100)
    assert j.used_bytes <= J_MAX_BYTES
    assert [s for s, _ in j.iter_from(0)] == stored  # nothing lost to make room
    j2 = mount(fs.remount())
    assert j2.dropped_count == 1  # persisted at the first drop, then every DROP_PERSIST_EVERY
    j2.ack(stored[-1])
    assert j2.room_for(100) and j2.dropped_count == 1
    j2.append(seq + 1, b"overflow: 3 dropped", overflow=True)
    assert j2.dropped_count == 0
    j3 = mount(fs.remount())
    assert j3.dropped_count == 0
    assert list(j3.iter_from(0)) == [(seq + 1, b"overflow: 3 dropped")]


def test_dropped_count_persisted_every_n_drops():
    fs = SimFlash()
    j = mount(fs)
    seq = 0
    while j.dropped_count < DROP_PERSIST_EVERY + 3:
        seq += 1
        try:
            j.append(seq, rec(seq, 200))
        except JournalFull:
            continue
    assert mount(fs.remount()).dropped_count == DROP_PERSIST_EVERY
    # Compaction deletes the segment holding the pending count only after writing it again.
    j = mount(fs.remount())
    before = seg_paths(fs)
    j.ack(seq)
    for s in range(seq + 1, seq + 12):
        j.append(s, rec(s, 150))
        j.ack(s)
    assert not [p for p in before if p in fs.files]
    assert mount(fs.remount()).dropped_count == DROP_PERSIST_EVERY


def _wipe(directory):
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        os.remove(join(directory, name))
    os.rmdir(directory)


def test_vfs_adapter_on_the_real_filesystem():
    directory = "/tmp/edgeseal_journal_test"
    _wipe(directory)
    fs = VfsFS()
    try:
        j = mount(fs, directory)
        for seq in range(1, 21):
            j.append(seq, rec(seq, 60))
        j.ack(10)
        names = fs.listdir(directory)
        newest = join(directory, sorted(names)[-1])
        size = fs.size(newest)
        f = fs.open(newest, "ab")
        f.write(b"\xa7\x00\x00\x30\x00\x00")  # a torn header
        f.close()
        j2 = mount(fs, directory)
        assert j2.torn_bytes == 6 and fs.size(newest) == size
        assert [s for s, _ in j2.iter_from(0)] == list(range(11, 21))
        assert j2.last() == (20, rec(20, 60))
        j2.append(21, b"x")
        assert mount(fs, directory).last() == (21, b"x")
    finally:
        _wipe(directory)


def test_works_without_binascii_crc32():
    saved = crcmod._native_crc32
    crcmod._native_crc32 = None  # as on a MicroPython build without binascii.crc32
    try:
        fs = SimFlash()
        j = mount(fs)
        for seq in range(1, 8):
            j.append(seq, rec(seq))
        j.ack(3)
        fs.files[seg_paths(fs)[-1]].extend(b"\x01\x02\x03")  # a torn tail to find
        j1 = mount(fs.remount())
        assert [s for s, _ in j1.iter_from(0)] == [4, 5, 6, 7]
        assert j1.torn_bytes == 3 and j1.corrupt_count == 0
    finally:
        crcmod._native_crc32 = saved
    j2 = mount(fs.remount())  # entries written by the table CRC read back with the native one
    assert [s for s, _ in j2.iter_from(0)] == [4, 5, 6, 7] and j2.corrupt_count == 0


class _FailingFlash(SimFlash):
    """SimFlash whose appends can fail half way with an OSError (as on a full filesystem)."""

    def __init__(self):
        SimFlash.__init__(self)
        self.fail = False

    def open(self, path, mode):
        f = SimFlash.open(self, path, mode)
        if self.fail and mode == "ab":
            files = self.files

            def write(data):
                files[path].extend(bytes(data)[:5])  # part of it reached the flash
                raise OSError(28)

            f.write = write
        return f


def test_failed_write_is_trimmed_before_the_next_one():
    fs = _FailingFlash()
    j = mount(fs)
    for seq in range(1, 4):
        j.append(seq, rec(seq))
    fs.fail = True
    try:
        j.append(4, rec(4))
        raise AssertionError("write error swallowed")
    except OSError:
        pass
    fs.fail = False
    assert [s for s, _ in j.iter_from(0)] == [1, 2, 3] and j.last() == (3, rec(3))
    j.append(5, rec(5))
    j2 = mount(fs.remount())
    assert j2.corrupt_count == 0 and j2.torn_bytes == 0
    assert [s for s, _ in j2.iter_from(0)] == [1, 2, 3, 5]
