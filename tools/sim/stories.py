"""Demo stories behind `make run`: demo participants and one contract per use case, kept going.

`run(node, fleet)` is started by tools/sim/run.py (`make run`) once the gateway node runs, with a
virtual fleet in the DEMO world (tools/sim/world.py: the timelines the boards' chips read). On
the first start of a data dir it registers the demo participants (keys derived from a random
secret kept in the data dir), creates the five contracts with parameters scaled to seconds,
binds the virtual boards and posts what each story needs; then it keeps the stories going: lots
and handovers, loan tranches, drawdowns, bids and offers, wallet top-ups and ticks. Everything
is a signed participant transaction admitted by `node.sequencer.submit_tx`, the path of
POST /v1/transactions; what already exists in the contract state is never posted again.

docs/demo.md tells the five stories and their timelines.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from firmware.drivers import ble_beacon
from gateway.contracts import ENGINE_ID, make_tx
from gateway.contracts.fishfarm import score_bp
from gateway.contracts.parking import wallet_account
from gateway.errors import ContractError, EdgesealError
from gateway.node import Node
from tools.sim import world
from tools.sim.fleet import DEMO_PROFILES, VirtualBoard, VirtualFleet
from tools.sim.world import CONSUMER_METER, DEMO_ROLE_KEY

log = logging.getLogger("edgeseal.scenarios")

# ---- keys --------------------------------------------------------------------------------------

DEMO_SECRET_FILE = "demo-participants.secret"  # in the data dir; 32 random bytes, mode 0600
DEMO_SECRET_BYTES = 32
SECRET_FILE_MODE = 0o600
KEY_DOMAIN = b"edgeseal/v1/demo-participant\n"  # HMAC message prefix of a participant's seed

# (label, display name, roles). The label derives the key and names the participant in code.
PARTICIPANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("operator", "Demo gateway operator", ("operator",)),
    ("grower", "Green Valley Orchard", ("grower",)),
    ("carrier", "ColdLine Logistics", ("carrier",)),
    ("retailer", "FreshMart", ("retailer",)),
    ("certifier", "Food Safety Authority", ("certifier",)),
    ("farmer", "Lakeside Fish Farm", ("farmer",)),
    ("pond_lender", "AquaCredit Microfinance", ("lender",)),
    ("insurer", "BlueWave Insurance", ("insurer",)),
    ("borrower", "Riverside Machinery", ("borrower",)),
    ("bank", "Harbour Bank", ("lender",)),
    ("prosumer", "Solar House 12", ("prosumer",)),
    ("consumer", "Corner Bakery", ("prosumer",)),  # orders need the prosumer role and a meter
    ("market", "Neighbourhood Energy Market", ("market_operator",)),
    ("grid", "City Grid", ("grid_operator",)),
    ("driver", "Alex (driver)", ("driver",)),
    ("parking", "CityPark", ("parking_operator",)),
)

# ---- contracts and their demo parameters --------------------------------------------------------

AGRI_ID = "demo-cold-chain"
POND_ID = "demo-pond"
COLLATERAL_ID = "demo-collateral"
ENERGY_ID = "demo-energy"
PARKING_ID = "demo-parking"

# Cold chain: the usual chilled-produce window, and 15 s of excursion allowed (a real lot allows
# tens of minutes); the scripted excursion lasts ~26 s, so every lot on the logger is breached.
COLD_WINDOW_CENTI_C = (0, 800)
COLD_MAX_EXCURSION_S = 15
LOT_PREFIX = "apples"
LOT_PRODUCT = "Braeburn apples"
LOT_CODE = "09506000134352"  # a GS1 example GTIN-14
LOT_QUANTITY = 480  # crates
LOT_ORIGIN = "Green Valley Orchard, Altes Land"

# Pond: a loan in two tranches and a parametric policy on dissolved oxygen.
POND_TRANCHES_MINOR = [500_000, 500_000]
POND_DO_MIN_CENTI_MG_L = 500  # the safe band's floor (5.00 mg/L), the contract's default
POND_MAX_GAP_S = 30  # why: boards report every 1-2 s here; 30 s of silence is a real gap
POND_MIN_HISTORY_S = 8  # why: the first tranche can go out before the first DO crash (~20 s)
# why 60 %: one 28 s crash in a 2-minute cycle leaves a ~75 % score; the second tranche still
# goes out after the lender resumes, and the score visibly drops with every crash
POND_MIN_SCORE_BP = 6000
POND_COVENANT_MAX_EXCURSION_S = 20  # why: shorter than the crash, so the crash pauses tranches
POLICY_ID = "do-crash-cover"
POLICY_PREMIUM_MINOR = 20_000
POLICY_PAYOUT_MINOR = 250_000
POLICY_DO_MIN_CENTI_MG_L = 400  # claim when DO stays below 4.00 mg/L ...
POLICY_MAX_DURATION_S = 15  # ... for longer than 15 s (a real policy: hours)
POLICY_TEMP_MAX_CENTI_C = 3300  # a heat trigger the demo pond never reaches
POLICY_WINDOW_S = (
    60  # the contract's minimum; one claim per 60 s window, the crash is once per cycle
)
POLICY_TERM_S = 365 * 86400

# Collateral: a yard near Munich; 1e-7 degree units as the wire format.
YARD_LAT, YARD_LON = round(world.YARD_LAT_DEG * 1e7), round(world.YARD_LON_DEG * 1e7)
YARD_HALF_SIDE = 10_000  # 0.0010 deg: a square fence of ~220 m x ~150 m around the yard
GEOFENCE = [
    [YARD_LAT - YARD_HALF_SIDE, YARD_LON - YARD_HALF_SIDE],
    [YARD_LAT - YARD_HALF_SIDE, YARD_LON + YARD_HALF_SIDE],
    [YARD_LAT + YARD_HALF_SIDE, YARD_LON + YARD_HALF_SIDE],
    [YARD_LAT + YARD_HALF_SIDE, YARD_LON - YARD_HALF_SIDE],
]
COLLATERAL_MIN_WEIGHT_MILLI_KG = 100_000  # the pledged stock must stay above 100 kg
COLLATERAL_HEARTBEAT_MAX_GAP_S = 20  # why: boards report every 1-2 s; 20 s of silence is absence
COLLATERAL_CREDIT_LIMIT_MINOR = 1_000_000
COLLATERAL_DRAWDOWN_MINOR = 400_000
# why 15 s: after the last alarm the lender waits this long (the tracker is back in the yard)
# before the borrower repays and the lender unfreezes, so the frozen state is visible
COLLATERAL_QUIET_S = 15

# Energy: 15 s intervals (a real market: 15 min) with gate closure and settlement in seconds.
ENERGY_INTERVAL_S = 15
ENERGY_GATE_CLOSURE_S = 3
# why 10 s: the end-boundary readings of both meters must be committed before the clock passes
# settlement; uploads lag the readings by up to ~5 s on the virtual link
ENERGY_SETTLE_DELAY_S = 10
ENERGY_BOUNDARY_TOLERANCE_S = 5  # why: meters read every 2 s, one reading falls in 5 s for sure
# Money in demo-energy is counted in 1/10,000 of a currency unit: an interval of the demo's DC
# microgrid (tools/sim/world.py) moves ~2 Wh, and a trade pays energy x price / 1000 rounded
# down, so at 0.26 per kWh (2,600 minor units) 2 Wh pay 5 minor units instead of nothing.
ENERGY_IMBALANCE_MINOR_PER_KWH = 4000  # 0.40 per kWh
ENERGY_FEED_IN_MINOR_PER_KWH = 800  # 0.08 per kWh
OFFER_WH, OFFER_MINOR_PER_KWH = 2, 2200  # the prosumer sells 2 Wh per interval at 0.22 per kWh
BID_WH, BID_MINOR_PER_KWH = 2, 3000  # the bakery buys 2 Wh per interval at up to 0.30 per kWh
ORDER_MARGIN_S = 1  # why: an order dated this long before gate closure cannot be late

# Parking: a per-minute tariff, a grace period of a few seconds, a daily cap.
PARKING_RATE_MINOR_PER_HOUR = 6000  # 1.00 per minute: the demo's ~15 s stay costs ~0.25
PARKING_GRACE_S = 5
PARKING_DAILY_CAP_MINOR = 3000
WALLET_LIMIT_MINOR = 2000  # the driver's per-session spending limit
WALLET_TOPUP_MINOR = 5000
WALLET_TOPUP_BELOW_MINOR = 1000  # the driver's app tops up when the balance falls below this

# ---- loop periods ------------------------------------------------------------------------------

STORY_STEP_S = 1.0  # each story looks at the contract state once a second
TICK_INTERVAL_S = 10.0  # why: heartbeat (20 s) and data-gap (30 s) limits are seen within 10 s
CLOCK_CHECK_S = 2.0
# Contract events the demo reports on the console (the five outcomes).
OUTCOMES = {
    "breach": "cold chain: lot {lot} BREACHED ({temp_centi_c} centi-degC, out of window {s} s)",
    "claim-paid": "fish farm: DO below the policy threshold for {s} s, claim paid",
    "drawdown-frozen": "collateral: {reason} alarm, drawdown frozen",
    "settled": "energy: interval {interval_start_s} settled at {price_minor_per_kwh}/kWh, net {net_minor}",
    "charged": "parking: session {session} charged {fee_minor} minor units to the wallet (receipt)",
}


# ==== the parking bay's vehicle ===================================================================


def vehicle_commitment(profile: dict) -> bytes:
    """Return the demo car's commitment under the bay profile's salt, as the bay board makes it."""
    tag = next(s for s in profile["sensors"] if s["driver"] == "ble_beacon")
    salt = bytes.fromhex(tag["params"]["commitment_salt_hex"])
    return ble_beacon.commitment(salt, world.vehicle_id())


# ==== participants and keys =====================================================================


def load_or_create_secret(data_dir: Path) -> bytes:
    """Return the demo secret of data_dir, creating it (32 random bytes, mode 0600) on first use.

    Raises PermissionError if the file is readable by group or others, ValueError if its size
    is wrong.
    """
    path = data_dir / DEMO_SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(DEMO_SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} has mode {mode:o}; it must be 0600")
    secret = path.read_bytes()
    if len(secret) != DEMO_SECRET_BYTES:
        raise ValueError(f"{path} must hold {DEMO_SECRET_BYTES} bytes")
    return secret


@dataclass(frozen=True)
class Participant:
    """A demo participant: its label, display name, roles and Ed25519 key."""

    label: str
    name: str
    roles: tuple[str, ...]
    key: SigningKey

    @property
    def pk(self) -> str:
        """Return the hex public key (the participant's id in transactions and state)."""
        return bytes(self.key.verify_key).hex()


def participants(secret: bytes) -> dict[str, Participant]:
    """Return the demo participants by label, keys = HMAC-SHA256(secret, KEY_DOMAIN || label)."""
    out = {}
    for label, name, roles in PARTICIPANTS:
        seed = hmac.new(secret, KEY_DOMAIN + label.encode(), hashlib.sha256).digest()
        out[label] = Participant(label, name, roles, SigningKey(seed))
    return out


# ==== the stories =================================================================================


async def enroll_boards(node: Node, boards: list[VirtualBoard]) -> int:
    """Enroll every board the node's registry does not know (metadata: profile, use case and the
    demo role if any); return how many were enrolled."""
    enrolled = 0
    for vb in boards:
        if node.reads.find_device(vb.device_id) is None:
            meta = {
                "profile": vb.profile["name"],
                "use_case": vb.profile.get("use_case"),
                "demo_role": vb.profile.get(DEMO_ROLE_KEY),
            }
            await node.sequencer.enroll(vb.public_key, {k: v for k, v in meta.items() if v})
            enrolled += 1
    return enrolled


class ScenarioConflict(Exception):
    """The data dir's log belongs to someone else (another operator): the demo stays out of it."""


class Demo:
    """The running demo: participants, the boards of each story, and the story steps.

    Build it with `await Demo.prepare(node, fleet)`, then `await setup()` once and
    `await run_stories()` until cancelled.
    """

    def __init__(self, node: Node, fleet: VirtualFleet, secret: bytes) -> None:
        """Precondition: fleet runs the five demo profiles and the consumer meter."""
        self.reads = node.reads
        self.writer = node.sequencer
        self.fleet = fleet
        self.p = participants(secret)
        self.by_pk = {p.pk: p for p in self.p.values()}
        boards: dict[str, VirtualBoard] = {}
        for vb in fleet.boards:
            boards.setdefault(world.role(vb.profile), vb)
        self.boards = boards
        self.dev = {role: vb.device_id.hex() for role, vb in boards.items()}
        self.vehicle = vehicle_commitment(boards["parking-bay"].profile).hex()
        self._lock = asyncio.Lock()  # one transaction at a time: nonces come from the state
        self._seen_event = -1
        self._reported: set[str] = set()

    @classmethod
    async def prepare(cls, node: Node, fleet: VirtualFleet) -> Demo:
        """Return the Demo after starting and enrolling the consumer meter and setting the board
        clocks. Precondition: the fleet runs in the DEMO world (tools/sim/world.py). Raises
        KeyError if a demo profile is missing from the fleet, PermissionError/ValueError for a
        bad secret file."""
        secret = load_or_create_secret(Path(node.settings.data_dir))
        roles = {world.role(vb.profile): vb for vb in fleet.boards}
        for needed in DEMO_PROFILES:
            if needed not in roles:
                raise KeyError(f"the virtual fleet has no {needed} board")
        if CONSUMER_METER not in roles:
            # a trade needs two meters: the bakery's is a second energy-meter board
            seller = roles["energy-meter"]
            await fleet.add_board({**seller.profile, DEMO_ROLE_KEY: CONSUMER_METER})
        await enroll_boards(node, fleet.boards)
        demo = cls(node, fleet, secret)
        await demo.sync_clocks()
        sizes = node.reads.sizes()
        demo._seen_event = sizes.sequenced_size - 1 if sizes else -1
        return demo

    # ---- plumbing --------------------------------------------------------------------------

    async def sync_clocks(self) -> int:
        """Set the clock of every virtual board that has none yet; return how many were set.

        Stands in for the gateway's TIME_SYNC command (docs/ble-protocol.md): it runs the same
        firmware call (Sampler.time_sync, which also journals the time-sync event), at a whole
        second so the board's Unix time is exact. Records before it carry uptime, not Unix time,
        and no contract can place them.
        """
        unsynced = [vb for vb in self.fleet.boards if not vb.board.sampler.time.synced]
        if not unsynced:
            return 0
        now = time.time()
        await asyncio.sleep(math.ceil(now) - now)
        unix_s = round(time.time())
        for vb in unsynced:
            vb.board.sampler.time_sync(unix_s)
        return len(unsynced)

    def contract(self, cid: str) -> dict[str, Any] | None:
        """Return the contract instance cid in the current state, or None."""
        return self.reads.state["contracts"].get(cid)

    async def submit(
        self,
        who: Participant,
        contract: str,
        action: str,
        args: dict[str, Any],
        cosigners: tuple[Participant, ...] = (),
        rejected_level: int = logging.DEBUG,
    ) -> bool:
        """Sign and admit one transaction (nonce = the sender's last + 1); return True if it
        was accepted, False if a contract rejected it (logged at rejected_level)."""
        async with self._lock:
            last = self.reads.state["nonces"].get(who.pk)
            nonce = 1 if last is None else last + 1
            keys = [who.key, *(c.key for c in cosigners)]
            payload = make_tx(keys, nonce, contract, action, args, int(time.time()))
            try:
                await self.writer.submit_tx(payload)
            except ContractError as err:
                log.log(rejected_level, "demo: %s's %s/%s was rejected: %s", who.label, contract, action, err)  # fmt: skip
                return False
            return True

    # ---- one-time setup --------------------------------------------------------------------

    async def setup(self) -> list[str]:
        """Post whatever of the demo's one-time setup the state does not show yet; return the
        "contract/action" of every accepted transaction (empty on a set-up data dir).

        Raises ScenarioConflict if the log already has participants but not the demo operator.
        """
        done: list[str] = []

        async def post(who: str, cid: str, action: str, args: dict[str, Any], *co: str) -> None:
            cos = tuple(self.p[c] for c in co)
            if await self.submit(self.p[who], cid, action, args, cos, logging.WARNING):
                done.append(f"{cid}/{action}")

        op = self.p["operator"]
        known = self.reads.state["participants"]
        if op.pk not in known and known:
            raise ScenarioConflict("this log has participants but not the demo operator")
        for p in self.p.values():
            if p.pk not in self.reads.state["participants"]:
                await post("operator", ENGINE_ID, "register", {"public_key": p.pk, "name": p.name, "roles": list(p.roles)})  # fmt: skip
        for cid, (owner, ctype, params) in self._contract_specs().items():
            inst = self.contract(cid)
            if inst is None:
                await post(owner, ENGINE_ID, "create", {"id": cid, "type": ctype, "params": params})
            elif inst["owner"] != self.p[owner].pk or inst["type"] != ctype:
                raise ScenarioConflict(f"contract {cid} exists with another owner or type")
        for cid, owner, role in (
            (AGRI_ID, "retailer", "cold-chain-logger"),
            (POND_ID, "pond_lender", "pond-monitor"),
            (COLLATERAL_ID, "bank", "collateral-tracker"),
            (ENERGY_ID, "market", "energy-meter"),
            (ENERGY_ID, "market", CONSUMER_METER),
            (PARKING_ID, "parking", "parking-bay"),
        ):
            inst = self.contract(cid)
            if inst is not None and self.dev[role] not in inst["devices"]:
                await post(owner, ENGINE_ID, "bind-device", {"contract": cid, "device": self.dev[role]})  # fmt: skip
        energy = self.contract(ENERGY_ID)
        for role, who in (("energy-meter", "prosumer"), (CONSUMER_METER, "consumer")):
            if energy is not None and self.dev[role] not in energy["data"]["meters"]:
                await post("market", ENERGY_ID, "register-meter", {"device": self.dev[role], "participant": self.p[who].pk})  # fmt: skip
        pond = self.contract(POND_ID)
        if pond is not None and pond["data"]["loan"]["status"] == "none":
            await post("farmer", POND_ID, "apply", {})
        if pond is not None and POLICY_ID not in pond["data"]["policies"]:
            await post("insurer", POND_ID, "bind-policy", self._policy_args(), "farmer")
        parking = self.contract(PARKING_ID)
        if parking is not None and self.vehicle not in parking["data"]["wallets"]:
            await post("driver", PARKING_ID, "open-wallet", {"vehicle": self.vehicle, "limit_minor": WALLET_LIMIT_MINOR})  # fmt: skip
        return done

    def _contract_specs(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """Return {contract id: (owner label, type, params)} of the five demo contracts."""
        p = self.p
        return {
            AGRI_ID: ("retailer", "agri", {
                "certifiers": [p["certifier"].pk],
                "default_temp_min_centi_c": COLD_WINDOW_CENTI_C[0],
                "default_temp_max_centi_c": COLD_WINDOW_CENTI_C[1],
                "default_max_excursion_s": COLD_MAX_EXCURSION_S,
            }),
            POND_ID: ("pond_lender", "fishfarm", {
                "farmer": p["farmer"].pk,
                "tranches_minor": POND_TRANCHES_MINOR,
                "do_min_centi_mg_l": POND_DO_MIN_CENTI_MG_L,
                "max_gap_s": POND_MAX_GAP_S,
                "min_history_s": POND_MIN_HISTORY_S,
                "min_score_bp": POND_MIN_SCORE_BP,
                "covenant_max_excursion_s": POND_COVENANT_MAX_EXCURSION_S,
            }),
            COLLATERAL_ID: ("bank", "collateral", {
                "borrower": p["borrower"].pk,
                "geofence": GEOFENCE,
                "min_weight_milli_kg": COLLATERAL_MIN_WEIGHT_MILLI_KG,
                "heartbeat_max_gap_s": COLLATERAL_HEARTBEAT_MAX_GAP_S,
                "credit_limit_minor": COLLATERAL_CREDIT_LIMIT_MINOR,
            }),
            ENERGY_ID: ("market", "energy", {
                "interval_s": ENERGY_INTERVAL_S,
                "gate_closure_s": ENERGY_GATE_CLOSURE_S,
                "settle_delay_s": ENERGY_SETTLE_DELAY_S,
                "boundary_tolerance_s": ENERGY_BOUNDARY_TOLERANCE_S,
                "imbalance_price_minor_per_kwh": ENERGY_IMBALANCE_MINOR_PER_KWH,
                "feed_in_price_minor_per_kwh": ENERGY_FEED_IN_MINOR_PER_KWH,
                "grid_operator": p["grid"].pk,
            }),
            PARKING_ID: ("parking", "parking", {
                "bands": [[0, PARKING_RATE_MINOR_PER_HOUR]],
                "daily_cap_minor": PARKING_DAILY_CAP_MINOR,
                "grace_s": PARKING_GRACE_S,
            }),
        }  # fmt: skip

    @staticmethod
    def _policy_args() -> dict[str, Any]:
        return {
            "policy": POLICY_ID,
            "premium_minor": POLICY_PREMIUM_MINOR,
            "payout_minor": POLICY_PAYOUT_MINOR,
            "do_min_centi_mg_l": POLICY_DO_MIN_CENTI_MG_L,
            "temp_max_centi_c": POLICY_TEMP_MAX_CENTI_C,
            "max_duration_s": POLICY_MAX_DURATION_S,
            "window_s": POLICY_WINDOW_S,
            "end_s": int(time.time()) + POLICY_TERM_S,
        }

    # ---- the story steps (each looks at the state and posts at most what is due) -------------

    async def cold_chain_step(self) -> None:
        """Keep a lot on the logger in the carrier's hands; after a breach, once the temperature
        is back in the window, the carrier detaches the logger and the grower ships a new lot."""
        inst = self.contract(AGRI_ID)
        if inst is None:
            return
        data, dev = inst["data"], self.dev["cold-chain-logger"]
        grower, carrier = self.p["grower"], self.p["carrier"]
        lot_id = data["attached"].get(dev)
        if lot_id is not None:
            lot = data["lots"][lot_id]
            custodian = self.by_pk.get(lot["custodian"])
            if lot["breach"] is None:
                if custodian is grower:  # the two-party handover: giver sends, taker cosigns
                    await self.submit(grower, AGRI_ID, "handover", {"lot": lot_id, "to": carrier.pk}, (carrier,))  # fmt: skip
                return
            if dev in data["excursions"] or custodian is None:
                return  # still out of the window: the next lot waits for the reefer to cool
            await self.submit(custodian, AGRI_ID, "detach-device", {"device": dev})
            return
        lot_id = f"{LOT_PREFIX}-{len(data['lots']) + 1:04d}"
        registered = await self.submit(grower, AGRI_ID, "register-lot", {
            "lot": lot_id, "product": LOT_PRODUCT, "code": LOT_CODE,
            "quantity": LOT_QUANTITY, "origin": LOT_ORIGIN,
        })  # fmt: skip
        if registered and await self.submit(grower, AGRI_ID, "attach-device", {"lot": lot_id, "device": dev}):  # fmt: skip
            await self.submit(grower, AGRI_ID, "handover", {"lot": lot_id, "to": carrier.pk}, (carrier,))  # fmt: skip

    async def pond_step(self) -> None:
        """Disburse tranches while the covenants hold; resume after a crash once DO is back."""
        inst = self.contract(POND_ID)
        if inst is None:
            return
        data, params = inst["data"], inst["params"]
        loan, st = data["loan"], data["stats"]
        lender = self.p["pond_lender"]
        now = int(time.time())
        tranches_left = loan["next_tranche"] < len(params["tranches_minor"])
        if loan["status"] not in ("applied", "active") or not tranches_left:
            return
        if loan["paused"]:
            if st["excursion"] is None and st["last_s"] is not None and now - st["last_s"] <= params["max_gap_s"]:  # fmt: skip
                await self.submit(lender, POND_ID, "resume", {})
            return
        if (
            st["first_s"] is not None
            and now - st["first_s"] >= params["min_history_s"]
            and now - st["last_s"] <= params["max_gap_s"]
            and score_bp(st, now, params["excursion_penalty_bp"]) >= params["min_score_bp"]
        ):
            await self.submit(lender, POND_ID, "disburse", {})

    async def collateral_step(self) -> None:
        """Draw down while unfrozen; after an alarm and a quiet COLLATERAL_QUIET_S, the borrower
        repays and the lender unfreezes (so the next trip out of the yard freezes it again)."""
        inst = self.contract(COLLATERAL_ID)
        if inst is None or inst["data"]["lien"] != "active":
            return
        data = inst["data"]
        borrower, bank = self.p["borrower"], self.p["bank"]
        outstanding = data["drawn_minor"] - data["repaid_minor"]
        if not data["frozen"]:
            if outstanding == 0:
                await self.submit(borrower, COLLATERAL_ID, "drawdown", {"amount_minor": COLLATERAL_DRAWDOWN_MINOR})  # fmt: skip
            return
        last_alarm_s = max((a["at_s"] for a in data["alarms"]), default=0)
        if time.time() - last_alarm_s < COLLATERAL_QUIET_S:
            return
        if outstanding > 0:
            await self.submit(borrower, COLLATERAL_ID, "repay", {"amount_minor": outstanding})
        else:
            await self.submit(bank, COLLATERAL_ID, "unfreeze", {})

    async def energy_step(self) -> None:
        """Post the prosumer's offer and the bakery's bid for the next interval still open."""
        inst = self.contract(ENERGY_ID)
        if inst is None:
            return
        params, data = inst["params"], inst["data"]
        interval, gate = params["interval_s"], params["gate_closure_s"]
        now = time.time()
        start = (int(now + gate + ORDER_MARGIN_S) // interval + 1) * interval
        iv = data["intervals"].get(str(start))
        have = {o["participant"] for o in iv["orders"]} if iv is not None else set()
        seller, buyer = self.p["prosumer"], self.p["consumer"]
        for who, side, energy_wh, price in (
            (seller, "offer", OFFER_WH, OFFER_MINOR_PER_KWH),
            (buyer, "bid", BID_WH, BID_MINOR_PER_KWH),
        ):
            if who.pk not in have:
                args = {"interval_start_s": start, "energy_wh": energy_wh, "price_minor_per_kwh": price}  # fmt: skip
                await self.submit(who, ENERGY_ID, side, args)

    async def parking_step(self) -> None:
        """Top the wallet up when low; pay any session left unpaid once the balance allows."""
        inst = self.contract(PARKING_ID)
        if inst is None or self.vehicle not in inst["data"]["wallets"]:
            return
        data, driver = inst["data"], self.p["driver"]
        balance = data["positions"].get(wallet_account(self.vehicle), 0)
        if balance < WALLET_TOPUP_BELOW_MINOR:
            await self.submit(driver, PARKING_ID, "top-up", {"vehicle": self.vehicle, "amount_minor": WALLET_TOPUP_MINOR})  # fmt: skip
            return
        for sid, session in sorted(data["sessions"].items()):
            if session["status"] == "unpaid" and session["vehicle"] == self.vehicle and session["fee_minor"] <= balance:  # fmt: skip
                await self.submit(driver, PARKING_ID, "pay-session", {"session": sid})
                return

    async def tick_step(self) -> None:
        """Tick the contracts where absence is evidence, so silence is seen without records."""
        for cid in (POND_ID, COLLATERAL_ID, ENERGY_ID):
            if self.contract(cid) is not None:
                await self.submit(self.p["operator"], cid, "tick", {})

    async def report_step(self) -> None:
        """Log each new outcome event (info for the first of each kind, debug after)."""
        events = self.reads.contract_events(
            types=frozenset(OUTCOMES), since=self._seen_event, limit=1000
        )
        for ev in events:
            self._seen_event = max(self._seen_event, ev["index"])
            data = ev["data"]
            fields = {**data}
            if ev["type"] in ("breach", "claim-paid"):
                fields["s"] = data.get("end_s", data.get("at_s", 0)) - data.get("start_s", 0)
            if ev["type"] == "settled":
                net = data.get("net_minor", {})
                fields["net_minor"] = ", ".join(f"{self._account_name(a)} {v:+d}" for a, v in sorted(net.items()))  # fmt: skip
            try:
                text = OUTCOMES[ev["type"]].format(**fields)
            except (KeyError, IndexError):
                text = f"{ev['contract']}: {ev['type']}"
            level = logging.DEBUG if ev["type"] in self._reported else logging.INFO
            self._reported.add(ev["type"])
            log.log(level, "demo: %s; proof: GET /v1/bundle/%d", text, ev["index"])

    def _account_name(self, account: str) -> str:
        """Return the display name of a positions account (a participant key, "grid", ...)."""
        p = self.by_pk.get(account)
        return account if p is None else p.name

    async def run_stories(self) -> None:
        """Run every story step, the clock check and the ticks until cancelled."""
        steps: list[tuple[float, Callable[[], Awaitable[Any]]]] = [
            (CLOCK_CHECK_S, self.sync_clocks),
            (STORY_STEP_S, self.cold_chain_step),
            (STORY_STEP_S, self.pond_step),
            (STORY_STEP_S, self.collateral_step),
            (STORY_STEP_S, self.energy_step),
            (STORY_STEP_S, self.parking_step),
            (STORY_STEP_S, self.report_step),
            (TICK_INTERVAL_S, self.tick_step),
        ]
        await asyncio.gather(*(_every(period, step) for period, step in steps))


async def _every(period_s: float, step: Callable[[], Awaitable[Any]]) -> None:
    """Run step() every period_s until cancelled or the service stops; a failing step is logged
    and retried at the next period."""
    while True:
        try:
            await step()
        except EdgesealError as err:
            if err.code == "unavailable":
                return  # the service is stopping
            log.debug("demo step %s: %s", getattr(step, "__name__", step), err)
        except Exception:
            log.exception("demo step %s failed", getattr(step, "__name__", step))
        await asyncio.sleep(period_s)


async def run(node: Node, fleet: VirtualFleet | None) -> None:
    """Run the demo scenarios on node (a running gateway.node.Node) until cancelled.

    Does nothing without a virtual fleet (a real deployment never gets demo participants) or on
    a log that belongs to another operator. Returns only in those cases or when the node
    stops.
    """
    if fleet is None:
        log.info("demo scenarios: no virtual fleet, nothing to do")
        return
    demo = await Demo.prepare(node, fleet)
    try:
        done = await demo.setup()
    except ScenarioConflict as exc:
        log.warning("demo scenarios not started: %s", exc)
        return
    log.info(
        "demo scenarios: %s; five stories running (docs/demo.md)",
        f"{len(done)} setup transactions posted" if done else "already set up",
    )
    await demo.run_stories()
