"""Sampler: chained records, signing policy, faults, journal-full path, time sync, reboots.

Also home of the simulated clock and the tiny deterministic task loop the runtime tests share
(SimClock, SimLoop): firmware tasks only await clock.sleep_ms, so they run without asyncio, in
virtual time, identically under CPython and in the MicroPython VM.
"""

from firmware import ed25519, wire
from firmware.journal import Journal
from firmware.sampler import DeviceTime, Sampler, Source
from firmware.seqcounter import FileKV, SeqCounter
from tests.firmware.simflash import SimFlash
from tests.firmware.vectors import W

SEED = bytes(range(32))


class _Sleep:
    """What SimClock.sleep_ms yields to SimLoop: the requested delay."""

    def __init__(self):
        self.ms = 0

    def __iter__(self):
        yield self

    __await__ = __iter__


class SimClock:
    """Virtual milliseconds: ticks_ms/ticks_diff, async sleep_ms (for SimLoop), block_ms."""

    def __init__(self, start_ms=0):
        self.now_ms = start_ms
        self._sleep = _Sleep()

    def ticks_ms(self):
        return self.now_ms

    def ticks_diff(self, a, b):
        return a - b

    def block_ms(self, ms):
        self.now_ms += ms

    async def sleep_ms(self, ms):
        self._sleep.ms = ms if ms > 0 else 0
        await self._sleep


class SimLoop:
    """Runs coroutines that only await SimClock.sleep_ms, earliest wake-up first, round robin."""

    def __init__(self, clock):
        self.clock = clock
        self.tasks = []  # [wake_ms, order, coro]
        self._order = 0
        self.steps = 0

    def spawn(self, coro):
        self._order += 1
        self.tasks.append([self.clock.now_ms, self._order, coro])

    def run_until(self, t_ms):
        """Step tasks in virtual time up to t_ms; the clock ends at t_ms."""
        clock = self.clock
        while self.tasks:
            best = self.tasks[0]
            for t in self.tasks:
                if t[0] < best[0] or (t[0] == best[0] and t[1] < best[1]):
                    best = t
            if best[0] > t_ms:
                break
            if best[0] > clock.now_ms:
                clock.now_ms = best[0]
            self.steps += 1
            try:
                req = best[2].send(None)
            except StopIteration:
                self.tasks.remove(best)
                continue
            self._order += 1
            best[0] = clock.now_ms + req.ms
            best[1] = self._order
        if t_ms > clock.now_ms:
            clock.now_ms = t_ms

    def run_for(self, ms):
        self.run_until(self.clock.now_ms + ms)

    def close(self):
        for t in self.tasks:
            t[2].close()
        self.tasks = []


class Counter:
    """A fake sensor: temperature (ch 0) rising by 1 each read; fail=True makes it raise."""

    def __init__(self, type_id=W.CH_TEMPERATURE, channel=0, start=2000):
        self.type_id = type_id
        self.channel = channel
        self.value = start
        self.fail = False
        self.reads = 0

    def read(self):
        self.reads += 1
        if self.fail:
            raise OSError(5)
        self.value += 1
        return [(self.type_id, self.channel, self.value)]


class Node:
    """Journal + seq counter + sampler on one SimFlash, rebuilt from flash by reboot()."""

    def __init__(self, fs=None, clock=None, sources=None, sign_every_n=4, journal_bytes=65536):
        self.fs = fs if fs is not None else SimFlash(seed=7)
        self.clock = clock if clock is not None else SimClock()
        self.signer = ed25519.SigningKey(SEED)
        self.dev_id = wire.device_id(self.signer.public_key)
        self.sensors = sources if sources is not None else [Counter()]
        self.sign_every_n = sign_every_n
        self.journal_bytes = journal_bytes
        self.reboot()

    def reboot(self):
        self.journal = Journal(self.fs, "journal", self.journal_bytes, 1024)
        self.seqs = SeqCounter(FileKV(self.fs, "state"), max(self.journal.last_seq, 0))
        srcs = []
        for i, s in enumerate(self.sensors):
            srcs.append(Source("s%d" % i, s.read, s.type_id))
        self.sampler = Sampler(
            self.journal,
            self.seqs,
            self.signer,
            self.dev_id,
            DeviceTime(self.clock),
            srcs,
            10,
            60,
            self.sign_every_n,
        )
        return self.sampler

    def records(self):
        return [r for _, r in self.journal.iter_from(0)]


