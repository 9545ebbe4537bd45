"""Topics and payloads of the MQTT bridge: values in units, injective topic levels."""

from __future__ import annotations

import json

from gateway import wire
from gateway.contracts import Engine, decode_event
from gateway.mqtt.messages import Where, default_prefix, in_units, message_for, topic_level
from tests.gateway.contracts.helpers import T0, Board, Log, Party

WHERE = Where(origin="gw.example/log", prefix="p", public_url="https://gw.example")


def test_values_in_units_are_the_nearest_double_of_the_decimal() -> None:
    assert in_units(2150, -2) == 21.5
    assert in_units(-27315, -2) == -273.15
    assert in_units(1, -3) == 0.001
    assert in_units(123456789, -7) == 12.3456789
    assert in_units(5, 0) == 5 and isinstance(in_units(5, 0), int)


def test_topic_levels_are_injective_and_wildcard_free() -> None:
    hostile = ["a/b", "a%2Fb", "+", "#", "", "a b", "ü", "\x00", "..", "a+b#/c"]
    levels = [topic_level(h) for h in hostile]
    assert len(set(levels)) == len(hostile)
    for level in levels:
        assert level and not set(level) & {"/", "+", "#", "\x00"}
    assert (
        default_prefix("edgeseal.example/gateway/ab") == "edgeseal/edgeseal.example%2Fgateway%2Fab"
    )


def test_a_reading_carries_units_index_and_proof_url() -> None:
    board = Board("msg-sensor")
    entry = board.record(T0, [(1, 0, -1234), (9, 0, 1234567890), (11, 0, b"\x01" * 16)])
    msg = message_for(7, entry, WHERE)
    assert msg is not None and msg.index == 7
    assert msg.topic == f"p/devices/{board.id}/readings"
    body = json.loads(msg.payload)
    assert body["proof_url"] == "https://gw.example/v1/bundle/7" and body["index"] == 7
    assert body["fields"] == {
        "temperature": -12.34,
        "longitude": 123.456789,
        "vehicle_commitment": "01" * 16,
    }
    assert body["time_s"] == T0 and body["time_synced"] is True


def test_contract_events_go_to_their_contract_topic_and_other_kinds_are_skipped() -> None:
    log = Log(Engine())
    op = Party("msg-op")
    reg = {"public_key": op.pk, "name": "op", "roles": ["operator"]}
    log.add(op.tx("engine", "register", reg, T0))
    events = log.entries[1:]
    assert events, "registering emits an event"
    msg = message_for(1, events[0], WHERE)
    assert msg is not None
    ev = decode_event(events[0])
    assert msg.topic == f"p/contracts/{topic_level(ev['contract'])}/events"
    body = json.loads(msg.payload)
    assert (body["type"], body["data"], body["causes"]) == (ev["type"], ev["data"], [0])
    assert message_for(0, log.entries[0], WHERE) is None  # the transaction itself
    assert message_for(0, Board("x").enrollment(), WHERE) is None
    assert message_for(0, b"\x01garbage", WHERE) is None
    assert message_for(0, b"", WHERE) is None


def test_every_record_kind_has_a_topic() -> None:
    from gateway.mqtt.messages import RECORD_TOPICS

    assert set(RECORD_TOPICS) == set(wire.KIND_NAMES)
