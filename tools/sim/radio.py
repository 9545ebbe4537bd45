"""The simulated world's radio: bumble's LocalLink, with a virtual Controller per device.

Every virtual board, every vehicle tag and the gateway's central are bumble Devices on one
VirtualLink, in one process and one event loop (no kernel Bluetooth). The gateway's side is its
real bumble backend (gateway.ble.bumble_backend.BumbleCentral) on one of these devices.
"""

from __future__ import annotations

from bumble import hci
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from gateway.ble.bumble_backend import CENTRAL_ADDRESS, BumbleCentral

# How long an HCI command may take before bumble gives up; a virtual controller answers at once,
# but a loaded test machine can stall the event loop for seconds.
HCI_COMMAND_TIMEOUT_S = 10.0


class VirtualLink:
    """bumble's LocalLink plus a factory for Devices that each own a virtual Controller.

    All Devices of one link live in one process and one event loop; a Controller needs a running
    loop, so create devices from a coroutine.
    """

    def __init__(self) -> None:
        """Create an empty link."""
        self.link = LocalLink()
        self._next = 2

    def new_device(self, name: str, address: str | None = None) -> Device:
        """Return a new (powered off) Device on this link, with address or the next free one."""
        if address is None:
            n = self._next
            self._next += 1
            address = f"C0:00:00:00:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
        addr = hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
        controller = Controller(name, link=self.link, public_address=addr)
        device = Device(name=name, address=addr, host=Host(controller, AsyncPipeSink(controller)))
        device.command_timeout = HCI_COMMAND_TIMEOUT_S
        return device

    def new_central(self, address: str = CENTRAL_ADDRESS) -> BumbleCentral:
        """Return the gateway's central on this link (not started; call from a running loop)."""
        return BumbleCentral(self.new_device("edgeseal-gateway", address))
