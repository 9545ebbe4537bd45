"""Soak: 10,000 samples through sampler, journal (simulated flash) and BLE uploads with random acks,
link losses and power cuts; nothing appended is lost, duplicates are identical, chains verify."""

import hashlib
import random
import time

from firmware import app, wire
from firmware.keystore import install_link_key
from firmware.sampler import Source
from tests.firmware.simflash import PowerCut, SimFlash
from tests.firmware.test_sampler import SimClock, SimLoop
from tests.firmware.vectors import W

try:
    import bluetooth

    from tests.firmware.test_peripheral import LINK_KEY, Gateway, ack, send_from
except ImportError:
    bluetooth = None

VM_SKIP = {
    "test_soak_10000_samples_with_power_cuts": "host shims (bluetooth) and ~10 s of CPython; "
    "the pure parts it drives are covered in the VM by test_sampler/test_protocol"
}

SAMPLES = 10000
# tracemalloc slows CPython ~6x, so memory is traced over the last TRACE_SAMPLES samples only: a
# steady-state window with uploads, reboots and a full journal, long after every buffer exists.
TRACE_SAMPLES = 2500
MAX_SEQ = 40000  # seqs used: readings + heartbeats + events + skipped blocks after each reboot
PROFILE = {"name": "soak", "sample_interval_s": 1, "heartbeat_interval_s": 60, "sensors": []}

try:
    from nacl.signing import VerifyKey

    def _verify(pk, body, sig):
        try:
            VerifyKey(pk).verify(bytes(body), bytes(sig))
        except Exception:
            return False
        return True

except ImportError:  # no PyNaCl: the firmware's own verifier (slower)
    from firmware.ed25519 import verify as _verify


class Soak:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.fs = SimFlash(seed=seed)
        self._nonces = 0
        install_link_key(self.fs, None, LINK_KEY)  # provisioning, before any power cut is armed
        self.clock = SimClock()
        self.value = 0
        self.appended = bytearray(MAX_SEQ)  # 1 = journal.append returned for this seq
        self.app_hash = bytearray(4 * MAX_SEQ)
        self.committed = bytearray(MAX_SEQ)
        self.com_hash = bytearray(4 * MAX_SEQ)
        self.high = -1
        self.last_hash = None
        self.pk = None
        self.dev_id = None
        self.samples = 0
        self.cuts = 0
        self.boots = 0
        self.uploads = 0
        self.link_losses = 0
        self.acks = 0
        self.lost_acks = 0
        self.dups = 0
        self.received = 0
        self.verified = 0
        self.overflow_events = 0
        self.dropped_reported = 0
        self.board = None
        self.loop = None

    def _read(self):
        self.value += 1
        return [(W.CH_TEMPERATURE, 0, 2000 + self.value % 1000)]

    def _urandom(self, n):
        if n == 16:  # a connection nonce: from its own source, so the scenario's rng is unchanged
            self._nonces += 1
            return hashlib.sha256(b"nonce %d" % self._nonces).digest()[:16]
        return bytes(self.rng.randrange(256) for _ in range(n))

    def boot(self):
        """Build the board from flash (retrying if power fails during the boot itself)."""
        while True:
            if self.board is not None:
                self.samples += self.board.sampler.readings + self.board.sampler.full_drops
                self.board.stop()
                self.loop.close()
                self.board = None
            self.fs.remount()
            self.fs.arm(self.fs.points + self.rng.randint(40, 1500))
            ble = bluetooth.BLE(self.rng.randrange(1 << 30), self.clock)
            try:
                b = app.build_board(
                    PROFILE, ble, self.fs, None, {}, self.clock, self._urandom,
                    sources=[Source("t", self._read, W.CH_TEMPERATURE)],
                    journal_bytes=32768, uuid=bluetooth.UUID,
                )  # fmt: skip
                self._wrap(b)
                coros = b.coroutines()
            except PowerCut:
                self.cuts += 1
                continue
            self.boots += 1
            if self.pk is None:
                self.pk = b.public_key
                self.dev_id = b.dev_id
                self.last_hash = wire.genesis_hash(b.dev_id)
            assert b.public_key == self.pk
            self.board = b
            self.ble = ble
            self.loop = SimLoop(self.clock)
            for c in coros:
                self.loop.spawn(c)
            self.gw = Gateway(ble, self.loop, self.rng.choice((23, 185, 247)))
            return

    def _wrap(self, b):
        orig = b.journal.append

        def append(seq, record, overflow=False):
            orig(seq, record, overflow)
            self.appended[seq] = 1
            self.app_hash[4 * seq : 4 * seq + 4] = hashlib.sha256(record).digest()[:4]

        b.journal.append = append

    def run(self, ms):
        """Advance the board ms of virtual time; reboot it if power was cut meanwhile."""
        end = self.clock.now_ms + ms
        while self.clock.now_ms < end:
            self.loop.run_for(min(500, end - self.clock.now_ms))
            if self.fs.off:
                self.cuts += 1
                self.boot()

    def _take(self, records):
        """Gateway side: dedup, chain-check, hold unsigned, commit on a verified signature."""
        held = []
        for rec in records:
            self.received += 1
            p = wire.parse(rec)
            seq = p[3]
            h4 = hashlib.sha256(rec).digest()[:4]
            assert p[2] == self.dev_id
            if seq <= self.high:
                self.dups += 1
                if self.committed[seq]:
                    assert self.com_hash[4 * seq : 4 * seq + 4] == h4, "clone at seq %d" % seq
                continue
            ref = wire.record_hash(held[-1][1]) if held else self.last_hash
            assert p[6] == ref, "chain break at seq %d" % seq
            assert not held or seq > held[-1][0]
            held.append((seq, rec, h4))
            if p[0] == W.KIND_EVENT and p[7][0][2] == W.EV_JOURNAL_OVERFLOW:
                self.overflow_events += 1
                self.dropped_reported += p[7][1][2]
            if p[9]:
                assert _verify(self.pk, rec[: p[8]], rec[p[8] :]), "bad signature at %d" % seq
                self.verified += 1
                for s, _r, h in held:
                    self.committed[s] = 1
                    self.com_hash[4 * s : 4 * s + 4] = h
                self.high = seq
                self.last_hash = wire.record_hash(rec, p[8])
                held = []
        return held

    def upload(self, final=False):
        """One gateway visit: connect, SEND_FROM, maybe lose the link, maybe ack, disconnect."""
        gw = self.gw
        if self.ble.adv is None or self.ble.adv[1][29:31] == b"\x00\x00":
            return
        gw.connect()
        if self.fs.off:
            return
        self.uploads += 1
        n_rec = len(gw.records)
        n_end = len(gw.ends)
        start = self.high + 1
        if not final and self.rng.random() < 0.2:  # re-ask from the oldest unacked: duplicates
            start = min(start, gw.info["first_seq"])
        if gw.info["first_seq"] <= self.high:  # an ack was lost: ask again (ACK names sent ones)
            start = gw.info["first_seq"]
        gw.write(send_from(start))
        lose = not final and self.rng.random() < 0.1
        want = self.rng.randint(1, 20)

        def done():
            if self.fs.off or not gw.central.connected:
                return True
            if lose and len(gw.records) - n_rec >= want:
                return True
            return len(gw.ends) > n_end

        gw.pump(done, 600000)
        if self.fs.off or not gw.central.connected:
            return
        held = self._take(gw.records[n_rec:])
        del gw.records[:]
        if lose:
            self.link_losses += 1
            gw.disconnect()
            return
        end = gw.ends[-1]
        if end[0] == 0 and end[1] != 0xFFFFFFFF:
            assert held == [], "an upload that was not cut short must end signed"
        r = self.rng.random()
        if final or r < 0.75:
            target = self.high
        elif r < 0.85:
            target = self.rng.randint(-1, self.high)  # a stale or partial ack
        else:
            target = -2  # the ack is lost
            self.lost_acks += 1
        if target >= 0:
            gw.write(ack(target))
            n_st = len(gw.statuses)
            gw.pump(lambda: self.fs.off or len(gw.statuses) > n_st, 5000)
            self.acks += 1
        if gw.central.connected:
            gw.disconnect()

    def soak(self):
        import gc
        import tracemalloc

        self.boot()
        while True:
            done = self.samples + self.board.sampler.readings + self.board.sampler.full_drops
            if done >= SAMPLES:
                break
            if done >= SAMPLES - TRACE_SAMPLES and not tracemalloc.is_tracing():
                gc.collect()
                tracemalloc.start()
            # gateway away for 20 s .. 3 min, sometimes 12 min (the journal fills up)
            away = self.rng.randint(20000, 180000)
            if self.rng.random() < 0.05:
                away = 720000
            self.run(away)
            self.upload()
            if self.fs.off:
                self.cuts += 1
                self.boot()
        self.samples += self.board.sampler.readings + self.board.sampler.full_drops
        self.fs.arm(-1)
        for _ in range(3):
            self.upload(final=True)
        self.board.sampler.readings = 0
        self.board.sampler.full_drops = 0


