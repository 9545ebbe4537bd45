"""The MQTT bridge against a real Mosquitto: every record and contract event once, in log order,
with its values in units and a proof URL whose bundle verifies; a broker outage loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gateway import bundle as bundles
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_DEVICE_RECORD
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.messages import message_for
from gateway.node import Node
from tests.gateway.contracts.helpers import Board
from tests.gateway.mqtt.broker import Broker
from tests.gateway.mqtt.subscriber import Got, Subscriber, subscribed
from tests.gateway.node.helpers import (
    World,
    make_settings,
    record_payload,
    run,
    started,
    wait_until,
)

PUBLIC_URL = "https://gw.example/edgeseal"
# why: generous: a loaded 2-core machine can stall the node, the broker or the subscriber.
DEADLINE_S = 60


def bridge_of(node: Node) -> MqttBridge:
    """Return the node's MQTT bridge (the test configured one)."""
    assert node.mqtt is not None
    return node.mqtt


def expected_messages(node: Node) -> list[tuple[int, str, bytes]]:
    """Return (index, topic, payload) of every publishable integrated entry, in log order."""
    led = node.sequencer.open_ledger()
    where = bridge_of(node).where
    out = []
    for i, e in led.entries(0, led.tree_size):
        msg = message_for(i, e, where)
        if msg is not None:
            out.append((msg.index, msg.topic, msg.payload))
    return out


def caught_up(node: Node) -> bool:
    """Return True once everything sequenced is integrated and the bridge's cursor is at the end."""
    led = node.sequencer.open_ledger()
    return led.pending == 0 and bridge_of(node).status.next_index == led.tree_size


def check_at_least_once(got: list[Got], expected: list[tuple[int, str, bytes]]) -> None:
    """Assert every expected message arrived, duplicates only as the identical message of the
    same index, and first arrivals in log order."""
    want = {i: (t, p) for i, t, p in expected}
    firsts: list[int] = []
    for g in got:
        index = g.value["index"]
        assert (g.topic, g.payload) == want[index], f"index {index} differs"
        if index not in firsts:
            firsts.append(index)
    assert firsts == sorted(want), "an index is missing or first arrived out of order"


async def sensor_readings(node: Node, sensor: Board, t0: int, n: int) -> list[int]:
    """Deliver n signed readings of sensor, one upload each; return the acked seqs."""
    acks = []
    for i in range(n):
        rec = sensor.record(t0 + i, [(1, 0, 2150 + i), (2, 0, 4010), (2, 1, 5)])
        ack = await node.sequencer.deliver(sensor.device_id, [record_payload(rec)])
        assert ack is not None
        acks.append(ack)
    return acks


def test_every_record_and_event_arrives_once_in_order(tmp_path: Path, broker: Broker) -> None:
    settings = make_settings(tmp_path, mqtt_url=broker.url, public_url=PUBLIC_URL + "/")

    async def scenario() -> None:
        node = await started(settings)
        try:
            bridge = bridge_of(node)
            led = node.sequencer.open_ledger()
            assert bridge.where.prefix == "edgeseal/" + led.origin.replace("/", "%2F")
            async with subscribed(Subscriber("127.0.0.1", broker.port, bridge.where.prefix)) as sub:
                world = World()
                await world.setup(node)
                bay = world.bays[0]
                await node.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now + 60)])
                await node.sequencer.deliver(
                    bay.device_id, [world.departure(bay, world.now + 3600)]
                )
                sensor = Board("mqtt-sensor")
                await node.sequencer.enroll(sensor.public_key, {"board": "mqtt"})
                await sensor_readings(node, sensor, world.now, 5)
                await wait_until(lambda: caught_up(node), DEADLINE_S, "bridge caught up")
                expected = expected_messages(node)
                n = len(expected)
                await wait_until(lambda: len(sub.log_messages()) >= n, DEADLINE_S, "all received")
                got = sub.log_messages()
                assert [(g.value["index"], g.topic, g.payload) for g in got] == expected

                kinds = {e[0]: led.entry(e[0])[0] for e in expected}
                assert (
                    KIND_CONTRACT_EVENT in kinds.values() and KIND_DEVICE_RECORD in kinds.values()
                )
                await check_payloads(node, got, sensor, bay)
                status_topic = bridge.where.prefix + "/status"
                status = [g.payload for g in sub.got if g.topic == status_topic]
                assert status == [b"online"]
                await node.stop()
                await wait_until(
                    lambda: (
                        [g.payload for g in sub.got if g.topic == status_topic][-1] == b"offline"
                    ),
                    DEADLINE_S,
                    "offline status on stop",
                )
        finally:
            await node.stop()

    run(scenario(), timeout_s=120)


async def check_payloads(node: Node, got: list[Got], sensor: Board, bay: Board) -> None:
    """Check the payloads against the log by hand: values in units, topics, proof bundles."""
    led = node.sequencer.open_ledger()
    prefix = bridge_of(node).where.prefix
    readings = [g.value for g in got if g.topic.endswith(f"/devices/{sensor.id}/readings")]
    assert len(readings) == 5
    first = readings[0]
    assert first["device_id"] == sensor.id and first["kind"] == "reading" and first["signed"]
    assert first["fields"] == {"temperature": 21.5, "humidity": 40.1, "humidity_1": 0.05}
    temp = first["values"][0]
    assert temp == {"type": "temperature", "channel": 0, "unit": "degC", "value": 21.5,
                    "raw": 2150, "scale": -2}  # fmt: skip
    assert readings[4]["fields"]["temperature"] == 21.54
    assert first["proof_url"] == f"{PUBLIC_URL}/v1/bundle/{first['index']}"
    assert first["origin"] == led.origin
    # the proof URL's bundle proves this very entry (offline, against the gateway's vkey)
    events = [g for g in got if "/contracts/" in g.topic]
    for value in (first, *(g.value for g in events[:3])):
        bundle: dict[str, Any] = await node.reads.bundle(value["index"])
        verified = bundles.verify_bundle(json.loads(bundles.encode_bundle(bundle)), led.vkey)
        assert verified.index == value["index"]
        leaf = hashlib.sha256(b"\x00" + led.entry(value["index"])).digest()  # RFC 9162 2.1.1
        assert value["leaf_hash"] == bundles.b64(leaf)
    assert all(g.topic == f"{prefix}/contracts/{g.value['contract']}/events" for g in events)
    types = [g.value["type"] for g in events]
    assert "session-opened" in types and "session-closed" in types, types
    arrivals = [g for g in got if g.topic.endswith(f"/devices/{bay.id}/events")]
    assert len(arrivals) == 2 and arrivals[0].value["fields"]["event_code"] == 6


