"""Power-loss test: cut power at every write point of a 240-operation workload and check recovery."""

import sys

from firmware.journal import Journal, JournalFull
from firmware.keystore import KeyStore
from firmware.seqcounter import FileKV, SeqCounter
from tests.firmware.simflash import TEAR_MODES, PowerCut, SimFlash

# Small journal so the workload rolls segments, fills the journal, drops readings and compacts.
J_MAX_BYTES = 2048
J_SEGMENT_BYTES = 512
SEQ_BLOCK_TEST = 4  # small block: a reservation write every 4 seqs
N_OPS = 240
WORKLOAD_SEED = 0x5EA1
FLASH_SEED = 0xC0FFEE
OVERFLOW_RECORD_BYTES = 16

IS_VM = sys.implementation.name == "micropython"
VM_SKIP = {
    "test_powerloss_every_tear_mode": "35 s in the VM; the VM runs every write point with mixed tears "
    "(test_powerloss_every_write_point), CPython runs every write point with every tear mode",
}
# Every write point under CPython and in the VM. Set to 3 to run every 3rd write point (a
# deterministic subset) if the VM ever gets too slow; the report line says which was run.
VM_STEP = 1
# Second cut during the recovery boot: under CPython at every write point of that boot, in the VM
# at one write point per first cut (rotating, so every recovery write kind is still hit).
NESTED_ALL = True


