"""Board profiles (boards/*.json): load and validate chip, pins, buses, sensors, channels and intervals."""

import json

from micropython import const

from firmware.channels import CHANNEL_TYPES

_PROFILE_FORMAT = const(1)
_MAX_CHANNELS = const(16)  # firmware/wire.py MAX_VALUES: every channel must fit one record
_MAX_INTERVAL_S = const(
    86400
)  # a board that reports less than daily is indistinguishable from dead

_USE_CASES = const(
    ("agri_tracing", "fish_farm_finance", "chattel_mortgage", "energy_trading", "parking")
)

# Value types a sensor can produce (wire registry name -> type id): firmware.channels.CHANNEL_TYPES.

# Per chip: usable GPIOs, pins that must not be used (flash/PSRAM, USB, console), input-only pins,
# ADC1 pins (ADC2 is shared with the radio), and the hardware I2C / UART ids.
CHIPS = {
    "esp32": {
        "gpio": tuple(range(0, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40)),
        "reserved": (1, 3, 6, 7, 8, 9, 10, 11),  # UART0 console TX/RX; 6-11 SPI flash
        "input_only": (34, 35, 36, 37, 38, 39),
        "adc1": tuple(range(32, 40)),
        "i2c_ids": (0, 1),
        "uart_ids": (1, 2),
    },
    "esp32s3": {
        "gpio": tuple(range(0, 22)) + tuple(range(26, 49)),
        # 19/20 USB D-/D+; 26-32 SPI flash; 33-37 octal PSRAM (N8R8/N16R8 modules); 43/44 UART0 console.
        "reserved": (19, 20, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 43, 44),
        "input_only": (),
        "adc1": tuple(range(1, 11)),
        "i2c_ids": (0, 1),
        "uart_ids": (1, 2),
    },
    "esp32c3": {
        "gpio": tuple(range(0, 22)),
        "reserved": (
            12,
            13,
            14,
            15,
            16,
            17,
            18,
            19,
            20,
            21,
        ),  # 12-17 flash, 18/19 USB, 20/21 console
        "input_only": (),
        "adc1": (0, 1, 2, 3, 4),
        "i2c_ids": (0,),
        "uart_ids": (1,),
    },
}

# Bus types and their fields: name -> (required int fields naming output-capable pins, input pins).
_BUS_PINS = {
    "i2c": (("sda", "scl"), ()),
    "onewire": (("pin",), ()),
    "uart": (("tx",), ("rx",)),
}

# Drivers: firmware.drivers.MODULES names the module of each; the module's specs() says what a
# profile sensor of that driver needs (bus, pins, channel types, parameters, an optional check).
# Only the modules of the drivers a profile uses are imported.

_REQUIRED = (
    ("profile_format", int),
    ("name", str),
    ("description", str),
    ("chip", str),
    ("board", str),
    ("use_case", str),
    ("sample_interval_s", int),
    ("upload_interval_s", int),
    ("heartbeat_interval_s", int),
    ("buses", dict),
    ("sensors", list),
)


def _fail(where, message):
    raise ValueError("board profile %s: %s" % (where, message))


def is_int(v):
    """Return True if v is an int and not a bool (JSON true/false are not integers here)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _field(obj, key, kind, where):
    """Return obj[key] checked to be of kind (int excludes bool); raises ValueError if missing."""
    if key not in obj:
        _fail(where, "missing field '%s'" % key)
    v = obj[key]
    ok = is_int(v) if kind is int else isinstance(v, kind)
    if not ok:
        _fail(where, "field '%s' must be %s" % (key, kind.__name__))
    return v


def _optional_field(obj, key, kind, where):
    """Return obj[key] checked like _field, or None if obj has no key; raises ValueError."""
    if key not in obj:
        return None
    return _field(obj, key, kind, where)


def _name_ok(name):
    if not name or len(name) > 32:
        return False
    return all("a" <= c <= "z" or "0" <= c <= "9" or c in "-_" for c in name)


class _PinUse:
    """Tracks which GPIO is used by what, checking each against the chip's tables."""

    def __init__(self, chip, where):
        self.chip = CHIPS[chip]
        self.chip_name = chip
        self.where = where
        self.used = {}

    def claim(self, pin, owner, output=False, adc=False):
        where = self.where + " " + owner
        if not is_int(pin):
            _fail(where, "pin must be an integer GPIO number")
        chip = self.chip
        if pin not in chip["gpio"]:
            _fail(where, "GPIO%d does not exist on %s" % (pin, self.chip_name))
        if pin in chip["reserved"]:
            _fail(where, "GPIO%d is reserved on %s (flash, USB or console)" % (pin, self.chip_name))
        if output and pin in chip["input_only"]:
            _fail(where, "GPIO%d is input-only on %s" % (pin, self.chip_name))
        if adc and pin not in chip["adc1"]:
            _fail(where, "GPIO%d is not an ADC1 pin on %s" % (pin, self.chip_name))
        if pin in self.used:
            _fail(where, "GPIO%d already used by %s" % (pin, self.used[pin]))
        self.used[pin] = owner