def test_broker_down_at_start_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    settings = make_settings(tmp_path, mqtt_url=broker.url)
    broker.stop()  # the gateway starts while the broker is down: it serves anyway

    async def scenario() -> None:
        node = await started(settings)
        bridge = bridge_of(node)
        bridge.max_backoff_s = 0.5  # the test restarts the broker quickly
        sensor = Board("mqtt-outage")
        try:
            await node.sequencer.enroll(sensor.public_key, {"board": "outage"})
            t0 = 1_800_000_000
            # ingest is not blocked by a missing broker
            await sensor_readings(node, sensor, t0, 10)
            await wait_until(lambda: node.sequencer.open_ledger().pending == 0, DEADLINE_S)
            assert bridge.status.next_index == 0 and not bridge.status.connected
            await asyncio.to_thread(broker.start)
            sub = Subscriber("127.0.0.1", broker.port, bridge.where.prefix)
            async with subscribed(sub):
                produced = 10

                async def produce(n: int) -> None:
                    nonlocal produced
                    for _ in range(n):
                        await sensor_readings(node, sensor, t0 + produced, 1)
                        produced += 1
                        await asyncio.sleep(0.01)

                await produce(20)
                await wait_until(lambda: len(sub.indexes()) >= 15, DEADLINE_S, "first messages")
                await asyncio.to_thread(broker.stop)  # mid-stream
                await produce(20)  # ingest goes on while the broker is down
                await asyncio.to_thread(broker.start)
                await produce(20)
                await wait_until(lambda: caught_up(node), DEADLINE_S, "bridge caught up")
                expected = expected_messages(node)
                want = {i for i, _, _ in expected}
                try:
                    await wait_until(
                        lambda: want <= set(sub.indexes()), DEADLINE_S, "every index received"
                    )
                except AssertionError:
                    missing = sorted(want - set(sub.indexes()))
                    log = broker.log.read_text()[-3000:]
                    raise AssertionError(
                        f"missing {missing}; received {sub.indexes()}; {sub.connects} subscriber "
                        f"connects; broker log:\n{log}"
                    ) from None
                assert len(expected) == 70  # the readings; the enrollment is not published
                check_at_least_once(sub.log_messages(), expected)
                assert bridge.status.connects >= 2 and sub.connects >= 2
        finally:
            await node.stop()

    run(scenario(), timeout_s=180)


def test_home_assistant_discovery_configs_render_the_readings(
    tmp_path: Path, broker: Broker
) -> None:
    jinja2 = pytest.importorskip("jinja2")  # the template language Home Assistant evaluates
    settings = make_settings(tmp_path, mqtt_url=broker.url, mqtt_ha_discovery=True)

    async def scenario() -> None:
        node = await started(settings)
        try:
            bridge = bridge_of(node)
            sensor = Board("mqtt-ha")
            await node.sequencer.enroll(sensor.public_key, {"board": "ha"})
            await sensor_readings(node, sensor, 1_800_000_000, 3)
            await wait_until(lambda: caught_up(node), DEADLINE_S, "bridge caught up")
            assert bridge.status.published == 3 + 3  # three configs (announced once), 3 readings
            # retained: a subscriber arriving later still gets every config
            sub = Subscriber("127.0.0.1", broker.port, "homeassistant", client_id="ha")
            async with subscribed(sub):
                await wait_until(lambda: len(sub.got) >= 3, DEADLINE_S, "discovery configs")
            configs = {g.topic: g.value for g in sub.got}
            reading = json.loads(expected_messages(node)[-1][2])
            env = jinja2.Environment(autoescape=False)
            env.filters["tojson"] = json.dumps
            rendered = {}
            for topic, cfg in configs.items():
                assert topic == f"homeassistant/sensor/{cfg['unique_id']}/config"
                assert cfg["state_topic"] == f"{bridge.where.prefix}/devices/{sensor.id}/readings"
                assert cfg["availability_topic"] == bridge.where.prefix + "/status"
                value = env.from_string(cfg["value_template"]).render(value_json=reading)
                rendered[cfg["name"]] = (value, cfg.get("unit_of_measurement"))
                attrs = env.from_string(cfg["json_attributes_template"]).render(value_json=reading)
                assert json.loads(attrs) == {
                    "log_index": reading["index"],
                    "proof_url": reading["proof_url"],
                }
            assert rendered == {
                "temperature": ("21.52", "°C"),
                "humidity": ("40.1", "%"),
                "humidity 1": ("0.05", "%"),
            }
            temp = configs[f"homeassistant/sensor/edgeseal_{sensor.id}_temperature/config"]
            assert temp["device_class"] == "temperature" and temp["state_class"] == "measurement"
        finally:
            await node.stop()

    run(scenario(), timeout_s=120)
