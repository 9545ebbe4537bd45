"""OTA over the BLE peripheral: authenticated OTA_BEGIN/DATA/END through the shim radio, resume, reset, confirm."""

import struct

from firmware import ota, protocol
from firmware.peripheral import Peripheral
from tests.firmware.otarel import app_files, public_key, stream
from tests.firmware.test_sampler import Node, SimLoop

try:
    import bluetooth  # the host shim: tests/shims is on sys.path under pytest
except ImportError:  # the MicroPython VM
    from tests.shims import bluetooth
from tests.firmware.test_peripheral import LINK_KEY, Gateway, Urandom, ack
from tests.firmware.vectors import P, private_const

V2 = 0x000200


def _rig(seed=0):
    """Return (node, peripheral, loop, gateway, receiver) of a board with a release key."""
    node = Node(sign_every_n=1)
    node.sampler.sample_once()
    ota.install_release_key(node.fs, None, public_key())
    ble = bluetooth.BLE(seed, node.clock)
    per = Peripheral(
        ble, node.sampler, "cold-chain-logger", (0, 1, 0), uuid=bluetooth.UUID, link_key=LINK_KEY,
        urandom=Urandom(), ota=(node.fs, None),
    )  # fmt: skip
    assert per.ota is None  # firmware.ota is only imported when needed
    rx = per.ota_receiver()
    restarts = []
    rx.on_switch = lambda: restarts.append(1)
    rx.restarts = restarts
    loop = SimLoop(node.clock)
    loop.spawn(per.run())
    loop.run_for(30)
    return node, per, loop, Gateway(ble, loop, 247), rx


# docs/ble-protocol.md: OTA_DATA's opcode and its largest payload at MTU 247
CMD_OTA_DATA = private_const(protocol, "_CMD_OTA_DATA", 0x06)
OTA_MAX_DATA_BYTES = private_const(protocol, "_OTA_MAX_DATA_BYTES", 226)


def _begin(data, hl, rid):
    return bytes([P.CMD_OTA_BEGIN]) + struct.pack(">IH", len(data), hl) + rid


def _push(gw, data, hl, rid, stop=None, per_connection=200):
    """Push from the offset the board names; returns the last STATUS (command, status, arg)."""
    st = gw.command(_begin(data, hl, rid))
    assert st[:2] == (P.CMD_OTA_BEGIN, P.ST_OK), st
    off = st[2]
    end = len(data) if stop is None else stop
    sent = 0
    while off < end and sent < per_connection:
        n = min(OTA_MAX_DATA_BYTES, end - off)
        cmd = bytes([CMD_OTA_DATA]) + struct.pack(">I", off) + data[off : off + n]
        st = gw.command(cmd)
        assert st[1] == P.ST_OK, st
        off = st[2]
        sent += 1
    if off < len(data):
        return st
    return gw.command(bytes([P.CMD_OTA_END]))


def test_ota_over_ble_resumes_switches_and_restarts():
    node, per, loop, gw, rx = _rig()
    data, hl, rid = stream(app_files("v2", n=4, size=900), V2)
    gw.connect()
    st = _push(gw, data, hl, rid, stop=hl + 1000)
    assert st[:2] == (CMD_OTA_DATA, P.ST_OK)
    gw.disconnect()
    loop.run_for(100)
    gw.connect()  # a new connection (new nonce, counter from 1) resumes where flash ends
    st = gw.command(_begin(data, hl, rid))
    assert st == (P.CMD_OTA_BEGIN, P.ST_OK, hl + 1000)
    assert _push(gw, data, hl, rid) == (P.CMD_OTA_END, P.ST_OK, V2)
    assert gw.pump(lambda: rx.restarts == [1], 2000), "no restart after the switch"
    assert not per.running and ota.read_pointer(node.fs)[:3] == ("a", V2, "trial")


def test_ota_commands_need_authentication():
    node, per, loop, gw, rx = _rig()
    data, hl, rid = stream(app_files("v2"), V2)
    gw.connect()
    begin = _begin(data, hl, rid)
    assert gw.command(begin + bytes(13), sealed=False)[1] == P.ST_UNAUTHENTICATED
    assert gw.command(bytes([P.CMD_OTA_END, 1]))[1] == P.ST_BAD_COMMAND
    assert not node.fs.exists("ota/stage") and per.auth_rejections == 1


def test_first_acked_upload_confirms_a_trial_version():
    node, per, loop, gw, rx = _rig()
    data, hl, rid = stream(app_files("v2"), V2)
    gw.connect()
    _push(gw, data, hl, rid)
    assert ota.boot_select(node.fs) == "ota/a"  # the new version booted (same board, for short)
    ble = bluetooth.BLE(1, node.clock)
    per2 = Peripheral(
        ble, node.sampler, "cold-chain-logger", (0, 2, 0), uuid=bluetooth.UUID, link_key=LINK_KEY,
        urandom=Urandom(b"second"), ota=(node.fs, None),
    )  # fmt: skip
    loop.spawn(per2.run())
    loop.run_for(30)
    gw2 = Gateway(ble, loop, 247)
    gw2.connect()
    assert gw2.info["firmware"] == (0, 2, 0)
    node.sampler.sample_once()
    records, end = gw2.upload(0)
    assert records and ota.read_pointer(node.fs)[2] == "trial"
    assert gw2.command(ack(end[1]))[1] == P.ST_OK
    assert ota.read_pointer(node.fs)[2] == "good"
    assert gw2.command(ack(end[1]))[1] == P.ST_OK  # later acks: nothing to confirm
