"""The board drops a central that connects and does not authenticate within AUTH_TIMEOUT_MS
(any phone in range could connect), and an authenticated one that then stays silent for
IDLE_DISCONNECT_MS, so it advertises again and a gateway can reach it; a gateway that keeps
talking is not dropped."""

from firmware import peripheral
from tests.firmware.test_peripheral import STOP, rig
from tests.firmware.vectors import private_const

AUTH_TIMEOUT_MS = private_const(peripheral, "_AUTH_TIMEOUT_MS", 10000)
IDLE_DISCONNECT_MS = private_const(peripheral, "_IDLE_DISCONNECT_MS", 120000)

VM_SKIP = {}


def test_a_central_that_does_not_authenticate_is_dropped_and_advertising_restarts():
    node, per, loop, gw, ble = rig(3)
    gw.connect()
    assert gw.command(STOP, sealed=False)[1] == 4  # a write without a tag does not count
    loop.run_for(AUTH_TIMEOUT_MS // 2)
    assert gw.central.connected and per.auth_timeouts == 0
    loop.run_for(AUTH_TIMEOUT_MS // 2 + 1000)
    assert not gw.central.connected and per.auth_timeouts == 1 and per.idle_disconnects == 0
    assert ble.adv is not None  # advertising again
    gw.connect()  # and reachable: the journal is still there
    records, end = gw.upload(0)
    assert len(records) == 4 and end[0] == 0
    loop.close()


def test_a_silent_central_is_dropped_and_advertising_restarts():
    node, per, loop, gw, ble = rig(3)
    gw.connect()
    assert gw.command(STOP)[1] == 0  # authenticated: the generous idle drop applies from now on
    loop.run_for(IDLE_DISCONNECT_MS // 2)
    assert gw.central.connected and per.idle_disconnects == 0
    loop.run_for(IDLE_DISCONNECT_MS // 2 + 1000)
    assert not gw.central.connected and per.idle_disconnects == 1 and per.auth_timeouts == 0
    assert ble.adv is not None  # advertising again
    gw.connect()  # and reachable: the journal is still there
    records, end = gw.upload(0)
    assert len(records) == 4 and end[0] == 0
    loop.close()


def test_a_central_that_keeps_sending_commands_is_not_dropped():
    node, per, loop, gw, ble = rig(2)
    gw.connect()
    for _ in range(4):
        assert gw.command(STOP)[1] == 0
        loop.run_for(IDLE_DISCONNECT_MS * 2 // 3)
    assert gw.central.connected and per.idle_disconnects == 0
    loop.close()
