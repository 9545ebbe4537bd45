"""Chattel mortgage services (ISO/IEC TR 30176 6.3): monitored movable collateral and its lien.

docs/usecases/chattel_mortgage.md describes the use case; the rules, as implemented here:

- the lender creates the contract with the borrower, a geofence polygon, a minimum quantity
  (weight), a heartbeat limit and a credit limit; the collateral's boards are bound to it;
- a position outside the geofence, a weight below the minimum, a tamper value or tamper event, or
  a device silent for longer than the heartbeat limit raises an alarm to the lender and freezes
  drawdown; a frozen drawdown stays frozen until the lender unfreezes it;
- the borrower draws down within the credit limit and repays; the lien is released only by the
  lender's signed transaction once nothing is outstanding; a release by anyone else is rejected.
"""

from __future__ import annotations

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
    get_int,
    get_key,
    get_list,
    require_registered,
    transfer,
)
from gateway.errors import ContractError
from gateway.wire import EVENT, Ch, Ev, Record, i32_range

MAX_MONEY_MINOR = 10**15
MAX_FENCE_POINTS = 64  # why: bounds point-in-polygon work per record
(LAT_MIN, LAT_MAX), (LON_MIN, LON_MAX) = i32_range(Ch.LATITUDE), i32_range(Ch.LONGITUDE)


def inside_polygon(lat: int, lon: int, polygon: list[list[int]]) -> bool:
    """Return True if (lat, lon) (1e-7 degrees) lies inside or on the edge of polygon.

    Exact integer ray casting (no floats): points on an edge count as inside. Precondition: at
    least 3 vertices [lat, lon]; the polygon does not cross the antimeridian.
    """
    n = len(polygon)
    inside = False
    for i in range(n):
        y1, x1 = polygon[i]
        y2, x2 = polygon[(i + 1) % n]
        # on the segment? (collinear and within the bounding box)
        cross = (x2 - x1) * (lat - y1) - (y2 - y1) * (lon - x1)
        if cross == 0 and min(x1, x2) <= lon <= max(x1, x2) and min(y1, y2) <= lat <= max(y1, y2):
            return True
        if (y1 > lat) != (y2 > lat):
            # lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1), multiplied out by (y2 - y1)
            lhs = (lon - x1) * (y2 - y1)
            rhs = (lat - y1) * (x2 - x1)
            if (lhs < rhs) if y2 > y1 else (lhs > rhs):
                inside = not inside
    return inside


