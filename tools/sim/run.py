"""`python -m tools.sim.run` (what `make run` starts): a gateway node with five virtual boards.

Around it (tools/sim/network.py, unless EDGESEAL_NETWORK=false): anvil, a local EVM node the
checkpoints are anchored on, three witnesses under a 2-of-3 policy and one replica, each its
own process, stopped by the launcher on SIGTERM/SIGINT (docs/demo.md).

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
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

import tools.sim  # noqa: F401  (the firmware's host stand-ins, before firmware is imported)
from firmware import board as fw_board
from gateway.ble.auth import LINK_KEY_FILE, load_or_create_master
from gateway.cli import EXIT_USAGE, configure_logging
from gateway.config import ENV_PREFIX, Settings, load_settings
from gateway.node import Node, Radio
from gateway.node.sequencer import open_signer
from gateway.server import serve
from tools.sim import stories
from tools.sim.fleet import DEMO_PROFILES, VirtualFleet
from tools.sim.network import NetworkError, NetworkPorts, SimNetwork
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
    # the network around the gateway (tools/sim/network.py); ports 0: free ones
    network: bool = Field(default=True, description="start anvil, 3 witnesses and a replica")
    anvil_port: int = Field(default=8545, ge=0, le=65535, description="anvil's JSON-RPC port")
    witness_port: int = Field(default=8381, ge=0, le=65533, description="first witness port")
    replica_port: int = Field(default=8090, ge=0, le=65535, description="the replica's API")
    # why 10 s: a visitor sees an anchor within seconds; a real policy is hourly (anchoring.md)
    demo_anchor_interval_s: float = Field(default=10.0, gt=0)


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


class Signals:
    """SIGTERM/SIGINT in the launcher: nothing may end it before it stopped its children.

    - While the network starts (plain blocking code), a signal is remembered; the network checks
      `interrupted()` after each child it has recorded and while it waits, and raises
      KeyboardInterrupt there: the finally of main() stops the children already running. (Raised
      from the handler itself it could land inside subprocess.Popen, after the fork and before
      the child is recorded, and leak that child.)
    - Once the event loop runs and until serve() has its own handlers, a signal is remembered and
      sent to this process again as soon as serve() has them.
    - While serve() runs, the gateway's event loop gets every signal (serve() stops), and this
      handler, which runs first, calls `on_stop` once: main() signals the gateway's own clients
      (the replica) to stop, so that the gateway does not wait for their connections to close.
    """

    POLL_S = 0.05  # why: how soon a remembered signal reaches serve() once it has its handlers

    def __init__(self) -> None:
        self.phase = "starting"  # then "deferred", "serving"
        self.received: int | None = None
        self.on_stop: Callable[[], None] | None = None

    def interrupted(self) -> bool:
        """Return True once a signal arrived while starting (the network stops starting)."""
        return self.received is not None

    def handler(self, sig: int, _frame: object) -> None:
        """Remember sig, or call on_stop once (class doc)."""
        if self.phase in ("starting", "deferred"):
            self.received = self.received or sig
            return
        on_stop, self.on_stop = self.on_stop, None
        if on_stop is not None:
            on_stop()

    def install(self) -> None:
        """Take SIGTERM and SIGINT at the Python level (an event loop's own signal handlers
        still see them through its wakeup fd)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handler)

    async def serve(self, settings: Settings, extension: FleetExtension) -> int:
        """Run gateway.server.serve with the signals handled as the class doc says; return its
        exit code."""
        self.phase = "deferred"
        self.install()  # also in place of asyncio.run's own SIGINT handler
        task = asyncio.create_task(serve(settings, extension))
        while not task.done():
            await asyncio.wait({task}, timeout=self.POLL_S)
            if self.phase == "deferred" and signal.getsignal(signal.SIGTERM) != self.handler:
                self.phase = "serving"  # serve() has taken the signals: run first again
                self.install()
                if self.received is not None:
                    os.kill(os.getpid(), self.received)
        return task.result()


def _loopback(host: str) -> str:
    """Return the address a local client reaches a server listening on host at."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def start_network(network: SimNetwork, settings: Settings) -> None:
    """Start anvil, the witnesses and the replica for settings' gateway. Raises NetworkError
    (the caller stops what started: network.stop())."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    vkey = open_signer(settings).vkey  # the gateway's key: created here on a first start
    network.start_chain()
    network.start_witnesses(vkey)
    network.start_replica(vkey)


def print_urls(settings: Settings, network: SimNetwork | None) -> None:
    """Print where each service answers (stdout, one line each)."""
    host = _loopback(settings.host)
    lines = [f"  dashboard          http://{host}:{settings.port}/ui/"]
    if network is not None:
        names = {c.name: c for c in network.children}
        anvil = names["anvil"]
        lines.append(f"  anvil              {anvil.url}  pid {anvil.pid}")
        lines.append(f"  anchor contract    {network.contract} (chain {settings.anchor_chain_id})")
        for c in network.children:
            if c.name.startswith("witness-"):
                lines.append(f"  {c.name:<18} {c.url}  pid {c.pid}")
        rep = names["replica"]
        lines.append(f"  replica            {rep.url}/v1/replica  pid {rep.pid}")
        lines.append(f"  witness policy     {network.policy_path}")
        lines.append(f"  their logs         {settings.data_dir / 'logs'}/")
    print("edgeseal demo:\n" + "\n".join(lines), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway with the virtual fleet (and the network around it) until SIGTERM/SIGINT;
    return the exit code."""
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
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per witness request
    network: SimNetwork | None = None
    signals = Signals()  # no signal may end the launcher before it stopped its children
    signals.install()
    try:
        if sim.network:
            ports = NetworkPorts(sim.anvil_port, sim.witness_port, sim.replica_port)
            gateway_url = f"http://{_loopback(settings.host)}:{settings.port}"
            network = SimNetwork(settings.data_dir, ports, gateway_url, signals.interrupted)
            start_network(network, settings)
            if signals.interrupted():
                raise KeyboardInterrupt
            settings = load_settings(
                args.config, data_dir=args.data_dir, host=args.host, port=args.port,
                ble=False, **network.overrides(sim.demo_anchor_interval_s),
            )  # fmt: skip
        print_urls(settings, network)
        extension = FleetExtension(sim, settings.data_dir, DEMO_PROFILES)
        if network is not None:
            signals.on_stop = network.signal_clients
        return asyncio.run(signals.serve(settings, extension))
    except NetworkError as exc:
        print(f"sim: the demo network did not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if network is not None:
            # a second Ctrl-C must not cut the stop short: every child gets its deadline
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            network.stop()


if __name__ == "__main__":
    sys.exit(main())
