"""Distributed energy trading (ISO/IEC TR 30176 6.4): a double auction per interval, settled on meters.

docs/usecases/energy_trading.md describes the use case; the rules, as implemented here:

- the market operator creates the market (interval length, gate closure, settlement delay, grid
  imbalance prices) and registers each prosumer's meter board (bound to the contract);
- prosumers submit signed bids and offers (energy_wh, price_minor_per_kwh) for an interval; an
  order at or after gate closure (interval start - gate_closure_s, on the contract clock) is
  rejected; one participant is buyer or seller in an interval, not both;
- at gate closure the interval clears by a deterministic double auction: bids by price descending,
  offers by price ascending, ties by log index (earlier first); the uniform price is the floor of
  the mean of the last matched bid and offer prices; trades pair them in that order;
- meter boards report cumulative import (channel 0) and export (channel 1) energy; the first
  reading within boundary_tolerance_s after each interval boundary is that boundary's register;
- settlement at interval end + settle_delay_s: each trade pays energy_wh x price / 1000 (floor)
  buyer -> seller; a seller that delivered less than it sold pays the shortfall to the grid at the
  imbalance price; a buyer that consumed less than it bought is paid the surplus by the grid at the
  feed-in price; missing meter data counts as zero energy; every transfer moves the same integer
  between two accounts, so settlement sums to zero across participants plus "grid".
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
    get_hex,
    get_int,
    get_key,
    get_opt_int,
    require_registered,
    transfer,
)
from gateway.errors import ContractError
from gateway.wire import Ch, Record

IMPORT, EXPORT = 0, 1  # energy channels of a meter (docs/wire-format.md)
GRID = "grid"  # the grid operator's settlement account
MAX_ENERGY_WH = 10**9
MAX_PRICE_MINOR_PER_KWH = 10**7
MAX_ORDERS_PER_INTERVAL = 512  # why: bounds the clearing work of one entry


def clear(orders: list[dict[str, Any]]) -> tuple[int | None, list[dict[str, Any]]]:
    """Return (uniform price or None, trades) of a deterministic double auction over orders.

    Bids sort by price descending, offers by price ascending, ties by log index ascending. Matching
    walks both lists while the bid price >= the offer price; the price is the floor of the mean
    of the last matched bid and offer prices, so every matched bid pays at most its limit and
    every matched offer gets at least its ask.
    """
    bids = sorted((o for o in orders if o["side"] == "bid"), key=lambda o: (-o["price_minor_per_kwh"], o["index"]))  # fmt: skip
    offers = sorted((o for o in orders if o["side"] == "offer"), key=lambda o: (o["price_minor_per_kwh"], o["index"]))  # fmt: skip
    trades: list[dict[str, Any]] = []
    i = j = 0
    rem_b = bids[0]["energy_wh"] if bids else 0
    rem_o = offers[0]["energy_wh"] if offers else 0
    last_bid = last_offer = None
    while i < len(bids) and j < len(offers):
        b, o = bids[i], offers[j]
        if b["price_minor_per_kwh"] < o["price_minor_per_kwh"]:
            break
        q = min(rem_b, rem_o)
        trades.append(
            {
                "buyer": b["participant"],
                "seller": o["participant"],
                "energy_wh": q,
                "bid_index": b["index"],
                "offer_index": o["index"],
            }
        )
        last_bid, last_offer = b["price_minor_per_kwh"], o["price_minor_per_kwh"]
        rem_b -= q
        rem_o -= q
        if rem_b == 0:
            i += 1
            rem_b = bids[i]["energy_wh"] if i < len(bids) else 0
        if rem_o == 0:
            j += 1
            rem_o = offers[j]["energy_wh"] if j < len(offers) else 0
    if last_bid is None or last_offer is None:
        return None, []
    return (last_bid + last_offer) // 2, trades


def amount_minor(energy_wh: int, price_minor_per_kwh: int) -> int:
    """Return the money for energy_wh at price_minor_per_kwh, rounded down to a minor unit."""
    return energy_wh * price_minor_per_kwh // 1000


class EnergyMarket(Contract):
    """The distributed energy trading contract (type "energy")."""

    TYPE = "energy"
    CREATOR_ROLE = "market_operator"
    VIEWS = (
        View("intervals", "trading intervals", "view_intervals"),
        # the clearing of an interval and its settlement
        View("settlements", "settlement events", event_types=frozenset({"cleared", "settled"})),
    )

    def view_intervals(self, _cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        """Return the trading intervals, the registered meters and the money positions."""
        data = inst["data"]
        return {
            "intervals": data["intervals"],
            "meters": data["meters"],
            "positions": data["positions"],
        }

    ACTIONS = {  # bid and offer: on_tx below
        "register-meter": "_register_meter",
        "set-grid-prices": "_grid_prices",
    }

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        """Return the parameters: interval, gate closure, settlement delay, grid prices."""
        check_keys(
            params,
            ("imbalance_price_minor_per_kwh", "feed_in_price_minor_per_kwh"),
            ("interval_s", "gate_closure_s", "settle_delay_s", "boundary_tolerance_s", "grid_operator"), code="bad-params")  # fmt: skip
        out = {
            # why 900 s: the 15-minute imbalance settlement period of European markets; the floor of
            # 10 s is for demos and tests (make run settles an interval within a minute)
            "interval_s": get_opt_int(params, "interval_s", 900, 10, 86400),
            # why 300 s: orders close before delivery so the operator can balance the grid
            "gate_closure_s": get_opt_int(params, "gate_closure_s", 300, 0, 86400),
            # why 300 s: meters report the end boundary within minutes
            "settle_delay_s": get_opt_int(params, "settle_delay_s", 300, 0, 86400),
            # why 60 s: a boundary reading later than a minute no longer measures that interval
            "boundary_tolerance_s": get_opt_int(params, "boundary_tolerance_s", 60, 0, 3600),
            "imbalance_price_minor_per_kwh": get_int(
                params, "imbalance_price_minor_per_kwh", 0, MAX_PRICE_MINOR_PER_KWH, "bad-params"
            ),  # fmt: skip
            "feed_in_price_minor_per_kwh": get_int(
                params, "feed_in_price_minor_per_kwh", 0, MAX_PRICE_MINOR_PER_KWH, "bad-params"
            ),  # fmt: skip
            "grid_operator": ctx.owner,
        }
        if "grid_operator" in params:
            out["grid_operator"] = get_key(params, "grid_operator", code="bad-params")
            require_registered(ctx, out["grid_operator"], "grid_operator")
        return out

    def init(self, params: Params, ctx: Ctx) -> Data:
        """Return no meters, no intervals, zero positions."""
        return {"meters": {}, "participants": {}, "intervals": {}, "positions": {}}

    # ---- time ------------------------------------------------------------------------------

    def advance(self, data: Data, params: Params, ctx: Ctx) -> list[Event]:
        """Return the clearing and settlement events of intervals whose deadlines have passed."""
        events: list[Event] = []
        for key in sorted(data["intervals"], key=int):
            iv = data["intervals"][key]
            start = int(key)
            if iv["status"] == "open" and ctx.clock_s >= start - params["gate_closure_s"]:
                events.append(self._clear(iv, start, ctx))
            if (
                iv["status"] == "cleared"
                and ctx.clock_s >= start + params["interval_s"] + params["settle_delay_s"]
            ):
                events.append(self._settle(data, params, iv, start, ctx))
        return events

    @staticmethod
    def _clear(iv: dict[str, Any], start: int, ctx: Ctx) -> Event:
        price, trades = clear(iv["orders"])
        iv["status"] = "cleared"
        iv["price_minor_per_kwh"] = price
        iv["trades"] = trades
        iv["readings"] = {
            p: {"start": None, "end": None}
            for p in sorted({t["buyer"] for t in trades} | {t["seller"] for t in trades})
        }
        causes = [o["index"] for o in iv["orders"]] + [ctx.index]
        return ev(
            "cleared",
            causes,
            interval_start_s=start,
            price_minor_per_kwh=price,
            trades=[{k: t[k] for k in ("buyer", "seller", "energy_wh")} for t in trades],
        )

    def _settle(
        self, data: Data, params: Params, iv: dict[str, Any], start: int, ctx: Ctx
    ) -> Event:
        price = iv["price_minor_per_kwh"]
        prices = iv["grid_prices"] or {
            "imbalance_price_minor_per_kwh": params["imbalance_price_minor_per_kwh"],
            "feed_in_price_minor_per_kwh": params["feed_in_price_minor_per_kwh"],
        }
        ledger: dict[str, int] = {}
        transfers = []
        sold: dict[str, int] = {}
        bought: dict[str, int] = {}
        for t in iv["trades"]:
            transfers.append(transfer(ledger, t["buyer"], t["seller"], amount_minor(t["energy_wh"], price)))  # fmt: skip
            sold[t["seller"]] = sold.get(t["seller"], 0) + t["energy_wh"]
            bought[t["buyer"]] = bought.get(t["buyer"], 0) + t["energy_wh"]
        causes = [t["bid_index"] for t in iv["trades"]] + [t["offer_index"] for t in iv["trades"]]
        metered: dict[str, dict[str, int]] = {}
        for p in sorted(iv["readings"]):
            r = iv["readings"][p]
            imp = exp = 0
            if r["start"] is not None and r["end"] is not None:
                imp = max(0, r["end"][0] - r["start"][0])
                exp = max(0, r["end"][1] - r["start"][1])
                causes += [r["start"][2], r["end"][2]]
            metered[p] = {"import_wh": imp, "export_wh": exp}
            short = sold.get(p, 0) - exp
            if short > 0:
                transfers.append(transfer(ledger, p, GRID, amount_minor(short, prices["imbalance_price_minor_per_kwh"])))  # fmt: skip
            surplus = bought.get(p, 0) - imp
            if surplus > 0:
                transfers.append(transfer(ledger, GRID, p, amount_minor(surplus, prices["feed_in_price_minor_per_kwh"])))  # fmt: skip
        assert sum(ledger.values()) == 0  # every transfer moves one integer between two accounts
        for account, delta in ledger.items():
            data["positions"][account] = data["positions"].get(account, 0) + delta
        iv["status"] = "settled"
        iv["net_minor"] = dict(sorted(ledger.items()))
        return ev(
            "settled",
            [*causes, ctx.index],
            interval_start_s=start,
            price_minor_per_kwh=price,
            metered=metered,
            transfers=transfers,
            net_minor=iv["net_minor"],
        )

    # ---- meter records ---------------------------------------------------------------------

    def on_record(self, data: Data, params: Params, ctx: Ctx, record: Record) -> list[Event]:
        """Record the reading as a boundary register of the meter's participant where due."""
        participant = data["meters"].get(record.device_id.hex())
        imp, exp = record.value(Ch.ENERGY, IMPORT), record.value(Ch.ENERGY, EXPORT)
        if participant is None or not isinstance(imp, int) or not isinstance(exp, int):
            return []
        t = record.time_s
        for key in sorted(data["intervals"], key=int):
            iv = data["intervals"][key]
            r = iv.get("readings", {}).get(participant)
            if iv["status"] != "cleared" or r is None:
                continue
            start = int(key)
            for name, boundary in (("start", start), ("end", start + params["interval_s"])):
                if r[name] is None and boundary <= t <= boundary + params["boundary_tolerance_s"]:
                    r[name] = [imp, exp, ctx.index]
        return []

    # ---- transactions ----------------------------------------------------------------------

    def on_tx(
        self, data: Data, params: Params, ctx: Ctx, action: str, args: dict[str, Any]
    ) -> list[Event]:
        """Return the events of action; raise ContractError (codes in docs/contracts.md)."""
        if action in ("bid", "offer"):  # one handler, told which side
            return self._order(data, params, ctx, action, args)
        return super().on_tx(data, params, ctx, action, args)

    def _register_meter(
        self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]
    ) -> list[Event]:
        check_keys(args, ("device", "participant"))
        device = get_hex(args, "device", 16)
        participant = get_key(args, "participant")
        ctx.require_sender(ctx.owner, "not-market-operator", "only the market operator registers meters")  # fmt: skip
        require_registered(ctx, participant, "participant")
        if device not in ctx.devices:
            raise ContractError("device-not-bound", "device: is not bound to this contract")
        if device in data["meters"] or participant in data["participants"]:
            raise ContractError("meter-exists", "the device or the participant has a meter")
        data["meters"][device] = participant
        data["participants"][participant] = device
        return [ev("meter-registered", [ctx.index], device=device, participant=participant)]

    def _interval(self, data: Data, params: Params, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # fmt: skip
        start = get_int(args, "interval_start_s", 0)
        if start % params["interval_s"]:
            raise ContractError("interval-misaligned", f"interval_start_s is not a multiple of {params['interval_s']}")  # fmt: skip
        iv = data["intervals"].get(str(start))
        if iv is None:
            iv = {"status": "open", "orders": [], "grid_prices": None}
        return start, iv

    def _order(
        self, data: Data, params: Params, ctx: Ctx, side: str, args: dict[str, Any]
    ) -> list[Event]:
        check_keys(args, ("interval_start_s", "energy_wh", "price_minor_per_kwh"))
        energy = get_int(args, "energy_wh", 1, MAX_ENERGY_WH)
        price = get_int(args, "price_minor_per_kwh", 0, MAX_PRICE_MINOR_PER_KWH)
        start, iv = self._interval(data, params, args)
        sender = ctx.require_role("prosumer")
        if sender not in data["participants"]:
            raise ContractError("no-meter", "the sender has no registered meter")
        if iv["status"] != "open" or ctx.clock_s >= start - params["gate_closure_s"]:
            raise ContractError("gate-closed", f"orders for {start} closed at {start - params['gate_closure_s']}")  # fmt: skip
        other = "offer" if side == "bid" else "bid"
        if any(o["participant"] == sender and o["side"] == other for o in iv["orders"]):
            raise ContractError("order-side-conflict", f"the sender already has a {other} in this interval")  # fmt: skip
        if len(iv["orders"]) >= MAX_ORDERS_PER_INTERVAL:
            raise ContractError("interval-full", f"{MAX_ORDERS_PER_INTERVAL} orders already")
        iv["orders"].append(
            {
                "participant": sender,
                "side": side,
                "energy_wh": energy,
                "price_minor_per_kwh": price,
                "index": ctx.index,
            }
        )
        data["intervals"][str(start)] = iv
        return []

    def _grid_prices(
        self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]
    ) -> list[Event]:
        check_keys(args, ("interval_start_s", "imbalance_price_minor_per_kwh", "feed_in_price_minor_per_kwh"))  # fmt: skip
        imb = get_int(args, "imbalance_price_minor_per_kwh", 0, MAX_PRICE_MINOR_PER_KWH)
        feed = get_int(args, "feed_in_price_minor_per_kwh", 0, MAX_PRICE_MINOR_PER_KWH)
        start, iv = self._interval(data, params, args)
        ctx.require_sender(params["grid_operator"], "not-grid-operator", "only the grid operator sets grid prices")  # fmt: skip
        if iv["status"] == "settled":
            raise ContractError("interval-settled", f"interval {start} is settled")
        iv["grid_prices"] = {
            "imbalance_price_minor_per_kwh": imb,
            "feed_in_price_minor_per_kwh": feed,
        }
        data["intervals"][str(start)] = iv
        return [ev("grid-prices", [ctx.index], interval_start_s=start, **iv["grid_prices"])]
