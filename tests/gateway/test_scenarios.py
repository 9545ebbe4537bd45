"""The demo behind `make run`: five virtual boards and gateway.scenarios make all five stories happen.

One run (the slowest test of the suite): start the Service in-process with the virtual fleet and the
scenarios on a fresh data dir, wait until every outcome is in the log (a BREACHED lot, a paid
insurance claim, a geofence alarm that froze drawdown, a settled energy interval summing to zero, a
charged parking session), then stop; a restart replays to the same state hash and the scenarios
post nothing again; the ledger audits clean and the breach's proof bundle verifies offline.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import scenarios
from gateway.bundle import build_bundle, verify_bundle
from gateway.config import Settings
from gateway.contracts import Engine
from gateway.contracts.collateral import inside_polygon
from gateway.ledger import Ledger
from gateway.ledger.audit import audit
from gateway.service import Service, scenario_tasks
from gateway.wire import CHANNELS, EVENT, decode_record

# why 75 s: the demo promises every outcome within 60 s of start (measured ~25-40 s here); the
# rest is headroom for a loaded CI machine.
OUTCOME_DEADLINE_S = 75.0
POLL_S = 0.5
CH_VEHICLE_COMMITMENT, CH_EVENT_CODE = 11, 21
SETUP_EVENTS = (
    "participant-registered",
    "contract-created",
    "device-bound",
    "meter-registered",
    "loan-applied",
    "policy-bound",
    "wallet-opened",
)


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, virtual_fleet=True, port=0, log_level="warning")


def _outcomes(service: Service) -> dict[str, dict[str, Any]]:
    """Return the first event of each of the five outcomes found so far, by outcome name."""
    found: dict[str, dict[str, Any]] = {}
    st = service.state["contracts"]
    for ev in service.contract_events(limit=1_000_000):
        kind, data = ev["type"], ev["data"]
        if kind == "breach" and ev["contract"] == scenarios.AGRI_ID:
            found.setdefault("breach", ev)
        elif kind == "claim-paid" and ev["contract"] == scenarios.POND_ID:
            found.setdefault("claim", ev)
        elif kind == "drawdown-frozen" and data["reason"] == "geofence":
            found.setdefault("frozen", ev)
        elif (
            kind == "settled"
            and data["transfers"]
            and any(m["export_wh"] for m in data["metered"].values())
        ):
            found.setdefault("settled", ev)
        elif kind == "charged" and ev["contract"] == scenarios.PARKING_ID:
            found.setdefault("charged", ev)
    if "breach" in found:  # the lot is BREACHED in the state too
        lot = st[scenarios.AGRI_ID]["data"]["lots"][found["breach"]["data"]["lot"]]
        assert lot["breach"] is not None
    return found


def _entry(service: Service, index: int) -> bytes:
    assert service.ledger is not None
    return next(iter(service.ledger.entries(index, index + 1)))[1]


def _event_counts(service: Service) -> dict[str, int]:
    counts = dict.fromkeys(SETUP_EVENTS, 0)
    for ev in service.contract_events(limit=1_000_000):
        if ev["type"] in counts:
            counts[ev["type"]] += 1
    return counts


def _profiles() -> dict[str, dict[str, Any]]:
    """Return the demo's board profiles by story role (the consumer meter included)."""
    from firmware import board as fw_board

    boards = Path(__file__).resolve().parents[2] / "boards"
    out = {name: fw_board.load(str(boards / f"{name}.json")) for name in scenarios.STORY_PROFILES}
    out["parking-bay"]["sample_interval_s"] = 1  # as the fleet runs it (the profile's own)
    out[scenarios.CONSUMER_METER] = {**out["energy-meter"], scenarios.DEMO_ROLE_KEY: scenarios.CONSUMER_METER}  # fmt: skip
    return out


def test_scripted_timelines_stay_in_range_and_tell_the_stories() -> None:
    """Every scripted value is inside its channel's registry range, at boot and after 200 days;
    each cycle has its excursion, crash, trip, metered energy and one arrival and departure."""
    cycle = scenarios.DEMO_CYCLE_S
    for role, profile in _profiles().items():
        for start_s in (0.0, 200 * 86400.0):
            clock = {"t": start_s}
            sources = scenarios.scripted_sources(profile, 0, lambda c=clock: c["t"])
            assert sources is not None and len(sources) == len(profile["sensors"])
            events: list[tuple[float, int, bytes | None]] = []
            uptime = 0.0
            while uptime < 2 * cycle:
                clock["t"] = start_s + uptime
                values = [v for src in sources for v in src.read()]
                for type_id, _, value in values:
                    ch = CHANNELS[type_id]
                    if ch.width == "b16":
                        assert isinstance(value, bytes) and len(value) == 16
                    else:
                        assert isinstance(value, int) and ch.min <= value <= ch.max, (role, ch, value)  # fmt: skip
                for src in sources:
                    if src.event:
                        found = [v for v in values if v[0] in src.event_types]
                        events.append((uptime, src.event, found[0][2] if found else None))
                        src.event = 0
                uptime += 1.0
            if role == "parking-bay":
                commitment = scenarios.vehicle_commitment(profile)
                assert [code for _, code, _ in events] == [6, 7, 6, 7]
                assert all(c == commitment for _, _, c in events)
                stay_s = events[1][0] - events[0][0]
                assert scenarios.PARKING_GRACE_S < stay_s < 60

    phases = [k / 2 for k in range(int(cycle * 2))]
    out_of_window = [t for t in phases if scenarios.cold_product_centi_c(t) > scenarios.COLD_WINDOW_CENTI_C[1]]  # fmt: skip
    assert max(out_of_window) - min(out_of_window) > scenarios.COLD_MAX_EXCURSION_S + 4
    crash = [t for t in phases if scenarios.pond_do_centi_mg_l(t) < scenarios.POLICY_DO_MIN_CENTI_MG_L]  # fmt: skip
    assert max(crash) - min(crash) > scenarios.POLICY_MAX_DURATION_S + 4
    assert any(not inside_polygon(*scenarios.tracker_position(t), scenarios.GEOFENCE) for t in phases)  # fmt: skip
    assert inside_polygon(*scenarios.tracker_position(0), scenarios.GEOFENCE)
    for consumer in (False, True):
        regs = [scenarios.meter_registers(t, consumer) for t in phases]
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(regs, regs[1:], strict=False))


