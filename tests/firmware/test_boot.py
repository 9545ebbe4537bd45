"""Boot: radio first, key after the radio into NVS (power-cut safe, migrated from the old file),
profile-driven imports, and main.py's MemoryError handling (degrade, drain, back off)."""

import sys

from firmware import app, ed25519, keystore, runtime
from firmware.keystore import KeyCorrupt, KeyStore, install_link_key
from firmware.sampler import Source
from tests.firmware.simflash import PowerCut, SimFlash
from tests.firmware.test_sampler import SimClock, SimLoop
from tests.firmware.vectors import private_const

try:
    import bluetooth  # the host shims: tests/shims is on sys.path under pytest
    import esp32
except ImportError:  # the MicroPython VM: tools/mpvm.mjs copies tests/shims, not on sys.path
    try:
        from tests.shims import bluetooth, esp32
    except ImportError:  # a board: no shims
        bluetooth = None
if bluetooth is not None:
    from tests.firmware.test_peripheral import LINK_KEY, Gateway, ack

VM_SKIP = {}
_WHY = "needs the host shims (tests/shims: bluetooth, esp32), not deployed to boards"
PROFILE = "boards/cold-chain-logger.json"
# firmware/runtime.py: the longest back-off, the uptime that ends a MemoryError episode, Watch's period
BACKOFF_MAX_MS = private_const(runtime, "_BACKOFF_MAX_MS", 600000)
HEALTHY_MS = private_const(runtime, "_HEALTHY_MS", 3600000)
WATCH_MS = private_const(runtime, "_WATCH_MS", 60000)
NVS_KEY = private_const(keystore, "_NVS_KEY", "dev_key")
OOM_KEY = private_const(runtime, "_OOM_KEY", "oom_run")
OOM_TOTAL_KEY = private_const(runtime, "_OOM_TOTAL_KEY", "oom_total")
_SMALL_JOURNAL = 9216  # the smallest journal build_board accepts is 8,704 bytes (4 KB segments)


class Rand:
    """Deterministic urandom that remembers every seed it made; log: shared event list."""

    def __init__(self, log=None, start=5):
        self.x = start
        self.made = []
        self.log = log

    def __call__(self, n):
        if self.log is not None:
            self.log.append("key generated")
        out = bytearray(n)
        for i in range(n):
            self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = (self.x >> 16) & 0xFF
        self.made.append(bytes(out))
        return bytes(out)


class LoggedBLE:
    """The BLE shim, logging its activation and the GATT registration in a shared list."""

    def __init__(self, ble, log):
        self._ble = ble
        self._log = log

    def active(self, *args):
        if args and args[0] and not self._ble.active():
            self._log.append("ble active")
        return self._ble.active(*args)

    def gatts_register_services(self, services):
        self._log.append("gatt services")
        return self._ble.gatts_register_services(services)

    def __getattr__(self, name):
        return getattr(self._ble, name)


class LoggedFlash(SimFlash):
    """SimFlash that logs the journal mount (its directory listing)."""

    def __init__(self, log, seed=1):
        SimFlash.__init__(self, seed)
        self.log = log

    def listdir(self, path):
        if path == "journal" and self.log is not None:
            self.log.append("journal mount")
        return SimFlash.listdir(self, path)


def _profile():
    from firmware import board

    return board.load(PROFILE)


def _fresh_table(log):
    """Forget the signer table (as a reset does) and log its next build; returns the restorer."""
    saved = (ed25519._TABLE, ed25519._table_bytes)
    build = saved[1]

    def logged():
        if ed25519._TABLE is None:
            log.append("signer table")
        return build()

    ed25519._TABLE = None
    ed25519._table_bytes = logged

    def restore():
        ed25519._table_bytes = saved[1]
        if ed25519._TABLE is None:
            ed25519._TABLE = saved[0]

    return restore


def _src():
    return [Source("t", lambda: [(1, 0, 2000)], 1)]


def _build(fs, ble, clock, nvs, urandom, **kw):
    return app.build_board(
        _profile(), ble, fs, nvs, {}, clock, urandom, uuid=bluetooth.UUID, **kw
    )  # fmt: skip


