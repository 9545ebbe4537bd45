"""Sampling, heartbeat and chain signing: builds wire v1 records and appends them to the journal."""

import hashlib

from micropython import const

from firmware.journal import JournalFull
from firmware.record import RecordBuilder
from firmware.seqcounter import load_mark, store_mark

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_BRK_FLASH_FAULT = const(2)
_BRK_GATEWAY_BEHIND = const(4)
_BRK_JOURNAL_LOST = const(1)
_CH_BREAK_REASON = const(26)
_CH_EVENT_ARG = const(22)
_CH_EVENT_CODE = const(21)
_CH_HELD_SEQ = const(27)
_CH_JOURNAL_DEPTH = const(23)
_CH_UPTIME = const(24)
_EV_JOURNAL_OVERFLOW = const(2)
_EV_SENSOR_FAULT = const(5)
_EV_TIME_SYNC = const(4)
_KIND_CHAIN_SEGMENT = const(5)
_KIND_EVENT = const(3)
_KIND_HEARTBEAT = const(2)
_KIND_KEY_ROTATION = const(4)
_KIND_READING = const(1)
_TIME_SYNCED = const(0x01)

# Signing policy (docs/firmware-runtime.md). A signature costs ~0.5-0.9 s of CPU on an ESP32, and
# the hash chain lets one signature authenticate every record before it, so readings are signed
# only every _SIGN_EVERY_N-th time: that bounds the unsigned run a gateway must hold back (at most
# N - 1 records wait for a signed successor when an upload is cut short) at ~1/N of the signing
# cost. Heartbeats, key rotations and the upload closer are always signed.
_SIGN_EVERY_N = const(16)
# Journal space a closing heartbeat needs: entry header 12 + body 76 (2 values) + signature 64.
# A record appended unsigned must leave this much room, else it is signed itself: so the newest
# record is always either signed or closable, even when the journal is (nearly) full.
_CLOSER_BYTES = const(152)
# Time-sync events are journaled at most once per this interval (corrections in between are summed
# into the next one): syncs need the link key and come one per connection, but even a gateway
# reconnecting in a loop must not fill the journal with them; a minute is far below any sensible
# sampling interval of a contract and still shows every real clock step.
_TIME_SYNC_EVENT_INTERVAL_MS = const(60000)
_EVENT_MAX_BYTES = const(140)  # event record (header + code + arg) + signature, rounded up
_I32_MIN = const(-2147483648)
_I32_MAX = const(2147483647)
_MS_PER_S = const(1000)


