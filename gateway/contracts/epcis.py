"""GS1 EPCIS 2.0 for the tracing contract: export its lots' events as JSON-LD, import ObjectEvents.

Pure functions (no clock, no I/O): the caller passes the contract instance, its events from the
log, the time of each cause and the document's creation time. docs/epcis.md gives the mapping;
in short, each event of the agri contract (gateway/contracts/agri.py) becomes one EPCIS 2.0 event
(GS1 EPCIS 2.0 section 7.4; CBV 2.0 for business steps and dispositions):

| contract event | EPCIS event | bizStep | disposition |
|---|---|---|---|
| lot-registered | ObjectEvent ADD | commissioning | active |
| handover | ObjectEvent OBSERVE (source/destination: possessing_party) | accepting | - |
| split | TransformationEvent | repackaging | active |
| merge | TransformationEvent | assembling | active |
| sold | ObjectEvent OBSERVE | retail_selling | retail_sold |
| recall | ObjectEvent OBSERVE | holding | recalled |
| breach | ObjectEvent OBSERVE + sensorElementList (Temperature, CEL) | sensor_reporting | non_conformant |

Lots are quantities of a product class (quantityList, EPCIS 7.3.3.3), identified by a GS1 Digital
Link URI `https://id.gs1.org/01/{GTIN-14}/10/{lot}` when the lot's product code is a GTIN with a
valid check digit, else `urn:edgeseal:{contract}:lot:{lot}`. Every event carries
`edgeseal:logIndex` (the log index of the contract event it is made from) and
`edgeseal:proofBundle` (the URL of that entry's proof bundle, GET /v1/bundle/{index}).

The import direction turns ObjectEvents a partner system emits (commissioning, accepting or
receiving with a possessing_party destination, retail_selling, a recalled disposition) into the
(action, args) of agri transactions, which the participant then signs (gateway.client).
Anything else is an EpcisError with a stable code; nothing is signed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from gateway.bounds import loads_strict
from gateway.errors import EdgesealError, EpcisError
from gateway.ledger.entries import KIND_DEVICE_RECORD, KIND_PARTICIPANT_TX
from gateway.txformat import decode_tx
from gateway.wire import decode_record

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
# the namespace of the edgeseal extension fields (EPCIS 2.0 section 9: user extensions)
EDGESEAL_NS = "https://edgeseal.example/ns/epcis/"
CONTEXT: list[Any] = [EPCIS_CONTEXT, {"edgeseal": EDGESEAL_NS}]
SCHEMA_VERSION = "2.0"
GS1_RESOLVER = "https://id.gs1.org"
# why: one document or file of a partner system is a batch of a few events; the bound keeps a
# hostile file from making the importer (and the gateway, one transaction each) do unbounded work
MAX_IMPORT_EVENTS = 256
# why: 256 events of a few KiB each; a bigger file is not an EPCIS batch from a partner
MAX_EPCIS_BYTES = 1 << 20
# why: the agri contract's limits (gateway/contracts/agri.py): origin 128 chars, quantity 10^12
MAX_ORIGIN_CHARS = 128
MAX_QUANTITY = 10**12
_GTIN = re.compile(r"^(\d{8}|\d{12}|\d{13}|\d{14})$")
_DL_LOT = re.compile(r"^https://[A-Za-z0-9.-]+(?::\d+)?/01/(\d{14})/10/([^/?#]{1,256})$")
_LGTIN = re.compile(r"^urn:epc:class:lgtin:(\d{6,12})\.(\d{1,7})\.(.{1,64})$")
_EDGESEAL_LOT = re.compile(r"^urn:edgeseal:([a-z0-9][a-z0-9._-]{0,63}):lot:(.{1,64})$")
_PARTICIPANT = re.compile(r"^urn:edgeseal:participant:([0-9a-f]{64})$")


# ---- identifiers ------------------------------------------------------------------------------


def gtin14(code: str) -> str | None:
    """Return code as a GTIN-14 (zero-padded) if it is a GTIN-8/12/13/14 whose check digit is
    right (GS1 General Specifications 7.9.1), else None."""
    if not isinstance(code, str) or _GTIN.fullmatch(code) is None:
        return None
    padded = code.rjust(14, "0")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(padded[:13]))
    return padded if (10 - total % 10) % 10 == int(padded[13]) else None


def lot_class(contract_id: str, lot_id: str, code: str) -> str:
    """Return the EPC class URI of a lot: GS1 Digital Link (GTIN + AI 10 batch/lot) when code is
    a valid GTIN, else urn:edgeseal:{contract_id}:lot:{lot_id}."""
    gtin = gtin14(code)
    if gtin is not None:
        return f"{GS1_RESOLVER}/01/{gtin}/10/{quote(lot_id, safe='')}"
    return f"urn:edgeseal:{contract_id}:lot:{lot_id}"


def participant_uri(public_key_hex: str) -> str:
    """Return the URI naming a participant (its Ed25519 public key) in source/destination lists."""
    return f"urn:edgeseal:participant:{public_key_hex}"


def device_uri(device_id_hex: str) -> str:
    """Return the URI naming a board (its device id) as a sensor's deviceID."""
    return f"urn:edgeseal:device:{device_id_hex}"