def test_boot_order_radio_key_journal_table_then_gatt():
    log = []
    restore = _fresh_table(log)
    try:
        clock = SimClock()
        fs = LoggedFlash(log)
        nvs = esp32.NVS("edgeseal", {}, fs)
        b = _build(
            fs, LoggedBLE(bluetooth.BLE(1, clock), log), clock, nvs, Rand(log), sources=_src()
        )
    finally:
        restore()
    assert log == ["ble active", "key generated", "journal mount", "signer table", "gatt services"]
    b.stop()


def test_main_activates_ble_before_anything_else():
    # main() needs the board's own modules; its statements are pinned on the source: BLE is
    # activated before the firmware (or anything but bluetooth) is imported
    with open("firmware/main.py") as f:
        src = f.read()
    body = src[src.index("def main():") :]
    active = body.index("ble.active(True)")
    assert body.index("import bluetooth") < active < body.index("from firmware import runtime")
    assert len(src.splitlines()) < 30  # compiled from source at power-on: kept small


def test_key_lives_in_nvs_not_on_the_filesystem():
    clock = SimClock()
    fs = SimFlash(seed=2)
    store = {}
    rand = Rand()
    b = _build(
        fs, bluetooth.BLE(1, clock), clock, esp32.NVS("edgeseal", store), rand, sources=_src()
    )
    seed = rand.made[0]
    assert NVS_KEY in store["edgeseal"] and seed in bytes(store["edgeseal"][NVS_KEY])
    for path in fs.files:
        assert seed not in bytes(fs.files[path]), path
    b.stop()
    fs.remount()
    b2 = _build(
        fs, bluetooth.BLE(2, clock), clock, esp32.NVS("edgeseal", store), rand, sources=_src()
    )
    assert b2.public_key == b.public_key and len(rand.made) == 1
    b2.stop()


def _first_boot_points(tear=None):
    fs = SimFlash(seed=7, tear=tear)
    KeyStore(fs, nvs=esp32.NVS("edgeseal", {}, fs)).load_or_create(Rand())
    return fs.points


def test_first_boot_key_power_cut_at_every_write_point():
    total = _first_boot_points()
    assert total == 2  # NVS set_blob, commit
    for seed in range(1, 9):  # the seed decides whether the cut write landed
        for k in range(1, total + 1):
            fs = SimFlash(seed=seed)
            store = {}
            fs.arm(k)
            rand = Rand()
            try:
                KeyStore(fs, nvs=esp32.NVS("edgeseal", store, fs)).load_or_create(rand)
                raise AssertionError("cut not reached")
            except PowerCut:
                pass
            fs.remount()
            key = KeyStore(fs, nvs=esp32.NVS("edgeseal", store, fs)).load_or_create(rand)
            assert key in rand.made, "a key that was never generated"
            fs.remount()
            again = KeyStore(fs, nvs=esp32.NVS("edgeseal", store, fs)).load_or_create(rand)
            assert again == key and len(rand.made) <= 2


def test_whole_first_boot_power_cut_at_every_write_point():
    # as runtime.run_board builds it: the signer table goes to its file (written at first boot)
    tp = runtime.TABLE_PATH
    dry = SimFlash(seed=3)
    _build(dry, bluetooth.BLE(1, SimClock()), SimClock(), esp32.NVS("edgeseal", {}, dry), Rand(),
           sources=_src(), table_path=tp).stop()  # fmt: skip
    total = dry.points
    # key set + commit, journal mkdir, table file (create, write, flush, rename), seq reservation
    assert total >= 9
    for k in range(1, total + 1):
        fs = SimFlash(seed=3 + k)
        store = {}
        rand = Rand()
        fs.arm(k)
        clock = SimClock()
        try:
            _build(fs, bluetooth.BLE(1, clock), clock, esp32.NVS("edgeseal", store, fs), rand,
                   sources=_src(), table_path=tp)  # fmt: skip
            raise AssertionError("cut not reached")
        except PowerCut:
            pass
        fs.remount()
        b = _build(fs, bluetooth.BLE(2, clock), clock, esp32.NVS("edgeseal", store, fs), rand,
                   sources=_src(), table_path=tp)  # fmt: skip
        pk = b.public_key
        assert ed25519.SigningKey(rand.made[-1]).public_key == pk or any(
            ed25519.SigningKey(s).public_key == pk for s in rand.made
        )
        b.stop()
        fs.remount()
        b2 = _build(fs, bluetooth.BLE(3, clock), clock, esp32.NVS("edgeseal", store, fs), rand,
                    sources=_src(), table_path=tp)  # fmt: skip
        assert b2.public_key == pk
        assert bytes(fs.files[tp]) == bytes(ed25519._table_bytes()), k
        b2.stop()


