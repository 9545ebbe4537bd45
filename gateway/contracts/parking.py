"""Automated parking payment (ISO/IEC TR 30176 6.5): bay sessions, tariff, wallet debit, anomalies.

docs/usecases/parking.md describes the use case; the rules, as implemented here:

- the parking operator creates the contract with its tariff (time-of-day bands in minor units
  per hour, a grace period, a daily cap, the local UTC offset); every bound board is one bay;
- a bay board's signed arrival event (Ev.ARRIVAL) with a vehicle commitment opens a session;
  its departure event (Ev.DEPARTURE) closes it; the vehicle appears only as the commitment
  SHA-256(salt || vehicle id)[0:16], the salt never reaches the log;
- the fee: free within the grace period, else the band rates per second summed per local day,
  rounded up to a minor unit, each day capped at the daily cap;
- the fee is debited from the vehicle's prepaid wallet if it is within the wallet's limit and
  balance, with a receipt event; otherwise the session stays unpaid and is flagged, and the wallet
  owner may pay it later; a session is charged at most once;
- a departure without an arrival, an arrival in an occupied bay, an arrival without a vehicle and
  a departure by another vehicle are flagged as anomalies.
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
    get_list,
    get_opt_int,
    get_str,
    transfer,
)
from gateway.errors import ContractError
from gateway.wire import EVENT, Ch, Ev, Record

DAY_S = 86400
MAX_MONEY_MINOR = 10**15
MAX_BANDS = 24


def wallet_account(vehicle: str) -> str:
    """Return the positions account of a vehicle's wallet (its balance is that position)."""
    return "wallet:" + vehicle


