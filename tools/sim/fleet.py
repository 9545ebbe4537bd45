"""Virtual boards: the real firmware, drivers included, on simulated chips and bumble's radio.

Each VirtualBoard runs firmware.app.build_board() unchanged, as a board boots: its profile, the
buses firmware/main.py would build (here tools/sim/devices.py's chip models on the bus fakes,
fed by the world's timelines, tools/sim/world.py), the `bluetooth` API of tools/sim/bluetooth.py
over its own bumble Device, a directory of its own as flash, and the host clock. So every
reading goes through the driver and its adapter (firmware/drivers/<name>.py source()), as on a
board. The BLE tags of the world (tools/sim/tags.py) advertise on the same link, heard by the
boards' own scans. All boards, tags and the gateway's central share one VirtualLink, in one
process and one event loop.

One difference from a board, on purpose: a driver's blocking wait (a DS18B20's 750 ms
conversion) returns at once and is counted as time the board's chips saw pass (SimClock), since
a real sleep would stall every board and the gateway sharing the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from firmware import app as fw_app
from firmware.fs import VfsFS
from firmware.keystore import SEED_BYTES, install_link_key
from firmware.power import Sleeper
from gateway.ble.auth import derive_link_key
from gateway.ble.bumble_backend import BumbleCentral
from tools.sim.bluetooth import BLE, UUID
from tools.sim.devices import SimBuses, build_buses
from tools.sim.radio import VirtualLink
from tools.sim.tags import BeaconTag
from tools.sim.world import QUIET, BoardWorld, World

# The five use-case boards `make run` starts, one per contract (profiles in boards/).
DEMO_PROFILES = (
    "cold-chain-logger",
    "pond-monitor",
    "collateral-tracker",
    "energy-meter",
    "parking-bay",
)
# The gateway master secret the simulated fleet provisions its boards' link keys from when the
# caller gives none (tests); `make run` passes the node's own (data_dir/link.key).
SIM_LINK_MASTER = hashlib.sha256(b"edgeseal simulated link master").digest()
# why 10 ms: a tamper switch's edge reaches the pin IRQ within 10 ms (its debounce is 50 ms)
BUS_UPDATE_S = 0.01
# why 10: the HX711's RATE pin low, as on the usual load-cell boards (datasheet: 10 or 80 SPS)
HX711_SPS = 10


class SimClock(fw_app.RealClock):
    """The board's clock: real ticks, but block_ms returns at once and adds to waited_ms.

    The chips count waited_ms as time passed (tools/sim/devices.py BoardTime), the board's own
    clock does not: a driver that waits for a conversion finds it done, and the board's time
    (record timestamps, intervals) stays the host's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waited_ms = 0
        self.block_ms = self._waited

    def _waited(self, ms: int) -> None:
        self.waited_ms += int(ms)


class RootedFS(VfsFS):
    """firmware.fs.VfsFS confined to a directory: every path is taken relative to root."""

    def __init__(self, root: str) -> None:
        """Use root (created if missing) as the board's flash."""
        os.makedirs(root, exist_ok=True)
        self.root = root

    def _p(self, path: str) -> str:
        return os.path.join(self.root, path)

    def open(self, path: str, mode: str) -> Any:
        return super().open(self._p(path), mode)

    def rename(self, old: str, new: str) -> None:
        super().rename(self._p(old), self._p(new))

    def remove(self, path: str) -> None:
        super().remove(self._p(path))

    def size(self, path: str) -> int:
        return super().size(self._p(path))

    def exists(self, path: str) -> bool:
        return super().exists(self._p(path))

    def listdir(self, path: str) -> list[str]:
        return super().listdir(self._p(path) if path else self.root)

    def mkdir(self, path: str) -> None:
        super().mkdir(self._p(path))


@dataclass
class VirtualBoard:
    """One running virtual board: the firmware Board, its radio, its buses and its flash."""

    index: int
    profile: dict
    board: Any  # firmware.app.Board
    ble: BLE
    root: str
    buses: SimBuses
    tags: list[BeaconTag] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def uptime_s(self) -> float:
        """Return the board's uptime in seconds, as its world sees it (its timelines' time)."""
        return self.buses.time.uptime_s()

    @property
    def device_id(self) -> bytes:
        """Return the board's 16-byte device id."""
        return self.board.dev_id

    @property
    def public_key(self) -> bytes:
        """Return the board's current Ed25519 public key."""
        return self.board.public_key


