"""Boot: wires a board profile, buses, BLE, storage and a clock into the sampler and the peripheral.

Boot-only code: main.py unloads this module (unload_boot_modules) once the board is built; what
runs afterwards lives in firmware/runtime.py (Board, RealClock), re-exported here. Modules are
imported in build_board in boot order (docs/firmware-runtime.md, "Boot order"), so each big
step runs with only the code it needs resident.
"""

from micropython import const

from firmware.runtime import FIRMWARE_VERSION, GPS_POLL_MS, Board, RealClock

__all__ = ["FIRMWARE_VERSION", "GPS_POLL_MS", "Board", "RealClock", "build_board", "load_profile"]
# why: firmware.journal.MAX_JOURNAL_BYTES, repeated so this module need not import the journal
# before build_board mounts it (a test pins that the two agree)
JOURNAL_BYTES = const(65536)
_ATTEN = {0: 0, 6: 2, 11: 3}  # profile atten_db -> machine.ADC.ATTN_* value
# UART receive buffer: a signature blocks the loop up to ~0.9 s; at 9600 baud that is ~870 bytes
# the GPS poll task must find still buffered (the ESP32 default of 256 would drop them).
_UART_RXBUF_BYTES = const(1024)
# Modules only the boot needs: unloaded by unload_boot_modules (their bytecode, not their names).
_BOOT_MODULES = const(("firmware.app", "firmware.keystore", "firmware.channels", "firmware.wire"))


def load_profile(path):
    """Return the validated profile read from the JSON file at path (firmware.board.parse), then
    unload firmware.board and the driver modules it imported for their specs: its ~15 KB of code
    is only needed to validate, and the drivers come back when make_source builds the sensors, so
    they do not sit in RAM during the boot's big steps (journal mount, signer table) either.
    Raises what board.parse raises (ValueError, OSError)."""
    import sys

    import firmware
    from firmware import board

    before = [name for name in sys.modules if name.startswith("firmware.drivers.")]
    with open(path) as f:
        profile = board.parse(f.read(), path)
    board = None
    sys.modules.pop("firmware.board", None)
    if hasattr(firmware, "board"):  # the package keeps a reference to an imported submodule
        delattr(firmware, "board")
    package = sys.modules.get("firmware.drivers")
    for name in [n for n in sys.modules if n.startswith("firmware.drivers.") and n not in before]:
        sys.modules.pop(name)
        leaf = name[17:]  # after "firmware.drivers."
        if package is not None and hasattr(package, leaf):
            delattr(package, leaf)
    return profile


def make_buses(profile, machine):
    """Return {bus name: bus} and {"<sensor>.<role>": Pin/ADC} for profile (a validated dict)."""
    pin = machine.Pin
    buses = {}
    for name, bus in profile["buses"].items():
        kind = bus["type"]
        if kind == "i2c":
            buses[name] = machine.I2C(
                bus["id"], scl=pin(bus["scl"]), sda=pin(bus["sda"]), freq=bus["freq_hz"]
            )
        elif kind == "onewire":
            import onewire

            buses[name] = onewire.OneWire(pin(bus["pin"]))
        elif kind == "uart":
            buses[name] = machine.UART(
                bus["id"], baudrate=bus["baudrate"], tx=bus["tx"], rx=bus["rx"],
                rxbuf=_UART_RXBUF_BYTES,
            )  # fmt: skip
    for sensor in profile["sensors"]:
        pins = sensor.get("pins") or {}
        params = sensor.get("params") or {}
        for role, gpio in pins.items():
            key = sensor["name"] + "." + role
            if role == "adc":
                adc = machine.ADC(pin(gpio))
                adc.atten(_ATTEN.get(params.get("atten_db", 11), 3))
                buses[key] = adc
            elif role == "sck":
                buses[key] = pin(gpio, pin.OUT, value=0)
            else:
                buses[key] = pin(gpio, pin.IN, pin.PULL_UP)
    return buses


class Hooks:
    """What sources need from the rest of the board, collected by make_source for build_board.

    scanners: (on_result, on_done) pairs for Peripheral.set_scan_listener (ble_beacon);
    pollers: callables run every GPS_POLL_MS by Board's poll task (nmea_gps drains its UART).
    """

    def __init__(self):
        self.scanners = []
        self.pollers = []


def _unsupported(name):
    def read():
        raise NotImplementedError("no runtime adapter for sensor " + name)

    return read


