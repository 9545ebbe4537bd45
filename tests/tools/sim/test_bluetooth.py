"""The sim radio's observer role: gap_scan over bumble hears tags with MicroPython's IRQ shapes."""

from __future__ import annotations

import asyncio
from typing import Any

from firmware.drivers.ble_beacon import BeaconReader
from tests.support.aio import run, wait_until
from tools.sim import bluetooth
from tools.sim.radio import VirtualLink
from tools.sim.tags import BeaconTag, ibeacon_adv, ibeacon_id

UUID = bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0")


class Events:
    def __init__(self) -> None:
        self.results: list[tuple[int, bytes, int, int, bytes]] = []
        self.done = 0

    def __call__(self, event: int, data: tuple[Any, ...]) -> None:
        if event == bluetooth._IRQ_SCAN_RESULT:
            addr_type, addr, adv_type, rssi, adv = data
            assert isinstance(addr, memoryview) and isinstance(adv, memoryview)
            self.results.append((addr_type, bytes(addr), adv_type, rssi, bytes(adv)))
        elif event == bluetooth._IRQ_SCAN_DONE:
            assert data == ()
            self.done += 1


def test_a_scan_hears_a_present_tag_and_ends_with_scan_done() -> None:
    async def scenario() -> None:
        link = VirtualLink()
        board = bluetooth.BLE(link.new_device("bay"))
        board.active(True)
        near = {"on": True}
        tag = BeaconTag(link.new_device("car"), ibeacon_adv(UUID, 1, 7), lambda: near["on"])
        far = BeaconTag(link.new_device("other"), ibeacon_adv(UUID, 1, 8), lambda: True)
        events = Events()
        board.irq(events)
        await tag.start()
        await far.start()
        board.rssi_of = lambda addr: -88 if addr == far.address else None
        try:
            board.gap_scan(600, 100_000, 50_000)
            await wait_until(lambda: events.done == 1)
            mine = [r for r in events.results if r[1] == tag.address]
            assert mine and all(r[2] == bluetooth.ADV_IND for r in mine)  # passive: no SCAN_RSP
            assert all(r[3] == -50 and r[4] == tag.adv for r in mine)
            assert {r[3] for r in events.results if r[1] == far.address} == {-88}
            # the real firmware reader picks the near tag and drops the far one (min RSSI)
            reader = BeaconReader(-75, None, 2)
            for r in events.results:
                reader.on_scan_result(*r)
            got = reader.take()
            assert got is not None and got[1] == ibeacon_id(UUID, 1, 7)

            # the car leaves: a later scan no longer hears it; gap_scan(None) ends a scan early
            near["on"] = False
            await wait_until(lambda: not tag.advertising)
            await asyncio.sleep(0.3)
            events.results.clear()
            board.gap_scan(0, 100_000, 50_000, active=True)
            # an active scan also hears the scan responses
            await wait_until(
                lambda: (far.address, bluetooth.SCAN_RSP) in {r[1:3] for r in events.results}
            )
            board.gap_scan(None)
            assert events.done == 2
            assert not [r for r in events.results if r[1] == tag.address]
            board.gap_scan(None)  # no scan in progress: nothing happens
            assert events.done == 2
        finally:
            await tag.stop()
            await far.stop()
            await board.close()

    run(scenario())