def test_the_signer_table_is_written_once_and_read_from_flash():
    # runtime.run_board passes TABLE_PATH: the first boot writes the table, later boots check
    # and read it, and what the board signs verifies as with the table in RAM
    tp = runtime.TABLE_PATH
    clock = SimClock()
    fs = SimFlash(seed=4)
    store = {}
    rand = Rand()
    b = _build(fs, bluetooth.BLE(1, clock), clock, esp32.NVS("edgeseal", store, fs), rand,
               sources=_src(), table_path=tp)  # fmt: skip
    table = b.sampler.signer._table
    assert table is not None and table.built and not table.in_ram
    assert bytes(fs.files[tp]) == bytes(ed25519._table_bytes())
    b.stop()
    fs.remount()
    b = _build(fs, bluetooth.BLE(2, clock), clock, esp32.NVS("edgeseal", store, fs), rand,
               sources=_src(), table_path=tp)  # fmt: skip
    table = b.sampler.signer._table
    assert not table.built and not table.in_ram
    ram = ed25519.SigningKey(rand.made[0])
    assert ram.public_key == b.public_key
    msg = bytes(range(100))
    assert b.sampler.signer.sign(msg) == ram.sign(msg)
    b.stop()


def _old_key_file(fs, rand):
    """Write key.bin as the firmware before NVS did; returns its seed."""
    return KeyStore(fs).load_or_create(rand)


def test_key_file_migrates_into_nvs_power_cut_at_every_write_point():
    dry = SimFlash(seed=1)
    old = _old_key_file(dry, Rand())
    base = dry.points
    KeyStore(dry, nvs=esp32.NVS("edgeseal", {}, dry)).load_or_create(Rand(start=9))
    total = dry.points - base
    assert total == 3 and not dry.exists("key.bin")  # NVS set, commit, remove the file
    for seed in range(1, 9):
        for k in range(1, total + 1):
            fs = SimFlash(seed=seed)
            old = _old_key_file(fs, Rand())
            store = {}
            fs.arm(fs.points + k)
            other = Rand(start=99)
            try:
                KeyStore(fs, nvs=esp32.NVS("edgeseal", store, fs)).load_or_create(other)
                raise AssertionError("cut not reached")
            except PowerCut:
                pass
            fs.remount()
            in_file = fs.exists("key.bin")
            in_nvs = NVS_KEY in store["edgeseal"]
            assert in_file or in_nvs, "a moment with no key"
            key = KeyStore(fs, nvs=esp32.NVS("edgeseal", store, fs)).load_or_create(other)
            assert key == old and other.made == []
            assert not fs.exists("key.bin") and NVS_KEY in store["edgeseal"]


def test_key_file_and_nvs_disagreeing_is_refused():
    fs = SimFlash()
    _old_key_file(fs, Rand())
    store = {"edgeseal": {}}
    KeyStore(SimFlash(), nvs=esp32.NVS("edgeseal", store)).load_or_create(Rand(start=77))
    try:
        KeyStore(fs, nvs=esp32.NVS("edgeseal", store)).load_or_create(Rand())
        raise AssertionError("two identities accepted")
    except KeyCorrupt:
        pass
    assert fs.exists("key.bin")  # nothing deleted


def test_damaged_nvs_key_is_refused_not_replaced():
    store = {"edgeseal": {NVS_KEY: b"EK01" + b"\x00" * 36}}
    try:
        KeyStore(SimFlash(), nvs=esp32.NVS("edgeseal", store)).load_or_create(Rand())
        raise AssertionError("damaged key accepted")
    except KeyCorrupt:
        pass


def test_nvs_read_error_is_not_taken_for_no_key():
    class Failing:
        def get_blob(self, key, buf):
            raise OSError(5)  # EIO: not "not found"

    try:
        KeyStore(SimFlash(), nvs=Failing()).load_or_create(Rand())
        raise AssertionError("a read error made a new key")
    except OSError as e:
        assert e.args[0] == 5


