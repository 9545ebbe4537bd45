"""Financial services for fish farming (ISO/IEC TR 30176 6.2): risk score, tranches, insurance.

docs/usecases/fish_farm_finance.md describes the use case; the rules, as implemented here:

- the lender creates the contract for one pond and one farmer; the pond's boards are bound to it;
- every TIME_SYNCED reading with dissolved oxygen, temperature or pH is a water-quality sample;
  the time between samples counts as safe or unsafe by the earlier sample, or as a data gap when
  longer than max_gap_s (a gap counts against the score, and an excursion under way when the
  data stopped goes on through the gap: absence cannot hide it);
- the risk score (basis points) = safe time / observed time up to the contract clock, minus a
  penalty per excursion;
- tranches are disbursed by the lender only while the covenants hold (enough history, fresh data,
  score at least min_score_bp, not paused); an excursion longer than covenant_max_excursion_s or a
  data gap pauses further tranches until the lender resumes them;
- an insurer binds a parametric policy (cosigned by the farmer, who pays the premium); a run of
  samples with dissolved oxygen below, or temperature above, the policy's threshold for longer
  than max_duration_s pays the payout once per run and at most once per event window; a data gap
  ends a run (a claim needs continuous evidence);
- harvest sale proceeds repay the loan first; money positions always sum to zero.
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
    get_opt_int,
    get_str,
    require_registered,
    transfer,
)
from gateway.errors import ContractError
from gateway.wire import Ch, Record

BP = 10000  # basis points in one
MAX_MONEY_MINOR = 10**15
MAX_TRANCHES = 12


def score_bp(stats: dict[str, Any], clock_s: int, penalty_bp: int) -> int:
    """Return the risk score in basis points at clock_s (0 without history).

    safe time / (clock_s - first sample time) - penalty_bp per excursion, clamped to [0, 10000].
    Time after the last sample is not safe time, so silence lowers the score.
    """
    if stats["first_s"] is None:
        return 0
    span = clock_s - stats["first_s"]
    if span <= 0:
        return 0
    score = stats["safe_s"] * BP // span - penalty_bp * stats["excursions"]
    return max(0, min(BP, score))


class FishFarmFinance(Contract):
    """The fish-farm finance contract (type "fishfarm")."""

    TYPE = "fishfarm"
    CREATOR_ROLE = "lender"
    VIEWS = (View("pond", "risk, loan, policies", "view_pond"),)

    def view_pond(self, _cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        """Return the pond's statistics, risk score now, loan, policies and positions."""
        data, params = inst["data"], inst["params"]
        score = score_bp(data["stats"], inst["clock_s"], params.get("excursion_penalty_bp", 0))
        return {
            "stats": data["stats"],
            "score_bp": score,
            "loan": data["loan"],
            "policies": data["policies"],
            "positions": data["positions"],
            "clock_s": inst["clock_s"],
        }

    ACTIONS = {
        "apply": "_apply",
        "disburse": "_disburse",
        "resume": "_resume",
        "repay": "_repay",
        "sale": "_sale",
        "bind-policy": "_bind_policy",
    }

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        """Return the parameters: farmer, the safe band, gap and covenant limits, tranches."""
        check_keys(
            params,
            ("farmer", "tranches_minor"),
            (
                "do_min_centi_mg_l",
                "temp_max_centi_c",
                "ph_min_milli",
                "ph_max_milli",
                "max_gap_s",
                "min_history_s",
                "min_score_bp",
                "excursion_penalty_bp",
                "covenant_max_excursion_s",
            ),
            code="bad-params",
        )
        farmer = get_key(params, "farmer", code="bad-params")
        require_registered(ctx, farmer, "farmer")
        tranches = get_list(params, "tranches_minor", 1, MAX_TRANCHES, code="bad-params")
        for i, amount in enumerate(tranches):
            get_int({f"tranches_minor[{i}]": amount}, f"tranches_minor[{i}]", 1, MAX_MONEY_MINOR, "bad-params")  # fmt: skip
        out = {
            "farmer": farmer,
            "tranches_minor": list(tranches),
            # why 5.00 mg/L: below it most farmed fish are stressed; 2-3 mg/L kills
            "do_min_centi_mg_l": get_opt_int(params, "do_min_centi_mg_l", 500, 0, 10000),
            # why 32 degC: upper tolerance of tilapia/carp ponds; cold-water species set lower
            "temp_max_centi_c": get_opt_int(params, "temp_max_centi_c", 3200, -27315, 200000),
            # why 6.5..9.0: the usual safe pH band for pond aquaculture
            "ph_min_milli": get_opt_int(params, "ph_min_milli", 6500, 0, 14000),
            "ph_max_milli": get_opt_int(params, "ph_max_milli", 9000, 0, 14000),
            # why 1 h: boards sample every few minutes; an hour of silence is no longer jitter
            "max_gap_s": get_opt_int(params, "max_gap_s", 3600, 1, 30 * 86400),
            # why 1 day: a score over less than a diurnal DO cycle says little
            "min_history_s": get_opt_int(params, "min_history_s", 86400, 0, 365 * 86400),
            # why 80 %: a pond out of band a fifth of the time is a credit risk
            "min_score_bp": get_opt_int(params, "min_score_bp", 8000, 0, BP),
            "excursion_penalty_bp": get_opt_int(params, "excursion_penalty_bp", 200, 0, BP),
            # why 6 h: a night-long oxygen crash is the classic pond loss
            "covenant_max_excursion_s": get_opt_int(
                params, "covenant_max_excursion_s", 6 * 3600, 0, 30 * 86400
            ),
        }
        if out["ph_min_milli"] > out["ph_max_milli"]:
            raise ContractError("bad-params", "ph_min_milli: must be <= ph_max_milli")
        return out

    def init(self, params: Params, ctx: Ctx) -> Data:
        """Return empty history, no loan, no policies, zero positions."""
        return {
            "stats": {
                "first_s": None,
                "last_s": None,
                "last_index": None,
                "last_safe": True,
                "safe_s": 0,
                "unsafe_s": 0,
                "gap_s": 0,
                "samples": 0,
                "excursions": 0,
                "longest_excursion_s": 0,
                "excursion": None,  # {"start_s", "start_index", "flagged"} while out of band
                "gap_flagged": False,
            },
            "loan": {
                "status": "none",
                "next_tranche": 0,
                "disbursed_minor": 0,
                "repaid_minor": 0,
                "paused": False,
                "pause_causes": [],
            },
            "policies": {},
            "positions": {},
        }

    # ---- time and samples -----------------------------------------------------------------

    @staticmethod
    def _pause(data: Data, causes: list[int], reason: str) -> Event:
        loan = data["loan"]
        loan["paused"] = True
        loan["pause_causes"] = sorted(set(causes))
        return ev("covenant-breach", causes, reason=reason)

    def advance(self, data: Data, params: Params, ctx: Ctx) -> list[Event]:
        """Return data-gap and long-excursion events seen from the clock alone."""
        st = data["stats"]
        events: list[Event] = []
        if st["last_s"] is None:
            return events
        if ctx.clock_s - st["last_s"] > params["max_gap_s"] and not st["gap_flagged"]:
            st["gap_flagged"] = True
            causes = [st["last_index"], ctx.index]
            events.append(ev("data-gap", causes, since_s=st["last_s"], at_s=ctx.clock_s))
            events.append(self._pause(data, causes, "data-gap"))
        exc = st["excursion"]
        if (
            exc is not None
            and not exc["flagged"]
            and ctx.clock_s - exc["start_s"] > params["covenant_max_excursion_s"]
        ):
            exc["flagged"] = True
            events.append(self._pause(data, [exc["start_index"], ctx.index], "long-excursion"))
        return events

    def on_record(self, data: Data, params: Params, ctx: Ctx, record: Record) -> list[Event]:
        """Return the events of one water-quality sample (gaps, covenant breaches, claims)."""
        do = record.value(Ch.DISSOLVED_OXYGEN, 0)
        temp = record.value(Ch.TEMPERATURE, 0)
        ph = record.value(Ch.PH, 0)
        if not any(isinstance(v, int) for v in (do, temp, ph)):
            return []
        st = data["stats"]
        t = record.time_s
        if st["last_s"] is not None and t < st["last_s"]:
            return []  # older than the newest sample: the history is already past it
        safe = (
            (not isinstance(do, int) or do >= params["do_min_centi_mg_l"])
            and (not isinstance(temp, int) or temp <= params["temp_max_centi_c"])
            and (not isinstance(ph, int) or params["ph_min_milli"] <= ph <= params["ph_max_milli"])
        )
        events: list[Event] = []
        gap = False
        if st["last_s"] is None:
            st["first_s"] = t
        else:
            dt = t - st["last_s"]
            if dt > params["max_gap_s"]:
                gap = True
                st["gap_s"] += dt
                if not st["gap_flagged"]:
                    causes = [st["last_index"], ctx.index]
                    events.append(ev("data-gap", causes, since_s=st["last_s"], at_s=t))
                    events.append(self._pause(data, causes, "data-gap"))
            elif st["last_safe"]:
                st["safe_s"] += dt
            else:
                st["unsafe_s"] += dt
        st["last_s"], st["last_index"], st["last_safe"] = t, ctx.index, safe
        st["samples"] += 1
        st["gap_flagged"] = False
        exc = st["excursion"]
        if safe:
            st["excursion"] = None
        else:
            if exc is None:
                exc = st["excursion"] = {"start_s": t, "start_index": ctx.index, "flagged": False}
                st["excursions"] += 1
            length = t - exc["start_s"]
            st["longest_excursion_s"] = max(st["longest_excursion_s"], length)
            if not exc["flagged"] and length > params["covenant_max_excursion_s"]:
                exc["flagged"] = True
                events.append(self._pause(data, [exc["start_index"], ctx.index], "long-excursion"))
        for pid in sorted(data["policies"]):
            events += self._policy_sample(data, params, ctx, pid, do, temp, gap, t)
        return events

    def _policy_sample(
        self,
        data: Data,
        params: Params,
        ctx: Ctx,
        pid: str,
        do: Any,
        temp: Any,
        gap: bool,
        t: int,
    ) -> list[Event]:
        pol = data["policies"][pid]
        trig = (isinstance(do, int) and do < pol["do_min_centi_mg_l"]) or (
            isinstance(temp, int) and temp > pol["temp_max_centi_c"]
        )
        if not trig or not pol["start_s"] <= t < pol["end_s"]:
            pol["run"] = None
            return []
        run = pol["run"]
        if run is None or gap:
            run = pol["run"] = {"start_s": t, "start_index": ctx.index, "paid": False}
        if run["paid"] or t - run["start_s"] <= pol["max_duration_s"]:
            return []
        window = t // pol["window_s"]
        if window in pol["claimed_windows"]:
            return []
        run["paid"] = True
        pol["claimed_windows"].append(window)
        tr = transfer(data["positions"], pol["insurer"], params["farmer"], pol["payout_minor"])
        return [
            ev(
                "claim-paid",
                [run["start_index"], ctx.index],
                policy=pid,
                start_s=run["start_s"],
                at_s=t,
                window=window,
                transfer=tr,
            )
        ]

    # ---- transactions ----------------------------------------------------------------------

    def _outstanding(self, data: Data) -> int:
        return data["loan"]["disbursed_minor"] - data["loan"]["repaid_minor"]

    def _apply(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ())
        ctx.require_sender(params["farmer"], "not-farmer", "only the pond's farmer applies")
        if data["loan"]["status"] != "none":
            raise ContractError("loan-exists", "a loan was already applied for")
        data["loan"]["status"] = "applied"
        return [ev("loan-applied", [ctx.index], amount_minor=sum(params["tranches_minor"]))]

    def _disburse(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ())
        ctx.require_sender(ctx.owner, "not-lender", "only the lender disburses")
        loan, st = data["loan"], data["stats"]
        if loan["status"] == "repaid":
            raise ContractError("loan-repaid", "the loan is repaid")
        if loan["status"] not in ("applied", "active"):
            raise ContractError("no-loan-application", "the farmer has not applied")
        if loan["next_tranche"] >= len(params["tranches_minor"]):
            raise ContractError("tranches-exhausted", "every tranche is disbursed")
        if loan["paused"]:
            raise ContractError("tranches-paused", "a covenant breach paused the tranches")
        if st["first_s"] is None or ctx.clock_s - st["first_s"] < params["min_history_s"]:
            raise ContractError(
                "insufficient-history", f"less than {params['min_history_s']} s of history"
            )
        if ctx.clock_s - st["last_s"] > params["max_gap_s"]:
            raise ContractError("data-stale", "no sample within max_gap_s")
        score = score_bp(st, ctx.clock_s, params["excursion_penalty_bp"])
        if score < params["min_score_bp"]:
            raise ContractError(
                "covenant-score-low", f"score {score} bp is below {params['min_score_bp']} bp"
            )
        k = loan["next_tranche"]
        amount = params["tranches_minor"][k]
        tr = transfer(data["positions"], ctx.owner, params["farmer"], amount)
        loan["next_tranche"] = k + 1
        loan["disbursed_minor"] += amount
        loan["status"] = "active"
        return [
            ev(
                "tranche-disbursed",
                [ctx.index, st["last_index"]],
                tranche=k,
                score_bp=score,
                transfer=tr,
            )
        ]

    def _resume(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ())
        ctx.require_sender(ctx.owner, "not-lender", "only the lender resumes tranches")
        if not data["loan"]["paused"]:
            raise ContractError("not-paused", "tranches are not paused")
        data["loan"]["paused"] = False
        return [ev("tranches-resumed", [ctx.index])]

    def _repayment(self, data: Data, params: Params, ctx: Ctx, amount: int) -> list[Event]:
        loan = data["loan"]
        tr = transfer(data["positions"], params["farmer"], ctx.owner, amount)
        loan["repaid_minor"] += amount
        events = [ev("repayment", [ctx.index], transfer=tr)]
        if self._outstanding(data) == 0 and loan["next_tranche"] == len(params["tranches_minor"]):
            loan["status"] = "repaid"
            events.append(ev("loan-repaid", [ctx.index], repaid_minor=loan["repaid_minor"]))
        return events

    def _repay(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("amount_minor",))
        amount = get_int(args, "amount_minor", 1, MAX_MONEY_MINOR)
        ctx.require_sender(params["farmer"], "not-farmer", "only the farmer repays")
        if data["loan"]["status"] != "active":
            raise ContractError("no-active-loan", "there is no active loan")
        outstanding = self._outstanding(data)
        if amount > outstanding:
            raise ContractError(
                "repay-exceeds-outstanding", f"{amount} exceeds the outstanding {outstanding}"
            )
        return self._repayment(data, params, ctx, amount)

    def _sale(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("amount_minor",))
        amount = get_int(args, "amount_minor", 1, MAX_MONEY_MINOR)
        buyer = ctx.require_role("buyer")
        if buyer == params["farmer"]:
            raise ContractError("bad-args", "amount_minor: a farmer cannot buy its own harvest")
        tr = transfer(data["positions"], buyer, params["farmer"], amount)
        events = [ev("harvest-sale", [ctx.index], transfer=tr)]
        outstanding = self._outstanding(data)
        if data["loan"]["status"] == "active" and outstanding > 0:
            events += self._repayment(data, params, ctx, min(amount, outstanding))
        return events

    def _bind_policy(
        self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]
    ) -> list[Event]:
        check_keys(
            args,
            (
                "policy",
                "premium_minor",
                "payout_minor",
                "do_min_centi_mg_l",
                "temp_max_centi_c",
                "max_duration_s",
                "window_s",
                "end_s",
            ),
        )
        pid = get_str(args, "policy")
        insurer = ctx.require_role("insurer")
        premium = get_int(args, "premium_minor", 0, MAX_MONEY_MINOR)
        payout = get_int(args, "payout_minor", 1, MAX_MONEY_MINOR)
        do_min = get_int(args, "do_min_centi_mg_l", 0, 10000)
        temp_max = get_int(args, "temp_max_centi_c", -27315, 200000)
        max_duration = get_int(args, "max_duration_s", 0, 30 * 86400)
        window = get_int(args, "window_s", 60, 366 * 86400)
        end_s = get_int(args, "end_s", ctx.clock_s + 1)
        if params["farmer"] not in ctx.cosigners:
            raise ContractError(
                "policy-needs-farmer-signature", "the farmer cosigns the policy and its premium"
            )
        if pid in data["policies"]:
            raise ContractError("policy-exists", f"policy {pid!r} already exists")
        tr = transfer(data["positions"], params["farmer"], insurer, premium)
        data["policies"][pid] = {
            "insurer": insurer,
            "premium_minor": premium,
            "payout_minor": payout,
            "do_min_centi_mg_l": do_min,
            "temp_max_centi_c": temp_max,
            "max_duration_s": max_duration,
            "window_s": window,
            "start_s": ctx.clock_s,
            "end_s": end_s,
            "run": None,
            "claimed_windows": [],
            "bound_at": ctx.index,
        }
        return [ev("policy-bound", [ctx.index], policy=pid, transfer=tr)]
