"""GATT peripheral of BLE protocol v2 over MicroPython's low-level `bluetooth.BLE` API.

Every control write is authenticated (firmware.cmdauth): a tag under the board's link key, bound
to this connection's nonce (published in Info) and to a strictly increasing counter. Writes that
fail are answered with STATUS 4 and counted in auth_rejections; nothing else happens.
"""

from micropython import const

from firmware import cmdauth, protocol

# BLE protocol values: private copies of firmware/protocol.py's constants (no name in RAM);
# tests/firmware/test_protocol.py pins every copy to protocol.py's value.
_CMD_ACK = const(0x02)
_CMD_OTA_BEGIN = const(0x05)
_CMD_OTA_END = const(0x07)
_CMD_SEND_FROM = const(0x01)
_CMD_TIME_SYNC = const(0x03)
_CONTROL_BUFFER_BYTES = const(256)
_CONTROL_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0003")
_DATA_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0002")
_END_ALL_SENT = const(0)
_END_EMPTY = const(2)
_END_LIMIT = const(1)
_INFO_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001")
_MAX_INFO_BYTES = const(126)
_MIN_MTU = const(23)
_PREFERRED_MTU = const(247)
_SERVICE_UUID = const("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0000")
_ST_BAD_ARGUMENT = const(2)
_ST_BUSY = const(3)
_ST_OK = const(0)
_ST_UNAUTHENTICATED = const(4)
# private copies of firmware/cmdauth.py's, pinned by tests/firmware/test_cmdauth.py
_NONCE_BYTES = const(16)
_TRAILER_BYTES = const(13)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)
_IRQ_MTU_EXCHANGED = const(21)
_GATTS_NO_ERROR = const(0)

_FLAG_READ = const(0x0002)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)

# 250 ms: a gateway scanning with a typical 30-100 ms window finds the board within a second or
# two, at about a quarter of the radio energy of the 100 ms interval of the MicroPython examples.
ADV_INTERVAL_US = const(250000)
# Idle poll period of the upload task: how fast a command or a disconnect is picked up; IRQs only
# set flags, so this bounds the command latency while costing ~50 wake-ups/s only when idle.
# (Constants no other module reads are private: a private const() takes no RAM on the board.)
_POLL_MS = const(20)
# gatts_notify raises OSError when the controller has no free buffer (ESP32/NimBLE: ENOMEM);
# waiting about one connection interval (7.5-30 ms) lets it drain.
_NOTIFY_RETRY_MS = const(15)
# Give up on a link after this many failed tries in a row (~3 s): a stuck link is disconnected,
# and the gateway reconnects and resumes from its last committed seq.
_NOTIFY_MAX_RETRIES = const(200)
# A central that sent no command and got no frame for this long is dropped: any phone in range
# that connects and sits there would otherwise keep the board from advertising (a connection ends
# legacy advertising) and no gateway could reach it. The gateway writes TIME_SYNC or SEND_FROM
# right after connecting and is never silent that long (its own timeouts are 5-20 s, a commit a
# few s): 2 min is far above any pause of its and still frees the board soon enough.
_IDLE_DISCONNECT_MS = const(120000)
# A central that has not sent one authenticated command this long after connecting is dropped
# and advertising resumes: only the gateway holds the link key, so anything else (a phone, an
# attacker holding the connection to keep the gateway out) is gone within seconds instead of after
# _IDLE_DISCONNECT_MS. The gateway authenticates right after connect + Info read + subscribe: a
# few round trips, well under 1 s on a virtual link and 1-3 s for BlueZ on a busy Pi; 10 s leaves
# room for a slow service discovery while costing the board at most 10 s of advertising per try.
_AUTH_TIMEOUT_MS = const(10000)
# A TIME_SYNC after the clock was first set moves it by at most this much per sync: a crystal
# clock drifts a few s per day (40 ppm is 3.5 s/day), so 120 s covers a month out of reach in one
# sync, while a gateway with a wrong clock (or a stolen link key) can shift record times only
# 120 s per connection, each step journaled as a time-sync event. The first sync after boot sets
# the clock (the board has no Unix time before it).
_TIME_SYNC_MAX_STEP_S = const(120)
# Control writes queued by the IRQ handler before the task runs: the gateway waits for each
# answer, so more than 2 means a misbehaving central; extra writes get STATUS busy.
_QUEUE_MAX = const(4)