def test_private_key_never_leaves_the_board():
    clock = SimClock()
    ble = bluetooth.BLE(1, clock)
    fs = SimFlash(seed=5)
    rand = Rand()
    nvs = esp32.NVS("edgeseal", {})
    install_link_key(fs, nvs, LINK_KEY)
    b = _build(fs, ble, clock, nvs, rand, sources=_src())
    seed = rand.made[0]
    loop = SimLoop(clock)
    for c in b.coroutines():
        loop.spawn(c)
    loop.run_for(120000)
    gw = Gateway(ble, loop, 247)
    gw.connect()
    records, end = gw.upload(0)
    assert records and gw.command(ack(end[1]))[1] == 0
    seen = [bytes(r) for r in records] + [
        bytes(gw.central.read("edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001"))
    ]
    seen += [bytes(x) for x in ble.adv if x] if ble.adv else []
    seen += [bytes(fs.files[p]) for p in fs.files]
    for blob in seen:
        assert seed not in blob
    for name in dir(b) + dir(b.sampler) + dir(b.peripheral):
        v = getattr(b, name, None)
        assert not (isinstance(v, (bytes, bytearray)) and seed in bytes(v)), name
    b.stop()
    loop.close()


def test_journal_default_matches_the_journal_module():
    from firmware.journal import MAX_JOURNAL_BYTES

    assert app.JOURNAL_BYTES == MAX_JOURNAL_BYTES


def _driver_modules():
    """Return {name: module} of the imported firmware.drivers.* modules."""
    return {n: sys.modules[n] for n in sys.modules if n.startswith("firmware.drivers.")}


def _restore_driver_modules(saved):
    """Put back the driver modules (and the package attributes) of _driver_modules(): other tests
    and the simulated world hold their classes (errors compared with isinstance)."""
    import firmware.drivers as package

    for n in list(sys.modules):
        if n.startswith("firmware.drivers.") and n not in saved:
            sys.modules.pop(n)
    for n, mod in saved.items():
        sys.modules[n] = mod
        setattr(package, n[17:], mod)


def test_only_the_profile_drivers_are_imported_and_boot_code_unloads():
    saved = _driver_modules()
    try:
        _check_profile_imports()
    finally:
        _restore_driver_modules(saved)
    import firmware

    saved = (sys.modules["firmware.app"], sys.modules.get("firmware.keystore"))
    try:
        app.unload_boot_modules()
        assert "firmware.app" not in sys.modules and "firmware.keystore" not in sys.modules
        assert "firmware.channels" not in sys.modules
        assert not hasattr(firmware, "app") and "firmware.runtime" in sys.modules
    finally:
        sys.modules["firmware.app"] = saved[0]
        firmware.app = saved[0]
        if saved[1] is not None:
            sys.modules["firmware.keystore"] = saved[1]
            firmware.keystore = saved[1]


def _check_profile_imports():
    from firmware.drivers import MODULES

    profile = app.load_profile(PROFILE)  # validates, then unloads the drivers it imported
    for name in _driver_modules():
        sys.modules.pop(name)
    clock = SimClock()
    b = app.build_board(profile, bluetooth.BLE(1, clock), SimFlash(), None, {}, clock, Rand(),
                        uuid=bluetooth.UUID, degraded=True)  # fmt: skip
    assert _driver_modules() == {} and b.sampler.sources == [] and b.degraded
    b.stop()
    from tests.firmware.test_app import _buses

    b = app.build_board(profile, bluetooth.BLE(1, clock), SimFlash(), None, _buses(), clock,
                        Rand(), uuid=bluetooth.UUID)  # fmt: skip
    loaded = sorted(n[17:] for n in _driver_modules())
    assert loaded == ["base", "ds18b20", "sht3x"] and len(MODULES) > 8, loaded
    b.stop()


# ---- runtime.boot (main.py): MemoryError ------------------------------------------------------


class Reset(BaseException):
    """machine.reset() on the host: never returns (so not an Exception boot() would catch)."""


def _boot(*args):
    """Run runtime.boot until its machine.reset(); returns nothing."""
    try:
        runtime.boot(*args)
    except Reset:
        return


class FakeMachine:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1
        raise Reset()


def test_memory_error_counts_degrades_and_backs_off():
    nvs = esp32.NVS("edgeseal", {})
    machine = FakeMachine()
    sleeps = []
    modes = []

    def run(ble, nvs_, machine_, urandom, degraded, watch):
        modes.append(degraded)
        raise MemoryError()

    for _ in range(10):
        _boot(None, nvs, machine, None, sleeps.append, run)
    assert modes == [False] + [True] * 9
    assert sleeps[:5] == [5000, 10000, 20000, 40000, 80000]
    assert sleeps[-1] == BACKOFF_MAX_MS and max(sleeps) == BACKOFF_MAX_MS
    assert nvs.get_i32(OOM_KEY) == 10 and nvs.get_i32(OOM_TOTAL_KEY) == 10
    assert machine.resets == 10