class DeviceTime:
    """Device clock: uptime from ticks (wrap-safe) plus a Unix offset set by TIME_SYNC.

    clock: an object with ticks_ms(), ticks_diff(a, b) and an async sleep_ms(ms). uptime is
    accumulated from tick differences, so it stays right across ticks_ms wraps as long as it is
    read at least once per half wrap period (~6 days on the ESP32; sampling reads it far more often).
    """

    def __init__(self, clock):
        self.clock = clock
        self._last = clock.ticks_ms()
        self._uptime_ms = 0
        self._offset_ms = None

    def uptime_ms(self):
        """Return milliseconds since this object was made (the boot)."""
        now = self.clock.ticks_ms()
        self._uptime_ms += self.clock.ticks_diff(now, self._last)
        self._last = now
        return self._uptime_ms

    def resume(self, uptime_ms, offset_ms):
        """After a deep-sleep wake (firmware/power.py): continue uptime from uptime_ms and keep the
        Unix offset (None: unsynced); returns nothing."""
        self._last = self.clock.ticks_ms()
        self._uptime_ms = uptime_ms
        self._offset_ms = offset_ms

    @property
    def synced(self):
        """True once TIME_SYNC has set the Unix offset."""
        return self._offset_ms is not None

    def now(self):
        """Return (time_s, flags) for a record: Unix seconds with TIME_SYNCED, else uptime seconds."""
        up = self.uptime_ms()
        if self._offset_ms is None:
            return (up // _MS_PER_S) & 0xFFFFFFFF, 0
        return ((self._offset_ms + up) // _MS_PER_S) & 0xFFFFFFFF, _TIME_SYNCED

    def sync(self, unix_s):
        """Set the clock to unix_s (u32 Unix seconds); return the correction in seconds (new - old
        device time, i32-clamped; against uptime seconds when the clock was not synced before)."""
        before = self.now()[0]
        self._offset_ms = unix_s * _MS_PER_S - self.uptime_ms()
        corr = unix_s - before
        if corr < _I32_MIN:
            corr = _I32_MIN
        elif corr > _I32_MAX:
            corr = _I32_MAX
        return corr


class Source:
    """One sensor as the sampler sees it: read() returns a list of (type_id, channel, value).

    read: a callable doing the measurement (raises on a fault: SensorError, OSError, ...).
    fault_type: the channel type id reported as event_arg of a sensor-fault event (code 5).
    A state change (a car arrived) is reported by read() setting `event` to an event code (wire's _EV_*):
    the sampler then journals, right after that sample's reading, a signed event record carrying
    the code plus the reading's values whose type is in event_types, and clears `event`.
    """

    def __init__(self, name, read, fault_type, event_types=()):
        self.name = name
        self.read = read
        self.fault_type = fault_type
        self.faulted = False
        self.event = 0
        self.event_types = event_types


class Sampler:
    """Owns the device's chain: every record (reading, heartbeat, event) goes through append().

    journal: firmware.journal.Journal; seqs: firmware.seqcounter.SeqCounter (boot_count, next());
    signer: firmware.ed25519.SigningKey; dev_id: 16-byte device id; time: DeviceTime;
    sources: list of Source; intervals in seconds. on_change(): called after every append or ack
    (the peripheral refreshes advertising and Info). Precondition: seqs was built with
    floor=journal.last_seq, so seqs never repeat across power cuts.
    """

    def __init__(
        self, journal, seqs, signer, dev_id, time, sources, sample_interval_s,
        heartbeat_interval_s, sign_every_n=_SIGN_EVERY_N, kv=None,
    ):  # fmt: skip
        self.journal = journal
        self.seqs = seqs
        self.signer = signer
        self.dev_id = bytes(dev_id)
        self.time = time
        self.sources = sources
        self.sample_interval_ms = sample_interval_s * _MS_PER_S
        self.heartbeat_interval_ms = heartbeat_interval_s * _MS_PER_S
        self.sign_every_n = sign_every_n if sign_every_n > 0 else 1
        self.boot = seqs.boot_count
        self.on_change = None
        self._builder = RecordBuilder(self.dev_id)
        self._values = []
        self.running = False
        # counters for diagnostics and tests
        self.readings = 0
        self.heartbeats = 0
        self.events = 0
        self.signatures = 0
        self.sensor_faults = 0
        self.errors = 0
        self.full_drops = 0
        self.head_corrupt = False
        self.time_sync_events_deferred = 0
        self._sync_event_ms = None  # uptime_ms of the last time-sync event
        self._sync_unlogged_s = 0  # corrections applied since it, not journaled yet
        self._kv = kv  # holds the chain mark (seqcounter.load_mark); None: no break detection
        self._mark = load_mark(kv) if kv is not None else 0
        self.segments = 0
        self._segment_seq = -1  # newest chain segment journaled since boot
        self._load_head()
        self._count_pending()

    # ---- chain state -----------------------------------------------------------------------
    def _load_head(self):
        """Set prev_hash and head_signed from the journal's newest record (genesis when none).
        Boot only: firmware.wire (parsing, hashes) is unloaded once the board is built."""
        from firmware import wire

        head = None
        try:
            head = self.journal.last()
        except Exception:  # JournalCorrupt: the chain cannot continue from it; start from genesis
            self.head_corrupt = True
        if head is None:
            self._prev = wire.genesis_hash(self.dev_id)
            self.head_signed = True
            self._unsigned_run = 0
            return
        parsed = wire.parse(head[1])
        self._prev = wire.record_hash(head[1], parsed[8])
        self.head_signed = parsed[9]
        # unknown after a reboot: count the head as the start of a run so the next signs soon
        self._unsigned_run = 0 if parsed[9] else self.sign_every_n - 1

    def resume(self, unsigned_run, sync_event_ms, sync_unlogged_s, segment_seq):
        """After a deep-sleep wake (firmware/power.py): restore what only RAM held before the
        sleep -- the unsigned run (else an unsigned head makes the next record sign at every
        wake), the time-sync event bookkeeping and the newest segment's seq; returns nothing."""
        if not self.head_signed:
            self._unsigned_run = unsigned_run
        self._sync_event_ms = sync_event_ms
        self._sync_unlogged_s = sync_unlogged_s
        self._segment_seq = segment_seq

    def _count_pending(self):
        """Recount the unacked records and the lowest unacked seq (reads the journal once)."""
        n = 0
        first = -1
        for seq, _ in self.journal.iter_from(0):
            if first < 0:
                first = seq
            n += 1
        self.depth = n
        self.first_seq = first

    @property
    def last_seq(self):
        """Highest seq ever written (-1 before the first record)."""
        return self.journal.last_seq

    @property
    def acked_seq(self):
        """Every record with seq <= acked_seq is acked (-1 before the first ack)."""
        return self.journal.acked_seq

    def _changed(self):
        cb = self.on_change
        if cb is not None:
            cb()

    # ---- appending -------------------------------------------------------------------------
    def append(self, kind, values, sign=False, overflow=False):
        """Build, maybe sign, and journal one record; return its seq.

        values: list of (type_id, channel, value). sign=True forces a signature; heartbeats and key
        rotations are always signed, readings and events every sign_every_n-th record.
        Raises JournalFull (the journal counts the drop), WireError on bad values, OSError on flash.
        """
        if not overflow and self.journal.dropped_count:
            self._flush_overflow()
        if self._mark < 0:  # before the first record ever: from now on an empty journal is a loss
            store_mark(self._kv, self.journal.corrupt_count)
            self._mark = self.journal.corrupt_count
        seq = self.seqs.next()
        time_s, flags = self.time.now()
        b = self._builder
        b.begin(kind, seq, self.boot, time_s, self._prev, flags)
        for type_id, channel, value in values:
            b.add(type_id, channel, value)
        n = b.body_len()
        always = kind in (_KIND_HEARTBEAT, _KIND_KEY_ROTATION)
        always = always or kind == _KIND_CHAIN_SEGMENT
        if always or self._unsigned_run + 1 >= self.sign_every_n:
            sign = True
        elif not sign and not self.journal.room_for(n + _CLOSER_BYTES):
            sign = True  # no room left for a closer after it: this record must close the chain
        record = b.seal(self.signer if sign else None)  # in the builder's buffer: no copies
        if sign:
            self.signatures += 1
        self.journal.append(seq, record, overflow)
        self._prev = hashlib.sha256(record[:n]).digest()
        self.head_signed = sign
        self._unsigned_run = 0 if sign else self._unsigned_run + 1
        self.depth += 1
        if self.first_seq < 0:
            self.first_seq = seq
        self._changed()
        return seq

    def _flush_overflow(self):
        """Journal the overflow event (code 2, arg = readings dropped) once there is room again."""
        dropped = self.journal.dropped_count
        if not dropped or not self.journal.room_for(_EVENT_MAX_BYTES):
            return
        self.append(
            _KIND_EVENT,
            [(_CH_EVENT_CODE, 0, _EV_JOURNAL_OVERFLOW), (_CH_EVENT_ARG, 0, dropped)],
            overflow=True,
        )
        self.events += 1

    def _try_flush_overflow(self):
        """_flush_overflow() that reports a still-full journal as False instead of raising."""
        try:
            self._flush_overflow()
        except JournalFull:
            return False
        return True

    def event(self, code, arg=None, extra=(), sign=False):
        """Journal an event record (an event code, wire's _EV_*; optional i32 arg, extra (type, channel,
        value) entries; sign=True forces a signature); return its seq or -1 when the journal was
        full (the drop is counted and reported by a later overflow event)."""
        values = [(_CH_EVENT_CODE, 0, code)]
        if arg is not None:
            values.append((_CH_EVENT_ARG, 0, arg))
        for v in extra:
            values.append(v)
        try:
            seq = self.append(_KIND_EVENT, values, sign)
        except JournalFull:
            self.full_drops += 1
            return -1
        self.events += 1
        return seq

    def sample_once(self):
        """Read every source and journal one reading (plus a fault event per newly failing source,
        and after the reading a signed event per source that set Source.event).

        Returns the reading's seq, or -1 when nothing was stored (all sources failed, journal full).
        Never raises for sensor faults or a full journal.
        """
        values = self._values
        del values[:]
        changed = None
        for src in self.sources:
            try:
                got = src.read()
            except Exception:
                self.sensor_faults += 1
                if not src.faulted:
                    src.faulted = True
                    self.event(_EV_SENSOR_FAULT, src.fault_type)
                continue
            src.faulted = False
            for v in got:
                values.append(v)
            if src.event:
                if changed is None:
                    changed = []
                changed.append(src)
        seq = -1
        if values:
            try:
                seq = self.append(_KIND_READING, values)
                self.readings += 1
            except JournalFull:
                self.full_drops += 1
        if changed is not None:
            self._state_events(changed, values)
        return seq

    def _state_events(self, changed, values):
        """Journal one signed event per source in changed (Source.event), right after the reading:
        the signature authenticates the reading too (it is the event's prev_hash), so a state
        change is authentic as soon as it is journaled, at the cost of one signature."""
        for src in changed:
            code = src.event
            src.event = 0
            types = src.event_types
            self.event(code, None, [v for v in values if v[0] in types], True)

    def heartbeat(self):
        """Journal a signed heartbeat (journal depth, uptime); return its seq or -1 when full."""
        up_s = self.time.uptime_ms() // _MS_PER_S
        if up_s > _I32_MAX:
            up_s = _I32_MAX
        try:
            seq = self.append(
                _KIND_HEARTBEAT,
                [(_CH_JOURNAL_DEPTH, 0, self.depth), (_CH_UPTIME, 0, up_s)],
            )
        except JournalFull:
            self.full_drops += 1
            return -1
        self.heartbeats += 1
        return seq

    # ---- chain segments (docs/wire-format.md, Chain segments) ---------------------------------
    def break_at_boot(self):
        """Return the BRK_* reason the chain cannot continue for at boot, or 0 when it can.

        Journal head unreadable: flash-fault (nothing held). No head while the chain mark says
        records existed: journal-lost (a wiped journal or a reflashed filesystem look the same;
        the key and the seq high-water survive in NVS). Corrupt entries the last segment did not
        answer, or a head older than the acked seq: flash-fault (the head is held; the records
        around the hole are sent).
        """
        if self.head_corrupt:
            return _BRK_FLASH_FAULT
        if self._kv is None:
            return 0
        if self.journal.last_seq < 0:
            return _BRK_JOURNAL_LOST if self._mark >= 0 else 0
        if (
            self.journal.corrupt_count > self._mark
            or self.journal.last_seq < self.journal.acked_seq
        ):
            return _BRK_FLASH_FAULT  # a hole, or the acked head itself was lost
        return 0

    def start_segment(self, reason):
        """Journal a signed chain_segment naming reason and the newest seq still held (none when
        the head is unknown), then update the chain mark; return its seq, -1 when the journal is
        full. Order for power cuts: the record first, the mark after (a cut between repeats the
        segment at the next boot, which is harmless; the reverse could lose it)."""
        values = [(_CH_BREAK_REASON, 0, reason)]
        held = self.journal.last_seq
        if 0 <= held <= _I32_MAX and not self.head_corrupt:  # held_seq is an i32 channel
            values.append((_CH_HELD_SEQ, 0, held))
        try:
            seq = self.append(_KIND_CHAIN_SEGMENT, values, sign=True)
        except JournalFull:
            self.full_drops += 1
            return -1
        self.head_corrupt = False
        self._segment_seq = seq
        self.segments += 1
        if self._kv is not None:
            store_mark(self._kv, self.journal.corrupt_count)
            self._mark = self.journal.corrupt_count
        return seq

    def heal(self):
        """At boot: start a chain segment if the chain cannot continue; return its seq or -1."""
        reason = self.break_at_boot()
        return self.start_segment(reason) if reason else -1

    def gateway_behind(self, seq):
        """SEND_FROM(seq) asked for a seq the board deleted after its ack: the gateway lost it.
        Start a gateway-behind segment unless one is still unacked; return its seq or -1."""
        if seq > self.journal.acked_seq or self._segment_seq > self.journal.acked_seq:
            return -1
        return self.start_segment(_BRK_GATEWAY_BEHIND)

    def close_chain(self):
        """Before an upload: append a signed heartbeat when the newest record is unsigned, so the
        upload ends with a signed record. Returns the newest seq (-1 when the journal is empty)."""
        if self.journal.last_seq >= 0 and not self.head_signed:
            self.heartbeat()
        return self.journal.last_seq

    def ack(self, seq):
        """Apply a cumulative ACK up to seq (journal.ack), recount, and journal an overflow event if
        room came back; returns the new depth."""
        self.journal.ack(seq)
        self._count_pending()
        if self.journal.dropped_count and self._try_flush_overflow():
            return self.depth
        self._changed()
        return self.depth

    def time_sync(self, unix_s):
        """Set the clock from the gateway and journal a time-sync event (arg: the correction in s,
        plus earlier unjournaled ones), at most one per _TIME_SYNC_EVENT_INTERVAL_MS and none for a
        zero correction; return this sync's correction (s)."""
        corr = self.time.sync(unix_s)
        total = self._sync_unlogged_s + corr
        up = self.time.uptime_ms()
        last = self._sync_event_ms
        if total == 0 or (last is not None and up - last < _TIME_SYNC_EVENT_INTERVAL_MS):
            self._sync_unlogged_s = total
            self.time_sync_events_deferred += 1
            return corr
        self._sync_event_ms = up
        self._sync_unlogged_s = 0
        if total < _I32_MIN:
            total = _I32_MIN
        elif total > _I32_MAX:
            total = _I32_MAX
        self.event(_EV_TIME_SYNC, total)
        return corr

    # ---- asyncio tasks ---------------------------------------------------------------------
    async def _every(self, interval_ms, step):
        """Call step() every interval_ms (drift-free) while running; a failing step is counted."""
        clock = self.time.clock
        due = clock.ticks_ms()
        while self.running:
            try:
                step()
            except Exception:  # flash or wire trouble: count it, keep the board alive
                self.errors += 1
            due += interval_ms
            wait = clock.ticks_diff(due, clock.ticks_ms())
            if wait < 0:  # fell behind (a long signature): skip the missed slots
                due = clock.ticks_ms()
                wait = 0
            await clock.sleep_ms(wait)

    async def sample_task(self):
        """Sample at the profile's interval until stop()."""
        await self._every(self.sample_interval_ms, self.sample_once)

    async def heartbeat_task(self):
        """Emit a signed heartbeat at the profile's interval until stop() (first one after one
        interval: the boot event already marks the start)."""
        clock = self.time.clock
        await clock.sleep_ms(self.heartbeat_interval_ms)
        await self._every(self.heartbeat_interval_ms, self.heartbeat)
