"""Battery profiles (firmware/power.py): profile checks, advertising windows, light sleep, and a
deep-sleep cycle that resumes the chain from RTC memory without losing or repeating anything."""

import json

from firmware import app, board, peripheral, power, wire
from firmware.keystore import install_link_key
from tests.firmware.simflash import SimFlash
from tests.firmware.test_app import _buses, _urandom
from tests.firmware.test_sampler import SimClock, SimLoop, check_chain
from tests.firmware.vectors import W, private_const

try:
    import bluetooth  # the host shims: tests/shims is on sys.path under pytest
    import esp32
    import machine
except ImportError:  # the MicroPython VM: tools/mpvm.mjs copies tests/shims, not on sys.path
    from tests.shims import bluetooth, esp32, machine
from tests.firmware.test_peripheral import LINK_KEY, Gateway, ack

VM_SKIP = {}

_MIN_MS = 60000


def raises(fn, *args):
    try:
        fn(*args)
    except ValueError as e:
        return str(e)
    raise AssertionError("no ValueError")


def _profile(**power):
    p = board.load("boards/cold-chain-logger.json")
    if power:
        p["power"] = power
    return p


def _text(power):
    with open("boards/cold-chain-logger.json") as f:
        p = json.loads(f.read())
    p["power"] = power
    return json.dumps(p)


def test_profile_power_object_is_checked_with_clear_errors():
    ok = board.parse(_text({"sleep": "deep", "advertise_window_s": 5, "advertise_every_s": 900}))
    assert power.settings(ok) == ("deep", 5000, 900000, 0)
    bad = [
        ({"sleep": "hibernate"}, "sleep must be one of"),
        ({"sleep": "light"}, "needs advertise_window_s"),
        ({"advertise_window_s": 5}, "go together"),
        ({"advertise_window_s": 1, "advertise_every_s": 60}, "advertise_window_s must be"),
        ({"advertise_window_s": 60, "advertise_every_s": 60}, "advertise_every_s must be"),
        ({"advertise_window_s": 5, "advertise_every_s": 60, "advertise_pending": -1}, "pending"),
        ({"advertise_window_s": True, "advertise_every_s": 60}, "must be int"),
        ({"sleep": "light", "wake_s": 3}, "unknown field 'wake_s'"),
    ]
    for obj, why in bad:
        msg = raises(board.parse, _text(obj), "x.json")
        assert msg.startswith("board profile 'cold-chain-logger' power:") and why in msg, msg
    assert "field 'power' must be dict" in raises(board.parse, _text(5))
    # no power object, or one that changes nothing: the always-on board of before
    assert power.settings(board.load("boards/energy-meter.json")) is None
    assert power.settings(_profile(sleep="none")) is None


def test_every_battery_board_profile_has_a_window():
    for name, p in board.load_all("boards").items():
        cfg = power.settings(p)
        if cfg is not None:
            assert cfg[1] > 0 and cfg[2] > cfg[1], name


def _done():
    """Leave the machine shim as other tests expect it: real sleeping, a power-on reset."""
    machine.set_sleep_hook(None)
    machine.power_on()


class Chip:
    """One board's hardware across resets: flash, NVS, the RTC wall clock, this boot's ticks."""

    def __init__(self, seed):
        self.fs = SimFlash(seed=seed)
        self.store = {}
        self.wall0 = 1700000000000
        self.clock = SimClock()
        self.ble = None
        machine.power_on()
        self.advertising_asleep = 0  # sleeps begun while advertising or connected
        machine.set_sleep_hook(self._slept)
        install_link_key(self.fs, self.nvs(), LINK_KEY)

    def _slept(self, ms):
        if self.ble is not None and (self.ble.adv is not None or self.ble._conns):
            self.advertising_asleep += 1
        self.clock.block_ms(ms)  # ticks_ms keeps counting through a light sleep (ESP-IDF)

    def nvs(self):
        return esp32.NVS("edgeseal", self.store)

    def wall_ms(self):
        return self.wall0 + self.clock.now_ms

    def boot(self, profile, sleeper=True):
        """Power on or wake: a new ticks counter (it restarts at a reset), the same flash."""
        if self.ble is not None:
            self.wall0 += self.clock.now_ms
            self.clock = SimClock()
            self.fs.remount()
        self.ble = bluetooth.BLE(1, self.clock)
        sl = power.Sleeper(machine, self.wall_ms) if sleeper else None
        b = app.build_board(
            profile, self.ble, self.fs, self.nvs(), _buses(2000), self.clock, _urandom,
            uuid=bluetooth.UUID, sleeper=sl,
        )  # fmt: skip
        loop = SimLoop(self.clock)
        for c in b.coroutines():
            loop.spawn(c)
        return b, loop