def test_other_errors_reset_after_a_short_delay_without_degrading():
    nvs = esp32.NVS("edgeseal", {})
    sleeps = []

    def run(*_args):
        raise ValueError("bad profile")

    _boot(None, nvs, FakeMachine(), None, sleeps.append, run)
    assert sleeps == [5000] and runtime.get_i32(nvs, OOM_KEY) == 0


def _fill(fs, clock, rand):
    """Boot normally and sample until the small journal is full; returns the stopped board."""
    b = _build(fs, bluetooth.BLE(1, clock), clock, None, rand, sources=_src(),
               journal_bytes=_SMALL_JOURNAL)  # fmt: skip
    for c in b.coroutines():
        c.close()
    while b.sampler.full_drops == 0:
        b.sampler.sample_once()
        clock.now_ms += 1000
    b.stop()
    return b


def test_degraded_board_drains_a_full_journal_then_retries_normal():
    clock = SimClock()
    fs = SimFlash(seed=9)
    rand = Rand()
    full = _fill(fs, clock, rand)
    assert full.journal.used_bytes > _SMALL_JOURNAL - 600
    nvs = esp32.NVS("edgeseal", {})
    nvs.set_i32(OOM_KEY, 2)  # the full build failed twice
    machine = FakeMachine()
    modes = []

    def run(ble_, nvs_, machine_, urandom, degraded, watch):
        modes.append(degraded)
        fs.remount()
        ble = bluetooth.BLE(2, clock)
        b = _build(fs, ble, clock, None, rand, sources=_src(), degraded=degraded,
                   journal_bytes=_SMALL_JOURNAL)  # fmt: skip
        assert b.sampler.sources == []
        loop = SimLoop(clock)
        for c in b.coroutines():
            loop.spawn(c)
        loop.run_for(100)
        watch(b)  # not drained yet: nothing happens
        gw = Gateway(ble, loop, 247)
        gw.connect()
        records, end = gw.upload(0)
        assert len(records) > 30 and gw.command(ack(end[1]))[1] == 0
        # the ack made room: the overflow event (signed) follows, and its own upload
        loop.run_for(WATCH_MS)
        watch(b)
        more, end = gw.upload(end[1] + 1)
        assert more and gw.command(ack(end[1]))[1] == 0
        loop.run_for(WATCH_MS)
        watch(b)  # drained: retry the full build
        raise AssertionError(
            "no reset: acked %d last %d" % (b.journal.acked_seq, b.journal.last_seq)
        )

    sleeps = []
    install_link_key(fs, None, LINK_KEY)
    _boot(None, nvs, machine, None, sleeps.append, run)
    assert modes == [True] and nvs.get_i32(OOM_KEY) == -2 and sleeps == []

    # the retry fails again: the count goes on from 2, with a longer back-off, degraded again
    def fail(ble_, nvs_, machine_, urandom, degraded, watch):
        modes.append(degraded)
        raise MemoryError()

    _boot(None, nvs, machine, None, sleeps.append, fail)
    assert modes == [True, False] and nvs.get_i32(OOM_KEY) == 3
    assert sleeps == [runtime.backoff_ms(3)] == [20000]


def test_normal_board_running_an_hour_ends_the_episode():
    nvs = esp32.NVS("edgeseal", {})
    nvs.set_i32(OOM_KEY, -3)
    watch = runtime.Watch(nvs, -3, FakeMachine())

    class T:
        ms = 0

        def uptime_ms(self):
            return self.ms

    class S:
        time = T()

    class B:
        degraded = False
        sampler = S()

    b = B()
    b.sampler.time.ms = HEALTHY_MS - 1
    watch(b)
    assert nvs.get_i32(OOM_KEY) == -3
    b.sampler.time.ms = HEALTHY_MS
    watch(b)
    assert nvs.get_i32(OOM_KEY) == 0 and watch.ooms == 0


if bluetooth is None:
    for _name in list(globals()):
        if _name.startswith("test_"):
            VM_SKIP[_name] = _WHY
