"""`python -m tools.sim.run` (what `make run` starts): a gateway node with five virtual boards.

The gateway is the real one (gateway.server.serve: node, BLE link, API, dashboard); the
simulated world plugs in as the node's Extension: the virtual fleet brings the radio the link
uses (bumble's virtual controllers), its boards are enrolled on first start, and the demo
stories (tools/sim/stories.py) run as the node's task. The gateway never imports any of this.

Options are the gateway's (`--config`, `--data-dir`, `--host`, `--port`, EDGESEAL_* variables)
plus the simulation's own settings (SimSettings, also from EDGESEAL_* variables).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

import tools.sim  # noqa: F401  (the firmware's host stand-ins, before firmware is imported)
from firmware import board as fw_board
from gateway.ble.auth import LINK_KEY_FILE, load_or_create_master
from gateway.cli import EXIT_USAGE, configure_logging
from gateway.config import ENV_PREFIX, load_settings
from gateway.node import Node, Radio
from gateway.server import serve
from tools.sim import stories
from tools.sim.fleet import DEMO_PROFILES, VirtualFleet
from tools.sim.world import DEMO

log = logging.getLogger("edgeseal.sim")
ROOT = Path(__file__).resolve().parents[2]
FLEET_DIR = "fleet"  # under the gateway's data dir: the virtual boards' flash


class SimSettings(BaseSettings):
    """The simulation's settings (EDGESEAL_FLEET_*, EDGESEAL_SCENARIOS, EDGESEAL_BOARDS_DIR)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    boards_dir: Path = Field(default=ROOT / "boards", description="board profiles")
    # why 2 s / 10 s: a visitor sees readings move every couple of seconds; a real profile
    # samples every 30-600 s (a profile that is already faster keeps its own interval)
    fleet_sample_interval_s: float = Field(default=2.0, gt=0)
    fleet_heartbeat_interval_s: float = Field(default=10.0, gt=0)
    fleet_sign_every_n: int = Field(default=4, ge=1)  # why: shows unsigned records closed later
    scenarios: bool = Field(default=True, description="run the demo stories")


class FleetExtension:
    """The virtual fleet in the DEMO world as a gateway node's Extension
    (gateway.node.lifecycle.Extension)."""

    def __init__(self, sim: SimSettings, data_dir: Path, profiles: Sequence[str]) -> None:
        """Describe the fleet: one board per profile name, flash under data_dir/fleet."""
        self.sim = sim
        self.data_dir = data_dir
        self.profile_names = tuple(profiles)
        self.fleet: VirtualFleet | None = None

    async def radio(self) -> Radio:
        """Start the boards on a virtual radio; return the radio for the gateway's link."""
        profiles = [
            fw_board.load(str(self.sim.boards_dir / f"{name}.json")) for name in self.profile_names
        ]
        root = self.data_dir / FLEET_DIR
        root.mkdir(parents=True, exist_ok=True)
        self.fleet = VirtualFleet(
            profiles,
            str(root),
            world=DEMO,
            sample_interval_s=self.sim.fleet_sample_interval_s,
            heartbeat_interval_s=self.sim.fleet_heartbeat_interval_s,
            sign_every_n=self.sim.fleet_sign_every_n,
            # provisioning, simulated: the boards get link keys from the node's own master secret
            link_master=load_or_create_master(self.data_dir / LINK_KEY_FILE),
        )
        boards = await self.fleet.start()
        assert self.fleet.central is not None
        log.info(
            "virtual fleet: %d boards running (%s)", len(boards), ", ".join(self.profile_names)
        )
        return Radio(self.fleet.central.backends, "virtual", f"{len(boards)} virtual boards")

    async def run(self, node: Node) -> None:
        """Enroll the boards the registry does not know yet, then run the demo stories."""
        assert self.fleet is not None
        await stories.enroll_boards(node, self.fleet.boards)
        if self.sim.scenarios:
            await stories.run(node, self.fleet)

    async def close(self) -> None:
        """Stop the boards and the virtual radio."""
        if self.fleet is not None:
            await self.fleet.stop()


def build_parser() -> argparse.ArgumentParser:
    """Return the command line of `python -m tools.sim.run` (the gateway's serve options)."""
    p = argparse.ArgumentParser(prog="python -m tools.sim.run", description=__doc__)
    p.add_argument("--config", help="gateway TOML config file (as edgeseal serve)")
    p.add_argument("--data-dir", help="ledger, keys, state and the boards' flash")
    p.add_argument("--host", help="API listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default 8000)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway with the virtual fleet until SIGTERM/SIGINT; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            args.config, data_dir=args.data_dir, host=args.host, port=args.port, ble=False
        )
        sim = SimSettings()
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"sim: bad configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    extension = FleetExtension(sim, settings.data_dir, DEMO_PROFILES)
    return asyncio.run(serve(settings, extension))


if __name__ == "__main__":
    sys.exit(main())
