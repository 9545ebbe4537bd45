"""What the MQTT bridge publishes for one log entry: its topic and JSON payload (docs/mqtt.md).

Pure functions of (entry bytes, index, where): no I/O. Device records go to
`<prefix>/devices/<device id hex>/<kind>` (readings, heartbeats, events, key-rotations,
chain-segments), contract events to `<prefix>/contracts/<contract id>/events`; enrollments and
participant transactions are not published (their effects are, as contract events). Every
payload carries the log index (subscribers deduplicate on it), the entry's RFC 9162 leaf hash and
the URL of its offline proof bundle.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from gateway import wire
from gateway.contracts import decode_event
from gateway.errors import EdgesealError
from gateway.ledger import merkle
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_DEVICE_RECORD

PAYLOAD_VERSION = 1
# Topic level of each record kind (gateway.wire.KIND_NAMES), plural like "readings".
RECORD_TOPICS = {
    wire.READING: "readings",
    wire.HEARTBEAT: "heartbeats",
    wire.EVENT: "events",
    wire.KEY_ROTATION: "key-rotations",
    wire.CHAIN_SEGMENT: "chain-segments",
}
# Characters kept as they are in a topic level; everything else is percent-encoded (UTF-8), so
# the mapping is injective and no level can hold '/', '+' or '#' (MQTT 3.1.1 4.7).
_SAFE = "-._~:@!$&'()*,;="


@dataclass(frozen=True)
class Where:
    """The context every payload names: the log origin, the topic prefix, the API's base URL."""

    origin: str
    prefix: str
    public_url: str  # without a trailing '/'


@dataclass(frozen=True)
class Message:
    """One MQTT message: topic and UTF-8 JSON payload, for the entry at log index `index`;
    retained only for Home Assistant discovery configs."""

    index: int
    topic: str
    payload: bytes
    retain: bool = False


def topic_level(text: str) -> str:
    """Return text as one topic level: percent-encoded except unreserved characters (RFC 3986
    2.3) and a few sub-delimiters; never empty, never containing '/', '+', '#' or NUL. The empty
    string becomes a lone "%", which no percent-encoding produces (so the map stays injective)."""
    return quote(text, safe=_SAFE) or "%"


def default_prefix(origin: str) -> str:
    """Return the default topic prefix of a log: `edgeseal/<origin as one topic level>`."""
    return "edgeseal/" + topic_level(origin)


def in_units(raw: int, scale: int) -> int | float:
    """Return raw * 10^scale: an int for scale >= 0, else the double nearest the decimal value
    (2150 at scale -2 -> 21.5, with no binary rounding error beyond the nearest double)."""
    if scale >= 0:
        return raw * 10**scale
    return float(Decimal(raw).scaleb(scale))


def record_values(rec: wire.Record) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (values, fields) of a record: each value with its registry name, channel, unit,
    value in units and raw scaled integer (bytes values as hex); fields maps `<name>` (channel 0)
    or `<name>_<channel>` to the value in units, for dashboards' templates."""
    values: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    for v in rec.values:
        ch = wire.CHANNELS[v.type]
        item: dict[str, Any] = {"type": ch.name, "channel": v.channel, "unit": ch.unit}
        if isinstance(v.value, bytes):
            item["hex"] = v.value.hex()
            shown: Any = item["hex"]
        else:
            shown = in_units(v.value, ch.scale)
            item.update(value=shown, raw=v.value, scale=ch.scale)
        values.append(item)
        fields[ch.name if v.channel == 0 else f"{ch.name}_{v.channel}"] = shown
    return values, fields