@pytest.mark.slow
def test_demo_outcomes_restart_and_audit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def first_run() -> tuple[dict[str, float], str, dict[str, int], int]:
        service = Service(_settings(data_dir))
        t0 = time.monotonic()
        await service.start(scenario_tasks())
        seen_s: dict[str, float] = {}
        try:
            while time.monotonic() - t0 < OUTCOME_DEADLINE_S:
                found = _outcomes(service)
                for name in found:
                    seen_s.setdefault(name, round(time.monotonic() - t0, 1))
                if len(found) == 5:
                    break
                await asyncio.sleep(POLL_S)
            found = _outcomes(service)
            assert set(found) == {"breach", "claim", "frozen", "settled", "charged"}, seen_s
            _check_outcomes(service, found)
        finally:
            await service.stop()
        return seen_s, service.state_hash_hex(), _event_counts(service), found["breach"]["index"]

    seen_s, state_hash, counts, breach_index = asyncio.run(first_run())
    print(f"demo outcomes, seconds after start: {seen_s}")
    assert counts["participant-registered"] == len(scenarios.PARTICIPANTS)
    assert counts["contract-created"] == 5

    async def restart() -> tuple[str, list[str], dict[str, int], int]:
        service = Service(_settings(data_dir))
        replayed = service.state_hash_hex()
        await service.start([])
        try:
            assert service.fleet is not None
            demo = await scenarios.Demo.prepare(service, service.fleet)
            posted = await demo.setup()
        finally:
            await service.stop()
        return replayed, posted, _event_counts(service), len(service.devices())

    replayed, posted, counts_after, n_devices = asyncio.run(restart())
    assert replayed == state_hash
    assert posted == []
    assert counts_after == counts
    assert n_devices == 6  # five profiles and the bakery's meter, each enrolled once

    report = audit(str(data_dir / "ledger.db"))
    assert report.ok, report.sorted_findings()

    # the breach's proof bundle (GET /v1/bundle/{index}) verifies offline with the vkey alone
    with Ledger.open_readonly(str(data_dir / "ledger.db")) as led:
        devices = Engine().replay(led.entries())["devices"]

        def lookup(device_id: bytes) -> tuple[bytes, int] | None:
            dev = devices.get(device_id.hex())
            return None if dev is None else (bytes.fromhex(dev["public_key"]), dev["enrolled_at"])

        bundle = build_bundle(led, breach_index, lookup)
        verified = verify_bundle(bundle, led.vkey)
    assert verified.index == breach_index and len(verified.causes) == 2


def _check_outcomes(service: Service, found: dict[str, dict[str, Any]]) -> None:
    """Assert what each outcome must show (module docstring)."""
    contracts = service.state["contracts"]
    board = {vb.profile.get(scenarios.DEMO_ROLE_KEY) or vb.profile["name"]: vb for vb in service.fleet.boards}  # fmt: skip

    # cold chain: the breach names the first and last out-of-window readings of the logger
    breach = found["breach"]
    assert breach["data"]["end_s"] - breach["data"]["start_s"] > scenarios.COLD_MAX_EXCURSION_S
    for cause in breach["causes"]:
        rec = decode_record(_entry(service, cause)[1:])
        assert rec.device_id == board["cold-chain-logger"].device_id and rec.time_synced

    # fish farm: the insurer paid the farmer the policy's payout
    claim = found["claim"]["data"]["transfer"]
    pond = contracts[scenarios.POND_ID]
    assert claim["to"] == pond["params"]["farmer"]
    assert claim["amount_minor"] == scenarios.POLICY_PAYOUT_MINOR
    assert sum(pond["data"]["positions"].values()) == 0

    # collateral: a geofence alarm froze drawdown (same record as its cause)
    frozen = found["frozen"]
    alarms = [
        e
        for e in service.contract_events(
            contract=scenarios.COLLATERAL_ID, types=frozenset({"alarm"}), limit=10_000
        )  # fmt: skip
        if e["data"]["reason"] == "geofence" and e["causes"] == frozen["causes"]
    ]
    assert alarms, "the freeze has no geofence alarm"

    # energy: the settlement moved money for metered energy and sums to zero with the grid
    settled = found["settled"]["data"]
    assert sum(settled["net_minor"].values()) == 0
    assert sum(t["amount_minor"] for t in settled["transfers"]) > 0

    # parking: charged from the wallet, caused by signed arrival (6) and departure (7) events
    # that carry the vehicle commitment the bay board made
    charged = found["charged"]
    commitment = scenarios.vehicle_commitment(board["parking-bay"].profile)
    assert charged["data"]["vehicle"] == commitment.hex()
    assert charged["data"]["fee_minor"] > 0
    codes = []
    for cause in charged["causes"]:
        rec = decode_record(_entry(service, cause)[1:])
        assert rec.kind == EVENT and rec.signed
        assert rec.value(CH_VEHICLE_COMMITMENT, 0) == commitment
        codes.append(rec.value(CH_EVENT_CODE, 0))
    assert codes == [6, 7]
