"""GATT peripheral through the fake BLE and a scripted central: uploads, acks, faults, resumption.

The central side decodes frames with its own reassembler written from docs/ble-protocol.md (not
with firmware/protocol.py), so the two sides cannot share a bug.
"""

import hashlib
import struct

from firmware import ed25519, protocol, wire
from firmware.peripheral import Peripheral
from tests.firmware.test_sampler import Node, SimLoop, check_chain
from tests.firmware.vectors import W

try:
    import bluetooth  # the host shim: tests/shims is on sys.path under pytest
except ImportError:  # the MicroPython VM: tools/mpvm.mjs copies tests/shims, not on sys.path
    try:
        from tests.shims import bluetooth
    except ImportError:  # a board: no shims at all
        bluetooth = None

_WHY = "needs tests/shims/bluetooth.py (host shim, not deployed to boards)"
VM_SKIP = {}

SERVICE = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0000"
INFO = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001"
DATA = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0002"
CONTROL = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0003"


def send_from(seq, limit=0):
    return struct.pack(">BIH", 1, seq, limit)


def ack(seq):
    return struct.pack(">BI", 2, seq)


def time_sync(t):
    return struct.pack(">BI", 3, t)


STOP = b"\x04"
# The link key of the boards these tests build (as tools/gen_vectors.py's test key: fixed bytes)
LINK_KEY = bytes(range(32))


def hmac_sha256(key, msg):
    """Return HMAC-SHA256(key, msg) (RFC 2104), written here from the spec, not from firmware."""
    k = bytes(key) + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in k) + inner).digest()


def seal(key, dev_id, nonce, counter, command):
    """Return the v2 control write of command: command || counter u8 || tag (12 bytes)."""
    c = bytes([counter])
    tag = hmac_sha256(key, b"edgeseal/v2/cmd" + dev_id + nonce + c + command)[:12]
    return command + c + tag


class Urandom:
    """A stand-in for os.urandom (the VM has none): fresh, distinct bytes on every call."""

    def __init__(self, seed=b"nonces"):
        self._n = 0
        self._seed = seed
        self.calls = 0

    def __call__(self, n):
        self.calls += 1
        self._n += 1
        return hashlib.sha256(self._seed + struct.pack(">I", self._n)).digest()[:n]


