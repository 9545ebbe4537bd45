"""The DEMO world, read through the firmware's real drivers on the chip models, tells its stories.

Every demo board's sensors (firmware.app.make_source on tools/sim/devices.build_buses, with the
world's timelines) are sampled for two demo cycles at the pace the fleet runs them, at boot and
after 200 days of uptime: every value is inside its channel's registry range, and each cycle has
its cold-chain excursion, DO crash, trip out of the yard, metered energy and one parked car
(arrival and departure events carrying the car's commitment, from the tag the bay's scan hears).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firmware import app, board
from gateway.contracts.collateral import inside_polygon
from gateway.wire import CHANNELS
from tests.firmware.vectors import W
from tools.sim import stories, world
from tools.sim.devices import build_buses
from tools.sim.fleet import DEMO_PROFILES
from tools.sim.world import CONSUMER_METER, DEMO, DEMO_CYCLE_S, DEMO_ROLE_KEY

ROOT = Path(__file__).resolve().parents[3]
FLEET_SAMPLE_S = 2.0  # tools.sim.run SimSettings: profiles sample at most every 2 s
ADV_IND = 0


class Clock:
    """A board clock on manual time; block_ms only adds to waited_ms (as tools.sim.fleet)."""

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms
        self.waited_ms = 0

    def ticks_ms(self) -> int:
        return self.now_ms

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def block_ms(self, ms: int) -> None:
        self.waited_ms += ms


def _profiles() -> dict[str, dict[str, Any]]:
    """Return the demo's board profiles by role, the consumer meter included."""
    profiles = {n: board.load(str(ROOT / "boards" / f"{n}.json")) for n in DEMO_PROFILES}
    profiles[CONSUMER_METER] = {**profiles["energy-meter"], DEMO_ROLE_KEY: CONSUMER_METER}
    return profiles


def _sample(profile: dict, boot_s: float, cycles: int = 2) -> list[tuple[float, list, list]]:
    """Sample every sensor of profile from uptime boot_s for `cycles` demo cycles; return
    [(uptime_s, [(type, channel, value)], [event code])].

    The bay's scan is fed the world's tags in range (three adverts each per scan, at the world's
    RSSI), as the board's peripheral would deliver them.
    """
    bw = DEMO.board(profile)
    clock = Clock(int(boot_s * 1000))
    buses = build_buses(profile, bw.timelines, clock, 0, 10, lambda: clock.waited_ms)
    hooks = app.Hooks()
    readings: dict = {}
    sources = [app.make_source(s, buses, clock, readings, hooks) for s in profile["sensors"]]
    step_s = min(profile["sample_interval_s"], FLEET_SAMPLE_S)
    out = []
    t = boot_s
    while t < boot_s + cycles * DEMO_CYCLE_S:
        clock.now_ms = int(t * 1000)
        buses.update()
        for fn in hooks.pollers:
            fn()
        for on_result, on_done in hooks.scanners:
            for i, tag in enumerate(bw.tags):
                if tag.present(t):
                    for _ in range(3):
                        on_result(0, bytes([i] * 6), ADV_IND, tag.rssi_dbm(t), tag.adv)
            on_done()
        values, events = [], []  # the sampler puts a sample's values beside its events
        for src in sources:
            try:
                got = src.read()
            except Exception as exc:  # a GPS before its first fix: a fault, not a reading
                assert t - boot_s < 3, (profile["name"], src.name, exc)
                continue
            values += got
            if src.event:
                events.append(src.event)
                src.event = 0
        out.append((t - boot_s, values, events))
        t += step_s
    return out


def _in_range(type_id: int, value: Any) -> bool:
    ch = CHANNELS[type_id]
    if ch.width != "i32":
        return isinstance(value, bytes) and len(value) == {"b16": 16, "b32": 32}[ch.width]
    return isinstance(value, int) and ch.min <= value <= ch.max