def _common(index: int, entry: bytes, where: Where) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "origin": where.origin,
        "index": index,
        "leaf_hash": base64.b64encode(merkle.leaf_hash(entry)).decode("ascii"),
        "proof_url": f"{where.public_url}/v1/bundle/{index}",
    }


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def message_for(index: int, entry: bytes, where: Where) -> Message | None:
    """Return the message for the log entry at index, or None if the bridge does not publish
    its kind (enrollments, transactions) or it does not decode (never for an entry the gateway
    itself appended: ingest and the engine only log what decodes)."""
    kind = entry[0] if entry else -1
    try:
        if kind == KIND_DEVICE_RECORD:
            rec = wire.decode_record(entry[1:])
            values, fields = record_values(rec)
            body = _common(index, entry, where)
            body.update(
                device_id=rec.device_id.hex(),
                kind=wire.KIND_NAMES[rec.kind],
                seq=rec.seq,
                boot=rec.boot,
                time_s=rec.time_s,
                time_synced=rec.time_synced,
                signed=rec.signed,
                values=values,
                fields=fields,
            )
            topic = f"{where.prefix}/devices/{rec.device_id.hex()}/{RECORD_TOPICS[rec.kind]}"
            return Message(index, topic, _dumps(body))
        if kind == KIND_CONTRACT_EVENT:
            ev = decode_event(entry)
            body = _common(index, entry, where)
            body.update(
                contract=ev["contract"], type=ev["type"], causes=ev["causes"], data=ev["data"]
            )
            topic = f"{where.prefix}/contracts/{topic_level(str(ev['contract']))}/events"
            return Message(index, topic, _dumps(body))
    except EdgesealError:
        return None
    return None


# ---- Home Assistant MQTT discovery (opt-in: settings.mqtt_ha_discovery) -----------------------

HA_DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's default discovery prefix
# Registry unit -> Home Assistant unit, and registry name -> HA sensor device class, for the
# channels HA has a class for; others are published without a class.
HA_UNITS = {"degC": "°C", "%RH": "%", "bool": None, "code": None, "count": None}
HA_DEVICE_CLASSES = {
    "temperature": "temperature",
    "humidity": "humidity",
    "ph": "ph",
    "energy": "energy",
    "power": "power",
    "weight": "weight",
    "battery": "voltage",
    "voltage": "voltage",
    "current": "current",
    "distance": "distance",
    "rssi": "signal_strength",
}


def ha_discovery(rec: wire.Record, where: Where, index: int) -> list[Message]:
    """Return the retained Home Assistant discovery configs (homeassistant/sensor/<id>/config)
    of a reading's integer channels: one sensor per (device, channel type, channel index) whose
    state is the reading topic and whose value is `fields.<key>` of its payload. Empty for other
    record kinds."""
    if rec.kind != wire.READING:
        return []
    dev = rec.device_id.hex()
    state_topic = f"{where.prefix}/devices/{dev}/{RECORD_TOPICS[wire.READING]}"
    out = []
    for v in rec.values:
        if isinstance(v.value, bytes):
            continue
        ch = wire.CHANNELS[v.type]
        key = ch.name if v.channel == 0 else f"{ch.name}_{v.channel}"
        object_id = f"edgeseal_{dev}_{key}"
        config: dict[str, Any] = {
            "name": key.replace("_", " "),
            "unique_id": object_id,
            "state_topic": state_topic,
            "value_template": f"{{{{ value_json.fields.{key} }}}}",
            "json_attributes_topic": state_topic,
            "json_attributes_template": "{{ {'log_index': value_json.index, "
            "'proof_url': value_json.proof_url} | tojson }}",
            "availability_topic": f"{where.prefix}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
            "state_class": "total_increasing" if ch.name == "energy" else "measurement",
            "device": {
                "identifiers": [f"edgeseal_{dev}"],
                "name": f"edgeseal board {dev[:8]}",
                "manufacturer": "edgeseal",
            },
        }
        unit = HA_UNITS.get(ch.unit, ch.unit)
        if unit is not None:
            config["unit_of_measurement"] = unit
        if ch.name in HA_DEVICE_CLASSES:
            config["device_class"] = HA_DEVICE_CLASSES[ch.name]
        topic = f"{HA_DISCOVERY_PREFIX}/sensor/{object_id}/config"
        out.append(Message(index, topic, _dumps(config), retain=True))
    return out
