"""Board profiles: every file in boards/ validates, and each validator rule rejects a broken copy."""

import json
import sys

from firmware import board, drivers
from tests.firmware.fakes import raises
from tests.firmware.vectors import W, source_consts

USE_CASES = source_consts("firmware/board.py")["_USE_CASES"]

GENERIC = ("esp32-devkitc", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1")
EXAMPLES = (
    "cold-chain-logger",
    "pond-monitor",
    "collateral-tracker",
    "energy-meter",
    "parking-bay",
)


def _profiles():
    return board.load_all("boards")


def _copy(name):
    with open("boards/%s.json" % name) as f:
        return json.loads(f.read())


def _rejects(profile, fragment):
    e = raises(ValueError, board.validate, profile)
    assert fragment in str(e), str(e)


def test_every_profile_in_boards_loads():
    profiles = _profiles()
    for name in GENERIC + EXAMPLES:
        assert name in profiles, name
    for name, p in profiles.items():
        assert p["name"] == name
        assert p["use_case"] in USE_CASES


def test_every_use_case_has_an_example_and_every_chip_a_generic_profile():
    profiles = _profiles()
    assert sorted(profiles[n]["use_case"] for n in EXAMPLES) == sorted(USE_CASES)
    assert sorted(profiles[n]["chip"] for n in GENERIC) == ["esp32", "esp32c3", "esp32s3"]


def test_generic_profiles_use_micropython_default_i2c0_pins():
    # ports/esp32: I2C0 defaults SCL 18 / SDA 19 on ESP32, SCL 9 / SDA 8 on ESP32-S3 and -C3.
    profiles = _profiles()
    expected = {
        "esp32-devkitc": (18, 19),
        "esp32-s3-devkitc-1": (9, 8),
        "esp32-c3-devkitm-1": (9, 8),
    }
    for name, (scl, sda) in expected.items():
        bus = profiles[name]["buses"]["i2c0"]
        assert (bus["scl"], bus["sda"]) == (scl, sda), name
    uart2 = profiles["esp32-devkitc"]["buses"]["uart2"]
    assert (uart2["tx"], uart2["rx"]) == (17, 16)  # ESP32 UART2 defaults


def test_channel_types_match_the_wire_registry():
    for name, type_id in board.CHANNEL_TYPES.items():
        assert getattr(W, "CH_" + name.upper()) == type_id, name


def test_profiles_fit_one_record():
    for p in _profiles().values():
        n = sum(len(s["channels"]) for s in p["sensors"])
        assert 1 <= n <= W.MAX_VALUES


def test_parse_and_name_check():
    text = json.dumps(_copy("energy-meter"))
    assert board.parse(text)["name"] == "energy-meter"
    raises(ValueError, board.parse, "{not json")
    e = raises(ValueError, board.parse, text, "boards/other.json", "other")
    assert "differs from the file name" in str(e)
    raises(OSError, board.load, "boards/does-not-exist.json")


def test_rejects_missing_and_mistyped_fields():
    p = _copy("energy-meter")
    del p["heartbeat_interval_s"]
    _rejects(p, "missing field 'heartbeat_interval_s'")
    p = _copy("energy-meter")
    p["sample_interval_s"] = True
    _rejects(p, "'sample_interval_s' must be int")
    p = _copy("energy-meter")
    p["sample_interval_s"] = 5.0
    _rejects(p, "'sample_interval_s' must be int")
    p = _copy("energy-meter")
    p["profile_format"] = 2
    _rejects(p, "profile_format 2")
    raises(ValueError, board.validate, [])


def test_rejects_unknown_chip_use_case_and_bad_intervals():
    for key, value, fragment in (
        ("chip", "esp8266", "unknown chip"),
        ("use_case", "parking_lot", "unknown use_case"),
        ("name", "Energy Meter", "name must be"),
        ("sample_interval_s", 0, "sample_interval_s must be"),
        ("heartbeat_interval_s", 86401, "heartbeat_interval_s must be"),
        ("upload_interval_s", 1, "shorter than sample_interval_s"),
    ):
        p = _copy("energy-meter")
        p[key] = value
        _rejects(p, fragment)


def test_rejects_bad_pins():
    p = _copy("esp32-devkitc")
    p["buses"]["i2c0"]["sda"] = 7
    _rejects(p, "reserved")  # SPI flash pin
    p = _copy("esp32-devkitc")
    p["buses"]["i2c0"]["sda"] = 34
    _rejects(p, "input-only")
    p = _copy("esp32-devkitc")
    p["buses"]["i2c0"]["sda"] = 24
    _rejects(p, "does not exist")
    p = _copy("esp32-devkitc")
    p["buses"]["ow0"]["pin"] = 18
    _rejects(p, "already used")
    p = _copy("pond-monitor")
    p["sensors"][2]["pins"]["adc"] = 25  # ADC2 on the ESP32
    _rejects(p, "not an ADC1 pin")
    p = _copy("esp32-c3-devkitm-1")
    p["buses"]["i2c0"]["sda"] = 18  # USB D- on the C3
    _rejects(p, "reserved")
    p = _copy("collateral-tracker")
    p["sensors"][2]["pins"]["sck"] = 4  # the tamper switch's pin
    _rejects(p, "already used")


def test_rejects_bad_buses():
    p = _copy("esp32-c3-devkitm-1")
    p["buses"]["i2c0"]["id"] = 1
    _rejects(p, "I2C id 1 not available")
    p = _copy("esp32-devkitc")
    p["buses"]["uart2"]["id"] = 0
    _rejects(p, "UART id 0 not available")
    p = _copy("esp32-devkitc")
    p["buses"]["spi0"] = {"type": "spi"}
    _rejects(p, "unknown bus type")
    p = _copy("esp32-devkitc")
    p["buses"]["i2c0"]["freq_hz"] = 5000000
    _rejects(p, "freq_hz")


def test_rejects_bad_sensors():
    p = _copy("esp32-devkitc")
    p["sensors"][0]["bus"] = "nope"
    _rejects(p, "not declared")
    p = _copy("esp32-devkitc")
    p["sensors"][0]["bus"] = "i2c0"
    _rejects(p, "needs a onewire bus")
    p = _copy("esp32-devkitc")
    p["sensors"][0]["driver"] = "dht22"
    _rejects(p, "unknown driver")
    p = _copy("esp32-devkitc")
    p["sensors"][1]["name"] = p["sensors"][0]["name"]
    _rejects(p, "duplicate sensor name")
    p = _copy("esp32-devkitc")
    p["sensors"][1]["address"] = 0x78
    _rejects(p, "I2C address must be")
    p = _copy("parking-bay")
    p["sensors"][1]["bus"] = "i2c0"
    _rejects(p, "takes no bus")
    p = _copy("energy-meter")
    p["sensors"].append(
        dict(p["sensors"][0], name="second_meter", channels=[{"type": "power", "channel": 1}])
    )
    _rejects(p, "I2C address 0x40")
    p = _copy("energy-meter")
    p["sensors"] = []
    _rejects(p, "at least one sensor")


def test_rejects_bad_channels():
    p = _copy("esp32-devkitc")
    p["sensors"][1]["channels"][0]["channel"] = 0  # temperature/0 is the DS18B20's
    _rejects(p, "also produced by")
    p = _copy("esp32-devkitc")
    p["sensors"][0]["channels"][0]["type"] = "humidity"
    _rejects(p, "cannot produce 'humidity'")
    p = _copy("esp32-devkitc")
    p["sensors"][0]["channels"][0]["type"] = "colour"
    _rejects(p, "not in the wire registry")
    p = _copy("esp32-devkitc")
    p["sensors"][0]["channels"][0]["channel"] = 256
    _rejects(p, "0..255")
    p = _copy("esp32-devkitc")
    p["sensors"][0]["channels"] = [{"type": "temperature", "channel": i} for i in range(2, 19)]
    _rejects(p, "exceed the 16 values")


def test_rejects_bad_params():
    p = _copy("pond-monitor")
    p["sensors"][2]["params"]["calibration"] = [[968, 10000], [1500, 7000], [1400, 4000]]
    _rejects(p, "calibration")
    p = _copy("pond-monitor")
    p["sensors"][2]["params"]["calibraton"] = []
    _rejects(p, "unknown parameter 'calibraton'")
    p = _copy("pond-monitor")
    p["sensors"][1]["params"]["temperature_sensor"] = "ph"
    _rejects(p, "needs a temperature sensor")
    p = _copy("pond-monitor")
    p["sensors"][1]["params"]["saturation_mv"] = [[2500, 0]]
    _rejects(p, "saturation_mv")
    p = _copy("pond-monitor")
    p["sensors"][2]["params"]["atten_db"] = 3
    _rejects(p, "atten_db")
    p = _copy("pond-monitor")
    p["sensors"][2]["params"]["samples"] = 2
    _rejects(p, "samples must be >= 3")
    p = _copy("energy-meter")
    p["sensors"][0]["params"]["current_lsb_ua"] = 1
    _rejects(p, "calibration value")
    p = _copy("parking-bay")
    p["sensors"][0]["params"]["off_threshold_c01"] = 2000
    _rejects(p, "off_threshold_c01")
    p = _copy("collateral-tracker")
    p["sensors"][2]["params"]["cal_counts"] = 0
    _rejects(p, "cal_counts")
    p = _copy("collateral-tracker")
    p["sensors"][2]["params"]["gain"] = 100
    _rejects(p, "gain must be one of")
    p = _copy("cold-chain-logger")
    p["sensors"][0]["params"]["resolution_bits"] = 8
    _rejects(p, "resolution_bits")


def test_hex_params():
    # ROM 28 01 02 03 04 05 06 + Dallas CRC (computed by the fake's independent CRC).
    from tests.firmware.fakes import dallas_crc8

    body = bytes([0x28, 1, 2, 3, 4, 5, 6])
    rom_hex = "".join("%02x" % b for b in body + bytes([dallas_crc8(body)]))
    p = _copy("cold-chain-logger")
    p["sensors"][0]["params"]["rom"] = rom_hex
    assert board.validate(p) is p
    p["sensors"][0]["params"]["rom"] = rom_hex[:-2] + "00"
    _rejects(p, "rom: ")
    p["sensors"][0]["params"]["rom"] = "28zz"
    _rejects(p, "rom must be hex")
    p = _copy("parking-bay")
    p["sensors"][1]["params"]["id_prefix_hex"] = "0102030"
    _rejects(p, "even number")
    p["sensors"][1]["params"]["id_prefix_hex"] = "01020304"
    assert board.validate(p) is p


# ---- driver specs ------------------------------------------------------------------------------

_SPEC_KEYS = ("bus", "pins", "channels", "params", "refs", "check")


def _check_spec(driver, spec):
    for key in spec:
        assert key in _SPEC_KEYS, (driver, key)
    assert spec.get("bus") in (None, "i2c", "onewire", "uart"), driver
    roles = spec.get("pins", ())
    assert isinstance(roles, tuple), driver
    for role in roles:
        assert isinstance(role, tuple) and len(role) == 3, (driver, role)
        assert isinstance(role[0], str) and role[1] in (True, False) and role[2] in (True, False)
    assert len(set(r[0] for r in roles)) == len(roles), driver
    types = spec["channels"]
    assert isinstance(types, tuple) and types, driver
    for t in types:
        assert t in board.CHANNEL_TYPES, (driver, t)
    params = spec.get("params", {})
    assert isinstance(params, dict), driver
    for key, entry in params.items():
        assert isinstance(key, str) and isinstance(entry, tuple) and len(entry) == 4, (driver, key)
        kind, required, allowed, minimum = entry
        assert kind in (int, str, list) and required in (True, False), (driver, key)
        if allowed is not None:
            assert isinstance(allowed, tuple) and allowed, (driver, key)
            for v in allowed:
                assert board.is_int(v) if kind is int else isinstance(v, kind), (driver, key)
        assert minimum is None or (kind is int and board.is_int(minimum)), (driver, key)
    for key, t in spec.get("refs", {}).items():
        assert key in params and params[key][0] is str and t in board.CHANNEL_TYPES, (driver, key)
    check = spec.get("check")
    assert check is None or callable(check), driver


def test_every_driver_module_declares_a_well_formed_spec():
    seen = {}
    for driver, name in drivers.MODULES.items():
        mod = drivers.module(driver)
        assert mod is sys.modules["firmware.drivers." + name], driver
        assert callable(mod.source) and callable(mod.specs), driver
        specs = mod.specs()
        assert driver in specs, driver
        for d in specs:  # every driver a module declares is registered to that module
            assert drivers.MODULES[d] == name, d
        _check_spec(driver, specs[driver])
        seen[driver] = specs[driver]
    assert sorted(seen) == sorted(drivers.MODULES)
    assert drivers.module("dht22") is None


def test_every_driver_is_used_by_a_profile_in_boards():
    used = {}
    for p in _profiles().values():
        for s in p["sensors"]:
            used[s["driver"]] = p["name"]
    assert sorted(used) == sorted(drivers.MODULES), used


def test_a_profile_checks_each_driver_by_its_spec():
    # every rule of a spec is enforced for the real drivers: required params, minimums, pin roles
    p = _copy("collateral-tracker")
    del p["sensors"][2]["params"]["tare_counts"]
    _rejects(p, "missing field 'tare_counts'")
    p = _copy("collateral-tracker")
    p["sensors"][1]["params"]["debounce_ms"] = 0
    _rejects(p, "debounce_ms must be >= 1")
    p = _copy("parking-bay")
    p["sensors"][0]["params"]["confirm_samples"] = 0
    _rejects(p, "confirm_samples must be >= 1")
    p = _copy("collateral-tracker")
    p["sensors"][2]["params"]["samples"] = 2
    _rejects(p, "samples must be >= 3")
    p = _copy("collateral-tracker")
    p["sensors"][2]["params"]["cal_grams"] = 0
    _rejects(p, "cal_grams must be positive")
    p = _copy("collateral-tracker")
    p["sensors"][2]["pins"]["clk"] = 5
    _rejects(p, "unknown pin role 'clk' for driver hx711")
    p = _copy("collateral-tracker")
    del p["sensors"][2]["pins"]["dout"]
    _rejects(p, "missing field 'dout'")
    p = _copy("esp32-devkitc")
    p["sensors"][1]["pins"] = {"adc": 32}
    _rejects(p, "takes no dedicated pins")
    p = _copy("pond-monitor")
    p["sensors"][2]["channels"].append({"type": "ammonia", "channel": 5})
    _rejects(p, "exactly one channel")
    p = _copy("pond-monitor")
    p["sensors"][1]["params"]["temperature_sensor"] = "nobody"
    _rejects(p, "do_probe 'do' needs a temperature sensor by name")


# A made-up driver module (as firmware.drivers.module imports it): a level probe with a trigger
# output and an ADC echo pin, and a UART counter. Nothing in board.py knows them.
_FAKE = {
    "fake_level": {
        "pins": (("trig", True, False), ("echo", False, True)),
        "channels": ("turbidity", "battery"),
        "params": {
            "gain": (int, True, (1, 2), None),
            "window": (int, False, None, 2),
            "label": (str, False, None, None),
            "ref": (str, False, None, None),
        },
        "refs": {"ref": "humidity"},
    },
    "fake_counter": {"bus": "uart", "channels": ("weight",)},
}


def _fake_check(params, chans):
    if params["gain"] == 2 and "window" not in params:
        raise ValueError("gain 2 needs a window")


_FAKE["fake_level"]["check"] = _fake_check


class FakeDriverModule:
    """Stands in for a module of firmware/drivers/: specs() and source()."""

    def __init__(self):
        self.specs = lambda: _FAKE
        self.built = []

        def source(sensor, buses, clock, readings, hooks):
            from firmware.drivers.base import emitter, new_source

            self.built.append(sensor["name"])
            emit = emitter(sensor, readings)
            return new_source(sensor, lambda: emit({W.CH_TURBIDITY: 7}))

        self.source = source


def install_fake_driver():
    """Register the made-up drivers; returns (module, uninstall())."""
    mod = FakeDriverModule()
    sys.modules["firmware.drivers.fake_drivers"] = mod
    for name in _FAKE:
        drivers.MODULES[name] = "fake_drivers"

    def uninstall():
        del sys.modules["firmware.drivers.fake_drivers"]
        for name in _FAKE:
            del drivers.MODULES[name]

    return mod, uninstall


def fake_profile():
    p = _copy("esp32-devkitc")
    p["sensors"].append(
        {
            "name": "tank",
            "driver": "fake_level",
            "pins": {"trig": 25, "echo": 33},
            "params": {"gain": 1, "ref": "room_air"},
            "channels": [{"type": "turbidity", "channel": 0}, {"type": "battery", "channel": 0}],
        }
    )
    p["sensors"].append(
        {"name": "counter", "driver": "fake_counter", "bus": "uart2",
         "channels": [{"type": "weight", "channel": 0}]}
    )  # fmt: skip
    return p


def test_a_made_up_driver_is_checked_generically_by_its_spec():
    _, uninstall = install_fake_driver()
    try:
        _check_spec("fake_level", _FAKE["fake_level"])
        _check_spec("fake_counter", _FAKE["fake_counter"])
        p = fake_profile()
        assert board.validate(p) is p
        assert p["sensors"][3]["params"] == {}  # filled in, like for every driver
        for edit, fragment in (
            (lambda s: s["pins"].update(trig=33), "GPIO33 already used"),
            (lambda s: s["pins"].update(echo=26), "GPIO26 is not an ADC1 pin"),
            (lambda s: s["pins"].update(trig=34), "GPIO34 is input-only"),
            (lambda s: s["pins"].pop("echo"), "missing field 'echo'"),
            (lambda s: s.update(bus="i2c0"), "driver fake_level takes no bus"),
            (lambda s: s["params"].pop("gain"), "missing field 'gain'"),
            (lambda s: s["params"].update(gain=3), "gain must be one of (1, 2)"),
            (lambda s: s["params"].update(gain="1"), "field 'gain' must be int"),
            (lambda s: s["params"].update(window=1), "window must be >= 2"),
            (lambda s: s["params"].update(label=5), "field 'label' must be str"),
            (lambda s: s["params"].update(colour="red"), "unknown parameter 'colour'"),
            (lambda s: s["params"].update(gain=2), "gain 2 needs a window"),  # the check hook
            (lambda s: s["params"].update(ref="store_probe"), "needs a humidity sensor by name"),
            (lambda s: s["channels"].append({"type": "ph", "channel": 0}), "cannot produce 'ph'"),
        ):
            p = fake_profile()
            edit(p["sensors"][2])
            _rejects(p, fragment)
        p = fake_profile()
        p["sensors"][2]["params"].update(gain=2, window=2)
        assert board.validate(p) is p
        p = fake_profile()
        p["sensors"][3]["bus"] = "ow0"
        _rejects(p, "driver fake_counter needs a uart bus, 'ow0' is onewire")
        p = fake_profile()
        del p["sensors"][3]["bus"]
        _rejects(p, "missing field 'bus'")
    finally:
        uninstall()
    _rejects(fake_profile(), "unknown driver 'fake_level'")
