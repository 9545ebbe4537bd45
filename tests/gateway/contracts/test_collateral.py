"""Chattel mortgage contract: geofence, quantity, tamper and heartbeat alarms, freeze, lien release."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway import wire
from gateway.contracts.collateral import inside_polygon

from .helpers import T0, Board, Log, Machine, Party, enroll_and_bind, run_machine, setup

C = "lien-1"
LENDER, BORROWER, OTHER = Party("cm-lender"), Party("cm-borrower"), Party("cm-other")
FENCE = [[520000000, 40000000], [520000000, 41000000], [521000000, 41000000], [521000000, 40000000]]
PARAMS = {
    "borrower": BORROWER.pk,
    "geofence": FENCE,
    "min_weight_milli_kg": 1000000,
    "heartbeat_max_gap_s": 3600,
    "credit_limit_minor": 500000,
}
INSIDE, OUTSIDE = (520500000, 40500000), (522000000, 40500000)


def position(board: Board, t: int, where: tuple[int, int]) -> bytes:
    """Return a signed position reading."""
    return board.record(t, [(8, 0, where[0]), (9, 0, where[1])])


def weight(board: Board, t: int, milli_kg: int) -> bytes:
    """Return a signed weight reading."""
    return board.record(t, [(12, 0, milli_kg)])


def tamper_event(board: Board, t: int) -> bytes:
    """Return a signed tamper event record (event code 3)."""
    return board.record(t, [(21, 0, 3)], kind=wire.EVENT)


def scenario(log: Log) -> dict[str, Any]:
    """Build the flow of docs/usecases/chattel_mortgage.md; return the boards."""
    setup(log, {"lender": (LENDER, ["lender"]), "borrower": (BORROWER, ["borrower"]), "other": (OTHER, ["custodian"])})  # fmt: skip
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "collateral", "params": PARAMS}, T0))
    gps, scale = Board("cm-gps"), Board("cm-scale")
    enroll_and_bind(log, LENDER, C, [gps, scale], T0)
    log.ok(BORROWER.tx(C, "drawdown", {"amount_minor": 200000}, T0 + 10))
    log.ok(position(gps, T0 + 600, INSIDE))
    log.ok(weight(scale, T0 + 600, 1500000))
    log.ok(position(gps, T0 + 1200, OUTSIDE))  # geofence alarm, drawdown frozen
    log.ok(LENDER.tx(C, "unfreeze", {}, T0 + 1300))
    log.ok(weight(scale, T0 + 1400, 900000))  # quantity alarm
    log.ok(LENDER.tx(C, "unfreeze", {}, T0 + 1500))
    log.ok(tamper_event(scale, T0 + 1600))  # tamper alarm
    log.ok(LENDER.tx(C, "tick", {}, T0 + 1600 + 3601))  # both boards silent: heartbeat gaps
    log.ok(BORROWER.tx(C, "repay", {"amount_minor": 200000}, T0 + 5300))
    log.ok(LENDER.tx(C, "release-lien", {}, T0 + 5300))
    return {"gps": gps, "scale": scale}


def test_happy_path() -> None:
    log = Log()
    scenario(log)
    alarms = [(e["data"]["reason"], e["causes"]) for e in log.of_type("alarm")]
    assert [a[0] for a in alarms] == ["geofence", "quantity", "tamper", "heartbeat-gap", "heartbeat-gap"]  # fmt: skip
    # the heartbeat gaps came while drawdown was still frozen by the tamper alarm
    assert [e["data"]["reason"] for e in log.of_type("drawdown-frozen")] == ["geofence", "quantity", "tamper"]  # fmt: skip
    d = log.data(C)
    assert d["lien"] == "released" and not d["frozen"]
    assert sum(d["positions"].values()) == 0 and d["positions"][LENDER.pk] == 0


def test_inside_polygon() -> None:
    assert inside_polygon(*INSIDE, FENCE) and not inside_polygon(*OUTSIDE, FENCE)
    assert inside_polygon(520000000, 40500000, FENCE)  # on an edge counts as inside
    assert inside_polygon(521000000, 41000000, FENCE)  # a vertex
    tri = [[0, 0], [0, 100], [100, 0]]
    assert inside_polygon(10, 10, tri) and inside_polygon(50, 50, tri)
    assert not inside_polygon(60, 60, tri) and not inside_polygon(-1, 5, tri)
    concave = [[0, 0], [0, 10], [5, 5], [10, 10], [10, 0]]  # lat, lon
    assert inside_polygon(5, 3, concave) and not inside_polygon(5, 8, concave)


def test_heartbeat_gap_seen_on_late_record() -> None:
    log = Log()
    setup(log, {"lender": (LENDER, ["lender"]), "borrower": (BORROWER, ["borrower"])})
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "collateral", "params": PARAMS}, T0))
    gps = Board("cm-late")
    enroll_and_bind(log, LENDER, C, [gps], T0)
    ev = log.ok(position(gps, T0 + 3600, INSIDE))
    assert ev == []  # exactly the limit: no gap
    ev = log.ok(position(gps, T0 + 3600 + 3601, INSIDE))
    assert [e["type"] for e in ev] == ["alarm", "drawdown-frozen"]
    assert ev[0]["data"]["silent_since_s"] == T0 + 3600


@pytest.fixture()
def world() -> Log:
    log = Log()
    setup(log, {"lender": (LENDER, ["lender"]), "borrower": (BORROWER, ["borrower"]), "other": (OTHER, ["custodian"])})  # fmt: skip
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "collateral", "params": PARAMS}, T0))
    enroll_and_bind(log, LENDER, C, [Board("cm-w")], T0)
    log.ok(BORROWER.tx(C, "drawdown", {"amount_minor": 100000}, T0))
    return log


CASES = [
    (
        "create needs lender",
        lambda: OTHER.tx(
            "engine", "create", {"id": "x", "type": "collateral", "params": PARAMS}, T0
        ),
        "role-required: creating collateral needs the role lender",
    ),  # fmt: skip
    (
        "fence too small",
        lambda: LENDER.tx(
            "engine",
            "create",
            {"id": "x", "type": "collateral", "params": {**PARAMS, "geofence": FENCE[:2]}},
            T0,
        ),
        "bad-params: geofence: must be a list of 3..64 items",
    ),  # fmt: skip
    (
        "fence point",
        lambda: LENDER.tx(
            "engine",
            "create",
            {
                "id": "x",
                "type": "collateral",
                "params": {**PARAMS, "geofence": [[0, 0], [0, 1], [1]]},
            },
            T0,
        ),
        "bad-params: geofence[2]: must be [lat, lon] in 1e-7 deg",
    ),  # fmt: skip
    (
        "borrower is lender",
        lambda: LENDER.tx(
            "engine",
            "create",
            {"id": "x", "type": "collateral", "params": {**PARAMS, "borrower": LENDER.pk}},
            T0,
        ),
        "bad-params: borrower: must differ from the lender",
    ),  # fmt: skip
    (
        "drawdown by other",
        lambda: OTHER.tx(C, "drawdown", {"amount_minor": 1}, T0),
        "not-borrower: only the borrower draws down",
    ),  # fmt: skip
    (
        "over credit limit",
        lambda: BORROWER.tx(C, "drawdown", {"amount_minor": 400001}, T0),
        "credit-limit-exceeded: 100000 + 400001 exceeds the limit 500000",
    ),  # fmt: skip
    (
        "repay too much",
        lambda: BORROWER.tx(C, "repay", {"amount_minor": 100001}, T0),
        "repay-exceeds-outstanding: 100001 exceeds the outstanding 100000",
    ),  # fmt: skip
    (
        "repay by lender",
        lambda: LENDER.tx(C, "repay", {"amount_minor": 1}, T0),
        "not-borrower: only the borrower repays",
    ),  # fmt: skip
    (
        "release by borrower",
        lambda: BORROWER.tx(C, "release-lien", {}, T0),
        "release-not-lender: only the lender releases the lien",
    ),  # fmt: skip
    (
        "release by other",
        lambda: OTHER.tx(C, "release-lien", {}, T0),
        "release-not-lender: only the lender releases the lien",
    ),  # fmt: skip
    (
        "release with balance",
        lambda: LENDER.tx(C, "release-lien", {}, T0),
        "outstanding-balance: 100000 is still outstanding",
    ),  # fmt: skip
    (
        "unfreeze not frozen",
        lambda: LENDER.tx(C, "unfreeze", {}, T0),
        "not-frozen: drawdown is not frozen",
    ),  # fmt: skip
    (
        "unfreeze by borrower",
        lambda: BORROWER.tx(C, "unfreeze", {}, T0),
        "not-lender: only the lender unfreezes drawdown",
    ),  # fmt: skip
    (
        "unbind under lien",
        lambda: LENDER.tx(
            "engine", "unbind-device", {"contract": C, "device": Board("cm-w").id}, T0
        ),
        "lien-active: devices stay bound while the lien is active",
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_rule_rejections(world: Log, case: str) -> None:
    _, build, error = next(c for c in CASES if c[0] == case)
    assert world.reject(build()) == error


def test_frozen_and_released_rejections(world: Log) -> None:
    log = world
    board = Board("cm-w2")
    enroll_and_bind(log, LENDER, C, [board], T0)
    log.ok(tamper_event(board, T0 + 5))
    assert log.reject(BORROWER.tx(C, "drawdown", {"amount_minor": 1}, T0 + 5)) == (
        "drawdown-frozen: an alarm froze further drawdown"
    )
    log.ok(BORROWER.tx(C, "repay", {"amount_minor": 100000}, T0 + 5))  # repaying is never frozen
    log.ok(LENDER.tx(C, "release-lien", {}, T0 + 5))
    assert log.reject(LENDER.tx(C, "release-lien", {}, T0 + 5)) == "lien-released: the lien is released"  # fmt: skip
    assert log.reject(BORROWER.tx(C, "drawdown", {"amount_minor": 1}, T0 + 5)) == (
        "lien-released: the lien is released"
    )
    assert log.add(tamper_event(board, T0 + 6)) == []  # a released lien raises no alarms
    log.ok(LENDER.tx("engine", "unbind-device", {"contract": C, "device": board.id}, T0 + 6))


# ---- stateful ---------------------------------------------------------------------------------


class CollateralMachine(Machine, RuleBasedStateMachine):
    """Random positions, weights, tamper events, silences, drawdowns, repayments and releases."""

    @initialize()
    def start(self) -> None:
        self.log = Log()
        setup(self.log, {"lender": (LENDER, ["lender"]), "borrower": (BORROWER, ["borrower"]), "other": (OTHER, ["custodian"])})  # fmt: skip
        self.log.ok(LENDER.tx("engine", "create", {"id": C, "type": "collateral", "params": PARAMS}, T0))  # fmt: skip
        self.boards = [Board("cmm-1"), Board("cmm-2")]
        enroll_and_bind(self.log, LENDER, C, self.boards, T0)
        self.t = T0
        self.released = False

    def data(self) -> dict[str, Any]:
        return self.log.data(C)

    @rule(d=st.integers(0, 1), dt=st.sampled_from([10, 600, 3000, 4000]), inside=st.sampled_from([True, True, True, False]), heavy=st.sampled_from([True, True, True, False]), tamper=st.sampled_from([False, False, False, True]))  # fmt: skip
    def report(self, d: int, dt: int, inside: bool, heavy: bool, tamper: bool) -> None:
        self.t += dt
        frozen = self.data()["frozen"]
        vals = [(8, 0, (INSIDE if inside else OUTSIDE)[0]), (9, 0, (INSIDE if inside else OUTSIDE)[1]), (12, 0, 1500000 if heavy else 10), (13, 0, int(tamper))]  # fmt: skip
        events, err = self.step(self.boards[d].record(self.t, vals))
        assert err is None
        if not self.released and (not inside or not heavy or tamper):
            assert self.data()["frozen"] and any(e["type"] == "alarm" for e in events)
        if self.released:
            assert events == [] and self.data()["frozen"] == frozen

    @rule(dt=st.integers(0, 5000))
    def tick(self, dt: int) -> None:
        self.t += dt
        self.step(LENDER.tx(C, "tick", {}, self.t))

    @rule(amount=st.integers(1, 300000))
    def drawdown(self, amount: int) -> None:
        frozen = self.data()["frozen"]
        _, err = self.step(BORROWER.tx(C, "drawdown", {"amount_minor": amount}, self.t))
        if frozen:
            assert err is not None

    @rule(amount=st.integers(1, 300000))
    def repay(self, amount: int) -> None:
        self.step(BORROWER.tx(C, "repay", {"amount_minor": amount}, self.t))

    @rule()
    def repay_all(self) -> None:
        d = self.data()
        out = d["drawn_minor"] - d["repaid_minor"]
        if out:
            self.step(BORROWER.tx(C, "repay", {"amount_minor": out}, self.t))

    @rule()
    def unfreeze(self) -> None:
        self.step(LENDER.tx(C, "unfreeze", {}, self.t))

    @rule(who=st.sampled_from(["lender", "borrower", "other"]))
    def release(self, who: str) -> None:
        sender = {"lender": LENDER, "borrower": BORROWER, "other": OTHER}[who]
        _, err = self.step(sender.tx(C, "release-lien", {}, self.t))
        if who != "lender":
            assert err == "release-not-lender: only the lender releases the lien"
        elif err is None:
            self.released = True

    @invariant()
    def lien_and_money(self) -> None:
        if not hasattr(self, "log"):
            return
        d = self.data()
        assert sum(d["positions"].values()) == 0
        assert 0 <= d["drawn_minor"] - d["repaid_minor"] <= PARAMS["credit_limit_minor"]
        assert (d["lien"] == "released") == self.released
        for e in self.log.of_type("lien-released"):
            assert e["data"]["lender"] == LENDER.pk


def test_collateral_machine():
    run_machine(CollateralMachine)


def test_chain_segment_is_no_presence_and_no_reading() -> None:
    """A board that lost records restarts its chain with a chain_segment: the contracts never
    see it, so the silence before it is still a heartbeat gap (docs/wire-format.md)."""
    log = Log()
    setup(log, {"lender": (LENDER, ["lender"]), "borrower": (BORROWER, ["borrower"])})
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "collateral", "params": PARAMS}, T0))
    gps = Board("cm-segment")
    enroll_and_bind(log, LENDER, C, [gps], T0)
    assert log.ok(position(gps, T0 + 600, INSIDE)) == []
    segment = gps.record(T0 + 3000, [(26, 0, 1)], kind=wire.CHAIN_SEGMENT)
    assert log.ok(segment) == []
    ev = log.ok(position(gps, T0 + 600 + 3601, INSIDE))
    assert [e["type"] for e in ev] == ["alarm", "drawdown-frozen"]
    assert ev[0]["data"]["silent_since_s"] == T0 + 600
