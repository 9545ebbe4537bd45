"""`make run`'s network (tools/sim/network.py): anvil, three witnesses and a replica as processes.

The launcher (`python -m tools.sim.run`) runs as a subprocess on free ports: the first
checkpoints get 2-of-3 cosignatures and an anchor that becomes final on anvil, the replica
reaches the gateway's size and agrees, GET /v1/checkpoints and /v1/anchors say so, and SIGTERM
stops every child (no pid left). A second start reuses the chain and the contract. A network
part that cannot start is a clear error and leaves no process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tools.sim.network import NetworkError, NetworkPorts, SimNetwork, anvil_binary

ROOT = Path(__file__).resolve().parents[3]
# why: start-up is ~6 s idle (anvil, three witnesses and a replica are Python or native
# processes, then the gateway and five boards); the first anchor is final ~10 s later. The
# deadlines only stop a broken build from hanging the suite on a loaded 2-core machine.
DEADLINE_S = 90.0
STOP_TIMEOUT_S = 60.0
CHILD = re.compile(r"^\s+(\S+)\s+(http://\S+).*\bpid (\d+)$")

pytestmark = pytest.mark.skipif(
    not any((ROOT / "node_modules").glob("@foundry-rs/anvil*")), reason="npm anvil missing"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Launcher:
    """`python -m tools.sim.run` on free ports, its output in a file."""

    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.out = tmp / "out.txt"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, tuple[str, int]]:
        """Start it; return {child name: (URL, pid)} once it printed them."""
        self.spawn()
        return wait_for(self._children, "the launcher printed no URLs")

    def spawn(self) -> None:
        """Start the launcher process (its output in self.out)."""
        env = {
            **os.environ,
            "EDGESEAL_SCENARIOS": "false",  # device records alone make the checkpoints
            "EDGESEAL_FLEET_SAMPLE_INTERVAL_S": "1",
            "EDGESEAL_BATCH_INTERVAL_MS": "300",
            "EDGESEAL_ANVIL_PORT": "0",
            "EDGESEAL_WITNESS_PORT": "0",
            "EDGESEAL_REPLICA_PORT": "0",
            "EDGESEAL_DEMO_ANCHOR_INTERVAL_S": "2",
        }
        env.pop("NOTIFY_SOCKET", None)
        cmd = [sys.executable, "-m", "tools.sim.run", "--data-dir", str(self.data)]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)], cwd=ROOT, env=env, stdout=out, stderr=out
            )

    def _children(self) -> dict[str, tuple[str, int]] | None:
        assert self.proc is not None and self.proc.poll() is None, self.out.read_text()
        text = self.out.read_text(errors="replace")
        if "their logs" not in text:
            return None
        found = {}
        for line in text.splitlines():
            m = CHILD.match(line)
            if m:
                found[m.group(1)] = (m.group(2), int(m.group(3)))
        return found

    def stop(self) -> int:
        """SIGTERM the launcher (by its pid) and return its exit code."""
        proc, self.proc = self.proc, None
        assert proc is not None
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError("the launcher did not stop on SIGTERM") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for(probe: Any, what: str) -> Any:
    """Return probe()'s first truthy result (OSError counts as not yet); fail after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            result = probe()
        except OSError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def dashboard_shows_the_panel(url: str) -> None:
    """Open the dashboard in headless Chromium (skipped without it) and wait until the
    Checkpoints panel shows a witnessed checkpoint, a final anchor and the replica agreeing."""
    from tests.gateway.test_dashboard import CHROMIUM, CHROMIUM_ARGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return  # test_dashboard.py reports a missing browser; here the API checks stand
    if not os.path.isfile(CHROMIUM) or not os.access(CHROMIUM, os.X_OK):
        return
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "/ui/#checkpoints")
            table = page.locator("[data-testid=checkpoints]")
            for text in ("quorum ✓", "bank ✓", "final", "agrees"):
                table.get_by_text(text, exact=True).first.wait_for(timeout=DEADLINE_S * 1000)
            setup = page.locator("[data-testid=checkpoints-setup]").inner_text()
            assert "2 of bank, insurer, market-operator" in setup and "chain 31337" in setup
        finally:
            browser.close()