def commitment(salt, vehicle_id):
    """Return the wire vehicle_commitment SHA-256(salt || vehicle id)[0:16]: the ble_beacon
    driver's firmware.drivers.ble_beacon.commitment, kept here for its callers (gateway demo)."""
    from firmware.drivers.ble_beacon import commitment as made

    return made(salt, vehicle_id)


def make_source(sensor, buses, clock, readings, hooks=None):
    """Return a Source reading one profile sensor through its driver: the source() of the driver's
    module (firmware.drivers.MODULES), imported now if no sensor used it before.

    buses: {bus name: bus object} plus {"<sensor>.<role>": Pin/ADC} for dedicated pins.
    readings: {sensor name: {type_id: value}} shared between sources (do_probe reads its water
    temperature there). hooks: a Hooks collecting the scan listener (ble_beacon) and UART pollers
    (nmea_gps); without it a ble_beacon source never sees a beacon and the GPS is polled per sample
    only. A driver without a module gives a source whose read() raises, which the sampler reports
    once as a sensor-fault event. Faults of every source are the driver's exceptions.
    """
    from firmware import drivers

    module = drivers.module(sensor["driver"])
    if module is None:
        from firmware.drivers.base import emitter, new_source

        emitter(sensor, readings)  # registers the sensor's (empty) readings, like every source
        return new_source(sensor, _unsupported(sensor["name"]))
    return module.source(sensor, buses, clock, readings, Hooks() if hooks is None else hooks)


def build_board(
    profile, ble, fs, nvs, buses, clock, urandom, sources=None, journal_bytes=JOURNAL_BYTES,
    firmware_version=FIRMWARE_VERSION, uuid=None, sign_every_n=None, degraded=False,
    table_path=None, sleeper=None, unload=False,
):  # fmt: skip
    """Return a Board (not started) from durable state, as the board does at power-on.

    Boot order (pinned by tests/firmware/test_boot.py): 1. the radio (ble.active(True)) before
    any large allocation: NimBLE takes its memory from the ESP-IDF heap the Python heap grows
    into, and activating it after the heap grew is a known crash (MicroPython issue 14293);
    2. the key, only now (the ESP32 RNG is pseudo-random until the radio is on); 3. the journal
    mount (a full journal's scan garbage, with little code resident yet); 4. the signer table;
    5. the seq counter, the sensors, the sampler and the GATT server.

    profile: dict from firmware.board (name, sample/heartbeat intervals, sensors); ble: a
    bluetooth.BLE-compatible object; fs: firmware.fs.VfsFS or the simulated flash (journal, and
    the key and the seq counter when nvs is None); nvs: the esp32.NVS object holding the key and
    the seq counter (the board), or None; buses: {bus name: bus} plus {"<sensor>.<role>":
    Pin/ADC}; clock: ticks_ms(), ticks_diff(a, b), async sleep_ms(ms) and optionally
    block_ms(ms) for drivers; urandom(n) -> bytes (the device key at first boot, 32 bytes, and
    every connection's 16-byte nonce). The BLE link key is read from NVS (or the file) if
    provisioned (firmware.keystore.load_link_key).
    sources: a list of sampler.Source replacing the profile's sensors. degraded: no sensors at
    all (main.py after a MemoryError): heartbeats and uploads only, so the journal drains.
    table_path: keep the signer's fixed-base table in this file on fs (ed25519.TableFile: built
    and written at the first boot, 12 KB less heap for good) instead of in RAM (None).
    sleeper: firmware.power.Sleeper: a profile with a "power" object then runs
    firmware.power.DutyCycle (advertising windows; light or deep sleep through the Sleeper's
    machine module, resuming the chain from RTC memory after a deep-sleep wake; an asyncio sleep
    when it has no machine: the virtual fleet). None: the profile's power object is ignored and
    the board is always awake and advertising, as before battery profiles (host tests).
    unload: drop each boot-only module as soon as the build is done with it (firmware.keystore
    once the keys are read, firmware.channels once the sensors are built, firmware.wire once the
    sampler has read the chain head), so the GATT server is built with less code on the heap (runtime.run_board; host tests keep them, with their classes).
    Raises KeyCorrupt (damaged key), ValueError (bad profile) or OSError (radio, flash).
    """
    if not ble.active(True):
        raise OSError("BLE did not become active")
    from firmware import keystore

    seed = keystore.KeyStore(fs, nvs=nvs).load_or_create(urandom)
    link_key = keystore.load_link_key(fs, nvs)  # None until provisioned: commands are refused
    keystore = None  # this frame's reference to the module
    if unload:
        _unload(("firmware.keystore",))
    from firmware.journal import Journal

    journal = Journal(fs, "journal", journal_bytes)
    from firmware import ed25519

    table = None if table_path is None else ed25519.TableFile(fs, table_path)
    signer = ed25519.SigningKey(seed, table)
    seed = table = None
    from firmware import wire
    from firmware.seqcounter import FileKV, NvsKV, SeqCounter

    dev_id = wire.device_id(signer.public_key)
    wire = None  # this frame's reference to the module (boot-only: unloaded below)
    kv = FileKV(fs, "state") if nvs is None else NvsKV(nvs)
    cfg = wake = seqs = wall_ms = None
    if sleeper is not None and profile.get("power"):
        from firmware import power

        cfg = power.settings(profile)
        if cfg is not None and cfg[0] == power.SLEEP_DEEP:
            wake = power.unpack(sleeper.woke())
            if wake is not None:
                seqs = power.resume_seqs(kv, wake, journal.last_seq)
                wake = None if seqs is None else wake
                wall_ms = sleeper.wall_ms  # read at restore: ticks count on from that instant
    if seqs is None:
        seqs = SeqCounter(kv, max(journal.last_seq, 0))
    hooks = Hooks()
    if degraded:
        sources = []
    elif sources is None:
        readings = {}
        sources = [make_source(s, buses, clock, readings, hooks) for s in profile["sensors"]]
    if unload:
        _unload(("firmware.channels",))
    kw = {}
    if sign_every_n is not None:
        kw["sign_every_n"] = sign_every_n
    from firmware.sampler import DeviceTime, Sampler

    sampler = Sampler(
        journal, seqs, signer, dev_id, DeviceTime(clock), sources, profile["sample_interval_s"],
        profile["heartbeat_interval_s"], kv=kv, **kw,
    )  # fmt: skip
    if unload:  # the chain head is read: parsing and ids are not needed again
        _unload(("firmware.wire",))
    if wake is not None and wall_ms is not None:
        power.restore(sampler, wake, wall_ms())  # pyright: ignore[reportPossiblyUnbound]
    sampler.heal()  # a lost or damaged journal: start a chain segment before any new record
    from firmware.peripheral import Peripheral

    peripheral = Peripheral(
        ble, sampler, profile["name"], firmware_version, uuid=uuid, link_key=link_key,
        urandom=urandom, ota=(fs, nvs),  # firmware.ota is imported on first use only
    )  # fmt: skip
    link_key = None
    if hooks.scanners:
        on_result, on_done = _fan_out(hooks.scanners)
        peripheral.set_scan_listener(on_result, on_done)
    b = Board(sampler, peripheral, hooks.pollers, degraded)
    if cfg is not None:
        duty = power.DutyCycle(cfg, sleeper, wake)  # pyright: ignore[reportPossiblyUnbound]
        b.set_duty(duty, wake is not None)
    return b