class Gateway:
    """A scripted central: connects, reads Info, subscribes, sends commands and reassembles."""

    def __init__(self, ble, loop, mtu=247):
        self.central = bluetooth.Central(ble)
        self.ble = ble
        self.loop = loop
        self.mtu = mtu
        self.records = []  # complete records in arrival order
        self.ends = []
        self.statuses = []
        self.dropped = 0
        self.frames = 0
        self._cur = None
        self.info = None
        self.key = LINK_KEY
        self.counter = 0

    def connect(self):
        self.central.connect(self.mtu)
        self.loop.run_for(60)
        self.info = self.read_info()
        self.counter = 0
        self.central.subscribe(DATA)

    def read_info(self):
        raw = self.central.read(INFO)
        f = struct.unpack(">B16s32sBBBIIIIIIB16sB", raw[:94])
        return {
            "version": f[0],
            "device_id": f[1],
            "public_key": f[2],
            "firmware": (f[3], f[4], f[5]),
            "depth": f[6],
            "first_seq": f[7],
            "last_seq": f[8],
            "last_acked_seq": f[9],
            "boot": f[10],
            "time_s": f[11],
            "flags": f[12],
            "nonce": f[13],
            "board": raw[94 : 94 + f[14]].decode(),
        }

    def disconnect(self):
        self.central.disconnect()
        self._cur = None

    def write(self, raw):
        """Write command raw authenticated for this connection (the next counter)."""
        self.counter += 1
        self.write_raw(
            seal(self.key, self.info["device_id"], self.info["nonce"], self.counter, raw)
        )

    def write_raw(self, data):
        """Write data to control as it is (no tag added)."""
        self.central.write(CONTROL, data)

    def _decode(self):
        for payload in self.central.take():
            self.frames += 1
            assert len(payload) <= self.central.mtu - 3
            t = payload[0]
            if t == 1:
                msg, index, count = payload[1], payload[2], payload[3]
                cur = self._cur
                if index == 0:
                    if cur is not None:
                        self.dropped += 1
                    cur = self._cur = [msg, count, bytearray(payload[4:])]
                elif cur is None or cur[0] != msg or cur[1] != count or cur[3] != index:
                    self.dropped += 1
                    self._cur = None
                    continue
                else:
                    cur[2] += payload[4:]
                if index == count - 1:
                    self.records.append(bytes(cur[2]))
                    self._cur = None
                elif len(cur) == 3:
                    cur.append(index + 1)
                else:
                    cur[3] = index + 1
            elif t == 2:
                assert len(payload) == 10
                self.ends.append(struct.unpack(">BII", payload[1:]))
            elif t == 3:
                assert len(payload) == 7
                self.statuses.append(struct.unpack(">BBI", payload[1:]))
            else:
                raise AssertionError("unknown frame type %d" % t)

    def pump(self, done, max_ms=60000, step_ms=10):
        """Run the board until done() is true (decoding frames); returns True if it became true."""
        waited = 0
        while waited <= max_ms:
            self._decode()
            if done():
                return True
            self.loop.run_for(step_ms)
            waited += step_ms
        self._decode()
        return done()

    def upload(self, seq=0, limit=0, max_ms=120000):
        """SEND_FROM and wait for END; returns (records received, END tuple)."""
        n_rec = len(self.records)
        n_end = len(self.ends)
        self.write(send_from(seq, limit))
        assert self.pump(lambda: len(self.ends) > n_end, max_ms), "no END"
        return self.records[n_rec:], self.ends[-1]

    def command(self, raw, max_ms=5000, sealed=True):
        """Write one command (authenticated unless sealed is False) and wait for its STATUS;
        returns (command, status, arg)."""
        n = len(self.statuses)
        if sealed:
            self.write(raw)
        else:
            self.write_raw(raw)
        assert self.pump(lambda: len(self.statuses) > n, max_ms), "no STATUS"
        return self.statuses[-1]


def rig(n_readings=0, sign_every_n=16, mtu=247, seed=0):
    """Return (node, peripheral, loop, gateway, ble) with the peripheral and sampler tasks idle."""
    node = Node(sign_every_n=sign_every_n)
    for _ in range(n_readings):
        node.sampler.sample_once()
        node.clock.now_ms += 1000
    ble = bluetooth.BLE(seed, node.clock)
    per = Peripheral(
        ble, node.sampler, "cold-chain-logger", (0, 1, 0), uuid=bluetooth.UUID, link_key=LINK_KEY,
        urandom=Urandom(),
    )  # fmt: skip
    loop = SimLoop(node.clock)
    loop.spawn(per.run())
    loop.run_for(30)
    return node, per, loop, Gateway(ble, loop, mtu), ble


def _verify_upload(node, records):
    """Chain from genesis, last record signed by the board's key."""
    check_chain(records, node.dev_id)
    last = wire.parse(records[-1])
    assert last[9], "upload must end with a signed record"
    body = records[-1][: last[8]]
    assert ed25519.verify(node.signer.public_key, body, records[-1][last[8] :])


def test_registers_service_and_advertises_pending():
    node, per, loop, gw, ble = rig(5)
    assert ble.adv is not None
    adv = ble.adv[1]
    assert len(adv) == 31
    assert protocol.uuid_bytes_le(SERVICE) in adv
    assert adv[23:25] == b"\xff\xff" and adv[25:29] == node.dev_id[:4]
    assert struct.unpack(">H", adv[29:31])[0] == 5
    assert ble.adv[2][2:] == b"es-" + bytes("%02x%02x%02x%02x" % tuple(node.dev_id[:4]), "ascii")
    assert ble.config("mtu") >= 247
    loop.close()