def _check_buses(profile, pins):
    chip = CHIPS[profile["chip"]]
    ids_used = {}
    for name, bus in profile["buses"].items():
        where = "bus '%s'" % name
        if not _name_ok(name) or not isinstance(bus, dict):
            _fail(where, "bus names are [a-z0-9_-] and buses are objects")
        kind = _field(bus, "type", str, where)
        if kind not in _BUS_PINS:
            _fail(where, "unknown bus type '%s' (i2c, onewire, uart)" % kind)
        outs, ins = _BUS_PINS[kind]
        for role in outs:
            pins.claim(_field(bus, role, int, where), "bus %s %s" % (name, role), output=True)
        for role in ins:
            pins.claim(_field(bus, role, int, where), "bus %s %s" % (name, role))
        if kind == "i2c":
            bus_id = _field(bus, "id", int, where)
            if bus_id not in chip["i2c_ids"]:
                _fail(where, "I2C id %d not available on %s" % (bus_id, profile["chip"]))
            freq = _field(bus, "freq_hz", int, where)
            if freq < 10000 or freq > 1000000:
                _fail(where, "freq_hz must be 10000..1000000")
        elif kind == "uart":
            bus_id = _field(bus, "id", int, where)
            if bus_id not in chip["uart_ids"]:
                _fail(where, "UART id %d not available on %s" % (bus_id, profile["chip"]))
            baud = _field(bus, "baudrate", int, where)
            if baud < 1200 or baud > 921600:
                _fail(where, "baudrate must be 1200..921600")
        else:
            bus_id = None
        if bus_id is not None:
            key = kind + str(bus_id)
            if key in ids_used:
                _fail(where, "%s id %d also used by bus '%s'" % (kind, bus_id, ids_used[key]))
            ids_used[key] = name


def _spec(driver, specs, where):
    """Return the spec of driver: specs() of its module (firmware.drivers.MODULES), imported on
    first use and cached in specs; raises ValueError for an unknown driver."""
    if driver not in specs:
        from firmware.drivers import module

        mod = module(driver)
        if mod is None:
            _fail(where, "unknown driver '%s'" % driver)
        else:
            specs[driver] = mod.specs()[driver]
    return specs[driver]


def _check_sensor(profile, sensor, pins, names, addresses, channels, specs):
    if not isinstance(sensor, dict):
        _fail("sensors", "each sensor must be an object")
    name = _field(sensor, "name", str, "sensor")
    where = "sensor '%s'" % name
    if not _name_ok(name):
        _fail(where, "sensor names are [a-z0-9_-], at most 32 characters")
    if name in names:
        _fail(where, "duplicate sensor name")
    names[name] = sensor
    driver = _field(sensor, "driver", str, where)
    spec = _spec(driver, specs, where)
    bus_kind = spec.get("bus")
    roles = spec.get("pins", ())
    types = spec["channels"]
    if bus_kind is not None:
        bus_name = _field(sensor, "bus", str, where)
        buses = profile["buses"]
        if bus_name not in buses:
            _fail(where, "bus '%s' is not declared in buses" % bus_name)
        bus = buses[bus_name]
        if bus["type"] != bus_kind:
            _fail(
                where,
                "driver %s needs a %s bus, '%s' is %s" % (driver, bus_kind, bus_name, bus["type"]),
            )
        if bus_kind == "i2c":
            addr = _field(sensor, "address", int, where)
            if addr < 0x08 or addr > 0x77:
                _fail(where, "I2C address must be 0x08..0x77")
            key = (bus_name, addr)
            if key in addresses:
                _fail(
                    where,
                    "I2C address 0x%02x on '%s' also used by '%s'"
                    % (addr, bus_name, addresses[key]),
                )
            addresses[key] = name
    elif "bus" in sensor:
        _fail(where, "driver %s takes no bus" % driver)
    if roles:
        sensor_pins = _field(sensor, "pins", dict, where)
        for role, output, adc in roles:
            pins.claim(
                _field(sensor_pins, role, int, where + " pins"),
                "sensor %s %s" % (name, role),
                output,
                adc,
            )
        for role in sensor_pins:
            if role not in [r[0] for r in roles]:
                _fail(where, "unknown pin role '%s' for driver %s" % (role, driver))
    elif "pins" in sensor:
        _fail(where, "driver %s takes no dedicated pins" % driver)
    params = _optional_field(sensor, "params", dict, where)
    if params is None:
        sensor["params"] = params = {}
    chans = _field(sensor, "channels", list, where)
    if not chans:
        _fail(where, "needs at least one channel")
    for ch in chans:
        if not isinstance(ch, dict):
            _fail(where, "channels are objects {type, channel}")
        t = _field(ch, "type", str, where + " channel")
        if t not in CHANNEL_TYPES:
            _fail(where, "channel type '%s' is not in the wire registry" % t)
        if t not in types:
            _fail(where, "driver %s cannot produce '%s'" % (driver, t))
        n = _field(ch, "channel", int, where + " channel")
        if n < 0 or n > 255:
            _fail(where, "channel index must be 0..255")
        key = (t, n)
        if key in channels:
            _fail(where, "channel %s/%d also produced by '%s'" % (t, n, channels[key]))
        channels[key] = name
    _check_params(driver, spec, params, where, chans)


