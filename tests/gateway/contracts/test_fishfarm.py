"""Fish-farm finance contract: risk score, tranches under covenants, parametric claims, repayment."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.contracts.fishfarm import score_bp

from .helpers import T0, Board, Log, Machine, Party, enroll_and_bind, run_machine, setup

C = "pond-1"
LENDER, FARMER, INSURER, BUYER = (Party(n) for n in ("ff-lender", "ff-farmer", "ff-insurer", "ff-buyer"))  # fmt: skip
PARAMS = {
    "farmer": FARMER.pk,
    "tranches_minor": [100000, 50000],
    "min_history_s": 3600,
    "max_gap_s": 1800,
    "covenant_max_excursion_s": 3600,
    "min_score_bp": 5000,
}
POLICY = {
    "policy": "P1",
    "premium_minor": 5000,
    "payout_minor": 80000,
    "do_min_centi_mg_l": 300,
    "temp_max_centi_c": 3500,
    "max_duration_s": 1800,
    "window_s": 86400,
    "end_s": T0 + 10 * 86400,
}


def sample(board: Board, t: int, do: int = 700, temp: int = 2500, ph: int = 7500) -> bytes:
    """Return a signed water-quality reading."""
    return board.record(t, [(3, 0, do), (1, 0, temp), (4, 0, ph)])


def scenario(log: Log) -> dict[str, Any]:
    """Build the happy path of docs/usecases/fish_farm_finance.md; return the board."""
    setup(log, {"lender": (LENDER, ["lender"]), "farmer": (FARMER, ["farmer"]), "insurer": (INSURER, ["insurer"]), "buyer": (BUYER, ["buyer"])})  # fmt: skip
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "fishfarm", "params": PARAMS}, T0))
    board = Board("ff-pond")
    enroll_and_bind(log, LENDER, C, [board], T0)
    log.ok(INSURER.tx(C, "bind-policy", POLICY, T0, cosigners=(FARMER,)))
    log.ok(FARMER.tx(C, "apply", {}, T0))
    for t in range(T0, T0 + 7201, 600):
        log.ok(sample(board, t))
    log.ok(LENDER.tx(C, "disburse", {}, T0 + 7200))
    for t in range(T0 + 7800, T0 + 11401, 600):  # oxygen crash: 3600 s below 3.00 mg/L
        log.ok(sample(board, t, do=250))
    log.ok(sample(board, T0 + 11500, do=250))  # 3700 s: the covenant breaks
    log.ok(sample(board, T0 + 12000))
    log.ok(LENDER.tx(C, "resume", {}, T0 + 12000))
    log.ok(LENDER.tx(C, "disburse", {}, T0 + 12000))
    log.ok(LENDER.tx(C, "tick", {}, T0 + 13801))  # 1801 s of silence: a data gap
    log.ok(BUYER.tx(C, "sale", {"amount_minor": 200000}, T0 + 13900))
    return {"board": board}


@pytest.fixture()
def world() -> tuple[Log, dict[str, Any]]:
    log = Log()
    return log, scenario(log)


def test_happy_path(world) -> None:
    log, _ = world
    d = log.data(C)
    types = [e["type"] for e in log.events if e["contract"] == C]
    assert types.count("tranche-disbursed") == 2
    claims = log.of_type("claim-paid")
    assert len(claims) == 1 and claims[0]["data"]["at_s"] == T0 + 10200
    assert claims[0]["data"]["transfer"] == {"from": INSURER.pk, "to": FARMER.pk, "amount_minor": 80000}  # fmt: skip
    reasons = [e["data"]["reason"] for e in log.of_type("covenant-breach")]
    assert reasons == ["long-excursion", "data-gap"]
    assert d["loan"]["status"] == "repaid" and d["loan"]["paused"]
    assert sum(d["positions"].values()) == 0
    assert d["positions"] == {
        LENDER.pk: 0,
        FARMER.pk: -5000 + 80000 + 200000 - 0,
        INSURER.pk: 5000 - 80000,
        BUYER.pk: -200000,
    }
    st_ = d["stats"]
    assert st_["safe_s"] == 7800 and st_["unsafe_s"] == 4200 and st_["excursions"] == 1


def test_score() -> None:
    stats = {"first_s": 0, "safe_s": 900, "excursions": 2}
    assert score_bp(stats, 1000, 200) == 9000 - 400
    assert score_bp(stats, 2000, 200) == 4500 - 400  # silence after the last sample lowers it
    assert score_bp({"first_s": None}, 5, 0) == 0
    assert score_bp({"first_s": 0, "safe_s": 0, "excursions": 99}, 10, 200) == 0


def test_gap_does_not_hide_an_excursion() -> None:
    log = Log()
    setup(log, {"lender": (LENDER, ["lender"]), "farmer": (FARMER, ["farmer"])})
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "fishfarm", "params": PARAMS}, T0))
    board = Board("ff-gap")
    enroll_and_bind(log, LENDER, C, [board], T0)
    log.ok(sample(board, T0, do=100))  # excursion starts, then the board falls silent
    ev = log.ok(sample(board, T0 + 5000, do=700))
    assert [e["type"] for e in ev] == ["data-gap", "covenant-breach", "covenant-breach"]
    # the excursion went on through the silence: it is longer than the covenant allows
    assert [e["data"]["reason"] for e in ev[1:]] == ["data-gap", "long-excursion"]
    ev = log.ok(sample(board, T0 + 5100, do=100))
    d = log.data(C)["stats"]
    assert d["gap_s"] == 5000 and d["safe_s"] == 0 + 100 and d["excursions"] == 2
    # a long silence during an excursion breaks the covenant on the clock alone
    ev = log.ok(LENDER.tx(C, "tick", {}, T0 + 5100 + 3601))
    assert [e["data"]["reason"] for e in ev if e["type"] == "covenant-breach"] == ["data-gap", "long-excursion"]  # fmt: skip


def test_claim_once_per_window_and_gap_breaks_run(world) -> None:
    log, a = world
    b = a["board"]
    t = T0 + 14000
    for k in range(6):
        log.ok(sample(b, t + 600 * k, do=200))  # a second run in the same day window
    assert len(log.of_type("claim-paid")) == 1
    t2 = T0 + 86400 + 100  # next window; a gap in the middle restarts the run
    log.ok(sample(b, t2, do=200))
    log.ok(sample(b, t2 + 1000, do=200))
    log.ok(sample(b, t2 + 3000, do=200))  # 2000 s gap: the run restarts here
    log.ok(sample(b, t2 + 4000, do=200))
    assert len(log.of_type("claim-paid")) == 1
    log.ok(sample(b, t2 + 4801, do=200))
    assert len(log.of_type("claim-paid")) == 2


def test_rejections_before_history() -> None:
    log = Log()
    setup(log, {"lender": (LENDER, ["lender"]), "farmer": (FARMER, ["farmer"]), "insurer": (INSURER, ["insurer"]), "buyer": (BUYER, ["buyer"])})  # fmt: skip
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "fishfarm", "params": PARAMS}, T0))
    board = Board("ff-early")
    enroll_and_bind(log, LENDER, C, [board], T0)
    table = [
        (
            FARMER.tx("engine", "create", {"id": "p2", "type": "fishfarm", "params": PARAMS}, T0),
            "role-required: creating fishfarm needs the role lender",
        ),  # fmt: skip
        (
            LENDER.tx(
                "engine",
                "create",
                {"id": "p2", "type": "fishfarm", "params": {**PARAMS, "tranches_minor": []}},
                T0,
            ),
            "bad-params: tranches_minor: must be a list of 1..12 items",
        ),  # fmt: skip
        (
            LENDER.tx(
                "engine",
                "create",
                {
                    "id": "p2",
                    "type": "fishfarm",
                    "params": {**PARAMS, "farmer": Party("nobody").pk},
                },
                T0,
            ),
            "unknown-participant: farmer: is not a registered participant",
        ),  # fmt: skip
        (
            LENDER.tx(
                "engine",
                "create",
                {
                    "id": "p2",
                    "type": "fishfarm",
                    "params": {**PARAMS, "ph_min_milli": 9000, "ph_max_milli": 8000},
                },
                T0,
            ),
            "bad-params: ph_min_milli: must be <= ph_max_milli",
        ),  # fmt: skip
        (LENDER.tx(C, "disburse", {}, T0), "no-loan-application: the farmer has not applied"),
        (LENDER.tx(C, "apply", {}, T0), "not-farmer: only the pond's farmer applies"),
        (
            FARMER.tx(C, "repay", {"amount_minor": 1}, T0),
            "no-active-loan: there is no active loan",
        ),  # fmt: skip
        (LENDER.tx(C, "resume", {}, T0), "not-paused: tranches are not paused"),
        (
            INSURER.tx(C, "bind-policy", POLICY, T0),
            "policy-needs-farmer-signature: the farmer cosigns the policy and its premium",
        ),  # fmt: skip
        (
            LENDER.tx(C, "bind-policy", POLICY, T0, cosigners=(FARMER,)),
            "role-required: this action needs the role insurer",
        ),  # fmt: skip
        (
            INSURER.tx(C, "bind-policy", {**POLICY, "window_s": 1}, T0, cosigners=(FARMER,)),
            "bad-args: window_s: must be >= 60",
        ),  # fmt: skip
        (
            FARMER.tx(C, "sale", {"amount_minor": 5}, T0),
            "role-required: this action needs the role buyer",
        ),  # fmt: skip
    ]
    for entry, error in table:
        assert log.reject(entry) == error
    log.ok(FARMER.tx(C, "apply", {}, T0))
    log.ok(sample(board, T0 + 10))
    table = [
        (FARMER.tx(C, "apply", {}, T0 + 10), "loan-exists: a loan was already applied for"),
        (FARMER.tx(C, "disburse", {}, T0 + 10), "not-lender: only the lender disburses"),
        (
            LENDER.tx(C, "disburse", {}, T0 + 10),
            "insufficient-history: less than 3600 s of history",
        ),  # fmt: skip
        (
            LENDER.tx(C, "disburse", {}, T0 + 3610),
            "tranches-paused: a covenant breach paused the tranches",
        ),  # fmt: skip
    ]
    for entry, error in table:
        assert log.reject(entry) == error
    # the silence paused the tranches; resumed while the data is still stale, disburse refuses
    ev = log.ok(LENDER.tx(C, "resume", {}, T0 + 3610))
    assert [e["type"] for e in ev] == ["data-gap", "covenant-breach", "tranches-resumed"]
    assert log.reject(LENDER.tx(C, "disburse", {}, T0 + 3610)) == (
        "data-stale: no sample within max_gap_s"
    )
    for t in range(T0 + 3700, T0 + 7301, 600):
        log.ok(sample(board, t, do=100 if t < T0 + 6000 else 700))
    expected = 1200 * 10000 // (7300 - 10) - 200  # safe time / observed time - one excursion
    assert log.reject(LENDER.tx(C, "disburse", {}, T0 + 7300)) == (
        f"covenant-score-low: score {expected} bp is below 5000 bp"
    )


def test_rejections_after_disbursement(world) -> None:
    log, _ = world
    table = [
        (LENDER.tx(C, "disburse", {}, T0 + 13900), "loan-repaid: the loan is repaid"),
        (
            FARMER.tx(C, "repay", {"amount_minor": 1}, T0 + 13900),
            "no-active-loan: there is no active loan",
        ),  # fmt: skip
        (
            INSURER.tx(C, "bind-policy", POLICY, T0 + 13900, cosigners=(FARMER,)),
            "policy-exists: policy 'P1' already exists",
        ),  # fmt: skip
        (FARMER.tx(C, "resume", {}, T0 + 13900), "not-lender: only the lender resumes tranches"),
    ]
    for entry, error in table:
        assert log.reject(entry) == error


def test_repay_exceeds_outstanding() -> None:
    log = Log()
    scenario_params = {**PARAMS, "min_history_s": 0}
    setup(log, {"lender": (LENDER, ["lender"]), "farmer": (FARMER, ["farmer"])})
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "fishfarm", "params": scenario_params}, T0))  # fmt: skip
    board = Board("ff-repay")
    enroll_and_bind(log, LENDER, C, [board], T0)
    log.ok(FARMER.tx(C, "apply", {}, T0))
    log.ok(sample(board, T0))
    log.ok(sample(board, T0 + 60))
    log.ok(LENDER.tx(C, "disburse", {}, T0 + 60))
    assert log.reject(FARMER.tx(C, "repay", {"amount_minor": 100001}, T0 + 60)) == (
        "repay-exceeds-outstanding: 100001 exceeds the outstanding 100000"
    )
    assert log.reject(FARMER.tx(C, "repay", {"amount_minor": 0}, T0 + 60)) == (
        "bad-args: amount_minor: must be >= 1"
    )
    log.ok(FARMER.tx(C, "repay", {"amount_minor": 100000}, T0 + 60))
    assert log.data(C)["loan"]["status"] == "active"  # a tranche is still to come


# ---- stateful ---------------------------------------------------------------------------------


class FishFarmMachine(Machine, RuleBasedStateMachine):
    """Random samples, gaps, ticks, disbursements, repayments, sales and policies."""

    @initialize()
    def start(self) -> None:
        self.log = Log()
        setup(self.log, {"lender": (LENDER, ["lender"]), "farmer": (FARMER, ["farmer"]), "insurer": (INSURER, ["insurer"]), "buyer": (BUYER, ["buyer"])})  # fmt: skip
        params = {**PARAMS, "min_history_s": 600, "tranches_minor": [30000, 20000, 10000]}
        self.log.ok(LENDER.tx("engine", "create", {"id": C, "type": "fishfarm", "params": params}, T0))  # fmt: skip
        self.board = Board("ffm")
        enroll_and_bind(self.log, LENDER, C, [self.board], T0)
        self.log.ok(FARMER.tx(C, "apply", {}, T0))
        for t in range(T0, T0 + 1201, 600):
            self.log.ok(sample(self.board, t))
        self.t = T0 + 1200
        self.policies = 0
        self.claims_per_run: dict[int, int] = {}

    @rule(do=st.sampled_from([100, 250, 700, 700, 900]), dt=st.sampled_from([60, 600, 600, 2500]))
    def sample(self, do: int, dt: int) -> None:
        self.t += dt
        self.step(sample(self.board, self.t, do=do))

    @rule(dt=st.integers(0, 4000))
    def tick(self, dt: int) -> None:
        self.t += dt
        self.step(LENDER.tx(C, "tick", {}, self.t))

    @rule()
    def disburse(self) -> None:
        _, err = self.step(LENDER.tx(C, "disburse", {}, self.t))
        if err is None:
            d = self.log.data(C)
            assert not d["loan"]["paused"]
            assert score_bp(d["stats"], self.t, 200) >= 5000

    @rule()
    def resume(self) -> None:
        self.step(LENDER.tx(C, "resume", {}, self.t))

    @rule(amount=st.integers(1, 40000))
    def repay(self, amount: int) -> None:
        self.step(FARMER.tx(C, "repay", {"amount_minor": amount}, self.t))

    @rule(amount=st.integers(1, 40000))
    def sale(self, amount: int) -> None:
        self.step(BUYER.tx(C, "sale", {"amount_minor": amount}, self.t))

    @rule(window=st.sampled_from([3600, 86400]))
    def policy(self, window: int) -> None:
        self.policies += 1
        args = {**POLICY, "policy": f"P{self.policies}", "window_s": window, "end_s": self.t + 10**6}  # fmt: skip
        self.step(INSURER.tx(C, "bind-policy", args, self.t, cosigners=(FARMER,)))

    @invariant()
    def money_conserved_and_loan_consistent(self) -> None:
        if not hasattr(self, "log"):
            return
        d = self.log.data(C)
        assert sum(d["positions"].values()) == 0
        loan = d["loan"]
        assert 0 <= loan["repaid_minor"] <= loan["disbursed_minor"] <= 60000
        assert loan["disbursed_minor"] == sum([30000, 20000, 10000][: loan["next_tranche"]])

    @invariant()
    def one_claim_per_policy_window(self) -> None:
        if not hasattr(self, "log"):
            return
        seen = set()
        for e in self.log.of_type("claim-paid"):
            key = (e["data"]["policy"], e["data"]["window"])
            assert key not in seen
            seen.add(key)


def test_fishfarm_machine():
    run_machine(FishFarmMachine)


def test_tranches_exhausted() -> None:
    log = Log()
    setup(log, {"lender": (LENDER, ["lender"]), "farmer": (FARMER, ["farmer"])})
    params = {**PARAMS, "min_history_s": 0, "tranches_minor": [10]}
    log.ok(LENDER.tx("engine", "create", {"id": C, "type": "fishfarm", "params": params}, T0))
    board = Board("ff-exhaust")
    enroll_and_bind(log, LENDER, C, [board], T0)
    log.ok(FARMER.tx(C, "apply", {}, T0))
    log.ok(sample(board, T0))
    log.ok(sample(board, T0 + 60))
    log.ok(LENDER.tx(C, "disburse", {}, T0 + 60))
    assert log.reject(LENDER.tx(C, "disburse", {}, T0 + 60)) == (
        "tranches-exhausted: every tranche is disbursed"
    )
