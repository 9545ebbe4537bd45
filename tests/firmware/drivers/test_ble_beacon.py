"""BLE beacon vehicle-id parsing on raw advertising payloads as delivered by _IRQ_SCAN_RESULT."""

from firmware.drivers.ble_beacon import (
    KIND_EDDYSTONE_UID,
    KIND_IBEACON,
    AdvError,
    BeaconReader,
    ad_structures,
    vehicle_id,
)
from tests.firmware.fakes import raises

UUID = bytes(range(0x10, 0x20))
FLAGS = b"\x02\x01\x06"  # LE General Discoverable, BR/EDR not supported
# iBeacon: length 0x1A, type 0xFF, Apple 0x004C (LE), type 0x02, length 0x15, UUID, major, minor, power.
IBEACON = FLAGS + b"\x1a\xff\x4c\x00\x02\x15" + UUID + b"\x00\x01\x00\x02\xc5"
NAMESPACE = bytes([0xED, 0xD1, 0xEB, 0xEA, 0xC0, 0x4E, 0x5D, 0xEF, 0xA0, 0x17])
INSTANCE = bytes([0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
# Eddystone-UID: service UUID list AA FE, service data (0x16) AA FE, frame 0x00, TX -25 dBm, ns, inst, RFU.
EDDYSTONE = (
    FLAGS + b"\x03\x03\xaa\xfe" + b"\x17\x16\xaa\xfe\x00\xe7" + NAMESPACE + INSTANCE + b"\x00\x00"
)


def test_payload_sizes_are_legal():
    assert len(IBEACON) == 30
    assert len(EDDYSTONE) == 31


def test_ad_structures():
    assert ad_structures(IBEACON) == [(0x01, 2, 3), (0xFF, 5, 30)]
    assert ad_structures(b"") == []
    assert ad_structures(FLAGS + b"\x00\x00\x00") == [(0x01, 2, 3)]  # zero padding ends the data


def test_ibeacon_id():
    assert vehicle_id(IBEACON) == (KIND_IBEACON, UUID + b"\x00\x01\x00\x02")
    assert vehicle_id(memoryview(IBEACON)) == (KIND_IBEACON, UUID + b"\x00\x01\x00\x02")


def test_eddystone_uid_id():
    assert vehicle_id(EDDYSTONE) == (KIND_EDDYSTONE_UID, NAMESPACE + INSTANCE)
    # RFU bytes are often omitted (length 0x15 instead of 0x17).
    short = FLAGS + b"\x03\x03\xaa\xfe" + b"\x15\x16\xaa\xfe\x00\xe7" + NAMESPACE + INSTANCE
    assert vehicle_id(short) == (KIND_EDDYSTONE_UID, NAMESPACE + INSTANCE)


def test_other_adverts_give_none():
    # Eddystone-URL frame (0x10) carries no id.
    url = FLAGS + b"\x03\x03\xaa\xfe" + b"\x0a\x16\xaa\xfe\x10\xe7\x03abc\x07"
    assert vehicle_id(url) is None
    # Eddystone service data without the service UUID list is not a conformant frame.
    assert (
        vehicle_id(FLAGS + b"\x17\x16\xaa\xfe\x00\xe7" + NAMESPACE + INSTANCE + b"\x00\x00") is None
    )
    # Same layout as iBeacon but another company id (0x0059 Nordic).
    assert vehicle_id(IBEACON.replace(b"\x4c\x00\x02\x15", b"\x59\x00\x02\x15")) is None
    # AltBeacon (beacon code BE AC) is not supported.
    assert (
        vehicle_id(FLAGS + b"\x1b\xff\x18\x01\xbe\xac" + UUID + b"\x00\x01\x00\x02\xc5\x00") is None
    )
    assert vehicle_id(FLAGS) is None


def test_malformed_adverts_raise():
    raises(AdvError, vehicle_id, IBEACON[:-1])  # last structure overruns
    raises(AdvError, vehicle_id, b"\x05\x01\x06")
    raises(AdvError, vehicle_id, IBEACON + b"\x00\x00")  # 32 bytes: beyond legacy advertising


def _reader(**kw):
    return BeaconReader(**kw)


def test_reader_needs_two_hits_and_min_rssi():
    r = _reader()
    r.on_scan_result(0, b"\x01" * 6, 3, -60, IBEACON)
    assert r.take() is None  # one hit is not enough
    r.on_scan_result(0, b"\x01" * 6, 3, -60, IBEACON)
    r.on_scan_result(0, b"\x01" * 6, 3, -58, memoryview(IBEACON))
    assert r.take() == (KIND_IBEACON, UUID + b"\x00\x01\x00\x02", -58)
    assert r.take() is None  # take() resets the window
    r.on_scan_result(0, b"\x01" * 6, 3, -80, IBEACON)
    r.on_scan_result(0, b"\x01" * 6, 3, -80, IBEACON)
    assert r.take() is None  # too weak: the neighbouring bay


def test_reader_prefers_strongest_then_filters_prefix():
    other = IBEACON.replace(b"\x00\x01\x00\x02\xc5", b"\x00\x09\x00\x09\xc5")
    r = _reader()
    for _ in range(2):
        r.on_scan_result(0, b"\x01" * 6, 3, -70, other)
        r.on_scan_result(0, b"\x02" * 6, 0, -50, EDDYSTONE)
    assert r.take() == (KIND_EDDYSTONE_UID, NAMESPACE + INSTANCE, -50)
    r = _reader(id_prefix=UUID)
    for _ in range(2):
        r.on_scan_result(0, b"\x01" * 6, 3, -70, other)
        r.on_scan_result(0, b"\x02" * 6, 0, -50, EDDYSTONE)
    assert r.take() == (KIND_IBEACON, UUID + b"\x00\x09\x00\x09", -70)


def test_reader_ignores_directed_adverts_and_counts_malformed():
    r = _reader(min_hits=1)
    r.on_scan_result(0, b"\x01" * 6, 1, -40, IBEACON)  # ADV_DIRECT_IND
    r.on_scan_result(0, b"\x01" * 6, 0, -40, b"\x09\xff\x00")
    assert r.take() is None
    assert r.malformed == 1


def test_reader_tie_is_deterministic():
    a = IBEACON
    b = IBEACON.replace(b"\x00\x01\x00\x02\xc5", b"\x00\x00\x00\x02\xc5")
    for order in ((a, b), (b, a)):
        r = _reader(min_hits=1)
        for adv in order:
            r.on_scan_result(0, b"\x01" * 6, 3, -60, adv)
        assert r.take()[1] == UUID + b"\x00\x00\x00\x02"
