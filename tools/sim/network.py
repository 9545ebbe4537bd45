"""The demo's network around the gateway (`make run`): a local EVM node, three witnesses, a replica.

`SimNetwork` starts, each as its own process in its own process group (so a terminal's Ctrl-C
reaches only the launcher, which stops them in order):

- anvil (npm @foundry-rs/anvil) on 127.0.0.1 with its chain in `<data>/anvil/state.json`
  (`--state`: a restart keeps the chain), mining a block every BLOCK_TIME_S; the EdgesealAnchor
  contract is deployed once and its address kept in `<data>/anvil/contract.json` (deployed again
  only if the chain no longer has it);
- three `edgeseal witness serve` (bank, insurer, market operator: keys created once under
  `<data>/witnesses/<name>/`), whose policy `<data>/witnesses/policy.txt` needs 2 of the 3;
- one `edgeseal replica` of the gateway, under `<data>/replica/`, checking the same policy and
  the gateway's anchors on that anvil.

The gateway itself runs in the launcher's process (tools/sim/run.py) with `overrides()` as its
settings. Every child writes to `<data>/logs/<name>.log`; `stop()` ends each one by its own pid
(SIGTERM, a deadline, then SIGKILL), the replica first and anvil last (it writes its state on
SIGTERM). docs/demo.md describes the result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gateway.ledger.note import create_signer, load_signer

log = logging.getLogger("edgeseal.sim.network")
ROOT = Path(__file__).resolve().parents[2]
ANVIL_DIR, WITNESS_DIR, REPLICA_DIR, LOG_DIR = "anvil", "witnesses", "replica", "logs"
CONTRACT_FILE = "contract.json"  # under ANVIL_DIR: {"chain_id": ..., "address": ...}
POLICY_FILE = "policy.txt"  # under WITNESS_DIR
CHAIN_ID = 31337  # anvil's default; a real chain has its own (docs/operations.md)
# (policy name, witness key name): the three participants that witness the demo's log
WITNESSES = (
    ("bank", "witness.harbour-bank.demo/w1"),
    ("insurer", "witness.bluewave-insurance.demo/w1"),
    ("market-operator", "witness.neighbourhood-energy.demo/w1"),
)
QUORUM = 2  # why: any two of the three participants keep the log honest if one is down
BLOCK_TIME_S = 1  # why: confirmations visibly grow on the dashboard; a real chain: 2-12 s
# why: anvil's `finalized` tag trails the head by two epochs of this many blocks (6 s here), so
# the demo shows an anchor included and then final, through the same tag a public chain answers
SLOTS_IN_AN_EPOCH = 3
STATE_INTERVAL_S = 30  # why: anvil also writes its state this often, not only on a clean exit
# why: anvil is ready in ~0.5 s, a witness or the replica (Python, uvicorn) in 1-3 s idle; a
# loaded 2-core machine may take many times that
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0  # why: anvil writes its state file on SIGTERM; the replica commits a step
POLL_S = 0.05
RPC_TIMEOUT_S = 10.0  # why: a local anvil answers in milliseconds; a deploy waits for its block
PROBE_TIMEOUT_S = 1.0  # why: a readiness probe must not hide an exited process for long
# why: the anchoring account pays gas on anvil; 100 ETH lasts millions of anchors
ANCHOR_FUNDS_WEI = 100 * 10**18


class NetworkError(RuntimeError):
    """A part of the demo network could not start (the message says which and why)."""


def claim_port(port: int, setting: str) -> int:
    """Return port, or a free one if it is 0; raise NetworkError if port is taken (another
    program answering there would be mistaken for ours)."""
    if port == 0:
        return free_port()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise NetworkError(
                f"port {port} is in use: stop what listens there, or set {setting} (0: a free one)"
            ) from None
    return port


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_binary() -> Path:
    """Return the platform anvil binary npm installed (one process, one pid to stop), else the
    node wrapper node_modules/.bin/anvil; raise NetworkError if neither exists."""
    found = sorted((ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil"))
    wrapper = ROOT / "node_modules" / ".bin" / "anvil"
    if found:
        return found[0]
    if wrapper.exists():
        return wrapper
    raise NetworkError("anvil is not installed: run `make setup` (npm @foundry-rs/anvil)")


@dataclass
class Child:
    """One child process: its name, URL, log file and Popen."""

    name: str
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.proc.pid


@dataclass(frozen=True)
class NetworkPorts:
    """Loopback ports: anvil, the first witness (the others follow), the replica; 0 = free."""

    anvil: int = 8545
    witness: int = 8381
    replica: int = 8090


class SimNetwork:
    """The demo's anvil, witnesses and replica (module doc). Not thread-safe: one owner."""

    def __init__(
        self,
        data_dir: Path,
        ports: NetworkPorts,
        gateway_url: str,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        """Describe the network under data_dir; gateway_url is where the replica syncs from;
        interrupted() says a stop was asked for (starting then raises KeyboardInterrupt, only
        where every child started so far is recorded in self.children)."""
        self.data_dir = data_dir
        self._interrupted = interrupted
        self.ports = ports
        self.gateway_url = gateway_url.rstrip("/")
        self.children: list[Child] = []
        self.anvil_url = ""
        self.contract = ""
        self.policy_path = data_dir / WITNESS_DIR / POLICY_FILE
        self.witness_urls: dict[str, str] = {}
        self.replica_url = ""

    # ---- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], url: str) -> Child:
        """Start cmd as its own process group, output to <data>/logs/<name>.log; return it."""
        log_dir = self.data_dir / LOG_DIR
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"{name}.log"
        out: BinaryIO
        with open(path, "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches the launcher only
            )  # fmt: skip
        child = Child(name, url, path, proc)
        self.children.append(child)
        self._check_interrupted()
        return child

    def _check_interrupted(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked for while starting (__init__)."""
        if self._interrupted():
            raise KeyboardInterrupt

    def _wait_ready(self, child: Child, ready: Any) -> None:
        """Return once ready() is true; raise NetworkError if the child exits or the deadline
        START_TIMEOUT_S passes."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            self._check_interrupted()
            if child.proc.poll() is not None:
                tail = child.log_path.read_text(errors="replace")[-2000:]
                raise NetworkError(
                    f"{child.name} exited with {child.proc.returncode} ({child.log_path}):\n{tail}"
                )
            if time.monotonic() > deadline:
                raise NetworkError(f"{child.name} did not answer within {START_TIMEOUT_S} s")
            time.sleep(POLL_S)

    def signal_clients(self) -> None:
        """Send SIGTERM to the gateway's clients among the children (the replica), without
        waiting: a gateway that shuts down waits for its open connections to close, and must
        keep answering the replica's request in flight meanwhile. stop() reaps them later.
        Safe to call from a signal handler."""
        for child in self.children:
            if child.name == "replica" and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Stop every child by its own pid, newest first (SIGTERM, wait up to STOP_TIMEOUT_S,
        then SIGKILL); return once none is running."""
        while self.children:
            self._stop_child(self.children.pop())

    def _stop_child(self, child: Child) -> None:
        """Stop one child by its own pid (stop())."""
        proc = child.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop; killing it", child.name, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.info("stopped %s (pid %d, exit %s)", child.name, proc.pid, proc.returncode)

    # ---- anvil and the contract --------------------------------------------------------------

    def start_chain(self) -> None:
        """Start anvil, wait until it answers, fund the anchoring account and deploy the contract
        once (module doc). Raises NetworkError."""
        from gateway.anchor.chain import AnchorError, connect, create_key, deploy, load_key

        chain_dir = self.data_dir / ANVIL_DIR
        chain_dir.mkdir(parents=True, exist_ok=True)
        port = claim_port(self.ports.anvil, "EDGESEAL_ANVIL_PORT")
        self.anvil_url = f"http://127.0.0.1:{port}"
        cmd = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--silent"]
        cmd += ["--chain-id", str(CHAIN_ID), "--block-time", str(BLOCK_TIME_S)]
        cmd += ["--slots-in-an-epoch", str(SLOTS_IN_AN_EPOCH)]
        cmd += ["--state", str(chain_dir / "state.json"), "--state-interval", str(STATE_INTERVAL_S)]
        child = self._spawn("anvil", cmd, self.anvil_url)
        self._wait_ready(child, lambda: self._rpc_ok("eth_chainId") == hex(CHAIN_ID))
        key_path = self.data_dir / "anchor.key"  # the gateway's default anchor_key_file
        try:
            account = load_key(key_path) if key_path.exists() else create_key(key_path)
        except AnchorError as exc:
            raise NetworkError(f"the anchoring key: {exc}") from None
        balance = int(self._rpc("eth_getBalance", account.address, "latest"), 16)
        if balance < ANCHOR_FUNDS_WEI // 2:  # anvil's own RPC: a demo chain has no faucet
            self._rpc("anvil_setBalance", account.address, hex(ANCHOR_FUNDS_WEI))
        self.contract = self._known_contract(chain_dir / CONTRACT_FILE)
        if not self.contract:
            try:
                address, _tx, _gas = deploy(connect(self.anvil_url), account)
            except Exception as exc:  # the node refused or reverted the deployment
                raise NetworkError(f"deploying EdgesealAnchor failed: {exc}") from exc
            (chain_dir / CONTRACT_FILE).write_text(
                json.dumps({"chain_id": CHAIN_ID, "address": address}) + "\n"
            )
            self.contract = address
            log.info("deployed EdgesealAnchor at %s", address)

    def _known_contract(self, path: Path) -> str:
        """Return the address remembered in path if the chain still has code there, else ""."""
        try:
            known = json.loads(path.read_text())
            address = str(known["address"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""
        if known.get("chain_id") != CHAIN_ID or self._rpc("eth_getCode", address, "latest") in (
            "0x",
            "",
        ):
            log.info("the chain no longer holds the contract %s: deploying it again", address)
            return ""
        return address

    def _rpc(self, method: str, *params: Any, timeout_s: float = RPC_TIMEOUT_S) -> Any:
        """Return the result of a JSON-RPC call to anvil; raise NetworkError on an error."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(
            self.anvil_url, body.encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
        if "error" in answer:
            raise NetworkError(f"anvil: {method}: {answer['error']}")
        return answer["result"]

    def _rpc_ok(self, method: str) -> Any:
        """Return the result of a call, or None if anvil does not answer (yet)."""
        try:
            return self._rpc(method, timeout_s=PROBE_TIMEOUT_S)
        except (OSError, ValueError):
            return None

    # ---- witnesses ---------------------------------------------------------------------------

    def start_witnesses(self, gateway_vkey: str) -> None:
        """Create the witness keys once, write the logs file and the 2-of-3 policy, start the
        three witnesses and wait until each accepts connections. Raises NetworkError."""
        from gateway.publish.cosignature import CosignatureSigner

        root = self.data_dir / WITNESS_DIR
        root.mkdir(parents=True, exist_ok=True)
        logs = root / "logs.txt"  # the logs each witness cosigns: the gateway's (tlog-policy)
        logs.write_text(f"# written by tools/sim/network.py\nlog {gateway_vkey}\n")
        lines = ["# the demo's witness policy (C2SP tlog-policy), written at every start",
                 f"log {gateway_vkey}"]  # fmt: skip
        for i, (name, key_name) in enumerate(WITNESSES):
            wdir = root / name
            wdir.mkdir(exist_ok=True)
            key = wdir / "witness.key"
            signer = load_signer(str(key)) if key.exists() else create_signer(str(key), key_name)
            port = claim_port(self.ports.witness + i if self.ports.witness else 0,
                              "EDGESEAL_WITNESS_PORT")  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            cmd = [sys.executable, "-m", "gateway.cli", "witness", "serve", "--key", str(key)]
            cmd += ["--logs", str(logs), "--data-dir", str(wdir / "data"), "--port", str(port)]
            self._spawn(f"witness-{name}", cmd, url)
            self.witness_urls[name] = url
            lines.append(f"witness {name} {CosignatureSigner(signer).vkey} {url}")
        names = " ".join(name for name, _ in WITNESSES)
        lines += [f"group participants {QUORUM} {names}", "quorum participants", ""]
        self.policy_path.write_text("\n".join(lines))
        for child in self.children:
            if child.name.startswith("witness-"):
                port = int(child.url.rsplit(":", 1)[1])
                self._wait_ready(child, lambda p=port: _accepts(p))

    # ---- the replica -------------------------------------------------------------------------

    def start_replica(self, gateway_vkey: str) -> None:
        """Start the replica of the gateway (it syncs once the gateway answers) and wait until
        its API answers. Raises NetworkError."""
        rdir = self.data_dir / REPLICA_DIR
        port = claim_port(self.ports.replica, "EDGESEAL_REPLICA_PORT")
        self.replica_url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "gateway.cli", "replica", "--from", self.gateway_url]
        cmd += ["--data-dir", str(rdir), "--key", gateway_vkey, "--policy", str(self.policy_path)]
        if self.contract:  # it checks the gateway's anchors against its copy too
            cmd += ["--anchor-rpc", self.anvil_url, "--anchor-chain-id", str(CHAIN_ID)]
            cmd += ["--anchor-contract", self.contract]
        cmd += ["--port", str(port)]
        child = self._spawn("replica", cmd, self.replica_url)
        self._wait_ready(child, lambda: _answers(self.replica_url + "/healthz"))

    # ---- what the gateway needs --------------------------------------------------------------

    def overrides(self, anchor_interval_s: float) -> dict[str, Any]:
        """Return the gateway settings that use this network (gateway.config.Settings names)."""
        return {
            "witness_policy": self.policy_path,
            "anchor_rpc_url": self.anvil_url,
            "anchor_chain_id": CHAIN_ID,
            "anchor_contract": self.contract,
            "anchor_interval_s": anchor_interval_s,
            "anchor_poll_s": float(BLOCK_TIME_S),
            "replica_urls": [self.replica_url] if self.replica_url else [],
        }

    def describe(self) -> list[tuple[str, str, int]]:
        """Return (name, URL, pid) of every running child, in start order."""
        return [(c.name, c.url, c.pid) for c in self.children if c.proc.poll() is None]


def _accepts(port: int) -> bool:
    """Return True if a TCP connection to 127.0.0.1:port succeeds."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _answers(url: str) -> bool:
    """Return True if a GET of url gets any HTTP answer."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