class VirtualFleet:
    """N virtual boards running the real firmware, plus the gateway's BumbleCentral, on one link.

    profiles: board profile dicts (firmware.board.load / load_all); root_dir: where each board's
    flash directory goes (board-<index>); world: what the boards sense (tools/sim/world.py;
    default QUIET: every chip reads its defaults); *_interval_s shorten the profile's intervals
    (a demo or a test does not wait a minute per reading; a profile that is already faster keeps
    its own interval); seed makes device keys deterministic. link_master: the gateway's master
    secret; enrolling a board installs its link key, derived from it (provisioning, simulated).
    """

    def __init__(
        self,
        profiles: list[dict],
        root_dir: str,
        *,
        world: World = QUIET,
        sample_interval_s: float | None = None,
        heartbeat_interval_s: float | None = None,
        sign_every_n: int | None = None,
        seed: bytes = b"edgeseal virtual fleet",
        link_master: bytes = SIM_LINK_MASTER,
        keep_power: bool = False,
    ) -> None:
        """Describe the fleet; start() builds and runs it. keep_power: run a profile's "power"
        object (advertising windows, firmware/power.py; sleep is an asyncio sleep here); by
        default it is ignored and every board is always awake and advertising."""
        self.keep_power = keep_power
        self.profiles = profiles
        self.root_dir = root_dir
        self.world = world
        self.sample_interval_s = sample_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.sign_every_n = sign_every_n
        self.seed = seed
        self.link_master = link_master
        self.boards: list[VirtualBoard] = []
        self.link: VirtualLink | None = None
        self.central: BumbleCentral | None = None

    async def start(self) -> list[VirtualBoard]:
        """Create the link, the central and every board, start the boards; return the boards."""
        self.link = VirtualLink()
        self.central = self.link.new_central()
        await self.central.start()
        for i, profile in enumerate(self.profiles):
            self.boards.append(await self._start_board(i, profile))
        return self.boards

    async def add_board(self, profile: dict) -> VirtualBoard:
        """Start one more board (the next index) on the running fleet; return it.

        Precondition: start() has run. The board's key depends on its index only, so a fleet
        rebuilt with the same profiles and the same add_board calls, in order, on the same
        root_dir gets the same boards back (their flash persists in board-<index>).
        """
        board = await self._start_board(len(self.boards), profile)
        self.boards.append(board)
        return board

    def _profile(self, profile: dict) -> dict:
        """Return the profile with the fleet's shorter intervals applied."""
        profile = dict(profile)
        if self.sample_interval_s is not None:
            profile["sample_interval_s"] = min(profile["sample_interval_s"], self.sample_interval_s)
        if self.heartbeat_interval_s is not None:
            profile["heartbeat_interval_s"] = min(
                profile["heartbeat_interval_s"], self.heartbeat_interval_s
            )
        return profile

    async def _start_board(self, index: int, profile: dict) -> VirtualBoard:
        assert self.link is not None
        profile = self._profile(profile)
        world = self.world.board(profile)
        device = self.link.new_device(f"board-{index}")
        ble = BLE(device)
        root = os.path.join(self.root_dir, f"board-{index}")
        clock = SimClock()
        seed = hashlib.sha256(self.seed + index.to_bytes(4, "big")).digest()

        def urandom(n: int) -> bytes:
            # the device key (32 bytes) is deterministic per index; connection nonces are random
            if n != SEED_BYTES:
                return os.urandom(n)
            return seed

        install_link_key(RootedFS(root), None, derive_link_key(self.link_master, _dev_id(seed)))

        buses = build_buses(
            profile, world.timelines, clock, clock.ticks_ms(), HX711_SPS, lambda: clock.waited_ms
        )
        board = fw_app.build_board(
            profile, ble, RootedFS(root), None, buses, clock, urandom, uuid=UUID,
            sign_every_n=self.sign_every_n, sleeper=Sleeper(None) if self.keep_power else None,
        )  # fmt: skip
        vb = VirtualBoard(index, profile, board, ble, root, buses)
        await self._start_tags(vb, world)
        await board.start()
        vb.tasks.append(asyncio.create_task(_update_buses(buses), name=f"buses-{index}"))
        return vb

    async def _start_tags(self, vb: VirtualBoard, world: BoardWorld) -> None:
        """Put the world's tags near this board on the link; the board hears them at their RSSI."""
        assert self.link is not None
        rssi: dict[bytes, Any] = {}
        for spec in world.tags:
            device = self.link.new_device(f"{spec.name}-{vb.index}")
            tag = BeaconTag(device, spec.adv, lambda p=spec.present: p(vb.uptime_s()))
            await tag.start()
            vb.tags.append(tag)
            rssi[tag.address] = spec.rssi_dbm
        if rssi:
            vb.ble.rssi_of = lambda addr: rssi[addr](vb.uptime_s()) if addr in rssi else None

    async def stop(self) -> None:
        """Stop every board and close the radios; safe to call twice.

        The central goes first: it disconnects from the boards while they still answer (a
        board powered off mid-connection leaves the central a connection nobody completes).
        """
        for vb in self.boards:
            vb.board.stop()
            for task in vb.tasks:
                task.cancel()
            await asyncio.gather(*vb.tasks, return_exceptions=True)
        if self.central is not None:
            await self.central.close()
        for vb in self.boards:
            for tag in vb.tags:
                await tag.stop()
            await vb.ble.close()
        self.boards = []
        self.central = None


def _dev_id(seed: bytes) -> bytes:
    """Return the device id of the board whose Ed25519 seed is seed (wire format v1)."""
    from firmware import ed25519, wire

    return wire.device_id(ed25519.SigningKey(seed).public_key)


async def _update_buses(buses: SimBuses) -> None:
    """Deliver the chips' asynchronous events (pin edges) every BUS_UPDATE_S until cancelled."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            buses.update()
            await asyncio.sleep(BUS_UPDATE_S)
