"""A bleak backend on bumble: BleakClient/BleakScanner drive a bumble host (virtual link or HCI).

bleak 3 accepts `backend=<class>` in BleakClient and BleakScanner; this module provides those
classes, bound to one `BumbleCentral` (a bumble Device acting as the gateway's central). The
central's controller is either a real one reached through any bumble transport, e.g. a USB dongle
with `usb:0` (`open_hci`: bumble drives it over HCI, BlueZ not involved), or any bumble Device
given to the constructor, such as one on the simulated world's virtual radio
(tools/sim/radio.py: every board and the gateway in one process, no kernel Bluetooth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import att, core, hci
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy

from gateway.ble import protocol
from gateway.ble.link import BleakBackends

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# ATT MTU the central asks for: 247 lets the largest record (240 bytes) plus the 4-byte frame
# header travel in one notification (docs/ble-protocol.md); it is also what BlueZ asks for.
DEFAULT_MTU = 247
CENTRAL_ADDRESS = "F0:00:00:00:00:01"  # static random address of the gateway's central
# Bound on one disconnect (HCI Disconnect to Disconnection Complete) and on each step of
# BumbleCentral.close: a controller that lost track of a connection never completes it.
DISCONNECT_TIMEOUT_S = 5.0

_PROPERTY_NAMES = {
    Characteristic.Properties.BROADCAST: "broadcast",
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
    Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES: "authenticated-signed-writes",
    Characteristic.Properties.EXTENDED_PROPERTIES: "extended-properties",
}


def _uuid_str(uuid: core.UUID) -> str:
    """Return a bumble UUID as bleak's lower-case, dashed 128-bit string."""
    h = uuid.to_bytes(force_128=True)[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BumbleCentral:
    """A bumble Device used as the gateway's central, and the bleak backend classes bound to it."""

    def __init__(self, device: Device, *, mtu: int = DEFAULT_MTU, transport: Any = None) -> None:
        """Wrap device (powered on by start()); transport, if given, is closed by close()."""
        self.device = device
        self.mtu = mtu
        self._transport = transport
        self._started = False
        self._scan_users = 0
        self._scan_lock = asyncio.Lock()
        # One LE Create Connection at a time, like a real controller (BlueZ queues or answers
        # InProgress); concurrent BleakClients wait here.
        self.connect_lock = asyncio.Lock()
        self.addresses: dict[str, hci.Address] = {}
        self._late_disconnects: set[asyncio.Future[Any]] = set()
        self.backends = BleakBackends(
            client=type("BoundBumbleClient", (BumbleClient,), {"central": self}),
            scanner=type("BoundBumbleScanner", (BumbleScanner,), {"central": self}),
        )

    @classmethod
    async def open_hci(cls, transport_name: str, address: str = CENTRAL_ADDRESS) -> BumbleCentral:
        """Return a started central on a real controller, e.g. "usb:0" or "serial:/dev/ttyACM0".

        Any bumble transport name works (bumble.transport.open_transport). The controller is
        driven over HCI by bumble, so BlueZ must not hold it (unbind btusb or use a dongle that
        the kernel does not claim). Raises whatever the transport raises if it cannot be opened.
        """
        from bumble.transport import open_transport

        transport = await open_transport(transport_name)
        device = Device.with_hci(
            "edgeseal-gateway",
            hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS),
            transport.source,  # type: ignore[arg-type]
            transport.sink,  # type: ignore[arg-type]
        )
        central = cls(device, transport=transport)
        await central.start()
        return central

    async def start(self) -> None:
        """Power the device on (idempotent)."""
        if not self._started:
            self._started = True
            await self.device.power_on()

    async def close(self) -> None:
        """Disconnect everything, power off and close the transport, if any.

        Waits for the disconnects of late connections (drop_late_connection) too, so nothing of
        the central is still running when close returns; each step is bounded by
        DISCONNECT_TIMEOUT_S (and never raises), so close always returns.
        """
        if self._late_disconnects:
            await asyncio.wait(set(self._late_disconnects), timeout=DISCONNECT_TIMEOUT_S)
        for conn in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.disconnect(), DISCONNECT_TIMEOUT_S)
        if self._started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.device.power_off(), DISCONNECT_TIMEOUT_S)
            self._started = False
        if self._transport is not None:
            await self._transport.close()

    def drop_late_connection(self, attempt: asyncio.Future[Connection]) -> None:
        """Done callback of a connect attempt whose caller was cancelled: disconnect the
        connection it made, if any (nobody owns it), and consume its error otherwise."""
        if attempt.cancelled() or attempt.exception() is not None:
            return
        task = asyncio.ensure_future(attempt.result().disconnect())
        self._late_disconnects.add(task)
        task.add_done_callback(self._late_disconnects.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def acquire_scan(self, active: bool) -> None:
        """Start scanning for the first user; later users share the running scan."""
        async with self._scan_lock:
            await self.start()
            self._scan_users += 1
            if self._scan_users == 1:
                await self.device.start_scanning(active=active, filter_duplicates=False)

    async def release_scan(self) -> None:
        """Stop scanning when the last user releases it."""
        async with self._scan_lock:
            self._scan_users = max(0, self._scan_users - 1)
            if self._scan_users == 0 and self.device.is_scanning:
                await self.device.stop_scanning()


class BumbleScanner(BaseBleakScanner):
    """BaseBleakScanner on a BumbleCentral (bound subclasses come from BumbleCentral.backends)."""

    central: ClassVar[BumbleCentral]

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        """Accept bleak's scanner arguments; platform-specific ones (bluez=, cb=) are ignored."""
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"
        self._scanning = False

    async def start(self) -> None:
        """Start reporting advertisements (bleak contract: seen_devices is cleared)."""
        self.seen_devices = {}
        self.central.device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self.central.acquire_scan(self._active)
        self._scanning = True

    async def stop(self) -> None:
        """Stop reporting advertisements."""
        self.central.device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        if self._scanning:
            self._scanning = False
            await self.central.release_scan()

    def _on_advertisement(self, adv: Advertisement) -> None:
        try:
            ad = protocol.parse_ad_structures(bytes(adv.data))
        except Exception:  # a malformed advert from someone else's device: not ours to judge
            return
        service_uuids = protocol.service_uuids_in(ad)
        if not self.is_allowed_uuid(service_uuids):
            return
        name = protocol.local_name_in(ad)
        data = AdvertisementData(
            local_name=name,
            manufacturer_data=protocol.manufacturer_data_in(ad),
            service_data={},
            service_uuids=service_uuids,
            tx_power=None,
            rssi=adv.rssi,
            platform_data=(adv,),
        )
        address = str(adv.address).split("/")[0]
        self.central.addresses[address] = adv.address
        device = self.create_or_update_device(address, address, name, adv.address, data)
        self.call_detection_callbacks(device, data)


class BumbleClient(BaseBleakClient):
    """BaseBleakClient on a BumbleCentral (bound subclasses come from BumbleCentral.backends).

    connect() creates the LE connection, exchanges the ATT MTU (central.mtu) and discovers every
    service, characteristic and descriptor. Notification callbacks are per client and removed by
    stop_notify and on disconnect, so a new client never inherits an old one's callbacks.

    Cancel-safe: a GATT request (discovery included) whose caller is cancelled -- the link's
    GATT timeout, a gateway stop -- is not cancelled inside bumble but left to finish (see
    _shielded); disconnect() is bounded by DISCONNECT_TIMEOUT_S.
    """

    central: ClassVar[BumbleCentral]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        """Accept bleak's client arguments; bluez=/winrt=/services= are ignored."""
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details = getattr(address_or_ble_device, "details", None)
        self._peer_address: hci.Address | None = (
            details if isinstance(details, hci.Address) else None
        )
        self._name = getattr(address_or_ble_device, "name", None) or self.address
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._proxies: dict[int, CharacteristicProxy] = {}
        self._subscribers: dict[int, Callable[[bytes], None]] = {}
        self._disconnecting = False
        self._requests: set[asyncio.Future[Any]] = set()  # GATT requests in flight

    @property
    def name(self) -> str:
        """Return the advertised name, or the address."""
        return self._name

    @property
    def mtu_size(self) -> int:
        """Return the negotiated ATT MTU (23 when not connected)."""
        return self._connection.att_mtu if self._connection is not None else protocol.MIN_MTU

    @property
    def is_connected(self) -> bool:
        """Return True while the LE connection is up."""
        return self._connection is not None

    def _address(self) -> hci.Address:
        if self._peer_address is not None:
            return self._peer_address
        known = self.central.addresses.get(self.address.upper())
        if known is None:
            raise BleakDeviceNotFoundError(self.address, f"{self.address} was never seen")
        return known

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange the MTU and discover services; raise BleakError on failure.

        Cancel-safe: bumble's Device.connect cancels the controller's LE Create Connection only
        on its own timeout, not when its task is cancelled; the controller would then refuse
        every later connect (COMMAND_DISALLOWED) and complete a connection nobody owns. So the
        attempt runs shielded: a cancelled caller (the link's own timeout, a gateway stop)
        leaves it to finish, connect_lock stays held until it has, and a connection that still
        comes up is dropped.
        """
        await self.central.start()
        address = self._address()
        lock = self.central.connect_lock
        await lock.acquire()
        attempt = asyncio.ensure_future(
            self.central.device.connect(
                address, transport=core.PhysicalTransport.LE, timeout=self._timeout
            )
        )
        attempt.add_done_callback(lambda _: lock.release())
        try:
            conn = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(self.central.drop_late_connection)
            raise
        except (TimeoutError, core.TimeoutError) as e:
            raise TimeoutError(f"connect to {self.address} timed out") from e
        except (core.BaseBumbleError, hci.HCI_Error) as e:
            raise BleakError(f"le-connection-abort: {e}") from e
        self._connection = conn
        conn.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        peer = Peer(conn)
        self._peer = peer
        try:
            self.services = await self._shielded(self._setup(peer))
        except BaseException:
            await self.disconnect()  # a setup still running ends with the link (bumble cancels it)
            raise

    async def _setup(self, peer: Peer) -> BleakGATTServiceCollection:
        await peer.request_mtu(self.central.mtu)
        return await self._discover(peer)

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service in await peer.discover_services():
            await service.discover_characteristics()
            bs = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bs)
            for char in service.characteristics:
                await char.discover_descriptors()
                props = [n for flag, n in _PROPERTY_NAMES.items() if char.properties & flag]
                bc = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    _uuid_str(char.uuid),
                    props,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    bs,
                )
                collection.add_characteristic(bc)
                self._proxies[char.handle] = char
                for desc in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bc)
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        self._connection = None
        self._peer = None
        self._subscribers.clear()
        if not self._disconnecting and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        """Disconnect (no-op if not connected); returns once the link is down, or after
        DISCONNECT_TIMEOUT_S (logged) if the controller never completes the disconnect."""
        conn = self._connection
        if conn is None:
            return
        self._disconnecting = True
        try:
            with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error):
                await asyncio.wait_for(conn.disconnect(), DISCONNECT_TIMEOUT_S)
        except TimeoutError:
            logger.warning("disconnect from %s did not complete in %.0f s",
                           self.address, DISCONNECT_TIMEOUT_S)  # fmt: skip
        finally:
            self._connection = None
            self._peer = None
            self._subscribers.clear()
            self._disconnecting = False

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pairing is not used by the edgeseal protocol (records are signed end to end)."""
        raise NotImplementedError("pairing is not supported by the bumble backend")

    async def unpair(self) -> None:
        """Pairing is not used by the edgeseal protocol."""
        raise NotImplementedError("pairing is not supported by the bumble backend")

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def _shielded(self, op: Coroutine[Any, Any, _T]) -> _T:
        """Await the bumble GATT coroutine op, which runs to its end even if the caller is
        cancelled.

        bumble 0.0.236's Client.send_request clears pending_request/pending_response only after
        its own asyncio.wait_for has unwound. Cancelling it leaves a few loop iterations in which
        the board's answer still matches pending_request and meets the cancelled future
        (InvalidStateError: invalid state, in the host's packet callback); an answer arriving
        later is taken as the answer to the next request of the same kind. ATT allows one
        outstanding request per bearer anyway, so op runs in a task of its own and the caller
        waits through asyncio.shield: a cancelled caller leaves the request to end by itself --
        the answer, bumble's 30 s ATT timeout, or a disconnection, which bumble turns into a cancel
        that cannot race an answer -- and the next request queues behind it in bumble.
        """
        request = asyncio.ensure_future(op)
        self._requests.add(request)
        request.add_done_callback(self._request_done)
        return await asyncio.shield(request)

    def _request_done(self, request: asyncio.Future[Any]) -> None:
        self._requests.discard(request)
        if not request.cancelled():
            request.exception()  # retrieved: a request nobody waits for any more may fail quietly

    async def _gatt(self, op: Coroutine[Any, Any, _T]) -> _T:
        try:
            return await self._shielded(op)
        except att.ATT_Error as e:
            raise BleakGATTProtocolError(int(e.error_code)) from e
        except (core.BaseBumbleError, hci.HCI_Error) as e:
            raise BleakError(f"GATT operation failed: {e}") from e

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Return the characteristic's value read from the peer."""
        peer = self._require_peer()
        return bytearray(await self._gatt(peer.read_value(characteristic.handle)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Return the descriptor's value read from the peer."""
        peer = self._require_peer()
        return bytearray(await self._gatt(peer.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        """Write data (with response: returns after the peer's Write Response)."""
        peer = self._require_peer()
        await self._gatt(peer.write_value(characteristic.handle, bytes(data), response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        """Write a descriptor with response."""
        peer = self._require_peer()
        await self._gatt(peer.write_value(descriptor.handle, bytes(data), True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Write the CCCD and route this characteristic's notifications to callback."""
        peer = self._require_peer()
        proxy = self._proxies[characteristic.handle]

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        old = self._subscribers.pop(characteristic.handle, None)
        if old is not None:
            await self._gatt(peer.unsubscribe(proxy, old))
        self._subscribers[characteristic.handle] = subscriber
        await self._gatt(peer.subscribe(proxy, subscriber))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Clear the CCCD and drop the callback."""
        subscriber = self._subscribers.pop(characteristic.handle, None)
        if subscriber is not None and self._peer is not None:
            await self._gatt(
                self._peer.unsubscribe(self._proxies[characteristic.handle], subscriber)
            )