def hex_bytes(text, key):
    """Return the bytes spelled by an even-length hex string; raises ValueError naming key.

    For the drivers' check hooks (they run while this module validates a profile)."""
    if len(text) % 2:
        raise ValueError("%s must be an even number of hex digits" % key)
    out = bytearray(len(text) // 2)
    for i in range(len(out)):
        pair = text[2 * i : 2 * i + 2]
        for c in pair:
            if c not in "0123456789abcdefABCDEF":
                raise ValueError("%s must be hex" % key)
        out[i] = int(pair, 16)
    return bytes(out)


def _check_params(driver, spec, params, where, chans):
    """Check params against the spec's parameter table, then the spec's check hook (if any).

    Unknown keys are rejected, so a typo in a profile fails at load time instead of silently using
    a default."""
    table = spec.get("params", {})
    where_p = where + " params"
    for key in params:
        if key not in table:
            _fail(where, "unknown parameter '%s' for driver %s" % (key, driver))
    for key, (kind, required, allowed, minimum) in table.items():
        if required:
            v = _field(params, key, kind, where_p)
        else:
            v = _optional_field(params, key, kind, where_p)
        if v is None:
            continue
        if allowed is not None and v not in allowed:
            _fail(where, "%s must be one of %s" % (key, allowed))
        if minimum is not None and v < minimum:
            _fail(where, "%s must be >= %d" % (key, minimum))
    check = spec.get("check")
    if check is not None:
        try:
            check(params, chans)
        except ValueError as e:
            _fail(where, str(e))


def _check_refs(sensor, spec, names, specs, where):
    """Check that each parameter naming another sensor names one whose driver can produce the
    channel type the spec asks for."""
    for key, type_name in spec.get("refs", {}).items():
        target = sensor["params"].get(key)
        if target is None:
            continue
        ref = names.get(target)
        if ref is None or type_name not in _spec(ref["driver"], specs, where)["channels"]:
            _fail(
                where,
                "%s '%s' needs a %s sensor by name" % (sensor["driver"], sensor["name"], type_name),
            )


def validate(profile, where="profile", expected_name=None):
    """Return profile (a dict from JSON) after checking every field; raises ValueError naming the fault.

    Fills "params": {} on sensors without params. Checks: required fields and types, format
    version, chip/use-case names, intervals, GPIO existence/reservation/conflicts, bus ids, I2C
    addresses, driver/bus/pin compatibility, channel types from the wire registry, unique
    (type, channel) pairs, at most _MAX_CHANNELS channels, driver parameters and the optional power
    object (_check_power). expected_name:
    the file stem the profile's name must equal (load() passes it).
    """
    if not isinstance(profile, dict):
        _fail(where, "must be a JSON object")
    for key, kind in _REQUIRED:
        _field(profile, key, kind, where)
    if profile["profile_format"] != _PROFILE_FORMAT:
        _fail(where, "profile_format %d is not supported (expected 1)" % profile["profile_format"])
    if expected_name is not None and profile["name"] != expected_name:
        _fail(where, "name '%s' differs from the file name '%s'" % (profile["name"], expected_name))
    where = "'%s'" % profile["name"]
    if not _name_ok(profile["name"]):
        _fail(where, "name must be [a-z0-9_-], at most 32 characters")
    if profile["chip"] not in CHIPS:
        _fail(where, "unknown chip '%s' (esp32, esp32s3, esp32c3)" % profile["chip"])
    if profile["use_case"] not in _USE_CASES:
        _fail(where, "unknown use_case '%s'" % profile["use_case"])
    for key in ("sample_interval_s", "upload_interval_s", "heartbeat_interval_s"):
        v = profile[key]
        if v < 1 or v > _MAX_INTERVAL_S:
            _fail(where, "%s must be 1..86400" % key)
    if profile["upload_interval_s"] < profile["sample_interval_s"]:
        _fail(where, "upload_interval_s is shorter than sample_interval_s")
    _check_power(profile, where)
    pins = _PinUse(profile["chip"], where)
    _check_buses(profile, pins)
    names = {}
    addresses = {}
    channels = {}
    if not profile["sensors"]:
        _fail(where, "needs at least one sensor")
    specs = {}
    for sensor in profile["sensors"]:
        _check_sensor(profile, sensor, pins, names, addresses, channels, specs)
    for sensor in profile["sensors"]:
        _check_refs(sensor, specs[sensor["driver"]], names, specs, where)
    if len(channels) > _MAX_CHANNELS:
        _fail(
            where, "%d channels exceed the %d values of one record" % (len(channels), _MAX_CHANNELS)
        )
    return profile


# Power profile ("power", optional): how a board spends the time between samples. Defaults keep
# a mains board's behaviour (awake, always advertising). Bounds: a window under 2 s is shorter than
# a gateway's scan-and-connect on a busy BlueZ; a period over a day leaves records unsent longer
# than any contract's heartbeat rule tolerates.
_SLEEP_MODES = const(("none", "light", "deep"))
_WINDOW_MIN_S = const(2)
_WINDOW_MAX_S = const(600)
_POWER_KEYS = const(("sleep", "advertise_window_s", "advertise_every_s", "advertise_pending"))
# firmware/power.py settings() reads the validated object at run time (this module is unloaded).


def _check_power(profile, where):
    """Check the optional "power" object (boards/README.md, Power); raises ValueError."""
    power = _optional_field(profile, "power", dict, where)
    if power is None:
        return
    where = where + " power"
    for key in power:
        if key not in _POWER_KEYS:
            _fail(where, "unknown field '%s' (%s)" % (key, ", ".join(_POWER_KEYS)))
    sleep = _optional_field(power, "sleep", str, where)
    if sleep is not None and sleep not in _SLEEP_MODES:
        _fail(where, "sleep must be one of none, light, deep")
    window = _optional_field(power, "advertise_window_s", int, where)
    every = _optional_field(power, "advertise_every_s", int, where)
    pending = _optional_field(power, "advertise_pending", int, where)
    if (window is None) != (every is None):
        _fail(where, "advertise_window_s and advertise_every_s go together")
    if window is not None and every is not None:
        if window < _WINDOW_MIN_S or window > _WINDOW_MAX_S:
            _fail(where, "advertise_window_s must be %d..%d" % (_WINDOW_MIN_S, _WINDOW_MAX_S))
        if every <= window or every > _MAX_INTERVAL_S:
            _fail(where, "advertise_every_s must be > advertise_window_s and <= 86400")
    elif sleep is not None and sleep != "none":
        _fail(where, "a sleeping board needs advertise_window_s and advertise_every_s")
    if pending is not None and (pending < 0 or pending > 10000):
        _fail(where, "advertise_pending must be 0..10000")
    if sleep == "deep" and profile["sample_interval_s"] < _WINDOW_MIN_S:
        _fail(where, "deep sleep needs sample_interval_s >= %d" % _WINDOW_MIN_S)


def parse(text, where="profile", expected_name=None):
    """Return the validated profile parsed from JSON text; raises ValueError naming where."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise ValueError("board profile %s: invalid JSON (%s)" % (where, e)) from None
    return validate(profile, where, expected_name)


def load(path):
    """Return the validated profile dict read from the JSON file at path.

    Raises ValueError for invalid JSON or an invalid profile (the message names the file), OSError
    if the file cannot be read. The profile's name must equal the file name without '.json'.
    """
    with open(path) as f:
        text = f.read()
    stem = path.split("/")[-1]
    if stem.endswith(".json"):
        stem = stem[:-5]
    return parse(text, path, stem)


def load_all(directory="boards"):
    """Return {name: profile} for every *.json in directory, all validated (sorted by name)."""
    import os

    out = {}
    for fname in sorted(os.listdir(directory)):
        if fname.endswith(".json"):
            profile = load(directory + "/" + fname)
            out[profile["name"]] = profile
    return out
