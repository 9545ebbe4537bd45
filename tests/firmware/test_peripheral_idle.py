"""The board drops a central that connects and stays silent (any phone in range could), so it
advertises again and a gateway can reach it; a gateway that keeps talking is not dropped."""

from firmware.peripheral import IDLE_DISCONNECT_MS
from tests.firmware.test_peripheral import rig, time_sync

VM_SKIP = {}


def test_a_silent_central_is_dropped_and_advertising_restarts():
    node, per, loop, gw, ble = rig(3)
    gw.connect()
    loop.run_for(IDLE_DISCONNECT_MS // 2)
    assert gw.central.connected and per.idle_disconnects == 0
    loop.run_for(IDLE_DISCONNECT_MS // 2 + 1000)
    assert not gw.central.connected and per.idle_disconnects == 1
    assert ble.adv is not None  # advertising again
    gw.connect()  # and reachable: the journal is still there
    records, end = gw.upload(0)
    assert len(records) == 4 and end[0] == 0
    loop.close()


def test_a_central_that_keeps_sending_commands_is_not_dropped():
    node, per, loop, gw, ble = rig(2)
    gw.connect()
    for i in range(4):
        loop.run_for(IDLE_DISCONNECT_MS * 2 // 3)
        assert gw.command(time_sync(1_700_000_000 + i))[1] == 0
    assert gw.central.connected and per.idle_disconnects == 0
    loop.close()