def _xorshift(x):
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def make_workload():
    """Return the deterministic list of operations (same in CPython and MicroPython)."""
    ops = [("boot", 0)]
    x = WORKLOAD_SEED
    for i in range(N_OPS - 1):
        x = _xorshift(x)
        r = x % 100
        phase = (i // 30) % 4
        if phase == 1:  # gateway offline: no acks, the journal fills up and drops readings
            kinds = (("append", 80), ("iter", 8), ("seq", 4), ("boot", 8))
        elif phase == 2:  # gateway back: catch up with acks
            kinds = (("ack", 40), ("append", 45), ("iter", 7), ("boot", 8))
        else:
            kinds = (("append", 58), ("ack", 20), ("iter", 9), ("seq", 5), ("boot", 8))
        acc = 0
        for kind, weight in kinds:
            acc += weight
            if r < acc:
                ops.append((kind, x >> 8))
                break
    return ops


def make_record(seq, size):
    """Return deterministic record bytes for seq (size >= 1)."""
    out = bytearray(size)
    v = seq & 0xFF
    for i in range(size):
        v = (v * 33 + i + 7) & 0xFF
        out[i] = v
    if size >= 4:
        out[0:4] = seq.to_bytes(4, "big")
    return bytes(out)


class Model:
    """What the outside world knows: records whose append returned, what the gateway acked,
    every seq handed out, the key handed to the signer."""

    def __init__(self):
        self.appended = {}
        self.acked_sent = -1
        self.max_handed = 0
        self.inflight = None
        self.dropped = 0
        self.key = None
        self.seeds = []
        self.rand = 0x1234567

    def copy(self):
        m = Model()
        m.appended = dict(self.appended)
        m.acked_sent = self.acked_sent
        m.max_handed = self.max_handed
        m.inflight = self.inflight
        m.dropped = self.dropped
        m.key = self.key
        m.seeds = list(self.seeds)
        m.rand = self.rand
        return m

    def urandom(self, n):
        out = bytearray(n)
        for i in range(n):
            self.rand = _xorshift(self.rand)
            out[i] = self.rand & 0xFF
        self.seeds.append(bytes(out))
        return bytes(out)


class Device:
    """The firmware's storage stack as booted on the board."""

    def __init__(self, fs, model):
        key = KeyStore(fs, "key.bin").load_or_create(model.urandom)
        assert len(key) == 32 and key in model.seeds, "a key that was never generated"
        if model.key is None:
            model.key = key
        assert key == model.key, "key changed after it was handed out"
        self.j = Journal(fs, "j", J_MAX_BYTES, J_SEGMENT_BYTES)
        last = self.j.last()
        self.ctr = SeqCounter(FileKV(fs, "st"), 0 if last is None else last[0], SEQ_BLOCK_TEST)


def next_seq(dev, model):
    seq = dev.ctr.next()
    assert seq > model.max_handed, "seq reused"
    model.max_handed = seq
    return seq


def do_append(dev, model, size):
    j = dev.j
    if j.dropped_count and j.room_for(OVERFLOW_RECORD_BYTES):
        seq = next_seq(dev, model)
        rec = b"OVF!" + j.dropped_count.to_bytes(4, "big") + make_record(seq, 8)
        model.inflight = (seq, rec, True)
        j.append(seq, rec, True)
        model.appended[seq] = rec
        model.dropped = 0
        model.inflight = None
    seq = next_seq(dev, model)
    rec = make_record(seq, 1 + size % 244 if size % 3 == 0 else 8 + size % 100)
    model.inflight = (seq, rec, False)
    try:
        j.append(seq, rec)
        model.appended[seq] = rec
    except JournalFull:
        model.dropped += 1
    model.inflight = None


def do_ack(dev, model, r, everything=False):
    unacked = sorted(s for s in model.appended if s > model.acked_sent)
    if not unacked:
        return
    target = unacked[-1] if everything else unacked[r % len(unacked)]
    model.acked_sent = target  # the gateway committed everything up to target before acking
    dev.j.ack(target)


def check(dev, model, start=0):
    """Check the journal against the model: nothing unacked lost, nothing corrupt or invented."""
    j = dev.j
    assert j.corrupt_count == 0, "corruption reported"
    seen = {}
    prev = -1
    for seq, data in j.iter_from(start):
        assert seq > prev and seq >= start, "out of order"
        prev = seq
        want = model.appended.get(seq)
        if want is None and model.inflight is not None and model.inflight[0] == seq:
            want = model.inflight[1]
        assert want is not None, "record never appended: %d" % seq
        assert data == want, "corrupted record %d" % seq
        seen[seq] = True
    for seq in model.appended:
        if seq > model.acked_sent and seq >= start:
            assert seq in seen, "unacked record lost: %d" % seq
    last = j.last()
    if last is None:
        assert not model.appended, "chain head lost"
    elif model.inflight is not None and last[0] == model.inflight[0]:
        assert last[1] == model.inflight[1], "torn chain head"
    else:
        top = max(model.appended)
        assert last[0] == top and last[1] == model.appended[top], "wrong chain head"


def step(dev, fs, model, op):
    kind, r = op
    if kind == "boot":
        return Device(fs.remount(), model)
    if kind == "append":
        do_append(dev, model, r)
    elif kind == "ack":
        do_ack(dev, model, r)
    elif kind == "iter":
        ups = sorted(model.appended)
        check(dev, model, ups[r % len(ups)] if ups and r & 1 else 0)
    elif kind == "seq":
        next_seq(dev, model)
    return dev


def recover(fs, model):
    """Boot after a cut and reconcile the model with what survived; returns the Device."""
    dev = Device(fs.remount(), model)
    check(dev, model)
    j = dev.j
    inflight = model.inflight
    landed = inflight is not None and j.last_seq == inflight[0]
    if inflight is not None and inflight[2] and landed:
        assert j.dropped_count == 0, "overflow event stored but dropped count kept"
    else:
        assert j.dropped_count <= model.dropped + 1, "dropped count invented"
        if model.dropped:
            assert j.dropped_count >= 1, "dropped readings forgotten"
    if landed:
        model.appended[inflight[0]] = inflight[1]
    model.inflight = None
    model.dropped = j.dropped_count
    return dev


CONTINUATION = (
    ("append", 50),
    ("append", 201),
    ("iter", 0),
    ("ack", 0),
    ("append", 7),
    ("boot", 0),
    ("append", 99),
    ("iter", 1),
)


def continue_after(dev, fs, model):
    """Run a few more operations after recovery and check the journal still works."""
    for op in CONTINUATION:
        dev = step(dev, fs, model, op)
    do_ack(dev, model, 0, True)
    check(dev, model)
    return dev


def run_powerloss(vm_step=VM_STEP, tear=None):
    """Cut power at every write point (every vm_step-th in the VM) of the workload; return counts.

    tear: force one of simflash.TEAR_MODES for every cut; None picks one per write point."""
    ops = make_workload()
    fs = SimFlash(FLASH_SEED, tear)
    model = Model()
    snaps = []
    dev = None
    for i in range(len(ops)):
        if ops[i][0] == "boot":
            snaps.append((i, fs.snapshot(), model.copy()))
        dev = step(dev, fs, model, ops[i])
    check(dev, model)
    assert len(model.appended) > 100 and model.dropped >= 0
    total = fs.points
    stride = vm_step if IS_VM else 1
    cuts = nested = 0
    for k in range(1, total + 1, stride):
        si = 0
        while si + 1 < len(snaps) and snaps[si + 1][1][2] < k:
            si += 1
        i0, snap, m0 = snaps[si]
        fs.restore(snap)
        fs.arm(k)
        model = m0.copy()
        dev = None
        try:
            for op in ops[i0:]:
                dev = step(dev, fs, model, op)
            raise AssertionError("write point %d not reached" % k)
        except PowerCut:
            pass
        cuts += 1
        where = fs.last_cut
        # Nested cuts: power fails again during the recovery boot (repairs, seq reservation).
        base_snap = fs.snapshot()
        base_model = model.copy()
        fs.disarm()
        fs.remount()
        probe = base_model.copy()
        Device(fs, probe)
        boot_points = fs.points - base_snap[2]
        if NESTED_ALL:
            nested_points = range(1, boot_points + 1)
        else:
            nested_points = (k % boot_points + 1,) if boot_points else ()
        for n in nested_points:
            fs.restore(base_snap)
            fs.arm(base_snap[2] + n)
            model = base_model.copy()
            try:
                Device(fs, model)
            except PowerCut:
                nested += 1
            try:
                recover(fs, model)
            except AssertionError as e:
                raise AssertionError("cut at %r then at boot point %d: %s" % (where, n, e)) from e
        fs.restore(base_snap)
        fs.disarm()
        model = base_model
        try:
            dev = recover(fs, model)
            continue_after(dev, fs, model)
        except AssertionError as e:
            raise AssertionError("cut at %r: %s" % (where, e)) from e
    return total, cuts, nested, len(ops)


def test_powerloss_every_write_point():
    total, cuts, nested, nops = run_powerloss()
    assert nops >= 200
    assert total >= 400
    if not IS_VM or VM_STEP == 1:
        assert cuts == total
    print(
        "powerloss: %d operations, %d write points, %d cuts checked%s, %d nested cuts in recovery boots"
        % (nops, total, cuts, "" if cuts == total else " (every %dth)" % VM_STEP, nested)
    )


def test_powerloss_every_tear_mode():
    # The same exhaustive run once per kind of tear, so every write point sees every kind.
    for tear in range(len(TEAR_MODES)):
        total, cuts, nested, nops = run_powerloss(tear=tear)
        assert cuts == total or IS_VM
        print(
            "powerloss tear=%s: %d write points, %d nested cuts" % (TEAR_MODES[tear], cuts, nested)
        )
