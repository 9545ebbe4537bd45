"""Entry kinds and the device enrollment payload (gateway.ledger.entries)."""

import pytest

from gateway.errors import WireError
from gateway.ledger import entries as e


def test_entry_round_trip_and_kinds():
    assert (
        e.KIND_DEVICE_RECORD,
        e.KIND_PARTICIPANT_TX,
        e.KIND_CONTRACT_EVENT,
        e.KIND_DEVICE_ENROLLMENT,
    ) == (1, 2, 3, 4)
    for kind in e.KINDS:
        data = e.encode_entry(kind, b"payload")
        assert data == bytes([kind]) + b"payload"
        assert e.decode_entry(data) == (kind, b"payload")
    for bad in (b"", b"\x00x", b"\x05x", b"\x02" + b"x" * e.MAX_ENTRY_BYTES):
        with pytest.raises(WireError):
            e.decode_entry(bad)
    with pytest.raises(WireError, match="bad-entry-kind"):
        e.encode_entry(9, b"")


def test_enrollment_layout_is_fixed_and_canonical():
    device_id, key = bytes(range(16)), bytes(range(100, 132))
    payload = e.encode_enrollment(device_id, key, {"z": 1, "board": "esp32-c3", "name": "Kühlraum"})
    assert payload[:1] == b"\x01" and payload[1:17] == device_id and payload[17:49] == key
    assert payload[49:] == '{"board":"esp32-c3","name":"Kühlraum","z":1}'.encode()
    got = e.decode_enrollment(payload)
    assert (got.device_id, got.public_key, got.metadata["z"]) == (device_id, key, 1)
    assert e.decode_enrollment(e.encode_enrollment(device_id, key)).metadata == {}
    assert len(e.encode_enrollment(device_id, key)) == 49


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01" + bytes(47),  # truncated
        b"\x02" + bytes(48),  # unknown version
        b"\x01" + bytes(48) + b'{"b":1, "a":2}',  # not canonical
        b"\x01" + bytes(48) + b'{"b":1,"a":2}',  # keys not sorted
        b"\x01" + bytes(48) + b"[1]",  # not an object
        b"\x01" + bytes(48) + b"{}",  # empty metadata must be omitted
        b"\x01" + bytes(48) + b"\xff",  # not UTF-8
    ],
)
def test_bad_enrollments_are_rejected(payload):
    with pytest.raises(WireError, match="bad-enrollment"):
        e.decode_enrollment(payload)


def test_bad_enrollment_arguments():
    with pytest.raises(WireError):
        e.encode_enrollment(bytes(15), bytes(32))
    with pytest.raises(WireError):
        e.encode_enrollment(bytes(16), bytes(31))
    with pytest.raises(WireError):
        e.encode_enrollment(bytes(16), bytes(32), {"x": object()})