def unload_boot_modules():
    """Drop the boot-only modules (this one, the key store, the channel names, wire parsing and
    ids: firmware.record stays) from sys.modules and the package, so their bytecode is collected
    once the caller drops its own references (main.py does). Returns nothing. Board, RealClock and everything the tasks use stay (firmware.runtime and below)."""
    _unload(_BOOT_MODULES)


def _unload(names):
    """Drop the modules names ("firmware.x") from sys.modules and the package; returns nothing.
    Their bytecode is collected once nothing else refers to them (their names stay interned)."""
    import sys

    import firmware

    for name in names:
        sys.modules.pop(name, None)
        leaf = name[9:]  # after "firmware."
        if hasattr(firmware, leaf):
            delattr(firmware, leaf)


def _fan_out(scanners):
    """Return (on_result, on_done) for Peripheral.set_scan_listener from (on_result, on_done) pairs."""
    if len(scanners) == 1:
        return scanners[0]

    def on_result(addr_type, addr, adv_type, rssi, adv_data):
        for fn, _ in scanners:
            fn(addr_type, addr, adv_type, rssi, adv_data)

    def on_done():
        for _, fn in scanners:
            fn()

    return on_result, on_done


async def run(profile, ble, fs, nvs, buses, clock, urandom):
    """Build the board and run it forever (host use; main.py builds, unloads, then runs)."""
    board = build_board(profile, ble, fs, nvs, buses, clock, urandom)
    await board.run()