def _cycle(mtu):
    node, per, loop, gw, ble = rig(12, mtu=mtu)
    gw.connect()
    assert per.mtu == mtu
    info = gw.info
    assert info["device_id"] == node.dev_id and info["public_key"] == node.signer.public_key
    assert info["depth"] == 12 and info["board"] == "cold-chain-logger"
    assert info["last_acked_seq"] == 0xFFFFFFFF
    records, end = gw.upload(0)
    assert len(records) == 13  # 12 unsigned readings + the signed closing heartbeat
    assert wire.parse(records[-1])[0] == W.KIND_HEARTBEAT
    _verify_upload(node, records)
    assert end == (0, wire.parse(records[-1])[3], 13)
    assert gw.dropped == 0
    if mtu == 23:
        assert gw.frames > 13 * 5
    st = gw.command(ack(wire.parse(records[-1])[3]))
    assert st == (2, 0, 0)
    assert node.sampler.depth == 0 and len(node.records()) == 0
    assert gw.read_info()["last_acked_seq"] == wire.parse(records[-1])[3]
    gw.disconnect()
    loop.run_for(50)
    assert ble.adv is not None, "advertising restarts after a disconnect"
    assert ble.adv[1][29:31] == b"\x00\x00"
    assert ble.notify_truncations == 0
    loop.close()


def test_full_upload_cycle_mtu_23():
    _cycle(23)


def test_full_upload_cycle_mtu_185():
    _cycle(185)


def test_full_upload_cycle_mtu_247():
    _cycle(247)


def test_disconnect_mid_stream_then_resume():
    node, per, loop, gw, ble = rig(30, mtu=23)
    gw.connect()
    gw.write(send_from(0))
    assert gw.pump(lambda: len(gw.records) >= 7)
    gw.disconnect()
    first = list(gw.records)
    loop.run_for(100)
    assert ble.adv is not None
    assert per.connections == 1
    gw.connect()
    assert per.connections == 2
    resume = wire.parse(first[-1])[3] + 1
    rest, end = gw.upload(resume)
    assert end[0] == 0
    allrec = first + rest
    assert len(allrec) == 31
    _verify_upload(node, allrec)
    loop.close()


def test_bad_commands_get_status_1_and_change_nothing():
    from tests.firmware.vectors import load, unhex

    node, per, loop, gw, ble = rig(4)
    gw.connect()
    before = (node.sampler.depth, node.journal.last_seq, node.journal.acked_seq)
    for vec in load("ble.json")["bad_commands"]:
        raw = unhex(vec["hex"])
        if not raw:  # an empty write carries no tag: refused before parsing (status 4)
            assert gw.command(raw, sealed=False) == (0, 4, 0)
            continue
        st = gw.command(raw)  # authenticated, but not a command: status 1
        assert st == (raw[0], 1, 0), vec["name"]
    assert (node.sampler.depth, node.journal.last_seq, node.journal.acked_seq) == before
    assert gw.ends == [] and gw.records == []
    assert per.bad_commands == 3 and per.auth_rejections == 1
    loop.close()


def test_ack_may_name_only_records_sent_on_this_connection():
    node, per, loop, gw, ble = rig(4)
    gw.connect()
    last = node.journal.last_seq
    assert gw.command(ack(last + 1)) == (2, 2, 4)  # names no record: refused, nothing deleted
    # Written but never sent on this connection (Info shows last_seq to anyone): refused.
    assert gw.command(ack(last)) == (2, 2, 4)
    assert node.sampler.depth == 4
    records, end = gw.upload(0, 2)  # two sent: those may be acked, the rest not
    sent = wire.parse(records[-1])[3]
    depth = node.sampler.depth  # 5: SEND_FROM closed the chain with a signed heartbeat
    assert gw.command(ack(sent + 1))[1] == 2 and node.sampler.depth == depth
    assert gw.command(ack(sent)) == (2, 0, depth - 2)
    gw.disconnect()
    loop.run_for(100)
    gw.connect()  # a new connection: nothing sent on it yet
    assert gw.command(ack(last))[1] == 2 and node.sampler.depth == depth - 2
    loop.close()