def check_chain(records, dev_id, prev=None):
    """Assert that records (bytes) are a prev_hash chain from prev (genesis when None)."""
    if prev is None:
        prev = wire.genesis_hash(dev_id)
    last_seq = -1
    for rec in records:
        p = wire.parse(rec)
        assert p[2] == dev_id
        assert p[6] == prev, "chain break at seq %d" % p[3]
        assert p[3] > last_seq
        last_seq = p[3]
        prev = wire.record_hash(rec, p[8])
    return prev


def test_readings_are_chained_from_genesis():
    n = Node()
    for _ in range(10):
        assert n.sampler.sample_once() > 0
        n.clock.now_ms += 10000
    recs = n.records()
    assert len(recs) == 10
    check_chain(recs, n.dev_id)
    p = wire.parse(recs[3])
    assert p[0] == W.KIND_READING and p[7] == [(1, 0, 2004)]
    assert p[5] == 30 and p[1] == 0  # seconds since boot, not synced
    assert n.sampler.depth == 10 and n.sampler.first_seq == wire.parse(recs[0])[3]


def test_signing_policy_every_n_and_heartbeats():
    n = Node(sign_every_n=4)
    for _ in range(8):
        n.sampler.sample_once()
    n.sampler.heartbeat()
    signed = [wire.parse(r)[9] for r in n.records()]
    assert signed == [False, False, False, True, False, False, False, True, True]
    assert wire.parse(n.records()[-1])[0] == W.KIND_HEARTBEAT
    hb = n.records()[-1]
    body_len = wire.parse(hb)[8]
    assert ed25519.verify(n.signer.public_key, hb[:body_len], hb[body_len:])


def test_close_chain_appends_signed_heartbeat_only_when_needed():
    n = Node(sign_every_n=4)
    n.sampler.sample_once()
    before = n.journal.last_seq
    head = n.sampler.close_chain()
    assert head > before
    last = wire.parse(n.records()[-1])
    assert last[0] == W.KIND_HEARTBEAT and last[9]
    assert n.sampler.close_chain() == head  # newest is signed now: nothing appended
    assert len(n.records()) == 2


def test_sensor_fault_becomes_one_event_and_loop_continues():
    good = Counter()
    bad = Counter(W.CH_HUMIDITY, 0, 5000)
    n = Node(sources=[good, bad])
    bad.fail = True
    for _ in range(3):
        assert n.sampler.sample_once() > 0
    bad.fail = False
    n.sampler.sample_once()
    bad.fail = True
    n.sampler.sample_once()
    kinds = [wire.parse(r) for r in n.records()]
    events = [p for p in kinds if p[0] == W.KIND_EVENT]
    assert len(events) == 2
    assert events[0][7] == [
        (W.CH_EVENT_CODE, 0, W.EV_SENSOR_FAULT),
        (W.CH_EVENT_ARG, 0, 2),
    ]
    readings = [p for p in kinds if p[0] == W.KIND_READING]
    assert len(readings) == 5
    assert readings[3][7] == [(1, 0, 2004), (2, 0, 5001)]
    check_chain(n.records(), n.dev_id)


def test_all_sources_failing_stores_no_reading():
    s = Counter()
    s.fail = True
    n = Node(sources=[s])
    assert n.sampler.sample_once() == -1
    assert n.sampler.sample_once() == -1
    assert len(n.records()) == 1  # the single fault event