def _in_trial(fs):
    """Return True when the OTA boot pointer (firmware.ota POINTER, "EOB1 <slot> <version>
    <state> ...") says the running version is in trial; read here so that firmware.ota is not
    imported on every boot."""
    try:
        f = fs.open("ota/boot", "rb")
    except OSError:
        return False
    try:
        return b" trial " in f.read(96)
    finally:
        f.close()


class Peripheral:
    """Serves Info, streams journal records as CHUNK frames and applies control commands.

    ble: a `bluetooth.BLE` object (or a host stand-in with the same API), owned by this class.
    sampler: firmware.sampler.Sampler (journal, chain, clock). board_name: str (<= 32 bytes).
    firmware_version: (major, minor, patch). uuid: the UUID class (defaults to bluetooth.UUID).
    idle_disconnect_ms: drop a central that stays silent this long (_IDLE_DISCONNECT_MS).
    link_key: the 32-byte BLE link key (keystore.load_link_key), None when none is installed
    (every command is then refused: the board keeps its records). urandom(n) -> bytes draws the
    per-connection nonce (default os.urandom; the radio is on, so it is truly random).
    auth_timeout_ms: drop a central that has not authenticated this long (_AUTH_TIMEOUT_MS).
    ota: (fs, nvs) for the OTA commands (None: they get STATUS 1, unknown opcode); the
    firmware.ota.Receiver is built on the first OTA command (ota_receiver()), so a board that
    is not updating never has that module on its heap. After a switch run() stops and calls
    the receiver's restart() (docs/ota.md). A trial version is confirmed by the first ACK.
    The IRQ handler only records events (and draws the nonce); run() (an asyncio task) does the work.
    Code only some boards run lives in modules imported on first use: beacon scanning
    (firmware.scan, set_scan_listener), the OTA commands (firmware.ota.serve_command) and a
    battery board's advertising windows (firmware.power.serve_window).
    """

    def __init__(
        self, ble, sampler, board_name, firmware_version, mtu=_PREFERRED_MTU,
        adv_interval_us=ADV_INTERVAL_US, uuid=None, idle_disconnect_ms=_IDLE_DISCONNECT_MS,
        link_key=None, urandom=None, auth_timeout_ms=_AUTH_TIMEOUT_MS, ota=None,
    ):  # fmt: skip
        if uuid is None:
            import bluetooth

            uuid = bluetooth.UUID
        if urandom is None:
            import os

            urandom = os.urandom
        self._urandom = urandom
        self._ota_args = ota
        self.ota = None  # the firmware.ota.Receiver, once built (ota_receiver)
        self._ota_trial = ota is not None and _in_trial(ota[0])
        self._fw_version = firmware_version
        self._auth = cmdauth.CommandAuth(link_key, sampler.dev_id)
        self.auth_timeout_ms = auth_timeout_ms
        self._authed = False  # this connection sent an authenticated command
        self._conn_ms = 0  # ticks_ms of the connection's start
        self._conn_sent = -1  # highest seq notified on this connection (the ACK bound)
        self._synced_here = False  # this connection already applied a TIME_SYNC
        self._ble = ble
        self.sampler = sampler
        self._clock = sampler.time.clock
        self._adv_interval_us = adv_interval_us
        self._adv = protocol.Advertising(sampler.dev_id)
        self._info = protocol.InfoEncoder(
            sampler.dev_id, sampler.signer.public_key, firmware_version, board_name
        )
        self._framer = protocol.Framer()
        self._conn = None
        self._mtu = _MIN_MTU
        self._queue = []
        self._busy_ops = []
        self._ev_connect = False
        self._ev_disconnect = False
        self._dirty = False
        self._advertising = False
        self._msg = 0
        self._stream = False
        self._iter = None
        self._stream_end = -1
        self._stream_left = 0
        self._last_sent = -1
        self.idle_disconnect_ms = idle_disconnect_ms
        self._active_ms = 0  # ticks_ms of the connection's last command or frame
        self._scanner = None  # firmware.scan.Scanner, once set_scan_listener is called
        self.running = False
        # A battery board (firmware/power.py) advertises only inside serve_window: True outside it
        self.windowed = False
        # counters for diagnostics and tests
        self.connections = 0
        self.notifications = 0
        self.notify_retries = 0
        self.records_sent = 0
        self.commands = 0
        self.bad_commands = 0
        self.idle_disconnects = 0
        self.auth_rejections = 0
        self.auth_timeouts = 0
        self.time_sync_clamps = 0
        self.errors = 0

        ble.active(True)
        ble.config(mtu=mtu)
        service = (
            uuid(_SERVICE_UUID),
            (
                (uuid(_INFO_UUID), _FLAG_READ),
                (uuid(_DATA_UUID), _FLAG_NOTIFY),
                (uuid(_CONTROL_UUID), _FLAG_WRITE),
            ),
        )
        ((self._h_info, self._h_data, self._h_control),) = ble.gatts_register_services((service,))
        ble.gatts_set_buffer(self._h_info, _MAX_INFO_BYTES)
        ble.gatts_set_buffer(self._h_control, _CONTROL_BUFFER_BYTES)
        ble.irq(self._irq)
        self._refresh_info()
        sampler.on_change = self._on_change

    # ---- IRQ context: record and return --------------------------------------------------------
    def _irq(self, event, data):
        if event == _IRQ_SCAN_RESULT:  # the most frequent event while scanning: tested first
            scanner = self._scanner
            if scanner is not None:
                scanner.result(data)
        elif event == _IRQ_SCAN_DONE:
            scanner = self._scanner
            if scanner is not None:
                scanner.done()
        elif event == _IRQ_CENTRAL_CONNECT:
            if self._conn is None:
                self._conn = data[0]
                self._mtu = _MIN_MTU
                self._advertising = False  # a connection ends legacy advertising
                self._new_session()
                self._ev_connect = True
        elif event == _IRQ_CENTRAL_DISCONNECT:
            if data[0] == self._conn:
                self._conn = None
                self._auth.end_session()
                self._ev_disconnect = True
        elif event == _IRQ_MTU_EXCHANGED:
            if data[0] == self._conn:
                self._mtu = data[1]
        elif event == _IRQ_GATTS_WRITE:
            if data[0] == self._conn and data[1] == self._h_control:
                value = self._ble.gatts_read(self._h_control)
                if len(self._queue) < _QUEUE_MAX:
                    self._queue.append(bytes(value))
                elif len(self._busy_ops) < _QUEUE_MAX:
                    self._busy_ops.append(value[0] if len(value) else 0)
        elif event == _IRQ_GATTS_READ_REQUEST:  # delivered on some ports only (not ESP32)
            if data[1] == self._h_info:
                self._refresh_info()
            return _GATTS_NO_ERROR
        return None

    def _new_session(self):
        """Start a connection: draw its nonce and publish it in Info before the central can read
        it (hence in the IRQ handler); returns nothing."""
        self._auth.new_session(self._urandom(_NONCE_BYTES))
        self._authed = False
        self._conn_sent = -1
        self._synced_here = False
        self._conn_ms = self._clock.ticks_ms()
        self._refresh_info()

    def _on_change(self):
        """Sampler callback: pending or chain state changed (runs in task context)."""
        self._dirty = True

    # ---- scanning --------------------------------------------------------------------------------
    def set_scan_listener(self, on_result, on_done=None, **timing):
        """Scan periodically while run() runs (firmware.scan.Scanner, imported now: only beacon
        boards carry its code); returns nothing. timing: period_ms, duration_ms, interval_us,
        window_us of the scans (gap_scan(duration_ms, interval_us, window_us) every period_ms),
        each defaulting to firmware.scan's (a 1.5 s scan every 3 s).

        on_result(addr_type, addr, adv_type, rssi, adv_data) is called in IRQ context for every
        _IRQ_SCAN_RESULT: adv_data is a bytes copy, addr is only valid during the call; keep it
        short. on_done() (IRQ context) follows the end of every scan. on_result=None stops it.
        """
        scanner = self._scanner
        if scanner is None:
            from firmware.scan import Scanner

            scanner = self._scanner = Scanner(self)
        scanner.listen(on_result, on_done, **timing)

    # ---- radio helpers -------------------------------------------------------------------------
    @property
    def connected(self):
        """True while a central is connected."""
        return self._conn is not None

    @property
    def mtu(self):
        """The ATT MTU of the current connection (23 until exchanged)."""
        return self._mtu

    def _advertise(self):
        """(Re)start advertising with the current pending count; returns True on success."""
        try:
            self._ble.gap_advertise(
                self._adv_interval_us,
                adv_data=self._adv.payload(self.sampler.depth),
                resp_data=self._adv.scan_response,
            )
        except OSError:
            self.errors += 1
            self._dirty = True  # try again on the next pass
            return False
        self._advertising = True
        return True

    def _refresh_info(self):
        """Write the current Info value into the info characteristic; returns nothing."""
        s = self.sampler
        time_s, flags = s.time.now()
        value = self._info.encode(
            s.depth, s.first_seq, s.last_seq, s.acked_seq, s.boot, time_s, flags & 1,
            self._auth.nonce,
        )  # fmt: skip
        self._ble.gatts_write(self._h_info, value)

    def _disconnect(self, conn):
        """Drop the link conn; returns True when the stack accepted the request."""
        try:
            return bool(self._ble.gap_disconnect(conn))
        except OSError:
            return False

    async def _notify(self, frame):
        """Send one frame on the data characteristic, retrying while the controller is out of
        buffers. Returns True when sent, False when the link is gone (or was given up)."""
        tries = 0
        while True:
            conn = self._conn
            if conn is None:
                return False
            try:
                self._ble.gatts_notify(conn, self._h_data, frame)
                self.notifications += 1
                self._active_ms = self._clock.ticks_ms()
                return True
            except OSError:
                tries += 1
                self.notify_retries += 1
                if tries >= _NOTIFY_MAX_RETRIES:
                    self.errors += 1
                    self._disconnect(conn)
                    return False
                await self._clock.sleep_ms(_NOTIFY_RETRY_MS)

    # ---- commands ------------------------------------------------------------------------------
    async def _status(self, opcode, status, arg):
        await self._notify(self._framer.status(opcode, status, arg))

    async def _command(self, raw):
        """Authenticate, parse and apply one control write, answering as docs/ble-protocol.md says;
        returns nothing. An unauthenticated write changes nothing, not even the idle timer."""
        self.commands += 1
        if self._auth.check(raw) != cmdauth.AUTH_OK:
            self.auth_rejections += 1
            await self._status(raw[0] if len(raw) else 0, _ST_UNAUTHENTICATED, 0)
            return
        self._authed = True
        self._active_ms = self._clock.ticks_ms()
        if self._ota_args is not None and _CMD_OTA_BEGIN <= raw[0] <= _CMD_OTA_END:
            from firmware.ota import serve_command  # the module is loaded once OTA starts

            await serve_command(self, memoryview(raw)[: len(raw) - _TRAILER_BYTES])
            return
        try:
            op, a, b = protocol.parse_command(memoryview(raw)[: len(raw) - _TRAILER_BYTES])
        except protocol.CommandError as e:
            self.bad_commands += 1
            await self._status(e.opcode, e.status, 0)
            return
        try:
            if op == _CMD_SEND_FROM:
                if self._stream:
                    await self._status(op, _ST_BUSY, 0)
                elif not self._start_stream(a, b):
                    await self._notify(self._framer.end(_END_EMPTY, -1, 0))
            elif op == _CMD_ACK:
                # Only records sent on this connection may be acked: the gateway acks what it
                # committed from this upload (a lost ack is repeated by asking for the records
                # again), so nothing the gateway never saw is deleted.
                if a > self._conn_sent:
                    self.bad_commands += 1
                    await self._status(op, _ST_BAD_ARGUMENT, self.sampler.depth)
                else:
                    depth = self.sampler.ack(a)
                    self._refresh_info()
                    await self._status(op, _ST_OK, depth)
                    if self._ota_trial and self.ota_receiver().uploaded():
                        self._ota_trial = False  # a trial version's first acked upload confirms it
            elif op == _CMD_TIME_SYNC:
                await self._time_sync(a)
            elif self._stream:  # STOP during a stream: END with reason 1 answers it
                await self._end_stream(_END_LIMIT)
            else:
                await self._status(op, _ST_OK, 0)
        except Exception:  # flash trouble while applying: nothing was confirmed, ask to retry
            self.errors += 1
            await self._status(op, _ST_BUSY, 0)

    def ota_receiver(self):
        """Return the firmware.ota.Receiver, importing and building it on first use.
        Precondition: the Peripheral was given ota=(fs, nvs) (else ValueError)."""
        rx = self.ota
        if rx is None:
            from firmware.ota import receiver_for

            rx = self.ota = receiver_for(self._ota_args, self._fw_version)
        return rx

    async def _time_sync(self, unix_s):
        """Apply an authenticated TIME_SYNC(unix_s): the first sync after boot sets the clock, a
        later one moves it by at most _TIME_SYNC_MAX_STEP_S; one per connection (a second gets
        STATUS busy), so syncs cannot fill the journal with events. Returns nothing."""
        op = _CMD_TIME_SYNC
        if self._synced_here:
            await self._status(op, _ST_BUSY, self.sampler.time.now()[0])
            return
        self._synced_here = True
        t = self.sampler.time
        if t.synced:
            now_s = t.now()[0]
            if unix_s > now_s + _TIME_SYNC_MAX_STEP_S:
                unix_s = now_s + _TIME_SYNC_MAX_STEP_S
                self.time_sync_clamps += 1
            elif unix_s < now_s - _TIME_SYNC_MAX_STEP_S:
                unix_s = now_s - _TIME_SYNC_MAX_STEP_S
                self.time_sync_clamps += 1
        self.sampler.time_sync(unix_s)
        self._refresh_info()
        await self._status(op, _ST_OK, t.now()[0])

    def _start_stream(self, seq, limit):
        """Begin SEND_FROM(seq, limit): close the chain, then stream records seq..newest. Returns
        False when there is nothing to send (the caller answers END empty), else True. Not a
        coroutine: one frame object less on the heap while the closer is signed."""
        s = self.sampler
        s.gateway_behind(seq)  # it asks for records deleted after their ack: name the break
        self._stream_end = s.close_chain()  # records appended later wait for the next SEND_FROM
        self._last_sent = -1
        if s.depth == 0:
            return False
        self._iter = s.journal.iter_from(seq)
        self._stream_left = limit
        self._stream = True
        return True

    async def _end_stream(self, reason):
        """Finish the stream in progress with END(reason); returns nothing."""
        self._stream = False
        self._iter = None
        await self._notify(self._framer.end(reason, self._last_sent, self.sampler.depth))

    async def _stream_step(self):
        """Send the next record of the stream (all its chunks), or END when done."""
        it = self._iter
        item = None
        if it is None:
            self._stream = False
            return
        try:
            for got in it:
                item = got
                break
        except Exception:  # unreadable flash: stop early, the gateway asks again
            self.errors += 1
            await self._end_stream(_END_LIMIT)
            return
        if item is None or item[0] > self._stream_end:
            await self._end_stream(_END_ALL_SENT)
            return
        seq, record = item
        msg = self._msg
        self._msg = (msg + 1) & 0xFF
        for frame in self._framer.chunks(record, msg, self._mtu):
            if not await self._notify(frame):
                self._abort_stream()
                return
            await self._clock.sleep_ms(0)  # let sampling and IRQ work run between chunks
        self.records_sent += 1
        self._last_sent = seq
        if seq > self._conn_sent:
            self._conn_sent = seq
        if self._stream_left:
            self._stream_left -= 1
            if self._stream_left == 0:
                await self._end_stream(_END_LIMIT)

    def _abort_stream(self):
        """Drop the stream in progress without END (the link is gone)."""
        self._stream = False
        self._iter = None

    # ---- the task ------------------------------------------------------------------------------
    async def run(self):
        """Serve until stop(): advertise, answer commands, stream, restart advertising after every
        disconnect and refresh it when the pending count changes."""
        self.running = True
        self.windowed = False
        self._advertise()
        while self.running:
            work = self._work()  # not `await self._pass()`: no coroutine frame per pass
            if work is None:
                await self._clock.sleep_ms(_POLL_MS)
            else:
                await work

    async def _pass(self):
        """One pass of the serving loop (firmware.power.serve_window; run() does the same);
        returns True when work was done and the next pass should follow at once, False when the
        caller should wait _POLL_MS."""
        work = self._work()
        if work is None:
            return False
        await work
        return True

    def _work(self):
        """Do the immediate part of one pass of the serving loop and return the coroutine of the
        rest (a STATUS, a command, a stream step) for the caller to run, or None when there was
        nothing to do (then wait _POLL_MS)."""
        if self._ev_disconnect:
            self._ev_disconnect = False
            self._abort_stream()
            del self._queue[:]
            if self.ota is not None:
                self.ota.session_end()
            if self._conn is None and not self.windowed:
                self._advertise()
        if self._ev_connect:
            self._ev_connect = False
            self.connections += 1
            self._active_ms = self._clock.ticks_ms()
            self._refresh_info()
        if self._busy_ops:
            return self._status(self._busy_ops.pop(0), _ST_BUSY, 0)
        if self._queue:
            return self._command(self._queue.pop(0))
        if self._stream:
            if self._conn is None:
                self._abort_stream()
            else:
                return self._stream_step()
        if self._dirty:
            self._dirty = False
            try:
                self._refresh_info()
            except OSError:
                self.errors += 1
            if self._conn is None and not self.windowed:
                self._advertise()
        elif self._conn is None and not self._advertising and not self.windowed:
            self._advertise()
        if self._scanner is not None:
            self._scanner.step()
        self._drop_if_idle()
        return None

    def _drop_if_idle(self):
        """Disconnect a central that has not authenticated within auth_timeout_ms of connecting
        (_AUTH_TIMEOUT_MS), or that was silent for idle_disconnect_ms (_IDLE_DISCONNECT_MS); returns
        nothing. A refused disconnect is tried again one period later."""
        conn = self._conn
        if conn is None or self._stream:
            return
        now = self._clock.ticks_ms()
        if not self._authed:
            if self._clock.ticks_diff(now, self._conn_ms) >= self.auth_timeout_ms:
                self._conn_ms = now
                self.auth_timeouts += 1
                self._disconnect(conn)
            return
        if self._clock.ticks_diff(now, self._active_ms) < self.idle_disconnect_ms:
            return
        self._active_ms = now
        self.idle_disconnects += 1
        self._disconnect(conn)

    def stop(self):
        """Stop serving: end advertising and drop the connection; returns nothing."""
        self.running = False
        self._abort_stream()
        self.sampler.on_change = None
        if self._scanner is not None:
            self._scanner.stop()
        try:
            self._ble.gap_advertise(None)
            if self._conn is not None:
                self._ble.gap_disconnect(self._conn)
        except OSError:
            pass
        self._advertising = False
