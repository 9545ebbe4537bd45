"""Host stand-in for MicroPython's `bluetooth` module: an in-process BLE with a scripted central.

Never deployed. It models what firmware/peripheral.py relies on, the way MicroPython 1.22+ on the
ESP32 (NimBLE) behaves: IRQ event codes and data tuples (addr as a memoryview), handles from
gatts_register_services (a CCCD after every notify/indicate characteristic), 20-byte default
attribute buffers that truncate longer writes, notifications truncated to MTU - 3, advertising
that stops when a central connects and does not restart by itself, gatts_notify raising OSError
when the controller is out of buffers (injectable) or the link is gone. Scanning: gap_scan starts
and stops a scan (the IRQ handler gets _IRQ_SCAN_DONE with an empty tuple when it ends or is
stopped); scan_result() delivers an advert through the IRQ as MicroPython does: addr and adv_data
are memoryviews of buffers the stack reuses (overwritten after the handler returns).

Runs under CPython and inside the MicroPython VM (imported there as tests.shims.bluetooth): no
`random.Random`, no extended slices on bytes.
"""

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

IRQ_CENTRAL_CONNECT = 1
IRQ_CENTRAL_DISCONNECT = 2
IRQ_GATTS_WRITE = 3
IRQ_GATTS_READ_REQUEST = 4
IRQ_SCAN_RESULT = 5
IRQ_SCAN_DONE = 6
IRQ_MTU_EXCHANGED = 21
ADV_IND = 0
ADV_DIRECT_IND = 1
ADV_SCAN_IND = 2
ADV_NONCONN_IND = 3
SCAN_RSP = 4

DEFAULT_ATTR_BYTES = 20  # MicroPython's default gatts buffer (MP_BLUETOOTH_DEFAULT_ATTR_LEN)
ENOMEM = 12
ENOTCONN = 128
EINVAL = 22
_CCCD = 0x2902
_HISTORY = 32  # bounded logs, so a long soak measures the firmware's memory, not the shim's
_ADV_MAX = 31


def _reversed_bytes(b):
    return bytes(b[i] for i in range(len(b) - 1, -1, -1))


class _Rng:
    """Deterministic xorshift32 (MicroPython's random has no Random class): random() in [0, 1)."""

    def __init__(self, seed):
        self._s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def random(self):
        x = self._s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._s = x
        return (x >> 8) / 16777216


class UUID:
    """bluetooth.UUID: a 16-bit int or a 128-bit string/bytes; equal when the value is equal."""

    def __init__(self, value):
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            self._b = value.to_bytes(2, "little")
        elif isinstance(value, str):
            raw = bytes.fromhex(value.replace("-", ""))
            if len(raw) not in (2, 16):
                raise ValueError("invalid UUID")
            self._b = _reversed_bytes(raw)
        else:
            raw = bytes(value)
            if len(raw) not in (2, 4, 16):
                raise ValueError("invalid UUID")
            self._b = raw
        self._b = bytes(self._b)

    def __eq__(self, other):
        return isinstance(other, UUID) and other._b == self._b

    def __hash__(self):
        return hash(self._b)

    def __bytes__(self):
        return self._b

    def __str__(self):
        h = _reversed_bytes(self._b).hex()
        if len(h) == 32:
            return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        return "0x" + h

    def __repr__(self):
        return "UUID(%s)" % str(self)


class _Attr:
    def __init__(self, handle, uuid, flags, is_cccd=False):
        self.handle = handle
        self.uuid = uuid
        self.flags = flags
        self.value = b""
        self.alloc = DEFAULT_ATTR_BYTES
        self.append = False
        self.is_cccd = is_cccd


