"""Virtual boards: the real firmware (sampler, journal, peripheral) on bumble's virtual radio.

Each VirtualBoard runs firmware.app.build_board() unchanged with: the `bluetooth` shim of
gateway.ble.virtual_bluetooth over its own bumble Device and virtual Controller, a directory of
its own as flash, the host clock, and simulated sensors (deterministic functions of the board's
uptime, one model per channel type, in each type's physical range). A `SourcesFactory` replaces
the simulated sensors of chosen boards with scripted ones (the demo scenarios' timelines,
gateway/scenarios.py), at construction or on a running fleet. All boards and the gateway's
central share one VirtualLink in one process and one event loop.

Needs the repository root on sys.path (the `firmware` package is not part of the gateway wheel).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.ble.bumble_backend import BumbleCentral, VirtualLink
from gateway.ble.virtual_bluetooth import BLE, UUID

# Firmware imports `micropython` for const(); on CPython a stand-in is installed if none is.
if "micropython" not in sys.modules:
    _mp = types.ModuleType("micropython")
    _mp.const = lambda v: v  # type: ignore[attr-defined]
    _mp.native = lambda f: f  # type: ignore[attr-defined]
    _mp.viper = lambda f: f  # type: ignore[attr-defined]
    sys.modules["micropython"] = _mp

from firmware import app as fw_app  # noqa: E402
from firmware import board as fw_board  # noqa: E402
from firmware.fs import VfsFS  # noqa: E402
from firmware.sampler import Source  # noqa: E402

# A factory of scripted sensors: (profile, board index, uptime_s) -> the board's Sources, or None to
# keep the simulated ones. uptime_s() returns the board's own uptime in seconds (its firmware clock).
SourcesFactory = Callable[[dict, int, Callable[[], float]], list[Source] | None]

# Simulated sensor models: type name -> f(uptime_s, channel, board_index) -> scaled int. Smooth,
# deterministic, inside every type's registry range (docs/wire-format.md, Values).
_DAY_S = 86_400.0


def _wave(t_s: float, period_s: float, phase: float) -> float:
    return math.sin(2 * math.pi * t_s / period_s + phase)


SENSOR_MODELS: dict[str, Callable[[float, int, int], int]] = {
    "temperature": lambda t, ch, i: int(400 + 150 * ch + 120 * _wave(t, _DAY_S, i)),  # 4 degC
    "humidity": lambda t, ch, i: int(6500 + 800 * _wave(t, _DAY_S, i + 1)),
    "dissolved_oxygen": lambda t, ch, i: int(750 + 120 * _wave(t, _DAY_S / 2, i)),
    "ph": lambda t, ch, i: int(7200 + 300 * _wave(t, _DAY_S, i)),
    "ammonia": lambda t, ch, i: int(200 + 50 * _wave(t, _DAY_S / 3, i)),
    "energy": lambda t, ch, i: int(t * (1.5 if ch == 0 else 0.4)) + 1000 * i,  # monotonic Wh
    "power": lambda t, ch, i: int(1_500_000 + 900_000 * _wave(t, _DAY_S, i)),
    "voltage": lambda t, ch, i: int(230_000 + 2_000 * _wave(t, 600, i)),
    "current": lambda t, ch, i: int(6_500 + 3_900 * _wave(t, _DAY_S, i)),
    "latitude": lambda t, ch, i: 481_372_000 + 10 * i,
    "longitude": lambda t, ch, i: 115_755_000 + 10 * i,
    "occupancy": lambda t, ch, i: int((t // 1800 + i) % 3 == 0),
    "weight": lambda t, ch, i: int(120_000 + 5_000 * _wave(t, _DAY_S, i)),
    "tamper": lambda t, ch, i: 0,
    "battery": lambda t, ch, i: max(3_300, 4_150 - int(t // 3600)),
    "magnetic_field": lambda t, ch, i: int(4_800 + 2_000 * ((t // 1800 + i) % 3 == 0)),
    "distance": lambda t, ch, i: 2_500 if (t // 1800 + i) % 3 else 300,
    "turbidity": lambda t, ch, i: int(150 + 40 * _wave(t, _DAY_S, i)),
    "rssi": lambda t, ch, i: -60,
}


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


def simulated_sources(profile: dict, index: int, uptime_s: Callable[[], float]) -> list[Source]:
    """Return one firmware Source per profile sensor, reading SENSOR_MODELS at uptime_s()."""
    sources = []
    for sensor in profile["sensors"]:
        chans = [
            (c["type"], fw_board.CHANNEL_TYPES[c["type"]], c["channel"]) for c in sensor["channels"]
        ]

        def read(chans: list[tuple[str, int, int]] = chans) -> list[tuple[int, int, Any]]:
            t = uptime_s()
            out: list[tuple[int, int, Any]] = []
            for name, type_id, channel in chans:
                model = SENSOR_MODELS.get(name)
                if model is None:  # e.g. vehicle_commitment: a stable per-board commitment
                    out.append((type_id, channel, hashlib.sha256(b"veh%d" % index).digest()[:16]))
                else:
                    out.append((type_id, channel, model(t, channel, index)))
            return out

        sources.append(Source(sensor["name"], read, chans[0][1]))
    return sources


@dataclass
class VirtualBoard:
    """One running virtual board: the firmware Board, its BLE shim and its flash directory."""

    index: int
    profile: dict
    board: Any  # firmware.app.Board
    ble: BLE
    root: str
    sources_factory: SourcesFactory | None = None  # the factory that built the sources, if any

    def uptime_s(self) -> float:
        """Return the board's uptime in seconds, read from its firmware clock (DeviceTime)."""
        return self.board.sampler.time.uptime_ms() / 1000

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
    flash directory goes (board-<index>); *_interval_s shorten the profile's intervals (a demo
    or a test does not wait a minute per reading; a profile that is already faster keeps its own
    interval); seed makes device keys deterministic; sources_factory scripts the sensors of the
    boards it returns Sources for (the others keep the simulated SENSOR_MODELS).
    """

    def __init__(
        self,
        profiles: list[dict],
        root_dir: str,
        *,
        sample_interval_s: float | None = None,
        heartbeat_interval_s: float | None = None,
        sign_every_n: int | None = None,
        seed: bytes = b"edgeseal virtual fleet",
        sources_factory: SourcesFactory | None = None,
    ) -> None:
        """Describe the fleet; start() builds and runs it."""
        self.profiles = profiles
        self.root_dir = root_dir
        self.sample_interval_s = sample_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.sign_every_n = sign_every_n
        self.seed = seed
        self.sources_factory = sources_factory
        self.boards: list[VirtualBoard] = []
        self.link: VirtualLink | None = None
        self.central: BumbleCentral | None = None

    async def start(self) -> list[VirtualBoard]:
        """Create the link, the central and every board, start the boards; return the boards."""
        self.link = VirtualLink()
        self.central = BumbleCentral.on_link(self.link)
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

    def install_sources(self, factory: SourcesFactory) -> int:
        """Give every running board the sources factory returns for it; return how many changed.

        Boards for which factory returns None keep their sources; a board already built by this
        factory is left alone (so a second call does not restart its timeline state). Later
        add_board() calls use factory too.
        """
        self.sources_factory = factory
        changed = 0
        for vb in self.boards:
            if vb.sources_factory is factory:
                continue
            sources = factory(vb.profile, vb.index, vb.uptime_s)
            if sources is not None:
                vb.board.sampler.sources = sources
                vb.sources_factory = factory
                changed += 1
        return changed

    async def _start_board(self, index: int, profile: dict) -> VirtualBoard:
        assert self.link is not None
        profile = dict(profile)
        if self.sample_interval_s is not None:
            profile["sample_interval_s"] = min(profile["sample_interval_s"], self.sample_interval_s)
        if self.heartbeat_interval_s is not None:
            profile["heartbeat_interval_s"] = min(
                profile["heartbeat_interval_s"], self.heartbeat_interval_s
            )
        device = self.link.new_device(f"board-{index}")
        ble = BLE(device)
        root = os.path.join(self.root_dir, f"board-{index}")
        clock = fw_app.RealClock()
        seed = hashlib.sha256(self.seed + index.to_bytes(4, "big")).digest()

        def urandom(n: int) -> bytes:
            return (seed * (n // 32 + 1))[:n]

        start_ms = clock.ticks_ms()

        def uptime_s() -> float:
            return clock.ticks_diff(clock.ticks_ms(), start_ms) / 1000

        factory = self.sources_factory
        sources = None if factory is None else factory(profile, index, uptime_s)
        if sources is None:
            factory = None
            sources = simulated_sources(profile, index, uptime_s)
        board = fw_app.build_board(
            profile, ble, RootedFS(root), None, {}, clock, urandom, sources=sources,
            uuid=UUID, sign_every_n=self.sign_every_n,
        )  # fmt: skip
        await board.start()
        return VirtualBoard(index, profile, board, ble, root, factory)

    async def stop(self) -> None:
        """Stop every board and close the radios; safe to call twice."""
        for vb in self.boards:
            vb.board.stop()
        for vb in self.boards:
            await vb.ble.close()
        if self.central is not None:
            await self.central.close()
        self.boards = []
        self.central = None