def iso_time(time_s: int) -> str:
    """Return Unix time time_s as an EPCIS date-time in UTC (RFC 3339, "Z")."""
    return datetime.fromtimestamp(time_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_time_s(entry: bytes) -> int | None:
    """Return the time_s of a log entry that is a participant transaction (its signed time_s) or
    a device record (its time_s), else None; None too for bytes that do not decode."""
    try:
        if entry[:1] == bytes((KIND_PARTICIPANT_TX,)):
            return decode_tx(entry[1:]).time_s
        if entry[:1] == bytes((KIND_DEVICE_RECORD,)):
            return decode_record(entry[1:]).time_s
    except EdgesealError:
        return None
    return None


# ---- export -----------------------------------------------------------------------------------


class _Exporter:
    """Builds the EPCIS events of one agri contract instance (see the module doc)."""

    def __init__(
        self,
        contract_id: str,
        inst: Mapping[str, Any],
        time_of: Callable[[int], int | None],
        bundle_base: str,
        log_origin: str,
    ) -> None:
        self.cid = contract_id
        self.lots: Mapping[str, Any] = inst["data"]["lots"]
        self.clock_s = int(inst.get("clock_s", 0))
        self.time_of = time_of
        self.bundle_base = bundle_base.rstrip("/")
        self.log_origin = log_origin

    def qty(self, lot_id: str, with_quantity: bool = True) -> dict[str, Any]:
        lot = self.lots.get(lot_id, {})
        element: dict[str, Any] = {"epcClass": lot_class(self.cid, lot_id, lot.get("code", ""))}
        if with_quantity and isinstance(lot.get("quantity"), int):
            element["quantity"] = lot["quantity"]
        return element

    def base(self, kind: str, ev: Mapping[str, Any], time_s: int | None) -> dict[str, Any]:
        index = ev["index"]
        if time_s is None:  # a cause no longer readable: the contract's clock is the best bound
            time_s = self.clock_s
        name = f"{self.log_origin}#{index}"
        return {
            "type": kind,
            "eventID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}",
            "eventTime": iso_time(time_s),
            "eventTimeZoneOffset": "+00:00",
            "edgeseal:logIndex": index,
            "edgeseal:causes": list(ev.get("causes", [])),
            "edgeseal:proofBundle": f"{self.bundle_base}/v1/bundle/{index}",
        }

    def tx_time(self, ev: Mapping[str, Any]) -> int | None:
        causes = ev.get("causes") or []
        return self.time_of(causes[0]) if causes else None

    def event(self, ev: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the EPCIS event of one contract event, or None if it has no EPCIS meaning."""
        builder = getattr(self, "_" + str(ev.get("type", "")).replace("-", "_"), None)
        return builder(ev, ev.get("data", {})) if builder is not None else None

    def _lot_registered(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        lot = self.lots.get(d["lot"], {})
        out = self.base("ObjectEvent", ev, self.tx_time(ev))
        out.update(
            action="ADD",
            bizStep="commissioning",
            disposition="active",
            quantityList=[{**self.qty(d["lot"], False), "quantity": d["quantity"]}],
            destinationList=[_possessing("destination", d["custodian"])],
            ilmd={
                "edgeseal:product": lot.get("product"),
                "edgeseal:code": lot.get("code"),
                "edgeseal:origin": lot.get("origin"),
            },
        )
        location = _location(lot.get("origin"))
        if location is not None:
            out["bizLocation"] = {"id": location}
            out["readPoint"] = {"id": location}
        return out

    def _handover(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        out = self.base("ObjectEvent", ev, self.tx_time(ev))
        out.update(
            action="OBSERVE",
            bizStep="accepting",
            quantityList=[self.qty(d["lot"])],
            sourceList=[_possessing("source", d["giver"])],
            destinationList=[_possessing("destination", d["taker"])],
        )
        return out

    def _transformation(
        self, ev: Mapping[str, Any], parents: Iterable[str], children: Iterable[str], step: str
    ) -> dict[str, Any]:
        out = self.base("TransformationEvent", ev, self.tx_time(ev))
        out.update(
            inputQuantityList=[self.qty(p) for p in parents],
            outputQuantityList=[self.qty(c) for c in children],
            bizStep=step,
            disposition="active",
        )
        return out

    def _split(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        return self._transformation(ev, [d["lot"]], d["into"], "repackaging")

    def _merge(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        return self._transformation(ev, d["lots"], [d["into"]], "assembling")

    def _sold(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        out = self.base("ObjectEvent", ev, self.tx_time(ev))
        out.update(
            action="OBSERVE",
            bizStep="retail_selling",
            disposition="retail_sold",
            quantityList=[self.qty(d["lot"])],
        )
        return out

    def _recall(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        out = self.base("ObjectEvent", ev, self.tx_time(ev))
        out.update(
            action="OBSERVE",
            bizStep="holding",
            disposition="recalled",
            quantityList=[self.qty(lot) for lot in d["lots"]],
        )
        out["edgeseal:reason"] = d.get("reason", "")
        out["edgeseal:sourceLot"] = d["lot"]
        return out

    def _breach(self, ev: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
        out = self.base("ObjectEvent", ev, d["end_s"])
        end = iso_time(d["end_s"])
        window = self.lots.get(d["lot"], {}).get("window_centi_c")
        report: dict[str, Any] = {
            "type": "Temperature",
            "value": d["temp_centi_c"] / 100,
            "uom": "CEL",
            "exception": "ALARM_CONDITION",
            "time": end,
        }
        out.update(
            action="OBSERVE",
            bizStep="sensor_reporting",
            disposition="non_conformant",
            quantityList=[self.qty(lot) for lot in d["lots"]],
            sensorElementList=[
                {
                    "sensorMetadata": {
                        "time": end,
                        "startTime": iso_time(d["start_s"]),
                        "endTime": end,
                        "deviceID": device_uri(d["device"]),
                    },
                    "sensorReport": [report],
                }
            ],
        )
        out["edgeseal:sourceLot"] = d["lot"]
        if isinstance(window, list) and len(window) == 2:
            out["edgeseal:windowCentiC"] = list(window)
        return out


def _possessing(side: str, public_key_hex: str) -> dict[str, str]:
    return {"type": "possessing_party", side: participant_uri(public_key_hex)}


def _location(origin: Any) -> str | None:
    """Return a GS1 location URI for a lot origin that is a GLN (13 digits, valid check digit)
    or already a GS1 Digital Link location (/414/), else None: a free-text origin stays in ilmd."""
    if not isinstance(origin, str):
        return None
    if re.fullmatch(r"\d{13}", origin) and gtin14(origin) is not None:
        return f"{GS1_RESOLVER}/414/{origin}"
    if re.fullmatch(r"https://[A-Za-z0-9.-]+/414/\d{13}(/254/[!-~]{1,20})?", origin):
        return origin
    return None


def epcis_document(
    contract_id: str,
    inst: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    time_of: Callable[[int], int | None],
    *,
    created_s: int,
    bundle_base: str = "",
    log_origin: str = "",
) -> dict[str, Any]:
    """Return the EPCIS 2.0 document (JSON-LD) of an agri contract instance.

    inst: the instance as the engine holds it (type "agri"); events: its contract events as the
    API serves them (each with "index", "type", "causes", "data"), oldest first; time_of(index):
    the time_s of the transaction or record at a log index (None if unknown); created_s: the
    document's creationDate; bundle_base: the gateway's base URL for proof-bundle links
    ("" = relative links); log_origin: the log's origin, which makes eventIDs unique across logs.
    Events with no EPCIS meaning (device attach/detach, rejections) are left out.
    """
    exporter = _Exporter(contract_id, inst, time_of, bundle_base, log_origin)
    event_list = [e for e in (exporter.event(ev) for ev in events) if e is not None]
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": iso_time(created_s),
        "epcisBody": {"eventList": event_list},
    }


# ---- import -----------------------------------------------------------------------------------


def _epcis_error(code: str, message: str) -> EpcisError:
    """bounds.loads_strict's codes as the EPCIS ones: too-large, else not-json."""
    return EpcisError("epcis-too-large" if code == "too-large" else "epcis-not-json", message)


def parse_epcis(data: bytes) -> Any:
    """Return the JSON value of an EPCIS file's bytes; raise EpcisError("epcis-too-large",
    "epcis-not-json") for more than MAX_EPCIS_BYTES, bytes that are not strict UTF-8 JSON
    (no NaN/Infinity, no duplicate keys) or nesting deeper than MAX_JSON_DEPTH
    (gateway.bounds.loads_strict; EPCIS has fractional numbers, so they are allowed)."""
    return loads_strict(
        data, "the EPCIS document", _epcis_error, max_bytes=MAX_EPCIS_BYTES, floats=True
    )


def _event_list(doc: Any) -> list[Any]:
    """Return the events of an EPCISDocument, an EPCISQueryDocument or one bare event."""
    if not isinstance(doc, dict):
        raise EpcisError("epcis-not-a-document", "expected a JSON object")
    kind = doc.get("type")
    if kind in ("EPCISDocument", "EPCISQueryDocument"):
        body = doc.get("epcisBody")
        if not isinstance(body, dict):
            raise EpcisError("epcis-not-a-document", "epcisBody must be an object")
        if kind == "EPCISQueryDocument":
            results = body.get("queryResults")
            body = results.get("resultsBody") if isinstance(results, dict) else None
            if not isinstance(body, dict):
                raise EpcisError("epcis-not-a-document", "queryResults.resultsBody is missing")
        events = body.get("eventList")
        if not isinstance(events, list):
            raise EpcisError("epcis-not-a-document", "eventList must be a list")
        return events
    if isinstance(kind, str) and kind.endswith("Event"):
        return [doc]
    raise EpcisError("epcis-not-a-document", "type must be EPCISDocument or an event type")


def _vocab(value: Any, field: str) -> str | None:
    """Return the bare CBV term of a bizStep/disposition given bare, as a GS1 Web URI or as a
    URN (CBV 2.0 section 8), or None if absent."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise EpcisError("epcis-bad-field", f"{field} must be a string")
    for prefix in (
        "https://ref.gs1.org/cbv/BizStep-",
        "https://ref.gs1.org/cbv/Disp-",
        "urn:epcglobal:cbv:bizstep:",
        "urn:epcglobal:cbv:disp:",
    ):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def lot_from_class(epc_class: Any) -> tuple[str, str | None]:
    """Return (lot id, GTIN-14 or None) named by an EPC class URI: a GS1 Digital Link with AI 10,
    an LGTIN class URN (urn:epc:class:lgtin:...) or urn:edgeseal:{contract}:lot:{lot}.
    Raises EpcisError("epcis-bad-epc-class") for anything else."""
    if not isinstance(epc_class, str) or len(epc_class) > 512:
        raise EpcisError("epcis-bad-epc-class", "epcClass must be a URI string")
    m = _DL_LOT.fullmatch(epc_class)
    if m is not None and gtin14(m.group(1)) is not None:
        return unquote(m.group(2)), m.group(1)
    m = _LGTIN.fullmatch(epc_class)
    if m is not None and len(m.group(1)) + len(m.group(2)) == 13:
        prefix, item = m.group(1), m.group(2)
        body = item[0] + prefix + item[1:]
        check = (10 - sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(body)) % 10) % 10
        return unquote(m.group(3)), body + str(check)
    m = _EDGESEAL_LOT.fullmatch(epc_class)
    if m is not None:
        return m.group(2), None
    raise EpcisError(
        "epcis-bad-epc-class",
        "epcClass must name a lot: GS1 Digital Link /01/{GTIN}/10/{lot}, "
        "urn:epc:class:lgtin:... or urn:edgeseal:{contract}:lot:{lot}",
    )


def _one_lot(event: Mapping[str, Any]) -> tuple[str, str | None, Any]:
    """Return (lot id, GTIN-14 or None, quantity or None) of an event's single quantity element."""
    if "epcList" in event and event["epcList"]:
        raise EpcisError(
            "epcis-unsupported", "epcList (serialised items) has no lot; use quantityList"
        )
    items = event.get("quantityList")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise EpcisError("epcis-bad-field", "quantityList must hold exactly one lot")
    lot, gtin = lot_from_class(items[0].get("epcClass"))
    return lot, gtin, items[0].get("quantity")


def _quantity(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_QUANTITY:
        raise EpcisError("epcis-bad-quantity", f"quantity must be an integer 1..{MAX_QUANTITY}")
    return value


def _text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise EpcisError("epcis-bad-field", f"{field} must be a string of 1..{max_chars} chars")
    return value


def _commissioning(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    lot, gtin, quantity = _one_lot(event)
    found = event.get("ilmd")
    ilmd: Mapping[str, Any] = found if isinstance(found, dict) else {}
    code = gtin if gtin is not None else ilmd.get("edgeseal:code")
    product = ilmd.get("edgeseal:product") or (f"GTIN {gtin}" if gtin else None)
    origin = ilmd.get("edgeseal:origin")
    for where in ("bizLocation", "readPoint"):
        place = event.get(where)
        if origin is None and isinstance(place, dict):
            origin = place.get("id")
    args = {
        "lot": lot,
        "product": _text(product, "ilmd edgeseal:product", 64),
        "code": _text(code, "the GTIN (or ilmd edgeseal:code)", 64),
        "quantity": _quantity(quantity),
        "origin": _text(origin, "bizLocation/readPoint id (or ilmd edgeseal:origin)", 128),
    }
    return "register-lot", args


def _handover(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    lot, _, _ = _one_lot(event)
    dest = event.get("destinationList")
    takers = [
        d.get("destination")
        for d in (dest if isinstance(dest, list) else [])
        if isinstance(d, dict) and d.get("type") in ("possessing_party", "owning_party")
    ]
    keys = {m.group(1) for t in takers if isinstance(t, str) and (m := _PARTICIPANT.fullmatch(t))}
    if len(keys) != 1:
        raise EpcisError(
            "epcis-bad-field",
            "a handover names one taker: destinationList possessing_party "
            "urn:edgeseal:participant:{public key hex}",
        )
    return "handover", {"lot": lot, "to": keys.pop()}


def transaction_of_event(event: Any) -> tuple[str, dict[str, Any]]:
    """Return the (action, args) of the agri transaction an EPCIS ObjectEvent stands for.

    Mapped: ADD + commissioning -> register-lot; accepting/receiving with one possessing_party
    destination urn:edgeseal:participant:{pk} -> handover (the taker cosigns); retail_selling ->
    sell; disposition recalled -> recall. Raises EpcisError: "epcis-unsupported" (another event
    type or an epcList), "epcis-unmapped" (no contract action for this bizStep/disposition),
    "epcis-bad-field", "epcis-bad-epc-class", "epcis-bad-quantity".
    """
    if not isinstance(event, dict):
        raise EpcisError("epcis-bad-field", "an event must be a JSON object")
    if event.get("type") != "ObjectEvent":
        raise EpcisError(
            "epcis-unsupported",
            f"only ObjectEvents are imported, not {str(event.get('type'))[:40]}",
        )
    action = event.get("action")
    step = _vocab(event.get("bizStep"), "bizStep")
    disposition = _vocab(event.get("disposition"), "disposition")
    if action == "ADD" and step == "commissioning":
        return _commissioning(event)
    if action != "OBSERVE":
        raise EpcisError(
            "epcis-unmapped", "only ADD commissioning and OBSERVE events map to actions"
        )
    if disposition == "recalled":
        lot, _, _ = _one_lot(event)
        reason = event.get("edgeseal:reason") or "recalled (EPCIS ObjectEvent)"
        return "recall", {"lot": lot, "reason": _text(reason, "edgeseal:reason", 256)}
    if step == "retail_selling":
        return "sell", {"lot": _one_lot(event)[0]}
    if step in ("accepting", "receiving"):
        return _handover(event)
    raise EpcisError(
        "epcis-unmapped", f"no contract action for bizStep {step!r}, disposition {disposition!r}"
    )


def transactions_of_document(doc: Any) -> list[tuple[str, dict[str, Any]]]:
    """Return the (action, args) of every event of an EPCIS document (or one bare event), in
    order; raise EpcisError for the first event that does not map (nothing is returned then),
    "epcis-too-many" over MAX_IMPORT_EVENTS events, "epcis-empty" for none."""
    events = _event_list(doc)
    if not events:
        raise EpcisError("epcis-empty", "the document holds no event")
    if len(events) > MAX_IMPORT_EVENTS:
        raise EpcisError("epcis-too-many", f"more than {MAX_IMPORT_EVENTS} events")
    out = []
    for i, event in enumerate(events):
        try:
            out.append(transaction_of_event(event))
        except EpcisError as exc:
            raise EpcisError(exc.code, f"event {i}: {exc.message}") from None
    return out
