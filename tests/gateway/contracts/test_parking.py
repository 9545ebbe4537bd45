"""Parking contract: sessions from bay records, tariff, wallet debit, no double charge, anomalies."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway import wire
from gateway.contracts.parking import fee_minor, wallet_account

from .helpers import T0, Board, Log, Machine, Party, enroll_and_bind, run_machine, setup

C = "car-park-1"
OP, DRIVER, DRIVER2 = Party("pk-op"), Party("pk-driver"), Party("pk-driver2")
SALT = b"per-operator secret salt"  # provisioned on the bay boards; never on the log
PARAMS = {
    "bands": [[0, 100], [8 * 3600, 300], [18 * 3600, 100]],  # local time: night, day, evening
    "daily_cap_minor": 1500,
    "grace_s": 600,
    "utc_offset_s": 3600,
}
H = 3600


def commitment(plate: str) -> bytes:
    """Return the vehicle commitment SHA-256(salt || id)[0:16] a bay board computes."""
    return hashlib.sha256(SALT + plate.encode()).digest()[:16]


CAR1, CAR2, CAR3 = commitment("AB-123-C"), commitment("XY-987-Z"), commitment("KL-555-M")


def arrival(bay: Board, t: int, car: bytes | None) -> bytes:
    """Return a signed arrival event (code 6) carrying the vehicle commitment."""
    vals: list[tuple[int, int, int | bytes]] = [(21, 0, 6)]
    if car is not None:
        vals.append((11, 0, car))
    return bay.record(t, vals, kind=wire.EVENT)


def departure(bay: Board, t: int, car: bytes | None) -> bytes:
    """Return a signed departure event (code 7)."""
    vals: list[tuple[int, int, int | bytes]] = [(21, 0, 7)]
    if car is not None:
        vals.append((11, 0, car))
    return bay.record(t, vals, kind=wire.EVENT)


def scenario(log: Log) -> dict[str, Any]:
    """Build the flow of docs/usecases/parking.md; return the bays."""
    setup(log, {"op": (OP, ["parking_operator"]), "d1": (DRIVER, ["driver"]), "d2": (DRIVER2, ["driver"])})  # fmt: skip
    log.ok(OP.tx("engine", "create", {"id": C, "type": "parking", "params": PARAMS}, T0))
    bays = [Board("pk-bay1"), Board("pk-bay2")]
    enroll_and_bind(log, OP, C, bays, T0)
    log.ok(DRIVER.tx(C, "open-wallet", {"vehicle": CAR1.hex(), "limit_minor": 1000}, T0))
    log.ok(DRIVER.tx(C, "top-up", {"vehicle": CAR1.hex(), "amount_minor": 2000}, T0))
    log.ok(arrival(bays[0], T0 + 7 * H, CAR1))  # 08:00 local
    log.ok(departure(bays[0], T0 + 9 * H, CAR1))  # 2 h of day band: 600
    log.ok(arrival(bays[0], T0 + 10 * H, CAR2))
    log.ok(arrival(bays[0], T0 + 10 * H + 60, CAR3))  # anomaly: bay occupied
    log.ok(departure(bays[1], T0 + 10 * H + 120, CAR3))  # anomaly: no arrival
    log.ok(departure(bays[0], T0 + 12 * H, CAR2))  # unpaid: no wallet
    log.ok(DRIVER2.tx(C, "open-wallet", {"vehicle": CAR2.hex(), "limit_minor": 0}, T0 + 12 * H))
    log.ok(DRIVER2.tx(C, "top-up", {"vehicle": CAR2.hex(), "amount_minor": 700}, T0 + 12 * H))
    sid = log.of_type("unpaid")[0]["data"]["session"]
    log.ok(DRIVER2.tx(C, "pay-session", {"session": sid}, T0 + 12 * H))
    return {"bays": bays, "unpaid": sid}


def test_happy_path() -> None:
    log = Log()
    a = scenario(log)
    charged = log.of_type("charged")
    assert [c["data"]["fee_minor"] for c in charged] == [600, 600]
    assert charged[0]["data"]["vehicle"] == CAR1.hex()
    assert [e["data"]["reason"] for e in log.of_type("anomaly")] == [
        "arrival-in-occupied-bay",
        "departure-without-arrival",
    ]
    d = log.data(C)
    assert d["positions"][wallet_account(CAR1.hex())] == 1400
    assert d["positions"][wallet_account(CAR2.hex())] == 100
    assert d["positions"][OP.pk] == 1200 and sum(d["positions"].values()) == 0
    assert d["sessions"][a["unpaid"]]["status"] == "charged"
    # the plate never reaches the log: only its commitment does
    assert not any(b"AB-123-C" in e for e in log.entries)


@pytest.mark.parametrize(
    ("start", "end", "fee"),
    [
        (T0, T0 + 600, 0),  # within grace
        (T0, T0 + 601, 17),  # night rate 100/h: 601 s cost 16.69, rounded up
        (T0 + 7 * H, T0 + 9 * H, 600),  # 08:00-10:00 local, day band
        (T0 + 6 * H, T0 + 8 * H, 100 + 300),  # 07:00-09:00 local: one night hour, one day hour
        (T0, T0 + 3 * 86400, 3 * 1500 + 100),  # local 01:00 to 01:00: three capped days + 1 h
        (T0 + 16 * H, T0 + 18 * H, 300 + 100),  # 17:00-19:00 local: day then evening
    ],
)
def test_fee(start: int, end: int, fee: int) -> None:
    from gateway.contracts.parking import Parking

    params = Parking().validate_params(PARAMS, None)  # type: ignore[arg-type]
    assert fee_minor(start, end, params) == fee


@pytest.fixture()
def world() -> tuple[Log, dict[str, Any]]:
    log = Log()
    return log, scenario(log)


def _cases(a: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    t = T0 + 12 * H
    sid = a["unpaid"]
    return [
        (
            "create needs operator",
            DRIVER.tx("engine", "create", {"id": "p2", "type": "parking", "params": PARAMS}, T0),
            "role-required: creating parking needs the role parking_operator",
        ),  # fmt: skip
        (
            "bands start",
            OP.tx(
                "engine",
                "create",
                {"id": "p2", "type": "parking", "params": {**PARAMS, "bands": [[60, 1]]}},
                T0,
            ),
            "bad-params: bands: starts must begin at 0 and increase",
        ),  # fmt: skip
        (
            "bands order",
            OP.tx(
                "engine",
                "create",
                {"id": "p2", "type": "parking", "params": {**PARAMS, "bands": [[0, 1], [0, 2]]}},
                T0,
            ),
            "bad-params: bands: starts must begin at 0 and increase",
        ),  # fmt: skip
        (
            "wallet needs driver",
            OP.tx(C, "open-wallet", {"vehicle": CAR3.hex(), "limit_minor": 1}, t),
            "role-required: this action needs the role driver",
        ),  # fmt: skip
        (
            "wallet exists",
            DRIVER2.tx(C, "open-wallet", {"vehicle": CAR1.hex(), "limit_minor": 1}, t),
            "wallet-exists: this vehicle has a wallet",
        ),  # fmt: skip
        (
            "bad commitment",
            DRIVER.tx(C, "open-wallet", {"vehicle": "AB-123-C", "limit_minor": 1}, t),
            "bad-args: vehicle: must be 32 lowercase hex digits",
        ),  # fmt: skip
        (
            "top-up other's wallet",
            DRIVER2.tx(C, "top-up", {"vehicle": CAR1.hex(), "amount_minor": 5}, t),
            "not-wallet-owner: only the wallet's owner may do this",
        ),  # fmt: skip
        (
            "top-up no wallet",
            DRIVER.tx(C, "top-up", {"vehicle": CAR3.hex(), "amount_minor": 5}, t),
            "no-wallet: no wallet for this vehicle",
        ),  # fmt: skip
        (
            "top-up zero",
            DRIVER.tx(C, "top-up", {"vehicle": CAR1.hex(), "amount_minor": 0}, t),
            "bad-args: amount_minor: must be >= 1",
        ),  # fmt: skip
        (
            "double charge",
            DRIVER2.tx(C, "pay-session", {"session": sid}, t),
            f"session-already-charged: session '{sid}' is already charged",
        ),  # fmt: skip
        (
            "unknown session",
            DRIVER2.tx(C, "pay-session", {"session": "s0"}, t),
            "unknown-session: no session 's0'",
        ),  # fmt: skip
        (
            "set limit other",
            DRIVER.tx(C, "set-limit", {"vehicle": CAR2.hex(), "limit_minor": 5}, t),
            "not-wallet-owner: only the wallet's owner may do this",
        ),  # fmt: skip
    ]


CASE_NAMES = [c[0] for c in _cases({"unpaid": "s"})]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_rule_rejections(world, case: str) -> None:
    log, a = world
    _, entry, error = next(c for c in _cases(a) if c[0] == case)
    assert log.reject(entry) == error


def test_unpaid_reasons_and_late_payment(world) -> None:
    log, a = world
    bay = a["bays"][1]
    t = T0 + 13 * H
    log.ok(arrival(bay, t, CAR1))
    ev = log.ok(departure(bay, t + 5 * H, CAR1))  # 08:00+ local... fee 1300 > limit 1000
    assert ev[-1]["type"] == "unpaid" and ev[-1]["data"]["reason"] == "over-limit"
    sid = ev[-1]["data"]["session"]
    log.ok(DRIVER.tx(C, "set-limit", {"vehicle": CAR1.hex(), "limit_minor": 5000}, t + 5 * H))
    log.ok(arrival(bay, t + 6 * H, CAR1))
    ev = log.ok(departure(bay, t + 6 * H + 700, CAR1))
    assert ev[-1]["type"] == "charged"
    log.ok(arrival(bay, t + 7 * H, CAR1))
    ev = log.ok(departure(bay, t + 7 * H + 86400, CAR1))  # 24 h over two local days: 1800
    assert (
        ev[-1]["data"]["reason"] == "insufficient-balance" and ev[-1]["data"]["fee_minor"] == 1800
    )
    balance = log.data(C)["positions"][wallet_account(CAR1.hex())]
    assert log.reject(DRIVER.tx(C, "pay-session", {"session": ev[-1]["data"]["session"]}, t + 7 * H + 86400)) == f"insufficient-balance: balance {balance} is below the fee 1800"  # fmt: skip
    log.ok(DRIVER.tx(C, "pay-session", {"session": sid}, t + 7 * H + 86400))  # the owner pays above the auto limit  # fmt: skip
    free_sid = log.of_type("session-opened")[-1]["data"]["session"]
    log.ok(arrival(bay, t + 9 * H + 86400, CAR1))
    ev = log.ok(departure(bay, t + 9 * H + 86400 + 60, CAR1))
    assert ev[-1]["type"] == "session-closed" and ev[-1]["data"]["fee_minor"] == 0
    sid_free = ev[-1]["data"]["session"]
    assert log.reject(DRIVER.tx(C, "pay-session", {"session": sid_free}, t + 10 * H + 86400)) == f"session-not-payable: session '{sid_free}' is free"  # fmt: skip
    assert free_sid


def test_anomalies() -> None:
    log = Log()
    bays = scenario(log)["bays"]
    t = T0 + 20 * H
    ev = log.ok(arrival(bays[1], t, None))
    assert ev[0]["data"]["reason"] == "arrival-without-vehicle"
    log.ok(arrival(bays[1], t + 10, CAR3))
    ev = log.ok(departure(bays[1], t + 5, CAR1))
    assert [e["data"]["reason"] for e in ev if e["type"] == "anomaly"] == [
        "departure-vehicle-mismatch",
        "departure-before-arrival",
    ]


# ---- stateful ---------------------------------------------------------------------------------


class ParkingMachine(Machine, RuleBasedStateMachine):
    """Random arrivals, departures (right, wrong or missing), top-ups, limits and late payments."""

    @initialize()
    def start(self) -> None:
        self.log = Log()
        setup(self.log, {"op": (OP, ["parking_operator"]), "d1": (DRIVER, ["driver"]), "d2": (DRIVER2, ["driver"])})  # fmt: skip
        self.log.ok(OP.tx("engine", "create", {"id": C, "type": "parking", "params": PARAMS}, T0))
        self.bays = [Board("pkm-1"), Board("pkm-2")]
        enroll_and_bind(self.log, OP, C, self.bays, T0)
        self.log.ok(DRIVER.tx(C, "open-wallet", {"vehicle": CAR1.hex(), "limit_minor": 5000}, T0))
        self.log.ok(DRIVER2.tx(C, "open-wallet", {"vehicle": CAR2.hex(), "limit_minor": 1000}, T0))
        self.cars = [CAR1, CAR2, CAR3]
        self.t = T0

    @rule(b=st.integers(0, 1), c=st.integers(0, 2), dt=st.sampled_from([0, 300, 3600, 20000]))
    def arrive(self, b: int, c: int, dt: int) -> None:
        self.t += dt
        _, err = self.step(arrival(self.bays[b], self.t, self.cars[c]))
        assert err is None

    @rule(b=st.integers(0, 1), c=st.sampled_from([-1, -1, -1, 0, 1, 2]), dt=st.sampled_from([60, 700, 3600, 20000, 90000]))  # fmt: skip
    def depart(self, b: int, c: int, dt: int) -> None:
        """Depart from bay b: mostly the parked car (c = -1), sometimes another one."""
        self.t += dt
        d = self.log.data(C)
        sid = d["bays"].get(self.bays[b].id)
        car = bytes.fromhex(d["sessions"][sid]["vehicle"]) if sid and c < 0 else self.cars[c]
        _, err = self.step(departure(self.bays[b], self.t, car))
        assert err is None

    @rule(who=st.integers(0, 1), amount=st.integers(1, 6000))
    def top_up(self, who: int, amount: int) -> None:
        p, car = (DRIVER, CAR1) if who == 0 else (DRIVER2, CAR2)
        _, err = self.step(p.tx(C, "top-up", {"vehicle": car.hex(), "amount_minor": amount}, self.t))  # fmt: skip
        assert err is None

    @rule(k=st.integers(0, 99), who=st.integers(0, 1))
    def pay(self, k: int, who: int) -> None:
        sessions = sorted(self.log.data(C)["sessions"])
        if not sessions:
            return
        sid = sessions[k % len(sessions)]
        before = self.log.data(C)["sessions"][sid]["status"]
        _, err = self.step((DRIVER, DRIVER2)[who].tx(C, "pay-session", {"session": sid}, self.t))
        if before == "charged":
            assert err == f"session-already-charged: session '{sid}' is already charged"

    @invariant()
    def money_and_no_double_charge(self) -> None:
        if not hasattr(self, "log"):
            return
        d = self.log.data(C)
        assert sum(d["positions"].values()) == 0
        for car in self.cars:
            assert d["positions"].get(wallet_account(car.hex()), 0) >= 0
        charged = [e["data"]["session"] for e in self.log.of_type("charged")]
        assert len(charged) == len(set(charged))
        for sid in charged:
            assert d["sessions"][sid]["status"] == "charged"
        assert d["positions"].get(OP.pk, 0) == sum(e["data"]["fee_minor"] for e in self.log.of_type("charged"))  # fmt: skip
        open_bays = [s["bay"] for s in d["sessions"].values() if s["status"] == "open"]
        assert len(open_bays) == len(set(open_bays))


def test_parking_machine():
    run_machine(ParkingMachine)
