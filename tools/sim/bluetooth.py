"""MicroPython's `bluetooth` module (peripheral and observer subset) over a bumble Device on a virtual link.

The API follows MicroPython's docs for `bluetooth.BLE`: active, config, irq, gap_advertise,
gap_scan, gap_disconnect, gatts_register_services, gatts_read/write/notify/indicate/set_buffer, the FLAG_*
constants, UUID, and the _IRQ event codes with their tuple shapes. Behaviour follows the ESP32
(NimBLE) port where the docs leave room: a write stores the value (truncated to the attribute
buffer, 20 bytes unless gatts_set_buffer) and then raises _IRQ_GATTS_WRITE; gatts_notify sends
whether or not the central subscribed (that is why the gateway subscribes before SEND_FROM);
_IRQ_GATTS_READ_REQUEST is not raised (ESP32 does not); a central's write or read of an attribute
whose flags do not allow it is refused with ATT "Write/Read Not Permitted", as NimBLE does
(bumble's GATT server leaves that check to the application); a connection stops advertising; the
preferred MTU is 23 until config(mtu=...). The IRQ handler runs synchronously on the event loop,
as MicroPython's scheduler runs it between bytecodes of the main task. Scanning reports what the
virtual link carries: bumble's virtual controller delivers only connectable (ADV_IND) adverts and
answers every one with a scan response of the same data (seen only by an active scan), at a fixed
-50 dBm unless the simulated world sets `rssi_of` for the advertiser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bumble import att, core, hci
from bumble.device import AdvertisingType, Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Descriptor, Service

logger = logging.getLogger(__name__)

FLAG_BROADCAST = 0x0001
FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020
FLAG_AUTHENTICATED_SIGNED_WRITE = 0x0040
FLAG_AUX_WRITE = 0x0100
FLAG_READ_ENCRYPTED = 0x0200
FLAG_READ_AUTHENTICATED = 0x0400
FLAG_READ_AUTHORIZED = 0x0800
FLAG_WRITE_ENCRYPTED = 0x1000
FLAG_WRITE_AUTHENTICATED = 0x2000
FLAG_WRITE_AUTHORIZED = 0x4000

_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_GATTS_READ_REQUEST = 4
_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6
_IRQ_GATTS_INDICATE_DONE = 20
_IRQ_MTU_EXCHANGED = 21

_DEFAULT_MTU = 23  # MicroPython's preferred MTU until config(mtu=...)
_DEFAULT_ATTR_BYTES = 20  # MicroPython's default attribute buffer (MP_BLUETOOTH_DEFAULT_ATTR_LEN)
_ENOTCONN = 128  # MicroPython's errno for "no such connection"
# Advertising interval limits of the Core spec (20 ms .. 10.24 s), in microseconds.
_ADV_MIN_US = 20_000
_ADV_MAX_US = 10_240_000
_MAC_BYTES = 6
# MicroPython's adv_type values in _IRQ_SCAN_RESULT (the HCI advertising report event types).
ADV_IND, ADV_DIRECT_IND, ADV_SCAN_IND, ADV_NONCONN_IND, SCAN_RSP = 0, 1, 2, 3, 4


class UUID:
    """bluetooth.UUID: a 16-bit int or a UUID string; compares by value."""

    def __init__(self, value: int | str | bytes | UUID) -> None:
        """Accept an int (16-bit), a string, 2/16 raw little-endian bytes, or another UUID."""
        if isinstance(value, UUID):
            self._uuid = value._uuid
        elif isinstance(value, int):
            self._uuid = core.UUID.from_16_bits(value)
        elif isinstance(value, bytes | bytearray | memoryview):
            self._uuid = core.UUID.from_bytes(bytes(value))
        else:
            self._uuid = core.UUID(value)

    @property
    def bumble(self) -> core.UUID:
        """Return the bumble UUID."""
        return self._uuid

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UUID) and self._uuid == other._uuid

    def __hash__(self) -> int:
        return hash(self._uuid.to_bytes(force_128=True))

    def __bytes__(self) -> bytes:
        return self._uuid.to_bytes()

    def __repr__(self) -> str:
        return f"UUID('{self._uuid.to_hex_str('-').lower()}')"


class _Attr:
    """One local attribute value with its MicroPython buffer semantics."""

    def __init__(self) -> None:
        self.value = b""
        self.capacity = _DEFAULT_ATTR_BYTES
        self.append = False


class BLE:
    """bluetooth.BLE over a bumble Device (peripheral role). One instance per virtual board.

    device: a powered-off bumble Device on a VirtualLink (tools/sim/radio.py); active(True)
    powers it on. Construct from a running event loop. Asynchronous bumble work that the
    synchronous MicroPython API starts (power on, advertising, disconnect) runs in order on one
    background task; `settle()` waits until it is done.
    """

    def __init__(self, device: Device) -> None:
        """Wrap device; nothing is sent until active(True)."""
        self.device = device
        self._active = False
        self._handler: Callable[[int, tuple[Any, ...]], Any] | None = None
        self._mtu = _DEFAULT_MTU
        self._gap_name = "MPY BTSTACK"
        self._attrs: dict[int, _Attr] = {}
        self._chars: dict[int, Characteristic] = {}
        # handle bindings run once bumble has assigned handles (at add_service)
        self._binds: list[Callable[[], None]] = []
        self._conns: dict[int, Connection] = {}
        self._adv_data = b""
        self._resp_data = b""
        self._ops: asyncio.Queue[Callable[[], Coroutine[Any, Any, None]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.notifications_sent = 0
        # scanning: the scan in progress (a token per gap_scan call) and the radio's path loss
        self._scan_token = 0
        self._scanning = False
        self._scan_active = False
        self._scan_timer: asyncio.TimerHandle | None = None
        # rssi_of(advertiser address, big-endian bytes) -> dBm at this board, or None for the
        # link's own figure; the simulated world sets it (bumble's virtual link reports -50 dBm
        # for every advertiser, so distance exists only if the world says so)
        self.rssi_of: Callable[[bytes], int | None] | None = None
        self.scan_results = 0
        # every accepted write as (connection handle, value handle, bytes), in order: a tap on
        # the board's GATT server, so tests can capture a real gateway's commands and replay them
        self.writes: list[tuple[int, int, bytes]] = []
        device.gatt_server.max_mtu = self._mtu
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    # -- plumbing --------------------------------------------------------------------------------

    def _submit(self, op: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._closed:
            return  # closed: the radio is off and stays off (no new background task)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())
        self._ops.put_nowait(op)

    async def _work(self) -> None:
        while True:
            op = await self._ops.get()
            try:
                await op()
            except Exception:
                logger.exception("virtual BLE operation failed on %s", self.device.name)
            finally:
                self._ops.task_done()

    async def settle(self) -> None:
        """Wait until every radio operation started so far has been carried out."""
        await self._ops.join()

    async def close(self) -> None:
        """Stop the background task and power the device off (host-only helper); later radio
        calls do nothing."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.settle(), 2.0)
        self._closed = True
        if self._scan_timer is not None:
            self._scan_timer.cancel()
            self._scan_timer = None
        self._scanning = False
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(BaseException):
                await self._worker
        with contextlib.suppress(Exception):
            await self.device.power_off()
        self._active = False

    def _irq(self, event: int, data: tuple[Any, ...]) -> Any:
        if self._handler is None:
            return None
        try:
            return self._handler(event, data)
        except Exception:  # MicroPython prints the exception and carries on
            logger.exception("IRQ handler raised on event %d", event)
            return None

    def _on_connection(self, conn: Connection) -> None:
        if conn.role != hci.Role.PERIPHERAL:
            return
        self._conns[conn.handle] = conn
        addr = conn.peer_address
        conn.on(Connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection(conn))
        conn.on(Connection.EVENT_CONNECTION_ATT_MTU_UPDATE, lambda: self._on_mtu(conn))
        self._irq(
            _IRQ_CENTRAL_CONNECT,
            (conn.handle, addr.address_type & 1, memoryview(bytes(addr.address_bytes))),
        )

    def _on_disconnection(self, conn: Connection) -> None:
        self._conns.pop(conn.handle, None)
        addr = conn.peer_address
        self._irq(
            _IRQ_CENTRAL_DISCONNECT,
            (conn.handle, addr.address_type & 1, memoryview(bytes(addr.address_bytes))),
        )

    def _on_mtu(self, conn: Connection) -> None:
        self._irq(_IRQ_MTU_EXCHANGED, (conn.handle, conn.att_mtu))

    def _conn(self, conn_handle: int) -> Connection:
        conn = self._conns.get(conn_handle)
        if conn is None:
            raise OSError(_ENOTCONN, "not connected")
        return conn

    # -- BLE API ---------------------------------------------------------------------------------

    def active(self, active: bool | None = None) -> bool:
        """Return whether the radio is active; active(True) powers the device on."""
        if active is not None and bool(active) != self._active:
            self._active = bool(active)
            if self._active:
                self._submit(self.device.power_on)
            else:
                self._submit(self.device.power_off)
        return self._active

    def config(self, *args: str, **kwargs: Any) -> Any:
        """config('name') returns a value; config(name=value, ...) sets them (mtu, gap_name, ...).

        Supported: mac, addr_mode, gap_name, mtu, rxbuf (accepted), bond/mitm/io/le_secure
        (accepted, no pairing on the virtual link). Raises ValueError for unknown names.
        """
        if args:
            (name,) = args
            if name == "mac":
                addr = self.device.random_address
                return (addr.address_type & 1, bytes(addr.address_bytes)[::-1])
            if name == "addr_mode":
                return 1
            if name == "gap_name":
                return self._gap_name.encode()
            if name == "mtu":
                return self._mtu
            raise ValueError("unknown config param")
        for name, value in kwargs.items():
            if name == "mtu":
                if not _DEFAULT_MTU <= int(value) <= 517:
                    raise ValueError("mtu out of range")
                self._mtu = int(value)
                self.device.gatt_server.max_mtu = self._mtu
            elif name == "gap_name":
                self._gap_name = value.decode() if isinstance(value, bytes) else str(value)
                self.device.name = self._gap_name
            elif name in ("rxbuf", "addr_mode", "bond", "mitm", "io", "le_secure"):
                pass
            else:
                raise ValueError("unknown config param")
        return None

    def irq(self, handler: Callable[[int, tuple[Any, ...]], Any] | None) -> None:
        """Register the event handler: handler(event, data) with MicroPython's tuple shapes."""
        self._handler = handler

    def gap_advertise(
        self,
        interval_us: int | None,
        adv_data: bytes | None = None,
        *,
        resp_data: bytes | None = None,
        connectable: bool = True,
    ) -> None:
        """Start legacy advertising every interval_us (None stops it); None data keeps the last."""
        if interval_us is None:
            self._submit(self.device.stop_advertising)
            return
        if adv_data is not None:
            self._adv_data = bytes(adv_data)
        if resp_data is not None:
            self._resp_data = bytes(resp_data)
        if len(self._adv_data) > 31 or len(self._resp_data) > 31:
            raise OSError(22, "advertising data longer than 31 bytes")
        interval_ms = max(_ADV_MIN_US, min(_ADV_MAX_US, int(interval_us))) / 1000
        adv, resp = self._adv_data, self._resp_data
        kind = (
            AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE
            if connectable
            else AdvertisingType.UNDIRECTED_SCANNABLE
        )

        async def start() -> None:
            if self.device.connections:
                return  # a peripheral with a live connection is not connectable (one link)
            await self.device.start_advertising(
                advertising_type=kind,
                advertising_data=adv,
                scan_response_data=resp,
                advertising_interval_min=interval_ms,
                advertising_interval_max=interval_ms,
            )

        self._submit(start)

    def gap_scan(
        self,
        duration_ms: int | None,
        interval_us: int = 1_280_000,
        window_us: int = 11_250,
        active: bool = False,
    ) -> None:
        """Scan for duration_ms (0: until stopped; None stops the scan in progress).

        Every advertising report raises _IRQ_SCAN_RESULT (addr_type, addr, adv_type, rssi,
        adv_data) with addr and adv_data as memoryviews; the end of every scan, run out or
        stopped, raises _IRQ_SCAN_DONE with an empty tuple, as on the ESP32. A new gap_scan
        while scanning restarts the scan (MicroPython stops the old one first).
        """
        if duration_ms is None:
            self._end_scan(self._scan_token)
            return
        if self._scanning:
            self._end_scan(self._scan_token)
        self._scan_token += 1
        token = self._scan_token
        self._scanning = True
        self._scan_active = bool(active)
        interval_ms = max(2.5, int(interval_us) / 1000)
        window_ms = max(2.5, min(int(window_us) / 1000, interval_ms))

        async def start() -> None:
            if self._scanning and token == self._scan_token and not self.device.is_scanning:
                await self.device.start_scanning(
                    active=active,
                    scan_interval=interval_ms,
                    scan_window=window_ms,
                    filter_duplicates=False,
                )

        self._submit(start)
        if duration_ms > 0:
            loop = asyncio.get_running_loop()
            self._scan_timer = loop.call_later(duration_ms / 1000, self._end_scan, token)

    def _end_scan(self, token: int) -> None:
        """End scan `token` if it is the one in progress: stop the radio, raise _IRQ_SCAN_DONE."""
        if not self._scanning or token != self._scan_token:
            return
        self._scanning = False
        if self._scan_timer is not None:
            self._scan_timer.cancel()
            self._scan_timer = None

        async def stop() -> None:
            if not self._scanning and self.device.is_scanning:
                await self.device.stop_scanning()

        self._submit(stop)
        self._irq(_IRQ_SCAN_DONE, ())

    def _on_advertisement(self, adv: Any) -> None:
        """bumble advertisement -> _IRQ_SCAN_RESULT while a scan is in progress."""
        if not self._scanning or (adv.is_scan_response and not self._scan_active):
            return  # a passive scan sends no scan requests, so it hears no scan responses
        addr = bytes(adv.address.address_bytes)[::-1]  # bumble keeps HCI (little-endian) order
        rssi = self.rssi_of(addr) if self.rssi_of is not None else None
        if rssi is None:
            rssi = adv.rssi
        if adv.is_scan_response:
            adv_type = SCAN_RSP
        elif adv.is_directed:
            adv_type = ADV_DIRECT_IND
        elif adv.is_connectable:
            adv_type = ADV_IND
        elif adv.is_scannable:
            adv_type = ADV_SCAN_IND
        else:
            adv_type = ADV_NONCONN_IND
        self.scan_results += 1
        data = memoryview(bytes(adv.data_bytes))
        self._irq(
            _IRQ_SCAN_RESULT, (adv.address.address_type & 1, memoryview(addr), adv_type, rssi, data)
        )

    def gap_disconnect(self, conn_handle: int) -> bool:
        """Start disconnecting conn_handle; return False if there is no such connection."""
        conn = self._conns.get(conn_handle)
        if conn is None:
            return False

        async def drop() -> None:
            with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error):
                await conn.disconnect()

        self._submit(drop)
        return True

    def gatts_register_services(self, services_definition: Any) -> tuple[tuple[int, ...], ...]:
        """Register services; return per service the value handles of its characteristics
        (each followed by the handles of its explicitly listed descriptors), as MicroPython."""
        out = []
        for service_uuid, chars in services_definition:
            bumble_chars = []
            for char_def in chars:
                uuid, flags = char_def[0], char_def[1]
                descs = char_def[2] if len(char_def) > 2 else ()
                char = self._make_char(
                    UUID(uuid), flags, [self._make_desc(UUID(u), f) for u, f in descs]
                )
                bumble_chars.append(char)
            self.device.add_service(Service(UUID(service_uuid).bumble, bumble_chars))
            self._bind_pending()
            handles = []
            for char in bumble_chars:
                handles.append(char.handle)
                self._chars[char.handle] = char
                for desc in char.descriptors:
                    if desc.type != core.UUID.from_16_bits(0x2902):
                        handles.append(desc.handle)
            out.append(tuple(handles))
        return tuple(out)

    def _make_char(self, uuid: UUID, flags: int, descriptors: list[Descriptor]) -> Characteristic:
        attr = _Attr()
        props = Characteristic.Properties(flags & 0xFF)
        perms = Characteristic.Permissions(0)
        if flags & FLAG_READ:
            perms |= Characteristic.READABLE
        if flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
            perms |= Characteristic.WRITEABLE
        char = Characteristic(
            uuid.bumble, props, perms, CharacteristicValue(read=lambda _c: attr.value), descriptors
        )
        char.value = CharacteristicValue(
            read=lambda _c: self._on_read(flags, attr),
            write=lambda conn, value: self._on_write(conn, char, attr, value, flags),
        )

        def bind() -> None:
            self._attrs[char.handle] = attr

        self._binds.append(bind)
        return char

    def _make_desc(self, uuid: UUID, flags: int) -> Descriptor:
        attr = _Attr()
        perms = Descriptor.Permissions(0)
        if flags & FLAG_READ:
            perms |= Descriptor.READABLE
        if flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
            perms |= Descriptor.WRITEABLE
        desc = Descriptor(uuid.bumble, perms, CharacteristicValue(read=lambda _c: attr.value))
        desc.value = CharacteristicValue(
            read=lambda _c: self._on_read(flags, attr),
            write=lambda conn, value: self._on_write(conn, desc, attr, value, flags),
        )

        def bind() -> None:
            self._attrs[desc.handle] = attr

        self._binds.append(bind)
        return desc

    @staticmethod
    def _on_read(flags: int, attr: _Attr) -> bytes:
        """Return a central's read of attr; raise ATT_Error unless flags has FLAG_READ."""
        if not flags & FLAG_READ:
            raise att.ATT_Error(att.ATT_READ_NOT_PERMITTED_ERROR)
        return attr.value

    def _on_write(
        self, conn: Connection, attribute: Any, attr: _Attr, value: bytes, flags: int
    ) -> None:
        """Store a central's write and raise _IRQ_GATTS_WRITE; raise ATT_Error (nothing stored,
        no IRQ) unless flags allow a write."""
        if not flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
            raise att.ATT_Error(att.ATT_WRITE_NOT_PERMITTED_ERROR)
        value = bytes(value)
        if attr.append:
            attr.value = (attr.value + value)[-attr.capacity :]
        else:
            attr.value = value[: attr.capacity]
        self.writes.append((conn.handle, attribute.handle, value))
        self._irq(_IRQ_GATTS_WRITE, (conn.handle, attribute.handle))

    def _attr(self, value_handle: int) -> _Attr:
        self._bind_pending()
        attr = self._attrs.get(value_handle)
        if attr is None:
            raise OSError(22, "invalid handle")
        return attr

    def _bind_pending(self) -> None:
        while self._binds:
            self._binds.pop()()

    def gatts_read(self, value_handle: int) -> bytes:
        """Return the local value of an attribute."""
        return self._attr(value_handle).value

    def gatts_write(self, value_handle: int, data: bytes, send_update: bool = False) -> None:
        """Set the local value (what a central reads); send_update notifies subscribers."""
        attr = self._attr(value_handle)
        attr.value = bytes(data)
        if send_update:
            for conn in list(self._conns.values()):
                self._send(conn, value_handle, attr.value, indicate=False)

    def gatts_notify(self, conn_handle: int, value_handle: int, data: bytes | None = None) -> None:
        """Send a notification of data (or the local value) to conn_handle, subscribed or not.

        Raises OSError(ENOTCONN) if conn_handle is not connected. Data beyond MTU - 3 is cut.
        """
        conn = self._conn(conn_handle)
        value = self._attr(value_handle).value if data is None else bytes(data)
        self._send(conn, value_handle, value, indicate=False)

    def gatts_indicate(
        self, conn_handle: int, value_handle: int, data: bytes | None = None
    ) -> None:
        """Send an indication; _IRQ_GATTS_INDICATE_DONE follows (status 0) once acknowledged."""
        conn = self._conn(conn_handle)
        value = self._attr(value_handle).value if data is None else bytes(data)
        char = self._chars.get(value_handle)
        if char is None:
            raise OSError(22, "invalid handle")

        async def indicate() -> None:
            status = 0
            try:
                await self.device.indicate_subscriber(conn, char, value, force=True)
            except Exception:
                status = 1
            self._irq(_IRQ_GATTS_INDICATE_DONE, (conn_handle, value_handle, status))

        self._submit(indicate)

    def _send(self, conn: Connection, value_handle: int, value: bytes, *, indicate: bool) -> None:
        value = value[: conn.att_mtu - 3]
        pdu = att.ATT_Handle_Value_Notification(
            attribute_handle=value_handle, attribute_value=value
        )
        # Synchronous and in call order, like the port's gatts_notify (bumble's notify_subscriber
        # is a coroutine and would reorder frames across tasks).
        self.device.gatt_server.send_gatt_pdu(conn, bytes(pdu))  # type: ignore[arg-type]
        self.notifications_sent += 1

    def gatts_set_buffer(self, value_handle: int, length: int, append: bool = False) -> None:
        """Size the attribute's buffer (writes longer than length are cut); append accumulates."""
        attr = self._attr(value_handle)
        attr.capacity = int(length)
        attr.append = bool(append)
