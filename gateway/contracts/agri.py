"""Agricultural product tracing (ISO/IEC TR 30176 6.1): lots, custody, transformations, breaches.

docs/usecases/agri_tracing.md describes the use case; the rules, as implemented here:

- a grower registers a lot with its temperature window and maximum excursion time;
- custody moves only by a handover signed by both the giver (sender) and the taker (cosigner);
- boards (devices bound to the contract) are attached to and detached from lots by the custodian;
- split and merge transform lots (GS1 EPCIS transformation); quantities are conserved;
- a temperature outside the window for longer than the allowed time, seen in the readings of one
  attached board, marks the lot BREACHED for good, with the readings that prove it, and marks
  every lot derived from it (now or later) BREACHED too;
- a certifier recalls a lot and with it every derived lot;
- trace_tree() and consumer_view() answer provenance queries from the state.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.contracts.common import (
    Contract,
    Ctx,
    Data,
    Event,
    Params,
    View,
    check_keys,
    ev,
    get_hex,
    get_int,
    get_key,
    get_list,
    get_opt_int,
    get_str,
    require_registered,
)
from gateway.errors import ContractError, NotFound, UnknownLot
from gateway.wire import Ch, Record, i32_range

TEMP_MIN_CENTI_C, TEMP_MAX_CENTI_C = i32_range(Ch.TEMPERATURE)  # the wire registry's range
MAX_SPLIT = 32  # why: bounds the work of one transaction; EPCIS transformations are small
MAX_MERGE = 32
MAX_QUANTITY = 10**12
# why: a lot id is a path segment of GET .../lots/{lot_id}/trace and a label on printed codes; one
# charset (no "/", "%", spaces or control characters) keeps every lot reachable by URL and every
# id printable as is. The API's route pattern is this same regex.
LOT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_LOT_ID = re.compile(LOT_ID_PATTERN)


def get_lot_id(args: dict[str, Any], key: str) -> str:
    """Return args[key] if it is a lot id of LOT_ID_PATTERN; raise ContractError("bad-lot-id").

    Checked where a lot id is created (register, split, merge): ids that name existing lots
    are looked up as given, so a log written before the rule replays unchanged up to them.
    """
    value = args.get(key)
    if not isinstance(value, str) or _LOT_ID.fullmatch(value) is None:
        raise ContractError(
            "bad-lot-id", f"{key}: a lot id is 1..64 of the characters A-Z a-z 0-9 . _ : -"
        )
    return value


def _lot(data: Data, lot_id: str) -> dict[str, Any]:
    lot = data["lots"].get(lot_id)
    if lot is None:
        raise UnknownLot("unknown-lot", f"no lot {lot_id!r}")
    return lot


def _active(lot: dict[str, Any], lot_id: str) -> None:
    if lot["status"] != "active":
        raise ContractError("lot-inactive", f"lot {lot_id!r} is {lot['status']}")


def _custodian(ctx: Ctx, lot: dict[str, Any], lot_id: str) -> None:
    if ctx.sender != lot["custodian"]:
        raise ContractError("not-custodian", f"only the custodian of lot {lot_id!r} may do this")


def descendants(data: Data, lot_id: str) -> list[str]:
    """Return the ids of every lot derived from lot_id (not lot_id itself), sorted."""
    seen: set[str] = set()
    stack = list(data["lots"][lot_id]["children"])
    while stack:
        cur = stack.pop()
        if cur not in seen:
            seen.add(cur)
            stack.extend(data["lots"][cur]["children"])
    return sorted(seen)


def ancestors(data: Data, lot_id: str) -> list[str]:
    """Return the ids of every lot lot_id derives from, sorted."""
    seen: set[str] = set()
    stack = list(data["lots"][lot_id]["parents"])
    while stack:
        cur = stack.pop()
        if cur not in seen:
            seen.add(cur)
            stack.extend(data["lots"][cur]["parents"])
    return sorted(seen)


def _new_lot(
    product: str,
    code: str,
    quantity: int,
    origin: str,
    custodian: str,
    window: list[int],
    max_excursion_s: int,
    parents: list[str],
    index: int,
) -> dict[str, Any]:
    return {
        "product": product,
        "code": code,
        "quantity": quantity,
        "origin": origin,
        "custodian": custodian,
        "status": "active",
        "window_centi_c": window,
        "max_excursion_s": max_excursion_s,
        "parents": parents,
        "children": [],
        "breach": None,  # {"causes": [...], "source_lot": id} once breached; never cleared
        "recall": None,  # {"causes": [...], "source_lot": id} once recalled; never cleared
        "devices": [],
        "history": [index],  # log indexes of every entry that changed the lot
    }


class AgriTracing(Contract):
    """The agricultural tracing contract (type "agri")."""

    TYPE = "agri"
    CREATOR_ROLE = ""  # a co-operative, a retailer or a certifier may host the tracing contract
    VIEWS = (
        View("lots", "every lot", "view_lots"),
        View(
            "lots/{lot_id}/trace",
            "trace tree",
            "view_trace",
            patterns=(("lot_id", LOT_ID_PATTERN),),
        ),
        View("products/{code}", "consumer view", "view_product"),
    )

    def view_lots(self, _cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        """Return {"lots": every lot of the instance}."""
        return {"lots": inst["data"]["lots"]}

    def view_trace(self, cid: str, inst: dict[str, Any], lot_id: str) -> dict[str, Any]:
        """Return the provenance tree of lot_id (trace_tree); raise NotFound for no such lot."""
        if lot_id not in inst["data"]["lots"]:
            raise NotFound("not-found", f"no lot {lot_id!r} in {cid!r}")
        return trace_tree(inst["data"], lot_id)

    def view_product(self, _cid: str, inst: dict[str, Any], code: str) -> dict[str, Any]:
        """Return {"lots": the consumer view of every lot with product code}."""
        return {"lots": consumer_view(inst["data"], code)}

    ACTIONS = {
        "register-lot": "_register",
        "handover": "_handover",
        "attach-device": "_attach",
        "detach-device": "_detach",
        "split": "_split",
        "merge": "_merge",
        "sell": "_sell",
        "recall": "_recall",
    }

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        """Return the parameters: default window, default excursion limit, certifiers."""
        check_keys(
            params,
            ("certifiers",),
            ("default_temp_min_centi_c", "default_temp_max_centi_c", "default_max_excursion_s"),
            code="bad-params",
        )
        certifiers = get_list(params, "certifiers", 1, 16, code="bad-params")
        for i, key in enumerate(certifiers):
            get_key({f"certifiers[{i}]": key}, f"certifiers[{i}]", code="bad-params")
        # why 0..8 degC: the common chilled-produce window; lots may override it
        lo = get_opt_int(params, "default_temp_min_centi_c", 0, TEMP_MIN_CENTI_C, TEMP_MAX_CENTI_C)
        hi = get_opt_int(
            params, "default_temp_max_centi_c", 800, TEMP_MIN_CENTI_C, TEMP_MAX_CENTI_C
        )
        if lo > hi:
            raise ContractError("bad-params", "default_temp_min_centi_c: must be <= the maximum")
        # why 1800 s: cold-chain practice tolerates short door-open excursions of tens of minutes
        exc = get_opt_int(params, "default_max_excursion_s", 1800, 0, 30 * 86400)
        return {
            "certifiers": sorted(set(certifiers)),
            "default_temp_min_centi_c": lo,
            "default_temp_max_centi_c": hi,
            "default_max_excursion_s": exc,
        }

    def init(self, params: Params, ctx: Ctx) -> Data:
        """Return empty data: no lots, no attached boards."""
        return {"lots": {}, "attached": {}, "excursions": {}}

    # ---- transactions ----------------------------------------------------------------------

    def _register(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(
            args,
            ("lot", "product", "code", "quantity", "origin"),
            ("temp_min_centi_c", "temp_max_centi_c", "max_excursion_s"),
        )
        ctx.require_role("grower")
        lot_id = get_lot_id(args, "lot")
        product = get_str(args, "product")
        code = get_str(args, "code")
        quantity = get_int(args, "quantity", 1, MAX_QUANTITY)
        origin = get_str(args, "origin", 128)
        lo = params["default_temp_min_centi_c"]
        hi = params["default_temp_max_centi_c"]
        if "temp_min_centi_c" in args:
            lo = get_int(args, "temp_min_centi_c", TEMP_MIN_CENTI_C, TEMP_MAX_CENTI_C)
        if "temp_max_centi_c" in args:
            hi = get_int(args, "temp_max_centi_c", TEMP_MIN_CENTI_C, TEMP_MAX_CENTI_C)
        if lo > hi:
            raise ContractError("bad-args", "temp_min_centi_c: must be <= temp_max_centi_c")
        max_exc = params["default_max_excursion_s"]
        if "max_excursion_s" in args:
            max_exc = get_int(args, "max_excursion_s", 0, 30 * 86400)
        if lot_id in data["lots"]:
            raise ContractError("lot-exists", f"lot {lot_id!r} already exists")
        assert ctx.sender is not None
        data["lots"][lot_id] = _new_lot(
            product, code, quantity, origin, ctx.sender, [lo, hi], max_exc, [], ctx.index
        )
        return [
            ev("lot-registered", [ctx.index], lot=lot_id, custodian=ctx.sender, quantity=quantity)
        ]

    def _handover(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("lot", "to"))
        lot_id = get_str(args, "lot")
        to = get_key(args, "to")
        lot = _lot(data, lot_id)
        _custodian(ctx, lot, lot_id)
        if to == ctx.sender:
            raise ContractError("handover-to-self", "the taker must differ from the giver")
        if to not in ctx.cosigners:
            raise ContractError(
                "handover-needs-both-signatures", "a handover is signed by the giver and the taker"
            )
        require_registered(ctx, to, "to")
        _active(lot, lot_id)
        if lot["recall"] is not None:
            raise ContractError("lot-recalled", f"lot {lot_id!r} is recalled")
        giver = lot["custodian"]
        lot["custodian"] = to
        lot["history"].append(ctx.index)
        return [ev("handover", [ctx.index], lot=lot_id, giver=giver, taker=to)]

    def _attach(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("lot", "device"))
        lot_id = get_str(args, "lot")
        device = get_hex(args, "device", 16)
        lot = _lot(data, lot_id)
        _custodian(ctx, lot, lot_id)
        _active(lot, lot_id)
        if device not in ctx.devices:
            raise ContractError("device-not-bound", "device: is not bound to this contract")
        if device in data["attached"]:
            raise ContractError(
                "device-attached", f"device is attached to lot {data['attached'][device]!r}"
            )
        data["attached"][device] = lot_id
        lot["devices"] = sorted([*lot["devices"], device])
        lot["history"].append(ctx.index)
        return [ev("device-attached", [ctx.index], lot=lot_id, device=device)]

    def _detach(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("device",))
        device = get_hex(args, "device", 16)
        lot_id = data["attached"].get(device)
        if lot_id is None:
            raise ContractError("device-not-attached", "device: is not attached to a lot")
        _custodian(ctx, data["lots"][lot_id], lot_id)
        return self._detach_device(data, device, ctx.index)

    @staticmethod
    def _detach_device(data: Data, device: str, index: int) -> list[Event]:
        lot_id = data["attached"].pop(device)
        lot = data["lots"][lot_id]
        lot["devices"] = [d for d in lot["devices"] if d != device]
        lot["history"].append(index)
        data["excursions"].pop(device, None)
        return [ev("device-detached", [index], lot=lot_id, device=device)]

    def _consume(self, data: Data, lot_id: str, index: int) -> list[Event]:
        """Mark a parent lot consumed by a transformation and detach its boards."""
        lot = data["lots"][lot_id]
        events: list[Event] = []
        for device in list(lot["devices"]):
            events += self._detach_device(data, device, index)
        lot["status"] = "consumed"
        return events

    @staticmethod
    def _inherit(data: Data, child: dict[str, Any], parents: list[str]) -> None:
        """Copy breach and recall marks of parents to a derived lot (they are permanent)."""
        for pid in parents:
            parent = data["lots"][pid]
            if parent["breach"] is not None and child["breach"] is None:
                child["breach"] = clone_mark(parent["breach"])
            if parent["recall"] is not None and child["recall"] is None:
                child["recall"] = clone_mark(parent["recall"])

    def _split(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("lot", "into"))
        lot_id = get_str(args, "lot")
        into = get_list(args, "into", 2, MAX_SPLIT)
        lot = _lot(data, lot_id)
        _custodian(ctx, lot, lot_id)
        _active(lot, lot_id)
        children: list[tuple[str, int]] = []
        for i, item in enumerate(into):
            if not isinstance(item, dict):
                raise ContractError("bad-args", f"into[{i}]: must be an object")
            check_keys(item, ("lot", "quantity"))
            children.append((get_lot_id(item, "lot"), get_int(item, "quantity", 1, MAX_QUANTITY)))
        ids = [c for c, _ in children]
        if len(set(ids)) != len(ids):
            raise ContractError("bad-args", "into: lot ids must be distinct")
        for cid in ids:
            if cid in data["lots"]:
                raise ContractError("lot-exists", f"lot {cid!r} already exists")
        total = sum(q for _, q in children)
        if total != lot["quantity"]:
            raise ContractError(
                "split-quantity-mismatch", f"parts sum to {total}, the lot holds {lot['quantity']}"
            )
        events = self._consume(data, lot_id, ctx.index)
        for cid, qty in children:
            child = _new_lot(
                lot["product"], lot["code"], qty, lot["origin"], lot["custodian"],
                list(lot["window_centi_c"]), lot["max_excursion_s"], [lot_id], ctx.index,
            )  # fmt: skip
            self._inherit(data, child, [lot_id])
            data["lots"][cid] = child
        lot["children"] = sorted(ids)
        lot["history"].append(ctx.index)
        events.append(ev("split", [ctx.index], lot=lot_id, into=sorted(ids)))
        return events

    def _merge(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("lots", "into"), ("product", "code"))
        parents = get_list(args, "lots", 2, MAX_MERGE)
        into = get_lot_id(args, "into")
        if not all(isinstance(p, str) for p in parents) or len(set(parents)) != len(parents):
            raise ContractError("bad-args", "lots: must be distinct lot ids")
        lots = [_lot(data, p) for p in parents]
        for pid, lot in zip(parents, lots, strict=True):
            _custodian(ctx, lot, pid)
            _active(lot, pid)
        if into in data["lots"]:
            raise ContractError("lot-exists", f"lot {into!r} already exists")
        first = lots[0]
        for lot in lots[1:]:
            if (
                lot["window_centi_c"] != first["window_centi_c"]
                or lot["max_excursion_s"] != first["max_excursion_s"]
            ):
                raise ContractError(
                    "merge-window-mismatch", "merged lots must share one temperature rule"
                )
        product = get_str(args, "product") if "product" in args else first["product"]
        code = get_str(args, "code") if "code" in args else first["code"]
        events: list[Event] = []
        for pid in parents:
            events += self._consume(data, pid, ctx.index)
        origin = ",".join(sorted({lot["origin"] for lot in lots}))[:128]
        child = _new_lot(
            product, code, sum(lot["quantity"] for lot in lots), origin, first["custodian"],
            list(first["window_centi_c"]), first["max_excursion_s"], sorted(parents), ctx.index,
        )  # fmt: skip
        self._inherit(data, child, sorted(parents))
        data["lots"][into] = child
        for pid in parents:
            data["lots"][pid]["children"] = [into]
            data["lots"][pid]["history"].append(ctx.index)
        events.append(ev("merge", [ctx.index], lots=sorted(parents), into=into))
        return events

    def _sell(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("lot",))
        lot_id = get_str(args, "lot")
        lot = _lot(data, lot_id)
        _custodian(ctx, lot, lot_id)
        ctx.require_role("retailer")
        _active(lot, lot_id)
        if lot["recall"] is not None:
            raise ContractError("lot-recalled", f"lot {lot_id!r} is recalled")
        if lot["breach"] is not None:
            raise ContractError("lot-breached", f"lot {lot_id!r} is breached")
        events = self._consume(data, lot_id, ctx.index)
        lot["status"] = "sold"
        lot["history"].append(ctx.index)
        events.append(ev("sold", [ctx.index], lot=lot_id))
        return events

    def _recall(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("lot", "reason"))
        lot_id = get_str(args, "lot")
        reason = get_str(args, "reason", 256)
        if ctx.sender not in params["certifiers"]:
            raise ContractError("not-certifier", "only a certifier of this contract may recall")
        lot = _lot(data, lot_id)
        if lot["recall"] is not None:
            raise ContractError("lot-recalled", f"lot {lot_id!r} is recalled")
        mark = {"causes": [ctx.index], "source_lot": lot_id}
        hit = [lot_id, *descendants(data, lot_id)]
        for lid in hit:
            target = data["lots"][lid]
            if target["recall"] is None:
                target["recall"] = clone_mark(mark)
                target["history"].append(ctx.index)
        return [ev("recall", [ctx.index], lot=lot_id, lots=sorted(hit), reason=reason)]

    # ---- device records ---------------------------------------------------------------------

    def on_record(self, data: Data, params: Params, ctx: Ctx, record: Record) -> list[Event]:
        """Return the breach events of a temperature reading from a board attached to a lot."""
        device = record.device_id.hex()
        lot_id = data["attached"].get(device)
        temp = record.value(Ch.TEMPERATURE, 0)
        if lot_id is None or not isinstance(temp, int):
            return []
        lot = data["lots"][lot_id]
        lo, hi = lot["window_centi_c"]
        t = record.time_s
        if lo <= temp <= hi:
            data["excursions"].pop(device, None)
            return []
        exc = data["excursions"].get(device)
        if exc is None:
            exc = data["excursions"][device] = {"start_s": t, "start_index": ctx.index}
        if t - exc["start_s"] <= lot["max_excursion_s"] or lot["breach"] is not None:
            return []
        mark = {
            "causes": [exc["start_index"], ctx.index],
            "source_lot": lot_id,
            "device": device,
            "start_s": exc["start_s"],
            "end_s": t,
            "temp_centi_c": temp,
        }
        hit = [lid for lid in [lot_id, *descendants(data, lot_id)] if data["lots"][lid]["breach"] is None]  # fmt: skip
        for lid in hit:
            data["lots"][lid]["breach"] = clone_mark(mark)
            data["lots"][lid]["history"].append(ctx.index)
        return [
            ev(
                "breach",
                [exc["start_index"], ctx.index],
                lot=lot_id,
                lots=sorted(hit),
                device=device,
                start_s=exc["start_s"],
                end_s=t,
                temp_centi_c=temp,
            )
        ]


def clone_mark(mark: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a breach/recall mark (its causes list is copied too)."""
    return {**mark, "causes": list(mark["causes"])}


