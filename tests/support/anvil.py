"""A real anvil (Foundry's local EVM node, npm @foundry-rs/anvil) as its own process, for tests.

`Anvil.start()` runs it on a free loopback port with its chain state in a file (--state), waits
until it answers eth_chainId (a deadline, no fixed sleep) and `stop()` ends it by its own pid;
`start()` again restores the chain from the file, on the same port: that is how a test takes the
node down and brings it back. `anvil_session` is the pytest fixture (one anvil per test run).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent
WRAPPER = ROOT / "node_modules" / ".bin" / "anvil"
# anvil's first dev account (mnemonic "test test ... junk"): funded on every anvil chain
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_KEY_2 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
CHAIN_ID = 31337
START_TIMEOUT_S = 60.0  # why: ready in ~0.5 s idle; generous for a loaded 2-core machine
STOP_TIMEOUT_S = 20.0  # why: anvil writes its state file on SIGTERM before it exits


def _binary() -> Path:
    """Return the platform anvil binary npm installed (one process, one pid to stop), else the
    node wrapper in node_modules/.bin."""
    found = sorted((ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil"))
    return found[0] if found else WRAPPER


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """One anvil process (module doc)."""

    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        """Prepare (nothing runs until start()); chain state lives in state_dir/anvil.json."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_file = state_dir / "anvil.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start anvil and return once it answers; raise AssertionError after the deadline."""
        cmd = [str(_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        cmd += ["--chain-id", str(CHAIN_ID), "--state", str(self.state_file)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"anvil exited with {self.proc.returncode}: {err}")
            with contextlib.suppress(OSError, ValueError):
                if int(self.rpc("eth_chainId"), 16) == CHAIN_ID:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"anvil did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """End the process by its pid (SIGTERM, which saves the state; SIGKILL if stuck)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc, STOP_TIMEOUT_S)
        if proc.stderr:
            proc.stderr.close()

    def rpc(self, method: str, *params: Any) -> Any:
        """Return the result of a JSON-RPC call; raise OSError if anvil does not answer and
        AssertionError on a JSON-RPC error."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(self.url, body.encode(), {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return answer["result"]

    def mine(self, blocks: int = 1) -> None:
        """Mine blocks empty blocks now (anvil_mine)."""
        self.rpc("anvil_mine", hex(blocks))

    def block_number(self) -> int:
        """Return the latest block number."""
        return int(self.rpc("eth_blockNumber"), 16)


@pytest.fixture(scope="session")
def anvil_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    """Yield the test run's anvil (started once, stopped at the end)."""
    node = Anvil(tmp_path_factory.mktemp("anvil"))
    node.start()
    try:
        yield node
    finally:
        node.stop()