class BLE:
    """The peripheral side: the MicroPython API surface (no singleton: one per virtual board)."""

    def __init__(self, seed=0, clock=None, tx_buffers=12, conn_interval_ms=15, per_event=6):
        """seed: for injected failures. clock (ticks_ms()): when given, notifications queue in
        tx_buffers controller buffers that drain per_event packets per conn_interval_ms, and
        gatts_notify raises OSError(ENOMEM) while they are all taken (as NimBLE does)."""
        self._clock = clock
        self.tx_buffers = tx_buffers
        self.conn_interval_ms = conn_interval_ms
        self.per_event = per_event
        self._queued = 0
        self._drained_at = 0
        self._active = False
        self._cfg = {
            "mtu": 23,
            "gap_name": "MPY ESP32",
            "rxbuf": 1024,
            "mac": (0, b"\x24\x0a\xc4\x00\x00\x01"),
        }
        self._irq = None
        self._attrs = {}
        self._next_handle = 1
        self.adv = None  # (interval_us, adv_data, resp_data, connectable) while advertising
        self.adv_history = []  # the last _HISTORY advertising settings
        self.adv_count = 0
        self._conns = {}  # conn_handle -> Central
        self._next_conn = 0
        self.rng = _Rng(seed)
        self.notify_fail_rate = 0.0  # probability that gatts_notify raises OSError(ENOMEM)
        self.notify_failures = 0
        self.notify_truncations = 0
        self.irq_log = []
        self.scan = None  # (duration_ms, interval_us, window_us, active, started_ms) while scanning
        self.scan_count = 0
        self._scan_addr = bytearray(6)  # the stack's reused result buffers
        self._scan_adv = bytearray(_ADV_MAX)

    # configuration ----------------------------------------------------------------------------
    def active(self, *args):
        if args:
            self._active = bool(args[0])
            if not self._active:
                self.adv = None
                self.scan = None
        return self._active

    def config(self, *args, **kwargs):
        if args:
            if len(args) != 1 or kwargs:
                raise TypeError("config takes one name to query")
            if args[0] not in self._cfg:
                raise ValueError("unknown config param")
            return self._cfg[args[0]]
        for k, v in kwargs.items():
            if k == "mtu" and not 23 <= v <= 517:
                raise ValueError("invalid MTU")
            self._cfg[k] = v
        return None

    def irq(self, handler):
        self._irq = handler

    def _check_active(self):
        if not self._active:
            raise OSError(EINVAL)

    def _fire(self, event, data):
        self.irq_log.append((event, data))
        del self.irq_log[:-_HISTORY]
        if self._irq is not None:
            return self._irq(event, data)
        return None

    # GAP ------------------------------------------------------------------------------------------
    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._check_active()
        if interval_us is None:
            self.adv = None
            return
        prev = self.adv
        if adv_data is None:
            adv_data = prev[1] if prev else b""
        if resp_data is None:
            resp_data = prev[2] if prev else b""
        if len(adv_data) > 31 or len(resp_data) > 31:
            raise OSError(EINVAL)
        self.adv = (interval_us, bytes(adv_data), bytes(resp_data), connectable)
        self.adv_count += 1
        self.adv_history.append(self.adv)
        del self.adv_history[:-_HISTORY]

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        """Start a scan (duration_ms 0: until stopped) or stop it (None; fires _IRQ_SCAN_DONE)."""
        self._check_active()
        if duration_ms is None:
            if self.scan is not None:
                self.scan = None
                self._fire(IRQ_SCAN_DONE, ())
            return
        if window_us > interval_us or duration_ms < 0:
            raise OSError(EINVAL)
        if self.scan is not None:
            raise OSError(EINVAL)  # NimBLE: a scan is already running (BLE_HS_EALREADY)
        now = self._clock.ticks_ms() if self._clock is not None else 0
        self.scan = (duration_ms, interval_us, window_us, active, now)
        self.scan_count += 1

    def scan_result(self, addr, rssi, adv_data, adv_type=ADV_IND, addr_type=0):
        """Deliver one advert while scanning: _IRQ_SCAN_RESULT with (addr_type, addr, adv_type,
        rssi, adv_data), addr and adv_data as memoryviews of reused buffers, which are clobbered
        after the handler returns (as the stack does). Returns False when not scanning."""
        if self.scan is None:
            return False
        adv_data = bytes(adv_data)
        if len(adv_data) > _ADV_MAX:
            raise ValueError("legacy advertising data is at most 31 bytes")
        a = self._scan_addr
        buf = self._scan_adv
        for i in range(6):
            a[i] = addr[i]
        for i in range(len(adv_data)):
            buf[i] = adv_data[i]
        n = len(adv_data)
        self._fire(IRQ_SCAN_RESULT, (addr_type, memoryview(a), adv_type, rssi, memoryview(buf)[:n]))
        for i in range(_ADV_MAX):
            buf[i] = 0xEE
        for i in range(6):
            a[i] = 0xEE
        return True

    def scan_tick(self):
        """End the scan once its duration has passed on the clock (fires _IRQ_SCAN_DONE); returns
        True if it ended now. Tests call it as time goes by (the real stack ends it by itself)."""
        sc = self.scan
        if sc is None or sc[0] == 0 or self._clock is None:
            return False
        if self._clock.ticks_ms() - sc[4] < sc[0]:
            return False
        self.scan = None
        self._fire(IRQ_SCAN_DONE, ())
        return True

    def gap_disconnect(self, conn_handle):
        self._check_active()
        central = self._conns.get(conn_handle)
        if central is None:
            return False
        central._drop()
        return True

    # GATT server ----------------------------------------------------------------------------------
    def gatts_register_services(self, services):
        self._check_active()
        self._attrs = {}
        self._next_handle = 1
        out = []
        for svc in services:
            svc_uuid, chars = svc[0], svc[1]
            self._alloc(svc_uuid, 0)
            handles = []
            for ch in chars:
                uuid, flags = ch[0], ch[1]
                self._alloc(uuid, 0)  # characteristic declaration
                handles.append(self._alloc(uuid, flags).handle)
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    self._alloc(UUID(_CCCD), FLAG_READ | FLAG_WRITE, True)
                for desc in ch[2] if len(ch) > 2 else ():
                    handles.append(self._alloc(desc[0], desc[1]).handle)
            out.append(tuple(handles))
        return tuple(out)

    def _alloc(self, uuid, flags, is_cccd=False):
        a = _Attr(self._next_handle, uuid, flags, is_cccd)
        self._attrs[a.handle] = a
        self._next_handle += 1
        return a

    def _attr(self, handle):
        a = self._attrs.get(handle)
        if a is None:
            raise OSError(EINVAL)
        return a

    def gatts_read(self, value_handle):
        return bytes(self._attr(value_handle).value)

    def gatts_write(self, value_handle, data, send_update=False):
        a = self._attr(value_handle)
        a.value = bytes(data)
        if len(a.value) > a.alloc:
            a.alloc = len(a.value)  # MicroPython grows the buffer on a local write
        if send_update:
            for conn, central in list(self._conns.items()):
                if central.subscribed.get(value_handle):
                    self.gatts_notify(conn, value_handle)

    def gatts_set_buffer(self, value_handle, length, append=False):
        a = self._attr(value_handle)
        a.alloc = length
        a.append = append
        a.value = a.value[:length]

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._check_active()
        central = self._conns.get(conn_handle)
        if central is None:
            raise OSError(ENOTCONN)
        a = self._attr(value_handle)
        payload = a.value if data is None else bytes(data)
        if self.notify_fail_rate and self.rng.random() < self.notify_fail_rate:
            self.notify_failures += 1
            raise OSError(ENOMEM)
        if self._clock is not None:
            now = self._clock.ticks_ms()
            events = (now - self._drained_at) // self.conn_interval_ms
            if events > 0:
                self._queued = max(0, self._queued - events * self.per_event)
                self._drained_at += events * self.conn_interval_ms
            if self._queued >= self.tx_buffers:
                self.notify_failures += 1
                raise OSError(ENOMEM)
            self._queued += 1
        limit = central.mtu - 3
        if len(payload) > limit:
            self.notify_truncations += 1
            payload = payload[:limit]
        central._deliver(value_handle, payload)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self.gatts_notify(conn_handle, value_handle, data)

    def gattc_exchange_mtu(self, conn_handle):
        central = self._conns.get(conn_handle)
        if central is None:
            raise OSError(ENOTCONN)
        central._exchange_mtu()

    # central side (used by Central) ---------------------------------------------------------------
    def _find(self, uuid):
        """Return the value handle of the characteristic with uuid (a UUID or a string)."""
        if isinstance(uuid, str):
            uuid = UUID(uuid)
        for h in sorted(self._attrs):
            a = self._attrs[h]
            if a.uuid == uuid and a.flags and not a.is_cccd:
                return h
        raise KeyError(str(uuid))


