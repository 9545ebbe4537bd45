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


def _nested(levels):
    value = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "meta", [_nested(300), _nested(40), _nested(5), {"x": float("inf")}, {"x": 0.5}]
)
def test_encode_refuses_metadata_a_read_could_not_render_decode_tolerates_it(meta):
    device_id, key = bytes(range(16)), bytes(range(32))
    with pytest.raises(WireError, match="bad-metadata"):
        e.encode_enrollment(device_id, key, meta)
    raw = bytes([e.ENROLLMENT_VERSION]) + device_id + key  # as logged before the check
    raw += e.canonical_json({**meta, "status": "revoked"})
    got = e.decode_enrollment(raw)
    assert (got.device_id, got.public_key) == (device_id, key)
    assert got.metadata["error"]["code"] == "bad-metadata"
    # the registry's status survives unless the metadata is too deep to parse at all
    assert got.metadata.get("status") == (
        None if meta in (_nested(300), _nested(40)) else "revoked"
    )


def test_readable_metadata_keeps_good_metadata_as_is():
    meta = {"site": "Kühlraum", "n": 2**63 - 1, "tags": ["a", {"b": None}]}
    assert e.readable_metadata(meta) is meta
    assert e.readable_metadata(None)["error"]["code"] == "bad-metadata"