def fee_minor(start_s: int, end_s: int, params: Params) -> int:
    """Return the fee of a session from start_s to end_s (Unix seconds) under the tariff.

    0 if the duration is within grace_s. Otherwise, per local day: the sum over the day's band
    segments of seconds x rate_minor_per_hour, divided by 3600 rounded up, capped at
    daily_cap_minor; the fee is the sum of the days.
    """
    if end_s - start_s <= params["grace_s"]:
        return 0
    bands = params["bands"]
    offset = params["utc_offset_s"]
    t, end = start_s + offset, end_s + offset
    total = 0
    while t < end:
        day0 = t - t % DAY_S
        day_end = min(day0 + DAY_S, end)
        scaled = 0  # minor units x 3600
        for k, (band_start, rate) in enumerate(bands):
            band_end = bands[k + 1][0] if k + 1 < len(bands) else DAY_S
            overlap = min(day0 + band_end, day_end) - max(day0 + band_start, t)
            if overlap > 0:
                scaled += overlap * rate
        total += min(-(-scaled // 3600), params["daily_cap_minor"])
        t = day_end
    return total


class Parking(Contract):
    """The automated parking payment contract (type "parking")."""

    TYPE = "parking"
    CREATOR_ROLE = "parking_operator"
    VIEWS = (
        View("sessions", "bay sessions", "view_sessions"),
        # a paid session, or a flagged one
        View("receipts", "receipt events", event_types=frozenset({"charged", "unpaid"})),
    )

    def view_sessions(self, _cid: str, inst: dict[str, Any]) -> dict[str, Any]:
        """Return the bay sessions, the bays, the wallets and the anomalies."""
        data = inst["data"]
        return {
            "sessions": data["sessions"],
            "bays": data["bays"],
            "wallets": data["wallets"],
            "anomalies": data["anomalies"],
        }

    ACTIONS = {
        "open-wallet": "_open_wallet",
        "top-up": "_top_up",
        "set-limit": "_set_limit",
        "pay-session": "_pay_session",
    }

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        """Return the tariff: bands [[start_s_of_day, rate_minor_per_hour]], grace, cap, offset."""
        check_keys(
            params, ("bands", "daily_cap_minor"), ("grace_s", "utc_offset_s"), code="bad-params"
        )
        raw = get_list(params, "bands", 1, MAX_BANDS, code="bad-params")
        bands: list[list[int]] = []
        for i, band in enumerate(raw):
            if not (isinstance(band, list) and len(band) == 2):
                raise ContractError("bad-params", f"bands[{i}]: must be [start_s_of_day, rate_minor_per_hour]")  # fmt: skip
            start = get_int({"start_s_of_day": band[0]}, "start_s_of_day", 0, DAY_S - 1, "bad-params")  # fmt: skip
            rate = get_int({"rate_minor_per_hour": band[1]}, "rate_minor_per_hour", 0, 10**9, "bad-params")  # fmt: skip
            if (i == 0 and start != 0) or (bands and start <= bands[-1][0]):
                raise ContractError("bad-params", "bands: starts must begin at 0 and increase")
            bands.append([start, rate])
        return {
            "bands": bands,
            "daily_cap_minor": get_int(params, "daily_cap_minor", 0, MAX_MONEY_MINOR, "bad-params"),
            # why 600 s: drop-offs and turning around in a bay should cost nothing
            "grace_s": get_opt_int(params, "grace_s", 600, 0, DAY_S),
            "utc_offset_s": get_opt_int(params, "utc_offset_s", 0, -14 * 3600, 14 * 3600),
        }

    def init(self, params: Params, ctx: Ctx) -> Data:
        """Return free bays, no sessions, no wallets, zero positions."""
        return {"bays": {}, "sessions": {}, "wallets": {}, "positions": {}, "anomalies": 0}

    # ---- bay records -----------------------------------------------------------------------

    @staticmethod
    def _anomaly(data: Data, reason: str, causes: list[int], **extra: Any) -> Event:
        data["anomalies"] += 1
        return ev("anomaly", causes, reason=reason, **extra)

    def on_record(self, data: Data, params: Params, ctx: Ctx, record: Record) -> list[Event]:
        """Return the session, charge and anomaly events of an arrival or departure record."""
        if record.kind != EVENT:
            return []
        code = record.value(Ch.EVENT_CODE, 0)
        bay = record.device_id.hex()
        vehicle_raw = record.value(Ch.VEHICLE_COMMITMENT, 0)
        vehicle = vehicle_raw.hex() if isinstance(vehicle_raw, bytes) else None
        open_sid = data["bays"].get(bay)
        t = record.time_s
        if code == Ev.ARRIVAL:
            if vehicle is None:
                return [self._anomaly(data, "arrival-without-vehicle", [ctx.index], bay=bay)]
            if open_sid is not None:
                return [
                    self._anomaly(
                        data, "arrival-in-occupied-bay", [data["sessions"][open_sid]["start_index"], ctx.index],
                        bay=bay, session=open_sid,
                    )
                ]  # fmt: skip
            sid = f"s{ctx.index}"
            data["sessions"][sid] = {
                "bay": bay,
                "vehicle": vehicle,
                "start_s": t,
                "start_index": ctx.index,
                "end_s": None,
                "end_index": None,
                "fee_minor": None,
                "status": "open",
                "charged_at": None,
            }
            data["bays"][bay] = sid
            return [ev("session-opened", [ctx.index], session=sid, bay=bay, vehicle=vehicle, start_s=t)]  # fmt: skip
        if code != Ev.DEPARTURE:
            return []
        if open_sid is None:
            return [self._anomaly(data, "departure-without-arrival", [ctx.index], bay=bay)]
        session = data["sessions"][open_sid]
        data["bays"][bay] = None
        events: list[Event] = []
        causes = [session["start_index"], ctx.index]
        if vehicle is not None and vehicle != session["vehicle"]:
            events.append(self._anomaly(data, "departure-vehicle-mismatch", causes, bay=bay, session=open_sid))  # fmt: skip
        if t < session["start_s"]:
            events.append(self._anomaly(data, "departure-before-arrival", causes, bay=bay, session=open_sid))  # fmt: skip
        end_s = max(t, session["start_s"])
        fee = fee_minor(session["start_s"], end_s, params)
        session.update(end_s=end_s, end_index=ctx.index, fee_minor=fee)
        events.append(ev("session-closed", causes, session=open_sid, end_s=end_s, fee_minor=fee))
        if fee == 0:
            session["status"] = "free"
            return events
        wallet = data["wallets"].get(session["vehicle"])
        balance = data["positions"].get(wallet_account(session["vehicle"]), 0)
        if wallet is None:
            reason = "no-wallet"
        elif fee > wallet["limit_minor"]:
            reason = "over-limit"
        elif fee > balance:
            reason = "insufficient-balance"
        else:
            events.append(self._charge(data, ctx, open_sid, [*causes]))
            return events
        session["status"] = "unpaid"
        events.append(ev("unpaid", causes, session=open_sid, fee_minor=fee, reason=reason))
        return events

    @staticmethod
    def _charge(data: Data, ctx: Ctx, sid: str, causes: list[int]) -> Event:
        """Debit the session's fee from its wallet to the operator; return the receipt event."""
        session = data["sessions"][sid]
        assert session["status"] in ("open", "unpaid")
        tr = transfer(data["positions"], wallet_account(session["vehicle"]), ctx.owner, session["fee_minor"])  # fmt: skip
        session["status"] = "charged"
        session["charged_at"] = ctx.index
        return ev(
            "charged",
            causes,
            session=sid,
            bay=session["bay"],
            vehicle=session["vehicle"],
            start_s=session["start_s"],
            end_s=session["end_s"],
            fee_minor=session["fee_minor"],
            transfer=tr,
        )

    # ---- transactions ----------------------------------------------------------------------

    @staticmethod
    def _own_wallet(data: Data, ctx: Ctx, vehicle: str) -> dict[str, Any]:
        wallet = data["wallets"].get(vehicle)
        if wallet is None:
            raise ContractError("no-wallet", "no wallet for this vehicle")
        if wallet["owner"] != ctx.sender:
            raise ContractError("not-wallet-owner", "only the wallet's owner may do this")
        return wallet

    def _open_wallet(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:  # fmt: skip
        check_keys(args, ("vehicle", "limit_minor"))
        vehicle = get_hex(args, "vehicle", 16)
        limit = get_int(args, "limit_minor", 0, MAX_MONEY_MINOR)
        owner = ctx.require_role("driver")
        if vehicle in data["wallets"]:
            raise ContractError("wallet-exists", "this vehicle has a wallet")
        data["wallets"][vehicle] = {"owner": owner, "limit_minor": limit, "opened_at": ctx.index}
        return [ev("wallet-opened", [ctx.index], vehicle=vehicle, limit_minor=limit)]

    def _top_up(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:
        check_keys(args, ("vehicle", "amount_minor"))
        vehicle = get_hex(args, "vehicle", 16)
        amount = get_int(args, "amount_minor", 1, MAX_MONEY_MINOR)
        wallet = self._own_wallet(data, ctx, vehicle)
        tr = transfer(data["positions"], wallet["owner"], wallet_account(vehicle), amount)
        return [ev("top-up", [ctx.index], vehicle=vehicle, transfer=tr)]

    def _set_limit(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:  # fmt: skip
        check_keys(args, ("vehicle", "limit_minor"))
        vehicle = get_hex(args, "vehicle", 16)
        limit = get_int(args, "limit_minor", 0, MAX_MONEY_MINOR)
        wallet = self._own_wallet(data, ctx, vehicle)
        wallet["limit_minor"] = limit
        return [ev("limit-set", [ctx.index], vehicle=vehicle, limit_minor=limit)]

    def _pay_session(self, data: Data, params: Params, ctx: Ctx, args: dict[str, Any]) -> list[Event]:  # fmt: skip
        check_keys(args, ("session",))
        sid = get_str(args, "session")
        session = data["sessions"].get(sid)
        if session is None:
            raise ContractError("unknown-session", f"no session {sid!r}")
        if session["status"] == "charged":
            raise ContractError("session-already-charged", f"session {sid!r} is already charged")
        if session["status"] != "unpaid":
            raise ContractError("session-not-payable", f"session {sid!r} is {session['status']}")
        self._own_wallet(data, ctx, session["vehicle"])
        balance = data["positions"].get(wallet_account(session["vehicle"]), 0)
        if session["fee_minor"] > balance:
            raise ContractError(
                "insufficient-balance", f"balance {balance} is below the fee {session['fee_minor']}"
            )
        return [self._charge(data, ctx, sid, [session["start_index"], session["end_index"], ctx.index])]  # fmt: skip