@pytest.mark.parametrize("boot_s", [0.0, 200 * 86400.0], ids=["at-boot", "after-200-days"])
@pytest.mark.parametrize("role", sorted(_profiles()))
def test_every_reading_is_in_its_channels_range(role: str, boot_s: float) -> None:
    samples = _sample(_profiles()[role], boot_s)
    # every sample reads something, but the bay's first 16 (its magnetometer's empty-bay baseline)
    assert [t for t, values, _ in samples if not values and t >= 16] == [], role
    for _, values, _ in samples:
        for type_id, _channel, value in values:
            assert _in_range(type_id, value), (role, CHANNELS[type_id].name, value)


def _series(samples: list, type_id: int, channel: int = 0) -> list[tuple[float, Any]]:
    return [
        (t, v) for t, values, _ in samples for ty, ch, v in values if (ty, ch) == (type_id, channel)
    ]


def test_cold_chain_excursion_and_pond_crash_last_longer_than_their_limits() -> None:
    profiles = _profiles()
    probe = _series(_sample(profiles["cold-chain-logger"], 0.0), W.CH_TEMPERATURE)
    hot = [t for t, v in probe if v > stories.COLD_WINDOW_CENTI_C[1]]
    assert max(hot) - min(hot) > DEMO_CYCLE_S  # two cycles
    first = [t for t in hot if t < DEMO_CYCLE_S]
    assert max(first) - min(first) > stories.COLD_MAX_EXCURSION_S + 4
    do = _series(_sample(profiles["pond-monitor"], 0.0), W.CH_DISSOLVED_OXYGEN)
    low = [t for t, v in do if v < stories.POLICY_DO_MIN_CENTI_MG_L and t < DEMO_CYCLE_S]
    assert max(low) - min(low) > stories.POLICY_MAX_DURATION_S + 4
    assert [v for t, v in do if t < 10] and all(v > 700 for t, v in do if t < 10)


def test_the_machine_leaves_the_fenced_yard_and_the_stock_stays_pledged() -> None:
    samples = _sample(_profiles()["collateral-tracker"], 0.0)
    lat = dict(_series(samples, W.CH_LATITUDE))
    lon = dict(_series(samples, W.CH_LONGITUDE))
    inside = [inside_polygon(lat[t], lon[t], stories.GEOFENCE) for t in sorted(lat)]
    assert inside[:5] == [True] * 5 and not all(inside)
    weights = [v for _, v in _series(samples, W.CH_WEIGHT)]
    assert min(weights) > stories.COLLATERAL_MIN_WEIGHT_MILLI_KG


def test_the_meters_register_the_energy_the_market_trades() -> None:
    profiles = _profiles()
    prosumer = _sample(profiles["energy-meter"], 0.0)
    bakery = _sample(profiles[CONSUMER_METER], 0.0)
    export = _series(prosumer, W.CH_ENERGY, 1)
    imported = _series(bakery, W.CH_ENERGY, 0)
    for series in (export, imported):
        regs = [v for _, v in series]
        assert regs == sorted(regs) and regs[-1] > regs[0]  # cumulative Wh
    # in the sun the prosumer exports more than its 2 Wh offer per 15 s interval
    at = dict(export)
    sunny = [at[t + 16] - at[t] for t in at if t + 16 in at and t + 16 < world.PV_CLOUD_START_S]
    assert sunny and min(sunny) >= stories.OFFER_WH
    assert [v for _, v in _series(bakery, W.CH_ENERGY, 1)][-1] == 0  # the bakery never exports


def test_the_parked_car_gives_one_arrival_and_one_departure_per_cycle() -> None:
    profile = _profiles()["parking-bay"]
    commitment = stories.vehicle_commitment(profile)
    events = [(t, code, values) for t, values, evs in _sample(profile, 0.0) for code in evs]
    assert [code for _, code, _ in events] == [W.EV_ARRIVAL, W.EV_DEPARTURE] * 2
    for _, code, values in events:
        carried = [v for ty, _, v in values if ty == W.CH_VEHICLE_COMMITMENT]
        if code == W.EV_ARRIVAL:  # the tag was heard before the magnetometer decided
            assert carried == [commitment]
    stay_s = events[1][0] - events[0][0]
    assert stories.PARKING_GRACE_S < stay_s < 60
