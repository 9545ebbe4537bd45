"""Chain segments on the board: detection at boot (wiped journal, reflashed filesystem with NVS
kept, damaged journal), on SEND_FROM of deleted seqs (gateway behind), and power cuts at every
write point around the segment record. Runs in CPython and in the MicroPython VM; the gateway
side of the same sequences is tests/gateway/test_chain_segments_firmware.py."""

from firmware import ed25519, wire
from firmware.journal import Journal
from firmware.sampler import DeviceTime, Sampler
from firmware.seqcounter import FileKV, SeqCounter
from tests.firmware.simflash import PowerCut, SimFlash
from tests.firmware.test_sampler import Counter, SimClock, check_chain
from tests.firmware.vectors import W

SEED = bytes(range(32))


class Board:
    """Journal on `fs` (the filesystem), seq counter and chain mark on `nvs` (a second SimFlash
    standing in for NVS: it survives a wiped journal and a reflashed filesystem)."""

    def __init__(self):
        self.fs = SimFlash(seed=3)
        self.nvs = SimFlash(seed=4)
        self.clock = SimClock()
        self.signer = ed25519.SigningKey(SEED)
        self.dev_id = wire.device_id(self.signer.public_key)
        self.counter = Counter()
        self.boot()

    def boot(self):
        """Rebuild everything from flash as app.build_board does; return heal()'s seq."""
        from firmware.sampler import Source

        self.journal = Journal(self.fs, "journal", 8192, 1024)
        kv = FileKV(self.nvs, "state")
        self.seqs = SeqCounter(kv, max(self.journal.last_seq, 0))
        self.sampler = Sampler(
            self.journal, self.seqs, self.signer, self.dev_id, DeviceTime(self.clock),
            [Source("s0", self.counter.read, self.counter.type_id)], 10, 60, 4, kv,
        )  # fmt: skip
        return self.sampler.heal()

    def readings(self, n):
        for _ in range(n):
            self.sampler.sample_once()
            self.clock.now_ms += 10000

    def records(self):
        return [r for _, r in self.journal.iter_from(0)]

    def used_seqs(self):
        return [wire.parse(r)[3] for r in self.records()]


def _segment(raw):
    """Return (reason, held_seq or None, prev_hash) of a chain_segment record; assert it is one."""
    p = wire.parse(raw)
    assert p[0] == W.KIND_CHAIN_SEGMENT and p[9], "a signed chain_segment"
    vals = dict((t, v) for t, _, v in p[7])
    return vals[W.CH_BREAK_REASON], vals.get(W.CH_HELD_SEQ), p[6]


def test_a_new_board_and_a_plain_reboot_start_no_segment():
    b = Board()
    assert b.sampler.segments == 0
    b.readings(3)
    assert b.boot() == -1
    b.readings(1)
    check_chain(b.records(), b.dev_id)


def test_wiped_journal_starts_a_segment_above_every_used_seq():
    b = Board()
    b.readings(5)
    high = b.used_seqs()[-1]
    b.fs = SimFlash(seed=5)  # the journal is gone; NVS is kept
    seq = b.boot()
    assert seq > high
    reason, held, prev = _segment(b.records()[-1])
    assert reason == W.BRK_JOURNAL_LOST and held is None
    assert prev == wire.genesis_hash(b.dev_id)
    b.readings(2)
    check_chain(b.records(), b.dev_id)  # the segment starts from genesis, the rest chains on
    assert b.boot() == -1  # healed: the next boot sees the segment as its head


def test_reflash_with_nvs_kept_twice_in_a_row():
    b = Board()
    b.readings(3)
    seqs = []
    for _ in range(2):
        b.fs = SimFlash(seed=6)
        seqs.append(b.boot())
        b.readings(1)
    assert seqs[0] > 3 and seqs[1] > seqs[0]
    assert b.sampler.segments == 1  # counted per boot; the journal holds the newest segment
    assert _segment(b.records()[0])[0] == W.BRK_JOURNAL_LOST


def test_damaged_entry_midway_starts_one_segment_that_holds_the_head():
    b = Board()
    b.readings(30)
    names = sorted(n for n in b.fs.files if n.startswith("journal/"))
    first = b.fs.files[names[0]]
    first[len(first) // 2] ^= 0xFF  # a CRC failure in an older segment of the journal
    head = b.used_seqs()[-1]
    seq = b.boot()
    assert seq > head and b.journal.corrupt_count > 0
    reason, held, _ = _segment(b.records()[-1])
    assert reason == W.BRK_FLASH_FAULT and held == head
    assert b.boot() == -1  # answered once, not at every boot


def test_gateway_behind_asks_for_deleted_seqs():
    b = Board()
    b.readings(6)
    b.sampler.close_chain()
    acked = b.used_seqs()[-1]
    b.sampler.ack(acked)
    assert b.sampler.gateway_behind(acked + 1) == -1  # the gateway is where it should be
    seq = b.sampler.gateway_behind(2)  # it lost seqs 2..acked
    assert seq > acked
    reason, held, _ = _segment(b.records()[-1])
    assert reason == W.BRK_GATEWAY_BEHIND and held == acked
    assert b.sampler.gateway_behind(2) == -1  # one segment until it is acked
    b.sampler.ack(seq)
    assert b.sampler.gateway_behind(0) > seq  # the gateway lost it all again


def test_power_cut_at_every_write_point_around_the_segment():
    b = Board()
    b.readings(5)
    high = b.used_seqs()[-1]
    b.fs = SimFlash(seed=8)
    fs0, nvs0 = b.fs.snapshot(), b.nvs.snapshot()
    for flash in ("fs", "nvs"):
        k = 1
        while True:
            b.fs.restore(fs0)
            b.nvs.restore(nvs0)
            dev = b.fs if flash == "fs" else b.nvs
            dev.arm(dev.points + k)
            try:
                b.boot()
                b.readings(1)
                cut = False
            except PowerCut:
                cut = True
            dev.disarm()
            b.fs.remount()
            b.nvs.remount()
            b.boot()
            b.readings(1)
            recs = b.records()
            kinds = [wire.parse(r)[0] for r in recs]
            assert W.KIND_CHAIN_SEGMENT in kinds, (flash, k)
            start = kinds.index(W.KIND_CHAIN_SEGMENT)
            check_chain(recs[start:], b.dev_id)
            assert min(b.used_seqs()) > high, (flash, k)
            if not cut:
                break
            k += 1
        assert k > 1
