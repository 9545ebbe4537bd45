"""Test helpers: a tiny board on MicroPython's `bluetooth` API, an in-memory Collector, and the
virtual fleet's profiles, journal recorder and sampling freeze."""

import asyncio
import contextlib
import os
from pathlib import Path
from unittest import mock

from firmware import board as fw_board
from firmware.journal import Journal
from gateway import wire
from gateway.ble import auth
from gateway.ble import protocol as p
from gateway.ble.link import LinkConfig
from gateway.errors import ChainError
from tests.support import ChainDevice, aio
from tests.support.aio import wait_until  # noqa: F401  (the BLE tests import it from here)
from tools.sim import bluetooth
from tools.sim.fleet import SIM_LINK_MASTER

ROOT = Path(__file__).resolve().parents[3]
# Link timers of the BLE tests, made for a loaded machine (2 busy cores stall the one event loop
# that runs the boards, the radio and the link for seconds): every timeout is generous, since a
# spurious one is a flaky failure, and every backoff or cooldown is short, so retries come fast
# once their cause is gone. A test never waits for a timeout to pass; it waits on conditions.
TEST_LINK = LinkConfig(
    connect_timeout_s=20,
    gatt_timeout_s=10,
    stall_timeout_s=10,
    ack_timeout_s=10,
    disconnect_timeout_s=5,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    success_cooldown_s=0.2,
    permanent_backoff_s=2,
    scan_watchdog_s=10,
)
# The gateway's link keys in the BLE tests: the virtual fleet provisions its boards from the same
# master secret (tools/sim/fleet.py SIM_LINK_MASTER), and MiniBoard checks tags under it.
TEST_KEYS = auth.LinkKeys(SIM_LINK_MASTER)
# why: the deadline of every wait on a condition; a quiet machine reaches each in about a
# second, a loaded one in a few, and only a bug takes a minute.
WAIT_S = 60
_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_MTU_EXCHANGED = 21


def make_chain(name, n, sign_every=3, first_seq=1):
    """Return (device_id, public_key, [(seq, record bytes)]) of a hash-chained test device.

    Every sign_every-th record and the last one are signed; seqs step by 2 (gaps are legal).
    """
    dev = ChainDevice(
        name, tag=b"edgeseal ble test ", seq=first_seq, seq_step=2, time_s=100, flags=0
    )
    return dev.device_id, dev.public_key, dev.readings(n, sign_every=sign_every)


class MiniBoard:
    """A minimal board written against MicroPython's documented `bluetooth` API only.

    Streams the whole journal from the IRQ handler on SEND_FROM, answers ACK with STATUS and
    re-advertises after every disconnect. drop_after_frames: on the first upload, disconnect
    after that many notifications (a link lost mid-upload).
    """

    def __init__(self, ble, records, dev_id, pk, mtu=247, drop_after_frames=None, events=None):
        self.ble = ble
        self.journal = list(records)
        self.dev_id, self.pk = dev_id, pk
        self.drop_after_frames = drop_after_frames
        self.events = events if events is not None else []
        self.send_from = []
        self.acks = []
        self.conn = None
        self.mtu = 23
        self.msg = 0
        self.highest_sent = -1
        self.nonce = bytes(16)
        self.counter = 0
        self.auth_rejections = 0
        ble.active(True)
        ble.config(mtu=mtu)
        svc = (
            bluetooth.UUID(p.SERVICE_UUID),
            (
                (bluetooth.UUID(p.INFO_UUID), bluetooth.FLAG_READ),
                (bluetooth.UUID(p.DATA_UUID), bluetooth.FLAG_NOTIFY),
                (bluetooth.UUID(p.CONTROL_UUID), bluetooth.FLAG_WRITE),
            ),
        )
        ((self.h_info, self.h_data, self.h_ctl),) = ble.gatts_register_services((svc,))
        ble.gatts_set_buffer(self.h_info, 110)
        ble.gatts_set_buffer(self.h_ctl, 32)
        ble.irq(self._irq)
        self._refresh()

    def _refresh(self):
        seqs = [s for s, _ in self.journal]
        info = p.Info(self.dev_id, self.pk, (0, 0, 1), len(seqs), seqs[0] if seqs else None,
                      seqs[-1] if seqs else None, None, 1, 5, 0, "mini", self.nonce)  # fmt: skip
        self.ble.gatts_write(self.h_info, p.encode_info(info))
        if self.conn is None:
            self.ble.gap_advertise(
                20_000,
                adv_data=p.encode_advertising(self.dev_id, len(self.journal)),
                resp_data=p.encode_scan_response(self.dev_id),
            )

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self.conn, self.mtu = data[0], 23
            self.nonce, self.counter = bytes(os.urandom(16)), 0
            self._refresh()
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.conn = None
            self._refresh()
        elif event == _IRQ_MTU_EXCHANGED:
            self.mtu = data[1]
        elif event == _IRQ_GATTS_WRITE and data[1] == self.h_ctl:
            self._command(bytes(self.ble.gatts_read(self.h_ctl)))

    def _notify(self, frame):
        self.ble.gatts_notify(self.conn, self.h_data, frame)

    def _command(self, raw):
        key = TEST_KEYS.for_device(self.dev_id)
        reason, cmd, counter = auth.check_write(key, self.dev_id, self.nonce, self.counter, raw)
        if reason != "ok":
            self.auth_rejections += 1
            self._notify(p.encode_status(raw[0] if raw else 0, p.STATUS_UNAUTHENTICATED))
            return
        self.counter = counter
        op, args = p.decode_command(cmd)
        if op == p.CMD_SEND_FROM:
            self.send_from.append(args[0])
            sent = 0
            last = None
            for seq, rec in self.journal:
                if seq < args[0]:
                    continue
                for frame in p.encode_chunks(rec, self.msg, self.mtu):
                    self._notify(frame)
                    sent += 1
                    if self.drop_after_frames is not None and sent >= self.drop_after_frames:
                        self.drop_after_frames = None
                        self.ble.gap_disconnect(self.conn)
                        return
                self.msg = (self.msg + 1) % 256
                last = seq
                self.highest_sent = max(self.highest_sent, seq)
            reason = p.END_ALL_SENT if last is not None else p.END_JOURNAL_EMPTY
            self._notify(p.encode_end(reason, last, len(self.journal)))
        elif op == p.CMD_ACK:
            self.acks.append(args[0])
            self.events.append(("ack", self.dev_id, args[0]))
            if args[0] > self.highest_sent:
                self._notify(p.encode_status(p.CMD_ACK, p.STATUS_BAD_ARGUMENT, len(self.journal)))
                return
            self.journal = [(s, r) for s, r in self.journal if s > args[0]]
            self._notify(p.encode_status(p.CMD_ACK, p.STATUS_OK, len(self.journal)))
            self._refresh()


