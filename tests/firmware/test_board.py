"""Board profiles: every file in boards/ validates, and each validator rule rejects a broken copy."""

import json

from firmware import board, wire
from tests.firmware.fakes import raises

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
        assert p["use_case"] in board.USE_CASES


def test_every_use_case_has_an_example_and_every_chip_a_generic_profile():
    profiles = _profiles()
    assert sorted(profiles[n]["use_case"] for n in EXAMPLES) == sorted(board.USE_CASES)
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
        assert getattr(wire, "CH_" + name.upper()) == type_id, name


def test_profiles_fit_one_record():
    for p in _profiles().values():
        n = sum(len(s["channels"]) for s in p["sensors"])
        assert 1 <= n <= wire.MAX_VALUES


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
