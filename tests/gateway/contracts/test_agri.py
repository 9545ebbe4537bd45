"""Agricultural tracing contract: lots, handovers, split/merge, breach propagation, recall, queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.contracts.agri import consumer_view, descendants, trace_tree
from gateway.errors import ContractError

from .helpers import T0, Board, Log, Machine, Party, enroll_and_bind, run_machine, setup

C = "agri-1"
GROWER, CARRIER, RETAILER, CERT = (Party(n) for n in ("ag-grower", "ag-carrier", "ag-retailer", "ag-cert"))  # fmt: skip


def lot_args(lot: str, qty: int, **extra: Any) -> dict[str, Any]:
    """Return register-lot args for lot with quantity qty."""
    return {"lot": lot, "product": "apples", "code": "04012345", "quantity": qty, "origin": "NL-Betuwe", **extra}  # fmt: skip


def scenario(log: Log) -> dict[str, Any]:
    """Build the happy path of docs/usecases/agri_tracing.md in log; return its actors."""
    setup(
        log,
        {
            "grower": (GROWER, ["grower"]),
            "carrier": (CARRIER, ["carrier"]),
            "retailer": (RETAILER, ["retailer"]),
            "certifier": (CERT, ["certifier"]),
        },
    )
    g, c, r = GROWER, CARRIER, RETAILER
    log.ok(g.tx("engine", "create", {"id": C, "type": "agri", "params": {"certifiers": [CERT.pk]}}, T0))  # fmt: skip
    logger, spare = Board("ag-logger"), Board("ag-spare")
    enroll_and_bind(log, g, C, [logger, spare], T0)
    for lot, qty in (("L1", 100), ("L2", 50), ("L3", 10)):
        log.ok(g.tx(C, "register-lot", lot_args(lot, qty), T0))
    log.ok(g.tx(C, "attach-device", {"lot": "L1", "device": logger.id}, T0))
    log.ok(logger.record(T0 + 60, [(1, 0, 500)]))
    log.ok(g.tx(C, "handover", {"lot": "L1", "to": c.pk}, T0 + 100, cosigners=(c,)))
    log.ok(g.tx(C, "handover", {"lot": "L2", "to": c.pk}, T0 + 100, cosigners=(c,)))
    log.ok(c.tx(C, "split", {"lot": "L1", "into": [{"lot": "L1a", "quantity": 60}, {"lot": "L1b", "quantity": 40}]}, T0 + 200))  # fmt: skip
    log.ok(c.tx(C, "attach-device", {"lot": "L1a", "device": logger.id}, T0 + 300))
    log.ok(logger.record(T0 + 600, [(1, 0, 900)]))
    log.ok(logger.record(T0 + 1200, [(1, 0, 950)]))
    log.ok(logger.record(T0 + 2401, [(1, 0, 1000)]))
    log.ok(c.tx(C, "split", {"lot": "L1a", "into": [{"lot": "L1a1", "quantity": 30}, {"lot": "L1a2", "quantity": 30}]}, T0 + 2500))  # fmt: skip
    log.ok(c.tx(C, "merge", {"lots": ["L1b", "L1a2"], "into": "M1"}, T0 + 2600))
    log.ok(c.tx(C, "handover", {"lot": "L2", "to": r.pk}, T0 + 2700, cosigners=(r,)))
    log.ok(r.tx(C, "sell", {"lot": "L2"}, T0 + 2800))
    log.ok(CERT.tx(C, "recall", {"lot": "L3", "reason": "pesticide residue"}, T0 + 2900))
    return {"logger": logger, "spare": spare}


@pytest.fixture()
def world() -> tuple[Log, dict[str, Any]]:
    log = Log()
    return log, scenario(log)


def test_happy_path_breach_propagates_to_derived_lots(world) -> None:
    log, _ = world
    lots = log.data(C)["lots"]
    breach = log.of_type("breach")
    assert len(breach) == 1
    b = breach[0]
    assert b["data"]["lot"] == "L1a" and b["data"]["end_s"] - b["data"]["start_s"] == 1801
    assert b["causes"] == lots["L1a"]["breach"]["causes"]  # first and last out-of-window reading
    for lot in ("L1a", "L1a1", "L1a2", "M1"):
        assert lots[lot]["breach"] is not None, lot
    for lot in ("L1", "L1b", "L2", "L3"):
        assert lots[lot]["breach"] is None, lot
    assert lots["M1"]["quantity"] == 70 and lots["M1"]["parents"] == ["L1a2", "L1b"]
    assert lots["L2"]["status"] == "sold" and lots["L3"]["recall"] is not None
    assert lots["L1a"]["custodian"] == CARRIER.pk and lots["L2"]["custodian"] == RETAILER.pk


def test_breach_needs_longer_than_limit(world) -> None:
    log, a = world
    logger = a["logger"]
    assert logger.id not in log.data(C)["attached"]  # the split of L1a detached it
    log.ok(GROWER.tx(C, "register-lot", lot_args("L4", 5), T0 + 3000))
    log.ok(GROWER.tx(C, "attach-device", {"lot": "L4", "device": logger.id}, T0 + 3000))
    log.ok(logger.record(T0 + 3100, [(1, 0, -100)]))  # below the window
    log.ok(logger.record(T0 + 4900, [(1, 0, -100)]))  # exactly 1800 s: not longer than the limit
    assert log.data(C)["lots"]["L4"]["breach"] is None
    log.ok(logger.record(T0 + 5000, [(1, 0, 500)]))  # back in window: the excursion ends
    log.ok(logger.record(T0 + 6000, [(1, 0, 900)]))
    log.ok(logger.record(T0 + 7700, [(1, 0, 900)]))
    assert log.data(C)["lots"]["L4"]["breach"] is None
    log.ok(logger.record(T0 + 7801, [(1, 0, 900)]))
    assert log.data(C)["lots"]["L4"]["breach"]["start_s"] == T0 + 6000


def test_recall_marks_every_derived_lot(world) -> None:
    log, _ = world
    ev = log.ok(CERT.tx(C, "recall", {"lot": "L1", "reason": "contamination"}, T0 + 3000))
    assert ev[0]["data"]["lots"] == ["L1", "L1a", "L1a1", "L1a2", "L1b", "M1"]
    lots = log.data(C)["lots"]
    assert lots["L2"]["recall"] is None
    assert descendants(log.data(C), "L1") == ["L1a", "L1a1", "L1a2", "L1b", "M1"]


def test_trace_tree_and_consumer_view(world) -> None:
    log, _ = world
    tree = trace_tree(log.data(C), "L1a1")
    assert tree["lot"] == "L1a1" and tree["breached"]
    assert [n["lot"] for n in tree["from"]] == ["L1a"]
    assert [n["lot"] for n in tree["from"][0]["from"]] == ["L1"]
    assert tree["into"] == []
    fwd = trace_tree(log.data(C), "L1")
    assert [n["lot"] for n in fwd["into"]] == ["L1a", "L1b"]
    assert [n["lot"] for n in fwd["into"][1]["into"]] == ["M1"]
    assert all(isinstance(i, int) for i in tree["evidence"]) and tree["evidence"]
    view = consumer_view(log.data(C), "04012345")
    assert {v["lot"] for v in view} == set(log.data(C)["lots"])
    assert next(v for v in view if v["lot"] == "M1")["sources"] == ["L1", "L1a", "L1a2", "L1b"]
    with pytest.raises(ContractError, match="unknown-lot: no lot 'X'"):
        trace_tree(log.data(C), "X")


Case = tuple[str, Callable[[dict[str, Any]], bytes], str]
T = T0 + 3000


def _cases() -> list[Case]:
    t = T
    return [
        (
            "register needs grower",
            lambda a: CARRIER.tx(C, "register-lot", lot_args("N", 1), t),
            "role-required: this action needs the role grower",
        ),  # fmt: skip
        (
            "lot exists",
            lambda a: GROWER.tx(C, "register-lot", lot_args("L1", 1), t),
            "lot-exists: lot 'L1' already exists",
        ),  # fmt: skip
        (
            "bad window",
            lambda a: GROWER.tx(
                C, "register-lot", lot_args("N", 1, temp_min_centi_c=900, temp_max_centi_c=100), t
            ),
            "bad-args: temp_min_centi_c: must be <= temp_max_centi_c",
        ),  # fmt: skip
        (
            "zero quantity",
            lambda a: GROWER.tx(C, "register-lot", lot_args("N", 0), t),
            "bad-args: quantity: must be >= 1",
        ),  # fmt: skip
        (
            "string quantity",
            lambda a: GROWER.tx(C, "register-lot", lot_args("N", "1"), t),
            "bad-args: quantity: must be an integer",
        ),  # fmt: skip
        (
            "handover one signature",
            lambda a: CARRIER.tx(C, "handover", {"lot": "L1a1", "to": RETAILER.pk}, t),
            "handover-needs-both-signatures: a handover is signed by the giver and the taker",
        ),  # fmt: skip
        (
            "handover wrong cosigner",
            lambda a: CARRIER.tx(
                C, "handover", {"lot": "L1a1", "to": RETAILER.pk}, t, cosigners=(GROWER,)
            ),
            "handover-needs-both-signatures: a handover is signed by the giver and the taker",
        ),  # fmt: skip
        (
            "handover by non-custodian",
            lambda a: GROWER.tx(
                C, "handover", {"lot": "L1a1", "to": RETAILER.pk}, t, cosigners=(RETAILER,)
            ),
            "not-custodian: only the custodian of lot 'L1a1' may do this",
        ),  # fmt: skip
        (
            "handover to self",
            lambda a: CARRIER.tx(C, "handover", {"lot": "L1a1", "to": CARRIER.pk}, t),
            "handover-to-self: the taker must differ from the giver",
        ),  # fmt: skip
        (
            "handover consumed lot",
            lambda a: CARRIER.tx(
                C, "handover", {"lot": "L1a", "to": RETAILER.pk}, t, cosigners=(RETAILER,)
            ),
            "lot-inactive: lot 'L1a' is consumed",
        ),  # fmt: skip
        (
            "handover recalled lot",
            lambda a: GROWER.tx(
                C, "handover", {"lot": "L3", "to": RETAILER.pk}, t, cosigners=(RETAILER,)
            ),
            "lot-recalled: lot 'L3' is recalled",
        ),  # fmt: skip
        (
            "handover unknown lot",
            lambda a: CARRIER.tx(
                C, "handover", {"lot": "nope", "to": RETAILER.pk}, t, cosigners=(RETAILER,)
            ),
            "unknown-lot: no lot 'nope'",
        ),  # fmt: skip
        (
            "attach unbound device",
            lambda a: CARRIER.tx(C, "attach-device", {"lot": "M1", "device": "ab" * 16}, t),
            "device-not-bound: device: is not bound to this contract",
        ),  # fmt: skip
        (
            "attach attached device",
            lambda a: CARRIER.tx(C, "attach-device", {"lot": "M1", "device": a["spare"].id}, t),
            "device-attached: device is attached to lot 'L1a1'",
        ),  # fmt: skip
        (
            "detach unattached",
            lambda a: CARRIER.tx(C, "detach-device", {"device": a["logger"].id}, t),
            "device-not-attached: device: is not attached to a lot",
        ),  # fmt: skip
        (
            "split sum mismatch",
            lambda a: CARRIER.tx(
                C,
                "split",
                {"lot": "M1", "into": [{"lot": "x", "quantity": 10}, {"lot": "y", "quantity": 20}]},
                t,
            ),
            "split-quantity-mismatch: parts sum to 30, the lot holds 70",
        ),  # fmt: skip
        (
            "split one part",
            lambda a: CARRIER.tx(
                C, "split", {"lot": "M1", "into": [{"lot": "x", "quantity": 70}]}, t
            ),
            "bad-args: into: must be a list of 2..32 items",
        ),  # fmt: skip
        (
            "split duplicate ids",
            lambda a: CARRIER.tx(
                C,
                "split",
                {"lot": "M1", "into": [{"lot": "x", "quantity": 35}, {"lot": "x", "quantity": 35}]},
                t,
            ),
            "bad-args: into: lot ids must be distinct",
        ),  # fmt: skip
        (
            "split into existing",
            lambda a: CARRIER.tx(
                C,
                "split",
                {
                    "lot": "M1",
                    "into": [{"lot": "L2", "quantity": 35}, {"lot": "x", "quantity": 35}],
                },
                t,
            ),
            "lot-exists: lot 'L2' already exists",
        ),  # fmt: skip
        (
            "merge other custodian",
            lambda a: CARRIER.tx(C, "merge", {"lots": ["M1", "L3"], "into": "Z"}, t),
            "not-custodian: only the custodian of lot 'L3' may do this",
        ),  # fmt: skip
        (
            "merge window mismatch",
            lambda a: GROWER.tx(C, "merge", {"lots": ["W1", "W2"], "into": "Z"}, t),
            "merge-window-mismatch: merged lots must share one temperature rule",
        ),  # fmt: skip
        (
            "merge one lot",
            lambda a: CARRIER.tx(C, "merge", {"lots": ["M1"], "into": "Z"}, t),
            "bad-args: lots: must be a list of 2..32 items",
        ),  # fmt: skip
        (
            "sell needs retailer",
            lambda a: CARRIER.tx(C, "sell", {"lot": "M1"}, t),
            "role-required: this action needs the role retailer",
        ),  # fmt: skip
        (
            "sell breached",
            lambda a: RETAILER.tx(C, "sell", {"lot": "B1"}, t),
            "lot-breached: lot 'B1' is breached",
        ),  # fmt: skip
        (
            "sell sold",
            lambda a: RETAILER.tx(C, "sell", {"lot": "L2"}, t),
            "lot-inactive: lot 'L2' is sold",
        ),  # fmt: skip
        (
            "recall by non-certifier",
            lambda a: GROWER.tx(C, "recall", {"lot": "L1", "reason": "x"}, t),
            "not-certifier: only a certifier of this contract may recall",
        ),  # fmt: skip
        (
            "recall twice",
            lambda a: CERT.tx(C, "recall", {"lot": "L3", "reason": "x"}, t),
            "lot-recalled: lot 'L3' is recalled",
        ),  # fmt: skip
        (
            "unknown arg",
            lambda a: CERT.tx(C, "recall", {"lot": "L3", "reason": "x", "why": 1}, t),
            "bad-args: why: unexpected argument",
        ),  # fmt: skip
    ]


@pytest.mark.parametrize("case", [c[0] for c in _cases()])
def test_rule_rejections(world, case: str) -> None:
    log, actors = world
    # extra lots some cases need: two with different windows, one breached at the retailer
    log.ok(GROWER.tx(C, "register-lot", lot_args("W1", 1), T))
    log.ok(GROWER.tx(C, "register-lot", lot_args("W2", 1, temp_max_centi_c=500), T))
    log.ok(CARRIER.tx(C, "attach-device", {"lot": "L1a1", "device": actors["spare"].id}, T))
    name, build, error = next(c for c in _cases() if c[0] == case)
    if name == "sell breached":
        log.ok(CARRIER.tx(C, "split", {"lot": "L1a1", "into": [{"lot": "B1", "quantity": 10}, {"lot": "B2", "quantity": 20}]}, T))  # fmt: skip
        log.ok(CARRIER.tx(C, "handover", {"lot": "B1", "to": RETAILER.pk}, T, cosigners=(RETAILER,)))  # fmt: skip
    assert log.reject(build(actors)) == error


BAD_LOT_IDS = ["a/b", "L 1", "", "x" * 65, "lot%2F1", "L\n1", "lös", 7]


@pytest.mark.parametrize("bad", BAD_LOT_IDS)
def test_lot_ids_outside_the_charset_are_refused_where_lots_are_created(world, bad: Any) -> None:
    """A lot id is a URL path segment (GET .../lots/{lot_id}/trace): "/" and friends would make
    the trace unreachable, so register, split and merge refuse them; nothing changes."""
    log, _ = world
    error = "bad-lot-id: {}: a lot id is 1..64 of the characters A-Z a-z 0-9 . _ : -"
    assert log.reject(GROWER.tx(C, "register-lot", lot_args(bad, 5), T)) == error.format("lot")
    log.ok(GROWER.tx(C, "register-lot", lot_args("S1", 2), T))
    log.ok(GROWER.tx(C, "register-lot", lot_args("S2", 2), T))
    split = {"lot": "S1", "into": [{"lot": "S1.a", "quantity": 1}, {"lot": bad, "quantity": 1}]}
    assert log.reject(GROWER.tx(C, "split", split, T)) == error.format("lot")
    merge = {"lots": ["S1", "S2"], "into": bad}
    assert log.reject(GROWER.tx(C, "merge", merge, T)) == error.format("into")


def test_lot_id_charset_is_the_route_pattern() -> None:
    from gateway.contracts.agri import LOT_ID_PATTERN, AgriTracing

    trace = next(v for v in AgriTracing.VIEWS if v.path == "lots/{lot_id}/trace")
    assert dict(trace.patterns) == {"lot_id": LOT_ID_PATTERN}
    assert LOT_ID_PATTERN == r"^[A-Za-z0-9._:-]{1,64}$"


# ---- stateful ---------------------------------------------------------------------------------


class AgriMachine(Machine, RuleBasedStateMachine):
    """Random lots, custody moves, transformations, readings and recalls; invariants hold."""

    @initialize()
    def start(self) -> None:
        self.log = Log()
        self.a, self.b, self.cert = Party("am-a"), Party("am-b"), Party("am-cert")
        setup(self.log, {"a": (self.a, ["grower", "retailer"]), "b": (self.b, ["carrier", "retailer"]), "c": (self.cert, ["certifier"])})  # fmt: skip
        self.log.ok(self.a.tx("engine", "create", {"id": C, "type": "agri", "params": {"certifiers": [self.cert.pk], "default_max_excursion_s": 300}}, T0))  # fmt: skip
        self.boards = [Board("am-1"), Board("am-2")]
        enroll_and_bind(self.log, self.a, C, self.boards, T0)
        self.t = T0
        self.n = 0
        self.roots_qty = 0
        self.breached: set[str] = set()
        self.recalled: set[str] = set()

    def lots(self) -> dict[str, Any]:
        return self.log.data(C)["lots"]

    def pick(self, k: int) -> str | None:
        """Return a lot: mostly an active one, every fifth pick any lot (to hit inactive ones)."""
        lots = self.lots()
        active = sorted(n for n, lot in lots.items() if lot["status"] == "active")
        names = active if active and k % 5 else sorted(lots)
        return names[k % len(names)] if names else None

    def holder(self, lot: str | None) -> Party:
        if lot is None:
            return self.a
        return self.a if self.lots()[lot]["custodian"] == self.a.pk else self.b

    @rule(qty=st.integers(1, 100), narrow=st.booleans())
    def register(self, qty: int, narrow: bool) -> None:
        self.n += 1
        extra = {"temp_max_centi_c": 500} if narrow else {}
        _, err = self.step(self.a.tx(C, "register-lot", lot_args(f"r{self.n}", qty, **extra), self.t))  # fmt: skip
        assert err is None
        self.roots_qty += qty

    @rule(k=st.integers(0, 99), cosign=st.booleans(), wrong_sender=st.booleans())
    def handover(self, k: int, cosign: bool, wrong_sender: bool) -> None:
        lot = self.pick(k)
        if lot is None:
            return
        giver = self.holder(lot)
        taker = self.b if giver is self.a else self.a
        sender = taker if wrong_sender else giver
        other = giver if wrong_sender else taker
        _, err = self.step(sender.tx(C, "handover", {"lot": lot, "to": other.pk}, self.t, cosigners=(other,) if cosign else ()))  # fmt: skip
        if wrong_sender:
            assert err is not None and err.startswith("not-custodian")
        elif not cosign:
            assert err == "handover-needs-both-signatures: a handover is signed by the giver and the taker"  # fmt: skip
        if err is None:
            assert self.lots()[lot]["custodian"] == taker.pk

    @rule(k=st.integers(0, 99), parts=st.integers(2, 4), off=st.sampled_from([0, 0, 0, 1]))
    def split(self, k: int, parts: int, off: int) -> None:
        lot = self.pick(k)
        if lot is None:
            return
        qty = self.lots()[lot]["quantity"]
        each = [qty // parts] * (parts - 1)
        each.append(qty - sum(each) + off)
        self.n += 1
        into = [{"lot": f"s{self.n}.{i}", "quantity": q} for i, q in enumerate(each)]
        _, err = self.step(self.holder(lot).tx(C, "split", {"lot": lot, "into": into}, self.t))
        if off and err is None:
            raise AssertionError("a split that does not conserve quantity was accepted")

    @rule(k1=st.integers(0, 99), k2=st.integers(0, 99))
    def merge(self, k1: int, k2: int) -> None:
        l1, l2 = self.pick(k1), self.pick(k2)
        if l1 is None or l1 == l2:
            return
        self.n += 1
        self.step(self.holder(l1).tx(C, "merge", {"lots": [l1, l2], "into": f"m{self.n}"}, self.t))

    @rule(d=st.integers(0, 1), k=st.integers(0, 99), attach=st.booleans())
    def attach(self, d: int, k: int, attach: bool) -> None:
        board = self.boards[d]
        lot = self.pick(k)
        if attach and lot is not None:
            self.step(self.holder(lot).tx(C, "attach-device", {"lot": lot, "device": board.id}, self.t))  # fmt: skip
        elif not attach:
            attached = self.log.data(C)["attached"].get(board.id)
            self.step(self.holder(attached).tx(C, "detach-device", {"device": board.id}, self.t))

    @rule(d=st.integers(0, 1), temp=st.sampled_from([-200, 300, 700, 900]), dt=st.integers(0, 400))
    def reading(self, d: int, temp: int, dt: int) -> None:
        self.t += dt
        self.step(self.boards[d].record(self.t, [(1, 0, temp)]))

    @rule(d=st.integers(0, 1), k=st.integers(0, 99), n=st.integers(2, 4))
    def excursion(self, d: int, k: int, n: int) -> None:
        """Attach board d to an active lot and send n out-of-window readings 200 s apart."""
        lot = self.pick(k)
        board = self.boards[d]
        if lot is None or self.lots()[lot]["status"] != "active":
            return
        if board.id not in self.log.data(C)["attached"]:
            self.step(self.holder(lot).tx(C, "attach-device", {"lot": lot, "device": board.id}, self.t))  # fmt: skip
        for _ in range(n):
            self.t += 200
            self.step(board.record(self.t, [(1, 0, 950)]))

    @rule(k=st.integers(0, 99), by_cert=st.booleans())
    def recall(self, k: int, by_cert: bool) -> None:
        lot = self.pick(k)
        if lot is None:
            return
        sender = self.cert if by_cert else self.a
        _, err = self.step(sender.tx(C, "recall", {"lot": lot, "reason": "test"}, self.t))
        if not by_cert:
            assert err == "not-certifier: only a certifier of this contract may recall"

    @rule(k=st.integers(0, 99))
    def sell(self, k: int) -> None:
        lot = self.pick(k)
        if lot is not None:
            _, err = self.step(self.holder(lot).tx(C, "sell", {"lot": lot}, self.t))
            if err is None:
                assert self.lots()[lot]["breach"] is None and self.lots()[lot]["recall"] is None

    @invariant()
    def breach_and_recall_are_permanent_and_inherited(self) -> None:
        if not hasattr(self, "log"):
            return
        lots = self.lots()
        data = self.log.data(C)
        for lot in self.breached:
            assert lots[lot]["breach"] is not None
        for lot in self.recalled:
            assert lots[lot]["recall"] is not None
        for lot_id, lot in lots.items():
            if lot["breach"] is not None:
                self.breached.add(lot_id)
                for d in descendants(data, lot_id):
                    assert lots[d]["breach"] is not None
            if lot["recall"] is not None:
                self.recalled.add(lot_id)
                for d in descendants(data, lot_id):
                    assert lots[d]["recall"] is not None

    @invariant()
    def quantity_is_conserved(self) -> None:
        if not hasattr(self, "log"):
            return
        leaves = sum(l["quantity"] for l in self.lots().values() if l["status"] != "consumed")  # noqa: E741
        assert leaves == self.roots_qty


def test_agri_machine():
    run_machine(AgriMachine)
