"""Boot-only: the value types a board profile may name, by wire registry name -> type id.

docs/wire-format.md, Values (ids 1..20; the rest are the firmware's own records' types). Read while
the profile is validated (firmware.board) and the sensors are built (firmware.drivers.base), then
unloaded with the other boot-only modules (firmware.app.unload_boot_modules): a running board
needs no names. tests/gateway/test_channel_table.py checks it against the doc.
"""

CHANNEL_TYPES = {
    "temperature": 1,
    "humidity": 2,
    "dissolved_oxygen": 3,
    "ph": 4,
    "ammonia": 5,
    "energy": 6,
    "power": 7,
    "latitude": 8,
    "longitude": 9,
    "occupancy": 10,
    "vehicle_commitment": 11,
    "weight": 12,
    "tamper": 13,
    "battery": 14,
    "voltage": 15,
    "current": 16,
    "magnetic_field": 17,
    "distance": 18,
    "turbidity": 19,
    "rssi": 20,
}