class MemoryCollector:
    """Collector over dicts: verifies with gateway.wire, commits authentic records, logs events.

    events: shared list; ("committed", dev, seq) is appended when deliver has committed and is
    about to return, boards append ("ack", dev, seq) when an ACK arrives.
    """

    def __init__(self, keys, events=None):
        self.keys = dict(keys)
        self.committed = {d: [] for d in keys}
        self.tip = {}
        self.deliveries = []
        self.duplicates = 0
        self.events = events if events is not None else []

    def device_for_prefix(self, prefix):
        return next((d for d in self.keys if d[:4] == prefix), None)

    def last_committed_seq(self, device_id):
        tip = self.tip.get(device_id)
        return None if tip is None else tip[0]

    async def deliver(self, device_id, records):
        self.deliveries.append((device_id, len(records)))
        await asyncio.sleep(0.01)  # a durable commit takes time; the link must wait for it
        last_seq, last_hash = self.tip.get(device_id, (None, None))
        chain = wire.DeviceChain(device_id, self.keys[device_id], last_seq, last_hash)
        for raw in records:
            rec = wire.decode_record(raw)
            try:
                authentic = chain.push(rec)
            except ChainError as e:
                if e.code == "replayed-seq":
                    self.duplicates += 1
                    continue
                raise
            for r in authentic:
                self.committed[device_id].append(r)
            if authentic:
                self.tip[device_id] = (chain.last_seq, chain.last_hash)
        self.keys[device_id] = chain.public_key
        seq = self.last_committed_seq(device_id)
        self.events.append(("committed", device_id, seq))
        return seq


def run(coro, timeout_s=3 * WAIT_S):
    """tests.support.aio.run with an overall timeout above the WAIT_S of the waits inside, so a
    condition that is never reached fails with its own message, not the overall timeout."""
    return aio.run(coro, timeout_s)


async def find_board(central, timeout_s=WAIT_S):
    """Return the first advertiser of the edgeseal service a BumbleCentral's scanner sees."""
    from bleak import BleakScanner

    found = await BleakScanner.find_device_by_filter(
        lambda _d, ad: p.SERVICE_UUID in ad.service_uuids,
        timeout=timeout_s,
        backend=central.backends.scanner,
    )
    assert found is not None, "no board advertising the edgeseal service"
    return found


def load_profiles(names):
    """Return the board profiles boards/<name>.json, in order."""
    return [fw_board.load(str(ROOT / "boards" / f"{n}.json")) for n in names]


@contextlib.contextmanager
def recording_journals():
    """Wrap firmware Journal.append (class level: the boot record is journaled inside start());
    yield {device id: [(seq, record bytes)]} of every record stored, in append order."""
    produced: dict[bytes, list[tuple[int, bytes]]] = {}
    original = Journal.append

    def append(self, seq, record, overflow=False):
        original(self, seq, record, overflow)  # raises JournalFull before storing anything
        raw = bytes(record)
        produced.setdefault(raw[3:19], []).append((seq, raw))  # record bytes 3..19: device id

    with mock.patch.object(Journal, "append", append):
        yield produced


def freeze_sampling(boards):
    """Stop the sampling and heartbeat tasks of VirtualBoards (they check sampler.running before
    every step); the peripheral keeps serving uploads (its close_chain may still journal a
    signed heartbeat)."""
    for vb in boards:
        vb.board.sampler.running = False