def _until(loop, cond, max_ms):
    waited = 0
    while not cond() and waited < max_ms:
        loop.run_for(100)
        waited += 100
    return cond()


def test_light_sleep_advertises_only_in_windows_and_uploads_everything():
    chip = Chip(11)
    b, loop = chip.boot(_profile(sleep="light", advertise_window_s=5, advertise_every_s=600))
    try:
        assert _until(loop, lambda: chip.ble.adv is not None, 1000)  # first window at boot
        gw = Gateway(chip.ble, loop, 247)
        gw.connect()
        records, end = gw.upload(0)
        assert gw.command(ack(end[1]))[1] == 0
        gw.disconnect()
        got = list(records)
        # the window closes (the journal is empty) and the board light-sleeps between samples
        # until the next window, a period after the first; never while advertising
        assert _until(loop, lambda: b.duty.windows == 2, 12 * _MIN_MS)
        assert chip.ble.adv is not None and chip.clock.now_ms >= 10 * _MIN_MS
        light = [ms for kind, ms in machine.sleeps if kind == "light"]
        assert len(light) >= 9 and max(light) <= _MIN_MS and sum(light) > 9 * _MIN_MS
        assert chip.advertising_asleep == 0
        assert b.sampler.readings >= 10 and b.peripheral.connections == 1
        # the rest arrives in the second window, chained to the first part
        gw.connect()
        records, end = gw.upload(0)
        assert gw.command(ack(end[1]))[1] == 0
        gw.disconnect()
        got += records
        check_chain(got, b.dev_id)
        assert [wire.parse(r)[0] for r in got].count(W.KIND_READING) == b.sampler.readings
    finally:
        b.stop()
        loop.close()
        _done()


def test_a_window_opens_early_when_records_pile_up():
    chip = Chip(12)
    p = _profile(sleep="light", advertise_window_s=5, advertise_every_s=3600, advertise_pending=8)
    b, loop = chip.boot(p)
    try:
        # the boot window passes with no gateway; at 8 pending records one opens early
        assert _until(loop, lambda: b.duty.windows == 2, 12 * _MIN_MS)
        assert b.duty.early_windows == 1 and b.sampler.depth >= 8
        assert chip.clock.now_ms < 10 * _MIN_MS and chip.ble.adv is not None
        # no gateway came: one early window per period, no window storm; the next one is the
        # regular window, an hour after the boot window
        assert _until(loop, lambda: b.duty.windows == 3, 70 * _MIN_MS)
        assert chip.clock.now_ms >= 60 * _MIN_MS and b.duty.early_windows == 1
        assert chip.advertising_asleep == 0
    finally:
        b.stop()
        loop.close()
        _done()


def _deep(chip, profile):
    """Boot, run until the board deep-sleeps (SystemExit, the reset); return the board."""
    b, loop = chip.boot(profile)
    try:
        for _ in range(2000):
            loop.run_for(1000)
    except SystemExit:
        return b
    finally:
        loop.close()
    raise AssertionError("never slept")


def test_deep_sleep_cycles_resume_the_chain_from_rtc_memory():
    chip = Chip(13)
    p = _profile(sleep="deep", advertise_window_s=5, advertise_every_s=1800)
    p["sample_interval_s"] = 120  # above DEEP_MIN_MS: every wait is a deep sleep
    b = _deep(chip, p)  # boot: boot event, a reading, the window, then the first deep sleep
    boot = b.sampler.boot
    assert machine.reset_cause() == machine.DEEPSLEEP_RESET and machine.RTC().memory()
    slots = dict(chip.store["edgeseal"])
    seqs = [b.journal.last_seq]
    for _ in range(3):
        b = _deep(chip, p)
        assert b.woke and b.sampler.boot == boot  # the same boot: no boot event, no new block
        seqs.append(b.journal.last_seq)
    assert dict(chip.store["edgeseal"]) == slots  # not one NVS write in three wakes
    gen = b.sampler.seqs._gen
    while b.journal.last_seq < 40:  # across the end of the first 32-seq reservation
        b = _deep(chip, p)
        assert b.woke and b.sampler.boot == boot
        seqs.append(b.journal.last_seq)
    assert b.sampler.seqs._gen == gen + 1  # one reservation for the next block, at its start
    recs = [r for _, r in b.journal.iter_from(0)]
    check_chain(recs, b.dev_id)
    parsed = [wire.parse(r) for r in recs]
    assert [x[0] for x in parsed].count(W.KIND_EVENT) == 1  # the one boot event
    assert [x[3] for x in parsed] == list(range(parsed[0][3], parsed[0][3] + len(parsed)))
    assert seqs == sorted(set(seqs))
    # device time continued across the sleeps: a reading per 120 s, by the RTC's wall clock
    assert {x[4] for x in parsed} == {boot}
    times = [x[5] for x in parsed if x[0] == W.KIND_READING]
    assert times[-1] - times[0] == 120 * (len(times) - 1)
    # the unsigned run was carried over: heartbeats and every 16th record signed, not every wake
    beats = [x[0] for x in parsed].count(W.KIND_HEARTBEAT)
    assert beats >= 1 and sum(1 for x in parsed if x[9]) <= beats + len(parsed) // 16 + 1
    _done()