def test_soak_10000_samples_with_power_cuts():
    import tracemalloc

    started = time.time()
    s = Soak(20240601)
    s.soak()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    elapsed = time.time() - started
    pending = set(seq for seq, _ in s.board.journal.iter_from(0))
    lost = []
    for seq in range(MAX_SEQ):
        if s.appended[seq] and not s.committed[seq] and seq not in pending:
            lost.append(seq)
    mismatched = [
        seq
        for seq in range(MAX_SEQ)
        if s.committed[seq]
        and s.appended[seq]
        and s.com_hash[4 * seq : 4 * seq + 4] != s.app_hash[4 * seq : 4 * seq + 4]
    ]
    appended = sum(s.appended)
    committed = sum(s.committed)
    print(
        "soak: samples=%d appended=%d committed=%d pending=%d lost=%d dups_dropped=%d "
        "received=%d signatures_verified=%d cuts=%d boots=%d uploads=%d link_losses=%d acks=%d "
        "lost_acks=%d overflow_events=%d dropped_reported=%d peak_kb=%d end_kb=%d virtual_s=%d "
        "wall_s=%.1f"
        % (
            s.samples,
            appended,
            committed,
            len(pending),
            len(lost),
            s.dups,
            s.received,
            s.verified,
            s.cuts,
            s.boots,
            s.uploads,
            s.link_losses,
            s.acks,
            s.lost_acks,
            s.overflow_events,
            s.dropped_reported,
            peak // 1024,
            current // 1024,
            s.clock.now_ms // 1000,
            elapsed,
        )  # fmt: skip
    )
    assert s.samples >= SAMPLES
    assert lost == [], lost[:20]
    assert mismatched == []
    assert committed >= appended - len(pending) and committed > 9000
    assert s.cuts >= 10 and s.link_losses >= 3 and s.lost_acks >= 3
    # Bounded: peak over the traced window (board RAM + harness transients; the flash is capped at
    # 32 KB, the gateway's books are preallocated) and what is still held at the end.
    assert peak < 1024 * 1024, peak
    assert current < 256 * 1024, current