def test_send_from_limit_and_empty():
    node, per, loop, gw, ble = rig(6)
    gw.connect()
    records, end = gw.upload(0, 5)
    assert len(records) == 5 and end[0] == 1 and end[1] == wire.parse(records[-1])[3]
    rest, end = gw.upload(end[1] + 1)
    assert len(rest) == 2 and end[0] == 0
    check_chain(records + rest, node.dev_id)
    gw.command(ack(end[1]))
    none, end = gw.upload(end[1] + 1)
    assert none == [] and end == (2, 0xFFFFFFFF, 0)
    seg, end = gw.upload(0)  # seqs deleted after their ack: the gateway lost them
    assert [wire.parse(r)[0] for r in seg] == [W.KIND_CHAIN_SEGMENT] and end[2] == 1
    loop.close()


def test_send_from_beyond_newest_sends_nothing():
    node, per, loop, gw, ble = rig(3, sign_every_n=1)
    gw.connect()
    recs, end = gw.upload(node.journal.last_seq + 1)
    assert recs == [] and end == (0, 0xFFFFFFFF, 3)
    loop.close()


def test_stop_and_busy_during_stream():
    node, per, loop, gw, ble = rig(40, mtu=23)
    gw.connect()
    gw.write(send_from(0))
    assert gw.pump(lambda: len(gw.records) >= 2)
    gw.write(send_from(0))
    assert gw.pump(lambda: len(gw.statuses) >= 1)
    assert gw.statuses[-1] == (1, 3, 0)
    gw.write(STOP)
    assert gw.pump(lambda: len(gw.ends) >= 1)
    assert gw.ends[-1][0] == 1 and gw.ends[-1][1] == wire.parse(gw.records[-1])[3]
    assert len(gw.records) < 41
    assert gw.command(STOP) == (4, 0, 0)  # no stream: plain STATUS ok
    loop.close()


def test_time_sync_command():
    node, per, loop, gw, ble = rig(2)
    gw.connect()
    st = gw.command(time_sync(1795000000))
    assert st[:2] == (3, 0) and st[2] == 1795000000
    assert gw.read_info()["flags"] == 1
    node.sampler.sample_once()
    recs = [wire.parse(r) for r in node.records()]
    assert recs[-2][0] == W.KIND_EVENT and recs[-2][7][0] == (21, 0, 4)
    assert recs[-1][1] == W.TIME_SYNCED and recs[-1][5] >= 1795000000
    loop.close()


def test_notify_retries_when_controller_out_of_buffers():
    node, per, loop, gw, ble = rig(10, mtu=23)
    ble.notify_fail_rate = 0.4
    gw.connect()
    records, end = gw.upload(0)
    assert len(records) == 11 and end[0] == 0
    assert per.notify_retries > 10 and ble.notify_failures == per.notify_retries
    _verify_upload(node, records)
    loop.close()


def test_stuck_link_is_dropped_and_advertising_restarts():
    node, per, loop, gw, ble = rig(3)
    gw.connect()
    ble.notify_fail_rate = 1.0
    gw.write(send_from(0))
    loop.run_for(10000)
    assert not gw.central.connected
    assert ble.adv is not None
    loop.close()


def test_sampling_while_connected_and_pending_refresh():
    node, per, loop, gw, ble = rig(1)
    node.sampler.running = True
    loop.spawn(node.sampler.sample_task())
    loop.run_for(25000)  # samples at t=30 ms, 10 s, 20 s
    assert ble.adv[1][29:31] == b"\x00\x04"
    gw.connect()
    records, end = gw.upload(0)
    assert len(records) == 5
    loop.run_for(20000)  # two more readings arrive while connected
    assert gw.read_info()["depth"] == 7
    gw.command(ack(end[1]))
    gw.disconnect()
    loop.run_for(100)
    assert ble.adv[1][29:31] == b"\x00\x02"
    node.sampler.running = False
    loop.close()


if bluetooth is None:
    for _name in list(globals()):
        if _name.startswith("test_"):
            VM_SKIP[_name] = _WHY
