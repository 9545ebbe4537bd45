"""Test helpers: a tiny board on MicroPython's `bluetooth` API, and an in-memory Collector."""

import asyncio

from gateway import wire
from gateway.ble import protocol as p
from gateway.errors import ChainError
from tests.support import ChainDevice
from tests.support.aio import run, wait_until  # noqa: F401  (the BLE tests import them from here)
from tools.sim import bluetooth

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
                      seqs[-1] if seqs else None, None, 1, 5, 0, "mini")  # fmt: skip
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
        op, args = p.decode_command(raw)
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


async def find_board(central, timeout_s=5):
    """Return the first advertiser of the edgeseal service a BumbleCentral's scanner sees."""
    from bleak import BleakScanner

    found = await BleakScanner.find_device_by_filter(
        lambda _d, ad: p.SERVICE_UUID in ad.service_uuids,
        timeout=timeout_s,
        backend=central.backends.scanner,
    )
    assert found is not None, "no board advertising the edgeseal service"
    return found
