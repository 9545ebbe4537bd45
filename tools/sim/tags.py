"""Vehicle tags of the simulated world: iBeacon advertisers on the virtual radio, in range or not.

A `BeaconTag` is a bumble Device on the fleet's virtual link that advertises an Apple iBeacon
payload (the frame the parking bay's `ble_beacon` driver parses) while its timeline says the
vehicle is near, and is silent otherwise; the board hears it through its own scan (gap_scan in
tools/sim/bluetooth.py), at the RSSI the world gives for the tag's address.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from bumble.device import AdvertisingType, Device

# Flags (LE General Discoverable, BR/EDR not supported) and Apple's manufacturer id, as every
# iBeacon sends them (Apple, "Getting Started with iBeacon").
AD_FLAGS, AD_MANUFACTURER = 0x01, 0xFF
APPLE_COMPANY_LE = b"\x4c\x00"
IBEACON_TYPE = b"\x02\x15"
# why 100 ms: the iBeacon spec's recommended advertising interval
ADVERTISING_INTERVAL_MS = 100
# why 100 ms: the tag follows its timeline within one advertising interval
PRESENCE_POLL_S = 0.1


def ibeacon_adv(uuid: bytes, major: int, minor: int, tx_power_dbm: int = -59) -> bytes:
    """Return the advertising payload (flags + iBeacon manufacturer data) of a tag.

    Precondition: uuid is 16 bytes, major and minor fit 16 bits.
    """
    mfr = (
        APPLE_COMPANY_LE + IBEACON_TYPE + uuid + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big") + bytes((tx_power_dbm & 0xFF,))
    )  # fmt: skip
    return bytes((2, AD_FLAGS, 0x06, len(mfr) + 1, AD_MANUFACTURER)) + mfr


def ibeacon_id(uuid: bytes, major: int, minor: int) -> bytes:
    """Return the tag id as the ble_beacon driver reports it: UUID || major || minor."""
    return uuid + major.to_bytes(2, "big") + minor.to_bytes(2, "big")


class BeaconTag:
    """One tag: advertises `adv` every ADVERTISING_INTERVAL_MS while present() is true."""

    def __init__(self, device: Device, adv: bytes, present: Callable[[], bool]) -> None:
        """device: a powered-off bumble Device on the virtual link (VirtualLink.new_device)."""
        self.device = device
        self.adv = adv
        self.present = present
        self.advertising = False
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> bytes:
        """Return the tag's address as a board's scan reports it (big-endian bytes)."""
        return bytes(self.device.random_address.address_bytes)[::-1]

    async def start(self) -> None:
        """Power the tag on and follow its timeline until stop()."""
        await self.device.power_on()
        self._task = asyncio.create_task(self._follow(), name=f"tag-{self.device.name}")

    async def _follow(self) -> None:
        while True:
            near = bool(self.present())
            if near and not self.advertising:
                # bumble's virtual controller delivers only connectable adverts (ADV_IND); a real
                # iBeacon sends ADV_NONCONN_IND, which the bay's driver takes alike
                await self.device.start_advertising(
                    advertising_type=AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE,
                    advertising_data=self.adv,
                    advertising_interval_min=ADVERTISING_INTERVAL_MS,
                    advertising_interval_max=ADVERTISING_INTERVAL_MS,
                )
                self.advertising = True
            elif not near and self.advertising:
                await self.device.stop_advertising()
                self.advertising = False
            await asyncio.sleep(PRESENCE_POLL_S)

    async def stop(self) -> None:
        """Stop following the timeline and power off; safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.device.power_off()
        self.advertising = False
