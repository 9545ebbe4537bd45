"""The world the virtual boards sense: per board, a timeline per sensor and the tags in range.

A `World` answers `board(profile)` with a `BoardWorld`: `timelines` {sensor name: timeline} for
the chip models (tools/sim/devices.py: quantities in physical units, as functions of the board's
uptime in seconds) and `tags`, the BLE tags a board's scan can hear. `QUIET` is a world where
nothing happens (every chip reads its devices.DEFAULTS); `DEMO` is the world of `make run`,
where each of the five stories of docs/demo.md happens once per DEMO_CYCLE_S of a board's
uptime: a reefer door left open, a dissolved-oxygen crash, a machine leaving its yard, a cloud
over the PV array, a car parking in the bay.

A board's role is its profile name, or the profile's DEMO_ROLE_KEY for a second board of the
same profile (the bakery's energy meter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.sim.devices import Timeline
from tools.sim.tags import ibeacon_adv, ibeacon_id

DEMO_ROLE_KEY = "demo_role"  # profile key naming the role of an extra board of a profile
CONSUMER_METER = "consumer-meter"  # the bakery's meter: a second energy-meter board

# why 120 s: every story (excursion, DO crash, trip out of the yard, a parked car) fits in two
# minutes with room to see the quiet part, and a visitor sees each story again a few times.
DEMO_CYCLE_S = 120.0


@dataclass(frozen=True)
class Tag:
    """A BLE tag of the world: its iBeacon payload, when it is in range of the board and at what
    RSSI the board hears it (functions of the board's uptime)."""

    name: str
    adv: bytes
    present: Callable[[float], bool]
    rssi_dbm: Callable[[float], int]


@dataclass(frozen=True)
class BoardWorld:
    """What one board senses: a timeline per sensor name (absent: the chip's defaults), tags."""

    timelines: dict[str, Timeline] = field(default_factory=dict)
    tags: tuple[Tag, ...] = ()


def role(profile: dict) -> str:
    """Return a board's role in the world: DEMO_ROLE_KEY if set, else the profile name."""
    return profile.get(DEMO_ROLE_KEY) or profile["name"]


class World:
    """A world given as {role: BoardWorld}; roles it does not name sense a quiet world."""

    def __init__(self, boards: dict[str, BoardWorld] | None = None) -> None:
        self.boards = dict(boards or {})

    def board(self, profile: dict) -> BoardWorld:
        """Return what the board of this profile senses."""
        return self.boards.get(role(profile), BoardWorld())


QUIET = World()

# ==== the demo's timelines =========================================================================


def _ramp(phase_s: float, start_s: float, end_s: float, ramp_s: float) -> float:
    """Return 0..1: 1 inside [start_s, end_s] with linear ramps of ramp_s at both ends, else 0."""
    if phase_s <= start_s or phase_s >= end_s:
        return 0.0
    return min(1.0, (phase_s - start_s) / ramp_s, (end_s - phase_s) / ramp_s)


def _wiggle(uptime_s: float, amplitude: float, period_s: float) -> float:
    """Return a small deterministic oscillation (the physics' own variation, not chip noise)."""
    return amplitude * math.sin(2 * math.pi * uptime_s / period_s)


def _phase(uptime_s: float) -> float:
    """Return the position in the demo cycle, in seconds (0 <= phase < DEMO_CYCLE_S)."""
    return uptime_s % DEMO_CYCLE_S


# Cold chain: the reefer door is left open at 14 s of every cycle and closed at 44 s.
COLD_OK_C = 4.0
COLD_DOOR_OPEN_C = 11.5
COLD_DOOR_OPEN_S, COLD_DOOR_CLOSED_S, COLD_RAMP_S = 14.0, 44.0, 4.0


def cold_product_c(uptime_s: float) -> float:
    """Return the product's temperature (degC) at the logger's probe."""
    door = _ramp(_phase(uptime_s), COLD_DOOR_OPEN_S, COLD_DOOR_CLOSED_S, COLD_RAMP_S)
    return COLD_OK_C + _wiggle(uptime_s, 0.15, 37) + door * (COLD_DOOR_OPEN_C - COLD_OK_C)


def cold_air(uptime_s: float) -> tuple[float, float]:
    """Return the crate air's (temperature degC, relative humidity %RH)."""
    door = _ramp(_phase(uptime_s), COLD_DOOR_OPEN_S, COLD_DOOR_CLOSED_S, 2.0)
    temp_c = 2.5 + _wiggle(uptime_s, 0.25, 23) + door * 14.0
    rh = 88.0 + _wiggle(uptime_s, 1.2, 31) - door * 16.0
    return temp_c, rh


# Pond: dissolved oxygen crashes (an algae die-off) from 18 s to 52 s of every cycle.
POND_DO_OK_MG_L = 7.6
POND_DO_CRASH_MG_L = 3.2
POND_CRASH_START_S, POND_CRASH_END_S, POND_RAMP_S = 18.0, 52.0, 5.0
POND_WATER_C = 26.5


def pond_do_mg_l(uptime_s: float) -> float:
    """Return dissolved oxygen (mg/L) in the pond."""
    crash = _ramp(_phase(uptime_s), POND_CRASH_START_S, POND_CRASH_END_S, POND_RAMP_S)
    base = POND_DO_OK_MG_L + _wiggle(uptime_s, 0.15, 29)
    return base - crash * (POND_DO_OK_MG_L - POND_DO_CRASH_MG_L)


# Collateral: the machine leaves the yard at 20 s of every cycle and is back by 34 s.
YARD_LAT_DEG, YARD_LON_DEG = 48.1372, 11.5755  # a yard near Munich
TRACKER_LEAVES_S, TRACKER_BACK_S, TRACKER_RAMP_S = 20.0, 34.0, 4.0
TRACKER_TRIP_DEG = 0.0030  # ~330 m north of the yard's centre
STOCK_G = 120_000.0  # the pledged stock on the scale


def tracker_position(uptime_s: float) -> tuple[float, float]:
    """Return the machine's position (latitude, longitude in degrees)."""
    trip = _ramp(_phase(uptime_s), TRACKER_LEAVES_S, TRACKER_BACK_S, TRACKER_RAMP_S)
    lat = YARD_LAT_DEG + _wiggle(uptime_s, 0.00015, 40) + trip * TRACKER_TRIP_DEG
    lon = YARD_LON_DEG + _wiggle(uptime_s + 10, 0.0002, 40)
    return lat, lon


# Energy: a 24 V DC microgrid, as the energy-meter profile's INA219 (10 mOhm shunt, 32 A) can
# measure it. The prosumer's PV array gives 600 W except under a cloud from 62 s to 90 s of every
# cycle; its house draws 40 W; the bakery next door draws 480 W. Current >= 0 is import.
BUS_V = 24.0
PV_SUN_W, PV_CLOUD_W = 600.0, 90.0
PV_CLOUD_START_S, PV_CLOUD_END_S = 62.0, 90.0
HOUSE_LOAD_W = 40.0
BAKERY_LOAD_W = 480.0


def pv_w(uptime_s: float) -> float:
    """Return the PV array's output power (W)."""
    return PV_CLOUD_W if PV_CLOUD_START_S <= _phase(uptime_s) < PV_CLOUD_END_S else PV_SUN_W


def meter_line(uptime_s: float, consumer: bool) -> tuple[float, float]:
    """Return (bus voltage V, current A, >= 0 import) at a demo meter's shunt."""
    volts = BUS_V + _wiggle(uptime_s, 0.15, 11)
    net_w = BAKERY_LOAD_W if consumer else HOUSE_LOAD_W - pv_w(uptime_s)
    return volts, net_w / volts


# Parking: the demo car arrives at 22 s of every cycle and leaves at 38 s; its beacon is heard
# from 3 s before the arrival to 3 s after the departure. why 22 s: the bay's detector first
# learns the empty bay (16 samples at the profile's 1 s interval), with a few seconds to spare.
CAR_ARRIVES_S, CAR_LEAVES_S, CAR_RAMP_S = 22.0, 38.0, 2.0
BEACON_LEAD_S = 3.0
BAY_EMPTY_FIELD_UT = (21.5, -14.3, 42.6)  # Earth's field at the bay
CAR_FIELD_DELTA_UT = (18.0, 9.5, -12.0)  # the car's steel over the sensor: ~40 uT of deviation
VEHICLE_BEACON_UUID = bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0")
VEHICLE_BEACON_MAJOR, VEHICLE_BEACON_MINOR = 1, 10775
NEIGHBOUR_BEACON_MINOR = 10776  # a car in the next bay: heard, but below the bay's min RSSI
CAR_RSSI_DBM, NEIGHBOUR_RSSI_DBM = -60, -88


def bay_field_ut(uptime_s: float) -> tuple[float, float, float]:
    """Return the magnetic field (x, y, z in uT) at the bay's sensor."""
    car = _ramp(_phase(uptime_s), CAR_ARRIVES_S, CAR_LEAVES_S, CAR_RAMP_S)
    noise = _wiggle(uptime_s, 0.06, 7)
    return tuple(  # type: ignore[return-value]
        b + noise + car * d for b, d in zip(BAY_EMPTY_FIELD_UT, CAR_FIELD_DELTA_UT, strict=True)
    )


def beacon_heard(uptime_s: float) -> bool:
    """Return True while the demo car's beacon is in range of the bay."""
    phase = _phase(uptime_s)
    return CAR_ARRIVES_S - BEACON_LEAD_S <= phase < CAR_LEAVES_S + BEACON_LEAD_S


def vehicle_id() -> bytes:
    """Return the demo car's beacon id as the bay's driver reports it (UUID, major, minor)."""
    return ibeacon_id(VEHICLE_BEACON_UUID, VEHICLE_BEACON_MAJOR, VEHICLE_BEACON_MINOR)


def _board(**timelines: Callable[[float], dict[str, Any]]) -> BoardWorld:
    return BoardWorld(dict(timelines))


def _meter(consumer: bool) -> Callable[[float], dict[str, Any]]:
    def line(t: float) -> dict[str, Any]:
        volts, amps = meter_line(t, consumer)
        return {"bus_voltage_v": volts, "current_a": amps}

    return line


DEMO = World(
    {
        "cold-chain-logger": _board(
            product_probe=lambda t: {"temperature_c": cold_product_c(t)},
            crate_air=lambda t: dict(
                zip(("temperature_c", "humidity_rh"), cold_air(t), strict=True)
            ),
        ),
        "pond-monitor": _board(
            water_temp=lambda t: {"temperature_c": POND_WATER_C + _wiggle(t, 0.3, 90)},
            do=lambda t: {"do_mg_l": pond_do_mg_l(t)},
            ph=lambda t: {"ph": 7.35 + _wiggle(t, 0.08, 70)},
            ammonia=lambda t: {"ammonia_mg_l": 0.18 + _wiggle(t, 0.03, 50)},
        ),
        "collateral-tracker": _board(
            gps=lambda t: dict(zip(("lat_deg", "lon_deg"), tracker_position(t), strict=True)),
            door=lambda t: {"open": False},
            stock_scale=lambda t: {"mass_g": STOCK_G + _wiggle(t, 800, 45)},
        ),
        "energy-meter": _board(pv_meter=_meter(consumer=False)),
        CONSUMER_METER: _board(pv_meter=_meter(consumer=True)),
        "parking-bay": BoardWorld(
            {"bay_mag": lambda t: {"field_ut": bay_field_ut(t)}},
            (
                Tag(
                    "demo-car",
                    ibeacon_adv(VEHICLE_BEACON_UUID, VEHICLE_BEACON_MAJOR, VEHICLE_BEACON_MINOR),
                    beacon_heard,
                    lambda t: CAR_RSSI_DBM + int(_wiggle(t, 3, 5)),
                ),
                Tag(
                    "neighbour-car",
                    ibeacon_adv(VEHICLE_BEACON_UUID, VEHICLE_BEACON_MAJOR, NEIGHBOUR_BEACON_MINOR),
                    lambda _t: True,
                    lambda _t: NEIGHBOUR_RSSI_DBM,
                ),
            ),
        ),
    }
)