def test_journal_full_counts_drops_then_overflow_event():
    n = Node(journal_bytes=3072, sign_every_n=1000)
    stored = 0
    while n.sampler.sample_once() > 0:
        stored += 1
    for _ in range(4):
        assert n.sampler.sample_once() == -1
    assert n.journal.dropped_count == 5
    assert n.sampler.full_drops == 5
    n.sampler.ack(n.journal.last_seq)  # the gateway took everything: room again
    recs = n.records()
    assert len(recs) == 1
    ev = wire.parse(recs[0])
    assert ev[7] == [(W.CH_EVENT_CODE, 0, W.EV_JOURNAL_OVERFLOW), (W.CH_EVENT_ARG, 0, 5)]
    assert n.journal.dropped_count == 0
    assert n.sampler.sample_once() > 0
    assert stored > 5


def test_time_sync_sets_flag_and_logs_correction():
    n = Node()
    n.clock.now_ms = 42500
    n.sampler.sample_once()
    corr = n.sampler.time_sync(1795000000)
    assert corr == 1795000000 - 42
    n.clock.now_ms += 3000
    n.sampler.sample_once()
    recs = [wire.parse(r) for r in n.records()]
    assert recs[0][1] == 0 and recs[0][5] == 42
    assert recs[1][0] == W.KIND_EVENT and recs[1][1] == W.TIME_SYNCED
    assert recs[1][7][1] == (W.CH_EVENT_ARG, 0, corr)
    assert recs[2][5] == 1795000003 and recs[2][1] == W.TIME_SYNCED


def test_device_time_survives_tick_wrap():
    class Wrapping:
        def __init__(self):
            self.t = (1 << 30) - 500

        def ticks_ms(self):
            return self.t

        def ticks_diff(self, a, b):
            half = 1 << 29
            return ((a - b + half) & ((1 << 30) - 1)) - half

    c = Wrapping()
    dt = DeviceTime(c)
    c.t = ((1 << 30) - 500 + 2000) & ((1 << 30) - 1)
    assert dt.uptime_ms() == 2000


def test_reboot_continues_chain_with_new_boot_and_higher_seq():
    n = Node()
    for _ in range(5):
        n.sampler.sample_once()
    last = n.journal.last_seq
    boot = n.sampler.boot
    tail = check_chain(n.records(), n.dev_id)
    n.fs.remount()
    s = n.reboot()
    assert s.boot == boot + 1 and s.depth == 5
    seq = s.sample_once()
    assert seq > last
    check_chain(n.records()[-1:], n.dev_id, tail)


def test_ack_shrinks_depth():
    n = Node()
    seqs = [n.sampler.sample_once() for _ in range(6)]
    assert n.sampler.ack(seqs[2]) == 3
    assert n.sampler.first_seq == seqs[3]
    assert n.sampler.ack(seqs[5]) == 0
    assert n.sampler.first_seq == -1


def test_tasks_sample_and_heartbeat_on_schedule():
    n = Node()
    s = n.sampler
    loop = SimLoop(n.clock)
    s.running = True
    loop.spawn(s.sample_task())
    loop.spawn(s.heartbeat_task())
    loop.run_until(300000 - 1)  # 5 minutes: samples at 0, 10, ..., 290 s; heartbeats at 60 s
    s.running = False
    loop.close()
    assert s.readings == 30
    assert s.heartbeats == 4
    recs = n.records()
    check_chain(recs, n.dev_id)
    times = [wire.parse(r)[5] for r in recs]
    assert times == sorted(times)


def test_task_survives_flash_errors():
    n = Node()
    s = n.sampler
    loop = SimLoop(n.clock)
    s.running = True
    loop.spawn(s.sample_task())
    loop.run_for(25000)
    n.fs.off = True  # every flash operation raises from now on
    loop.run_for(30000)
    assert s.errors >= 3
    n.fs.off = False
    before = s.readings
    loop.run_for(30000)
    s.running = False
    loop.close()
    assert s.readings > before