class Central:
    """A scripted GATT central talking to one BLE object (what a gateway does, synchronously).

    connect(mtu) connects to the advertising board and exchanges the MTU; read/subscribe/write act
    on characteristics by UUID string; notifications collects (value_handle, bytes) received while
    subscribed.
    """

    def __init__(self, ble, addr=b"\xdc\xa6\x32\x00\x00\x01", addr_type=0):
        self.ble = ble
        self.addr = bytes(addr)
        self.addr_type = addr_type
        self.conn = None
        self.mtu = 23
        self.subscribed = {}
        self.notifications = []
        self.unsubscribed_drops = 0

    @property
    def connected(self):
        return self.conn is not None

    def connect(self, mtu=247):
        """Connect (the board must be advertising, connectable); exchange MTU if mtu > 23."""
        ble = self.ble
        if self.conn is not None:
            raise RuntimeError("already connected")
        if ble.adv is None or not ble.adv[3]:
            raise OSError(ENOTCONN)
        conn = ble._next_conn
        ble._next_conn += 1
        ble.adv = None  # legacy advertising stops on connection
        self.conn = conn
        self.mtu = 23
        self.subscribed = {}
        ble._conns[conn] = self
        ble._fire(IRQ_CENTRAL_CONNECT, (conn, self.addr_type, memoryview(self.addr)))
        if mtu > 23:
            self._want_mtu = mtu
            self._exchange_mtu()
        return conn

    def _exchange_mtu(self):
        want = getattr(self, "_want_mtu", 23)
        self.mtu = max(23, min(want, self.ble._cfg["mtu"]))
        self.ble._fire(IRQ_MTU_EXCHANGED, (self.conn, self.mtu))

    def _drop(self):
        ble = self.ble
        conn = self.conn
        if conn is None:
            return
        del ble._conns[conn]
        self.conn = None
        ble._fire(IRQ_CENTRAL_DISCONNECT, (conn, self.addr_type, memoryview(self.addr)))

    def disconnect(self):
        """Disconnect from the central side (or a link loss); fires _IRQ_CENTRAL_DISCONNECT."""
        self._drop()

    def _deliver(self, handle, payload):
        if self.subscribed.get(handle):
            self.notifications.append((handle, payload))
        else:
            self.unsubscribed_drops += 1

    def _need_conn(self):
        if self.conn is None:
            raise OSError(ENOTCONN)

    def handle(self, uuid):
        """Return the value handle of the characteristic uuid."""
        return self.ble._find(uuid)

    def read(self, uuid):
        """Read a characteristic; returns bytes (truncated to MTU - 1 like a single ATT read)."""
        self._need_conn()
        h = self.handle(uuid)
        a = self.ble._attrs[h]
        if not a.flags & FLAG_READ:
            raise OSError(EINVAL)
        self.ble._fire(IRQ_GATTS_READ_REQUEST, (self.conn, h))
        value = bytes(a.value)
        # a long read (ATT Read Blob) returns everything; bleak does that transparently
        return value

    def subscribe(self, uuid, on=True):
        """Write the CCCD of a notify characteristic (no IRQ reaches the peripheral's handler)."""
        self._need_conn()
        h = self.handle(uuid)
        if not self.ble._attrs[h].flags & (FLAG_NOTIFY | FLAG_INDICATE):
            raise OSError(EINVAL)
        self.subscribed[h] = on

    def write(self, uuid, data):
        """Write with response: the value is stored (truncated to the attribute buffer) and
        _IRQ_GATTS_WRITE fires with (conn_handle, value_handle)."""
        self._need_conn()
        data = bytes(data)
        if len(data) > self.mtu - 3:
            raise ValueError("write longer than MTU - 3 (needs a long write)")
        h = self.handle(uuid)
        a = self.ble._attrs[h]
        if not a.flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
            raise OSError(EINVAL)
        a.value = (a.value + data)[-a.alloc :] if a.append else data[: a.alloc]
        self.ble._fire(IRQ_GATTS_WRITE, (self.conn, h))

    def take(self):
        """Return and clear the payloads received so far (a list of bytes)."""
        out = [p for _, p in self.notifications]
        self.notifications = []
        return out