def test_make_run_starts_the_network_and_stops_every_child(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    pids: list[int] = []
    try:
        children = launcher.start()
        names = set(children)
        assert {"witness-bank", "witness-insurer", "witness-market-operator"} <= names
        pids = [pid for _url, pid in children.values()]
        assert len(pids) == 5 and all(alive(p) for p in pids)  # anvil, 3 witnesses, replica
        policy = (launcher.data / "witnesses" / "policy.txt").read_text()
        assert "group participants 2 bank insurer market-operator" in policy

        def cosigned_and_final() -> dict[str, Any] | None:
            view = get(launcher.url + "/v1/checkpoints?limit=20")
            rows = view["checkpoints"]
            witnessed = [r for r in rows if r["quorum"] and r["quorum"]["ok"]]
            final = [r for r in rows if r["anchor"] and r["anchor"]["final"]]
            return view if witnessed and final else None

        view = wait_for(cosigned_and_final, "no checkpoint with a 2-of-3 quorum and a final anchor")
        assert view["witnesses"] == ["bank", "insurer", "market-operator"]
        assert view["quorum_required"] == 2
        row = next(r for r in view["checkpoints"] if r["anchor"] and r["anchor"]["final"])
        anchor = row["anchor"]
        assert anchor["block_number"] >= 1 and anchor["tx_hash"].startswith("0x")
        assert anchor["confirmations"] >= 1
        assert view["anchoring"]["chain_id"] == 31337
        assert view["anchoring"]["latest_block"] >= anchor["block_number"]
        for r in view["checkpoints"]:  # quorum ok: at least 2 of the 3 cosignatures verified
            valid = [c["witness"] for c in r["cosignatures"] if c["status"] == "valid"]
            assert r["quorum"]["ok"] == (len(valid) >= 2), r
        anchors = get(launcher.url + "/v1/anchors")["anchors"]
        assert any(a["final"] and a["size"] == row["size"] for a in anchors)

        # the replica catches up with the gateway and agrees with its checkpoints
        replica_url = children["replica"][0].removesuffix("/v1/replica")
        size = get(launcher.url + "/v1/gateway")["tree_size"]
        wait_for(
            lambda: get(replica_url + "/v1/replica")["tree_size"] >= size,
            f"the replica did not reach size {size}",
        )

        def replica_agrees() -> bool:
            rows = get(launcher.url + "/v1/checkpoints")["checkpoints"]
            return any(r["replicas"][0]["status"] == "agrees" for r in rows)

        wait_for(replica_agrees, "the replica never agreed with a checkpoint")
        assert get(replica_url + "/v1/replica")["alarms"] == []
        dashboard_shows_the_panel(launcher.url)

        assert launcher.stop() == 0
        for pid in pids:  # every child stopped (and reaped) before the launcher exited
            assert not alive(pid), f"pid {pid} is still running"
        contract = json.loads((launcher.data / "anvil" / "contract.json").read_text())

        # a restart keeps the chain: the same contract, no new deployment, and it all works again
        children = launcher.start()
        pids = [pid for _url, pid in children.values()]
        text = launcher.out.read_text()
        assert contract["address"] in text and "deployed EdgesealAnchor" not in text
        wait_for(replica_agrees, "the replica did not agree again after the restart")
        assert launcher.stop() == 0
        assert not any(alive(p) for p in pids)
    finally:
        launcher.kill()
        for pid in processes_naming(tmp_path):  # nothing of a failed run may outlive the test
            os.kill(pid, signal.SIGKILL)


def test_a_taken_port_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        network = SimNetwork(tmp_path, NetworkPorts(anvil=port), "http://127.0.0.1:1")
        with pytest.raises(NetworkError, match=f"port {port} is in use.*EDGESEAL_ANVIL_PORT"):
            network.start_chain()
    assert network.children == []
    assert network.overrides(10.0)["anchor_contract"] == ""


def test_a_child_that_exits_at_start_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    assert anvil_binary().exists()
    (tmp_path / "anvil").mkdir()
    (tmp_path / "anvil" / "state.json").write_text("{not json")  # anvil refuses its state
    network = SimNetwork(tmp_path, NetworkPorts(anvil=0), "http://127.0.0.1:1")
    with pytest.raises(NetworkError, match="anvil exited"):
        network.start_chain()
    pids = [c.pid for c in network.children]
    network.stop()
    assert network.children == [] and pids and not any(alive(p) for p in pids)


def processes_naming(path: Path) -> list[int]:
    """Return the pids of running processes whose command line names path."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(path).encode() in cmdline:
                found.append(int(proc.name))
    return found


def test_sigterm_while_the_network_starts_leaves_nothing(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        launcher.spawn()
        spawned = launcher.data / "logs" / "witness-bank.log"  # anvil runs, witnesses starting
        wait_for(spawned.exists, "the launcher never started the witnesses")
        assert launcher.stop() in (0, 130), launcher.out.read_text()
        assert processes_naming(tmp_path) == []
    finally:
        launcher.kill()
        for pid in processes_naming(tmp_path):
            os.kill(pid, signal.SIGKILL)