class ChattelMortgage(Contract):
    """The chattel mortgage contract (type "collateral")."""

    TYPE = "collateral"
    CREATOR_ROLE = "lender"
    VIEWS = (View("collateral", "lien and alarms", "view_collateral"),)

    def view_collateral(self, _cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        """Return the instance's data: lien, drawdowns, alarms."""
        return dict(inst["data"])

    ACTIONS = {
        "drawdown": "_drawdown",
        "repay": "_repay",
        "unfreeze": "_unfreeze",
        "release-lien": "_release",
    }

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        """Return the parameters: borrower, geofence, minimum weight, heartbeat and credit limits."""
        check_keys(
            params,
            (
                "borrower",
                "geofence",
                "min_weight_milli_kg",
                "heartbeat_max_gap_s",
                "credit_limit_minor",
            ),
            code="bad-params",
        )
        borrower = get_key(params, "borrower", code="bad-params")
        require_registered(ctx, borrower, "borrower")
        if borrower == ctx.owner:
            raise ContractError("bad-params", "borrower: must differ from the lender")
        fence = get_list(params, "geofence", 3, MAX_FENCE_POINTS, code="bad-params")
        points = []
        for i, pt in enumerate(fence):
            if not (isinstance(pt, list) and len(pt) == 2):
                raise ContractError("bad-params", f"geofence[{i}]: must be [lat, lon] in 1e-7 deg")
            lat = get_int({"lat": pt[0]}, "lat", LAT_MIN, LAT_MAX, "bad-params")
            lon = get_int({"lon": pt[1]}, "lon", LON_MIN, LON_MAX, "bad-params")
            points.append([lat, lon])
        return {
            "borrower": borrower,
            "geofence": points,
            "min_weight_milli_kg": get_int(params, "min_weight_milli_kg", 0, None, "bad-params"),
            "heartbeat_max_gap_s": get_int(params, "heartbeat_max_gap_s", 1, 30 * 86400, "bad-params"),
            "credit_limit_minor": get_int(params, "credit_limit_minor", 0, MAX_MONEY_MINOR, "bad-params"),
        }  # fmt: skip

    def init(self, params: Params, ctx: Ctx) -> Data:
        """Return an active lien, nothing drawn, no alarms, zero positions."""
        return {
            "lien": "active",
            "frozen": False,
            "drawn_minor": 0,
            "repaid_minor": 0,
            "alarms": [],  # [{"reason", "device", "causes", "at_s"}]
            "devices": {},  # hex id -> {"last_s", "last_index", "gap_flagged"}
            "positions": {},
            "released_at": None,
        }

    # ---- alarms ----------------------------------------------------------------------------

    @staticmethod
    def _alarm(data: Data, reason: str, device: str, causes: list[int], at_s: int, **extra: Any) -> list[Event]:  # fmt: skip
        data["alarms"].append({"reason": reason, "device": device, "causes": sorted(set(causes)), "at_s": at_s})  # fmt: skip
        events = [ev("alarm", causes, reason=reason, device=device, at_s=at_s, **extra)]
        if not data["frozen"] and data["lien"] == "active":
            data["frozen"] = True
            events.append(ev("drawdown-frozen", causes, reason=reason))
        return events

    def advance(self, data: Data, params: Params, ctx: Ctx) -> list[Event]:
        """Return heartbeat-gap alarms of devices silent for longer than the limit."""
        events: list[Event] = []
        if data["lien"] != "active":
            return events
        limit = params["heartbeat_max_gap_s"]
        for device in sorted(data["devices"]):
            hb = data["devices"][device]
            if not hb["gap_flagged"] and ctx.clock_s - hb["last_s"] > limit:
                hb["gap_flagged"] = True
                events += self._alarm(
                    data, "heartbeat-gap", device, [hb["last_index"], ctx.index], ctx.clock_s,
                    silent_since_s=hb["last_s"],
                )  # fmt: skip
        return events

    def on_bind(self, data: Data, params: Params, ctx: Ctx, device: str) -> list[Event]:
        """Start the device's heartbeat clock at the binding."""
        data["devices"][device] = {"last_s": ctx.clock_s, "last_index": ctx.index, "gap_flagged": False}  # fmt: skip
        return []

    def on_unbind(self, data: Data, params: Params, ctx: Ctx, device: str) -> list[Event]:
        """Refuse to unbind a monitored device while the lien is active."""
        if data["lien"] == "active":
            raise ContractError("lien-active", "devices stay bound while the lien is active")
        data["devices"].pop(device, None)
        return []

    def on_record(self, data: Data, params: Params, ctx: Ctx, record: Record) -> list[Event]:
        """Return the alarms of one record: heartbeat gap, geofence, quantity, tamper."""
        device = record.device_id.hex()
        if data["lien"] != "active" or device not in data["devices"]:
            return []
        hb = data["devices"][device]
        t = record.time_s
        events: list[Event] = []
        if t < hb["last_s"]:
            return events  # older than what we know: presence at an earlier time proves nothing new
        if not hb["gap_flagged"] and t - hb["last_s"] > params["heartbeat_max_gap_s"]:
            events += self._alarm(
                data, "heartbeat-gap", device, [hb["last_index"], ctx.index], t,
                silent_since_s=hb["last_s"],
            )  # fmt: skip
        hb.update(last_s=t, last_index=ctx.index, gap_flagged=False)
        lat, lon = record.value(Ch.LATITUDE, 0), record.value(Ch.LONGITUDE, 0)
        fix = (lat, lon) if isinstance(lat, int) and isinstance(lon, int) else None
        if fix is not None and not inside_polygon(fix[0], fix[1], params["geofence"]):
            events += self._alarm(data, "geofence", device, [ctx.index], t, lat=lat, lon=lon)
        weight = record.value(Ch.WEIGHT, 0)
        if isinstance(weight, int) and weight < params["min_weight_milli_kg"]:
            events += self._alarm(data, "quantity", device, [ctx.index], t, weight_milli_kg=weight)
        tamper = record.value(Ch.TAMPER, 0) == 1 or (
            record.kind == EVENT and record.value(Ch.EVENT_CODE, 0) == Ev.TAMPER
        )
        if tamper:
            events += self._alarm(data, "tamper", device, [ctx.index], t)
        return events

    # ---- transactions ----------------------------------------------------------------------

    def _drawdown(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("amount_minor",))
        amount = get_int(args, "amount_minor", 1, MAX_MONEY_MINOR)
        ctx.require_sender(params["borrower"], "not-borrower", "only the borrower draws down")
        if data["lien"] != "active":
            raise ContractError("lien-released", "the lien is released")
        if data["frozen"]:
            raise ContractError("drawdown-frozen", "an alarm froze further drawdown")
        outstanding = data["drawn_minor"] - data["repaid_minor"]
        if outstanding + amount > params["credit_limit_minor"]:
            raise ContractError(
                "credit-limit-exceeded",
                f"{outstanding} + {amount} exceeds the limit {params['credit_limit_minor']}",
            )
        data["drawn_minor"] += amount
        tr = transfer(data["positions"], ctx.owner, params["borrower"], amount)
        return [ev("drawdown", [ctx.index], transfer=tr)]

    def _repay(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("amount_minor",))
        amount = get_int(args, "amount_minor", 1, MAX_MONEY_MINOR)
        ctx.require_sender(params["borrower"], "not-borrower", "only the borrower repays")
        outstanding = data["drawn_minor"] - data["repaid_minor"]
        if amount > outstanding:
            raise ContractError(
                "repay-exceeds-outstanding", f"{amount} exceeds the outstanding {outstanding}"
            )
        data["repaid_minor"] += amount
        tr = transfer(data["positions"], params["borrower"], ctx.owner, amount)
        return [ev("repayment", [ctx.index], transfer=tr)]

    def _unfreeze(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ())
        ctx.require_sender(ctx.owner, "not-lender", "only the lender unfreezes drawdown")
        if not data["frozen"]:
            raise ContractError("not-frozen", "drawdown is not frozen")
        data["frozen"] = False
        return [ev("drawdown-unfrozen", [ctx.index])]

    def _release(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ())
        ctx.require_sender(ctx.owner, "release-not-lender", "only the lender releases the lien")
        if data["lien"] != "active":
            raise ContractError("lien-released", "the lien is released")
        outstanding = data["drawn_minor"] - data["repaid_minor"]
        if outstanding:
            raise ContractError("outstanding-balance", f"{outstanding} is still outstanding")
        data["lien"] = "released"
        data["frozen"] = False
        data["released_at"] = ctx.index
        return [ev("lien-released", [ctx.index], lender=ctx.owner)]