# ---- queries (pure functions of the state; the HTTP layer serves them) -------------------------


def _node(data: Data, lot_id: str) -> dict[str, Any]:
    lot = data["lots"][lot_id]
    return {
        "lot": lot_id,
        "product": lot["product"],
        "code": lot["code"],
        "quantity": lot["quantity"],
        "custodian": lot["custodian"],
        "status": lot["status"],
        "breached": lot["breach"] is not None,
        "recalled": lot["recall"] is not None,
        "evidence": sorted(
            set(lot["history"])
            | set(lot["breach"]["causes"] if lot["breach"] else [])
            | set(lot["recall"]["causes"] if lot["recall"] else [])
        ),
    }


def trace_tree(contract_data: Data, lot_id: str) -> dict[str, Any]:
    """Return the provenance of lot_id: its node, the tree of its sources and of its derived lots.

    Every node lists "evidence": the log indexes to prove with inclusion proofs. Raises
    ContractError("unknown-lot").
    """
    _lot(contract_data, lot_id)

    def back(lid: str) -> dict[str, Any]:
        node = _node(contract_data, lid)
        node["from"] = [back(p) for p in contract_data["lots"][lid]["parents"]]
        return node

    def fwd(lid: str) -> dict[str, Any]:
        node = _node(contract_data, lid)
        node["into"] = [fwd(c) for c in contract_data["lots"][lid]["children"]]
        return node

    root = _node(contract_data, lot_id)
    root["from"] = back(lot_id)["from"]
    root["into"] = fwd(lot_id)["into"]
    return root


def consumer_view(contract_data: Data, code: str) -> list[dict[str, Any]]:
    """Return, for every lot with the product code, its status and its sources (a consumer scan)."""
    out = []
    for lot_id in sorted(contract_data["lots"]):
        lot = contract_data["lots"][lot_id]
        if lot["code"] == code:
            node = _node(contract_data, lot_id)
            node["sources"] = ancestors(contract_data, lot_id)
            node["origin"] = lot["origin"]
            out.append(node)
    return out