def test_driver_waits_light_sleep_only_outside_windows():
    chip = Chip(17)
    sl = power.Sleeper(machine, chip.wall_ms)
    sl.block_ms(750)  # a DS18B20 conversion between windows: light-slept
    sl.block_ms(power.NAP_MIN_MS - 1)  # too short to be worth a sleep: waited awake
    sl.in_window = True
    sl.block_ms(750)  # inside a window the radio is serving: waited awake
    assert machine.sleeps == [("light", 750)] and sl.light_ms == 750
    _done()


def test_deep_sleep_wake_uploads_and_acks_survive():
    chip = Chip(14)
    p = _profile(sleep="deep", advertise_window_s=5, advertise_every_s=1800)
    p["sample_interval_s"] = 120
    b, loop = chip.boot(p)
    try:
        assert _until(loop, lambda: chip.ble.adv is not None, 1000)
        gw = Gateway(chip.ble, loop, 247)
        gw.connect()
        records, end = gw.upload(0)
        assert gw.command(ack(end[1]))[1] == 0
        gw.disconnect()
        for _ in range(200):
            loop.run_for(1000)
        raise AssertionError("never slept")
    except SystemExit:
        pass
    finally:
        loop.close()
    acked = b.journal.acked_seq
    b2 = _deep(chip, p)
    assert b2.woke and b2.journal.acked_seq == acked and b2.journal.last_seq > acked
    after = [r for _, r in b2.journal.iter_from(0)]
    check_chain(after, b.dev_id, wire.record_hash(records[-1], wire.parse(records[-1])[8]))
    _done()


def test_a_wake_whose_rtc_state_does_not_match_boots_as_after_a_power_cut():
    p = _profile(sleep="deep", advertise_window_s=5, advertise_every_s=1800)
    p["sample_interval_s"] = 120
    for spoil in ("crc", "power", "journal"):
        chip = Chip(15)
        b = _deep(chip, p)
        if spoil == "crc":
            blob = bytearray(machine.RTC().memory())
            blob[10] ^= 1
            machine.RTC().memory(bytes(blob))
        elif spoil == "power":
            machine.power_on()
        else:  # another boot wrote the journal since (a state from an older sleep)
            old = machine.RTC().memory()
            b = _deep(chip, p)
            machine.RTC().memory(old)
        b2, loop = chip.boot(p)
        loop.close()
        assert not b2.woke and b2.sampler.boot == b.sampler.boot + 1, spoil
        recs = [r for _, r in b2.journal.iter_from(0)]
        check_chain(recs, b.dev_id)
        assert wire.parse(recs[-1])[7] == [(W.CH_EVENT_CODE, 0, W.EV_BOOT)]
        b2.stop()
    _done()


def test_rtc_state_round_trips_and_rejects_damage():
    chip = Chip(16)
    b, loop = chip.boot(_profile(sleep="deep", advertise_window_s=5, advertise_every_s=1800))
    loop.close()
    blob = power.pack(b, 5000, 123456, (1, 2, 3))
    assert len(blob) <= machine.RTC_MEMORY_MAX
    w = power.unpack(blob)
    assert (w.boot, w.next_seq, w.planned_ms, w.wall_ms) == (b.sampler.boot, b.sampler.seqs.peek(),
                                                           5000, 123456)  # fmt: skip
    assert (w.sample_at, w.beat_at, w.window_at) == (1, 2, 3) and w.offset_ms is None
    assert power.unpack(blob[:-1]) is None and power.unpack(b"") is None
    assert power.unpack(b"XXXX" + blob[4:]) is None
    b.stop()
    _done()


def test_a_window_polls_at_the_peripherals_idle_period():
    # firmware.power.serve_window keeps its own copy of firmware.peripheral's idle poll period
    window_ms = private_const(power, "_WINDOW_POLL_MS", 20)
    assert window_ms == private_const(peripheral, "_POLL_MS", 20)
