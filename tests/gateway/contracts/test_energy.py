"""Energy trading contract: gate closure, deterministic double auction, metered zero-sum settlement."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.contracts.energy import amount_minor, clear

from .helpers import T0, Board, Log, Machine, Party, enroll_and_bind, run_machine, setup

C = "market-1"
MO, GRID_OP = Party("en-mo"), Party("en-grid")
P1, P2, P3, P4 = (Party(f"en-p{i}") for i in range(1, 5))
PARAMS = {
    "interval_s": 900,
    "gate_closure_s": 300,
    "settle_delay_s": 300,
    "boundary_tolerance_s": 60,
    "imbalance_price_minor_per_kwh": 30,
    "feed_in_price_minor_per_kwh": 5,
    "grid_operator": GRID_OP.pk,
}
S = T0 + 3600  # the traded interval [S, S + 900)


def meter(board: Board, t: int, import_wh: int, export_wh: int) -> bytes:
    """Return a signed cumulative meter reading (channel 0 import, channel 1 export)."""
    return board.record(t, [(6, 0, import_wh), (6, 1, export_wh)])


def market(log: Log, prefix: str = "en") -> list[Board]:
    """Create the market with four metered prosumers; return their meter boards."""
    setup(log, {"mo": (MO, ["market_operator"]), "grid": (GRID_OP, ["grid_operator"]), **{f"p{i}": (p, ["prosumer"]) for i, p in enumerate((P1, P2, P3, P4))}})  # fmt: skip
    log.ok(MO.tx("engine", "create", {"id": C, "type": "energy", "params": PARAMS}, T0))
    boards = [Board(f"{prefix}-m{i}") for i in range(4)]
    enroll_and_bind(log, MO, C, boards, T0)
    for b, p in zip(boards, (P1, P2, P3, P4), strict=True):
        log.ok(MO.tx(C, "register-meter", {"device": b.id, "participant": p.pk}, T0))
    return boards


def order(p: Party, side: str, energy_wh: int, price: int, t: int = T0 + 100, start: int = S) -> bytes:  # fmt: skip
    """Return a signed bid or offer for the interval starting at start."""
    return p.tx(C, side, {"interval_start_s": start, "energy_wh": energy_wh, "price_minor_per_kwh": price}, t)  # fmt: skip


def scenario(log: Log) -> dict[str, Any]:
    """Build the flow of docs/usecases/energy_trading.md; return the meters."""
    m = market(log)
    log.ok(order(P1, "offer", 3000, 10))
    log.ok(order(P2, "offer", 2000, 14))
    log.ok(order(P3, "bid", 2500, 20))
    log.ok(order(P4, "bid", 2000, 12))
    ev = log.ok(MO.tx(C, "tick", {}, S - 300))  # gate closure: the interval clears
    assert [e["type"] for e in ev] == ["cleared"]
    log.ok(meter(m[0], S + 5, 0, 10000))
    log.ok(meter(m[2], S + 10, 5000, 0))
    log.ok(meter(m[3], S + 20, 1000, 0))
    log.ok(meter(m[0], S + 900, 0, 12000))  # delivered 2000 of 3000 sold
    log.ok(meter(m[2], S + 910, 7500, 0))  # consumed all 2500 bought
    log.ok(meter(m[3], S + 930, 1200, 0))  # consumed 200 of 500 bought
    log.ok(MO.tx(C, "tick", {}, S + 1200))
    return {"meters": m}


def test_happy_path() -> None:
    log = Log()
    scenario(log)
    cleared = log.of_type("cleared")[0]["data"]
    assert cleared["price_minor_per_kwh"] == 11
    assert cleared["trades"] == [
        {"buyer": P3.pk, "seller": P1.pk, "energy_wh": 2500},
        {"buyer": P4.pk, "seller": P1.pk, "energy_wh": 500},
    ]
    settled = log.of_type("settled")[0]
    net = settled["data"]["net_minor"]
    assert net == {P1.pk: 27 + 5 - 30, P3.pk: -27, P4.pk: -5 + 1, "grid": 30 - 1}
    assert sum(net.values()) == 0 and sum(log.data(C)["positions"].values()) == 0
    assert settled["data"]["metered"][P1.pk] == {"import_wh": 0, "export_wh": 2000}
    # the settlement names the matched orders, the six boundary readings and the tick
    assert len(settled["causes"]) == 3 + 6 + 1  # three matched orders (P2 did not trade)


def test_clear_tie_break_and_no_cross() -> None:
    def o(p: str, side: str, e: int, price: int, i: int) -> dict[str, Any]:
        return {"participant": p, "side": side, "energy_wh": e, "price_minor_per_kwh": price, "index": i}  # fmt: skip

    price, trades = clear([o("a", "bid", 100, 10, 5), o("b", "bid", 100, 10, 3), o("s", "offer", 150, 8, 9)])  # fmt: skip
    assert price == 9
    assert [(t["buyer"], t["energy_wh"]) for t in trades] == [("b", 100), ("a", 50)]
    assert clear([o("a", "bid", 100, 5, 1), o("s", "offer", 100, 6, 2)]) == (None, [])
    assert clear([o("a", "bid", 100, 5, 1)]) == (None, [])
    assert amount_minor(1999, 1) == 1 and amount_minor(1000, 7) == 7


orders_st = st.lists(
    st.tuples(st.sampled_from(["bid", "offer"]), st.integers(1, 5000), st.integers(0, 50)),
    max_size=12,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(orders_st)
def test_clear_properties(raw: list[tuple[str, int, int]]) -> None:
    orders = [
        {"participant": f"p{i}", "side": s, "energy_wh": e, "price_minor_per_kwh": p, "index": i}
        for i, (s, e, p) in enumerate(raw)
    ]
    price, trades = clear(orders)
    by_index = {o["index"]: o for o in orders}
    for t in trades:
        assert by_index[t["bid_index"]]["price_minor_per_kwh"] >= price  # type: ignore[operator]
        assert by_index[t["offer_index"]]["price_minor_per_kwh"] <= price  # type: ignore[operator]
    for o in orders:  # nobody trades more than ordered
        key = "bid_index" if o["side"] == "bid" else "offer_index"
        assert sum(t["energy_wh"] for t in trades if t[key] == o["index"]) <= o["energy_wh"]
    assert clear(list(reversed(orders))) == (price, trades)  # order of input does not matter


@pytest.fixture()
def world() -> tuple[Log, list[Board]]:
    log = Log()
    boards = market(log)
    log.ok(order(P1, "offer", 3000, 10))
    return log, boards


def _cases(boards: list[Board]) -> list[tuple[str, bytes, str]]:
    extra = Board("en-extra")
    return [
        (
            "create needs market operator",
            P1.tx("engine", "create", {"id": "m2", "type": "energy", "params": PARAMS}, T0),
            "role-required: creating energy needs the role market_operator",
        ),  # fmt: skip
        (
            "missing grid price",
            MO.tx(
                "engine",
                "create",
                {"id": "m2", "type": "energy", "params": {"feed_in_price_minor_per_kwh": 1}},
                T0,
            ),
            "bad-params: imbalance_price_minor_per_kwh: required",
        ),  # fmt: skip
        (
            "gate closed",
            order(P3, "bid", 100, 20, t=S - 300),
            f"gate-closed: orders for {S} closed at {S - 300}",
        ),  # fmt: skip
        (
            "misaligned",
            order(P3, "bid", 100, 20, start=S + 1),
            "interval-misaligned: interval_start_s is not a multiple of 900",
        ),  # fmt: skip
        (
            "side conflict",
            order(P1, "bid", 100, 20),
            "order-side-conflict: the sender already has a offer in this interval",
        ),  # fmt: skip
        (
            "not prosumer",
            order(MO, "bid", 100, 20),
            "role-required: this action needs the role prosumer",
        ),  # fmt: skip
        ("zero energy", order(P3, "bid", 0, 20), "bad-args: energy_wh: must be >= 1"),  # fmt: skip
        (
            "negative price",
            order(P3, "bid", 10, -1),
            "bad-args: price_minor_per_kwh: must be >= 0",
        ),  # fmt: skip
        (
            "meter by prosumer",
            P1.tx(C, "register-meter", {"device": boards[0].id, "participant": P1.pk}, T0),
            "not-market-operator: only the market operator registers meters",
        ),  # fmt: skip
        (
            "meter exists",
            MO.tx(C, "register-meter", {"device": boards[0].id, "participant": MO.pk}, T0),
            "meter-exists: the device or the participant has a meter",
        ),  # fmt: skip
        (
            "meter unbound",
            MO.tx(C, "register-meter", {"device": extra.id, "participant": MO.pk}, T0),
            "device-not-bound: device: is not bound to this contract",
        ),  # fmt: skip
        (
            "grid prices by other",
            MO.tx(
                C,
                "set-grid-prices",
                {
                    "interval_start_s": S,
                    "imbalance_price_minor_per_kwh": 1,
                    "feed_in_price_minor_per_kwh": 1,
                },
                T0,
            ),
            "not-grid-operator: only the grid operator sets grid prices",
        ),  # fmt: skip
    ]


CASE_NAMES = [c[0] for c in _cases([Board("x")] * 4)]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_rule_rejections(world, case: str) -> None:
    log, boards = world
    _, entry, error = next(c for c in _cases(boards) if c[0] == case)
    assert log.reject(entry) == error


def test_no_meter_and_settled_interval() -> None:
    log = Log()
    boards = market(log, "en-b")
    stray = Party("en-stray")
    setup(log, {"stray": (stray, ["prosumer"])})
    assert log.reject(order(stray, "bid", 10, 10)) == "no-meter: the sender has no registered meter"
    log.ok(order(P1, "offer", 1000, 10))
    log.ok(order(P3, "bid", 1000, 10))
    log.ok(GRID_OP.tx(C, "set-grid-prices", {"interval_start_s": S, "imbalance_price_minor_per_kwh": 100, "feed_in_price_minor_per_kwh": 0}, T0 + 200))  # fmt: skip
    log.ok(MO.tx(C, "tick", {}, S + 1200))  # no meter data at all: both count as zero energy
    net = log.of_type("settled")[0]["data"]["net_minor"]
    assert net == {P1.pk: 10 - 100, P3.pk: -10, "grid": 100}
    assert log.reject(GRID_OP.tx(C, "set-grid-prices", {"interval_start_s": S, "imbalance_price_minor_per_kwh": 1, "feed_in_price_minor_per_kwh": 1}, S + 1200)) == f"interval-settled: interval {S} is settled"  # fmt: skip
    assert log.reject(order(P3, "bid", 10, 10, t=S + 1200)) == f"gate-closed: orders for {S} closed at {S - 300}"  # fmt: skip
    assert boards


# ---- stateful ---------------------------------------------------------------------------------


class EnergyMachine(Machine, RuleBasedStateMachine):
    """Random orders (on time and late), meter readings at and between boundaries, ticks."""

    @initialize()
    def start(self) -> None:
        self.log = Log()
        self.meters = market(self.log, "enm")
        self.parties = [P1, P2, P3, P4]
        self.registers = [[0, 0] for _ in self.parties]
        self.t = T0

    def next_open(self, ahead: int) -> int:
        return -(-(self.t + 301) // 900) * 900 + 900 * ahead

    @rule(p=st.integers(0, 3), side=st.sampled_from(["bid", "offer"]), energy=st.integers(1, 4000), price=st.integers(0, 40), ahead=st.integers(0, 2))  # fmt: skip
    def order(self, p: int, side: str, energy: int, price: int, ahead: int) -> None:
        start = self.next_open(ahead)
        _, err = self.step(order(self.parties[p], side, energy, price, t=self.t, start=start))
        assert err is None or err.startswith("order-side-conflict"), err

    @rule(p=st.integers(0, 3))
    def late_order(self, p: int) -> None:
        start = (self.t + 300) // 900 * 900
        _, err = self.step(order(self.parties[p], "bid", 100, 10, t=self.t, start=start))
        assert err == f"gate-closed: orders for {start} closed at {start - 300}"

    @rule(dt=st.integers(1, 900), use=st.lists(st.integers(0, 2000), min_size=8, max_size=8))
    def readings(self, dt: int, use: list[int]) -> None:
        self.t += dt
        for i, b in enumerate(self.meters):
            self.registers[i][0] += use[2 * i]
            self.registers[i][1] += use[2 * i + 1]
            self.step(meter(b, self.t, *self.registers[i]))

    @rule(use=st.lists(st.integers(0, 2000), min_size=8, max_size=8))
    def boundary(self, use: list[int]) -> None:
        self.t = (self.t // 900 + 1) * 900
        self.readings(0, use)

    @rule(dt=st.integers(0, 1200))
    def tick(self, dt: int) -> None:
        self.t += dt
        self.step(MO.tx(C, "tick", {}, self.t))

    @invariant()
    def settlement_sums_to_zero(self) -> None:
        if not hasattr(self, "log"):
            return
        assert sum(self.log.data(C)["positions"].values()) == 0
        for e in self.log.of_type("settled"):
            assert sum(e["data"]["net_minor"].values()) == 0
            net: dict[str, int] = {}
            for tr in e["data"]["transfers"]:  # the transfers alone reproduce the net positions
                assert tr["amount_minor"] >= 0
                net[tr["from"]] = net.get(tr["from"], 0) - tr["amount_minor"]
                net[tr["to"]] = net.get(tr["to"], 0) + tr["amount_minor"]
            assert net == e["data"]["net_minor"]


def test_energy_machine():
    run_machine(EnergyMachine)
