"""Smoke: `python -m tools.sim.run` (what `make run` starts) as a subprocess: entries, checkpoints,
a bundle that verifies with `edgeseal verify-bundle`, enrollment through `edgeseal enroll`, a clean
SIGTERM, an audit; and `edgeseal serve --virtual-fleet` says where the fleet went."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from tests.gateway.test_systemd import ROOT, free_port

# why: five boards start in ~2 s and upload within a few seconds at a 1 s sample interval;
# the bound only stops a broken build from hanging the suite.
STARTUP_TIMEOUT_S = 60
TOKEN = "operator-token-for-smoke-0123456789"


def get_bytes(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read()


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        body = resp.read()
        if resp.headers.get("content-type", "").startswith("application/json"):
            return json.loads(body)
        return body.decode()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gateway_with_the_virtual_fleet(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "EDGESEAL_OPERATOR_TOKEN": TOKEN,
        "EDGESEAL_FLEET_SAMPLE_INTERVAL_S": "1",
        "EDGESEAL_FLEET_HEARTBEAT_INTERVAL_S": "3",
        "EDGESEAL_BATCH_INTERVAL_MS": "300",
        "EDGESEAL_SCENARIOS": "false",  # the service alone; the demo scenarios test themselves
        "EDGESEAL_NETWORK": "false",  # anvil, witnesses, replica: test_network.py
    }
    env.pop("NOTIFY_SOCKET", None)
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.sim.run"] + ["--data-dir", str(data), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        record_index = None
        while record_index is None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no integrated device record in time"
            time.sleep(0.3)
            try:
                health = get(port, "/healthz")
            except OSError:
                continue
            if health["ble"] != "running" or health["tree_size"] < 10:
                continue
            page = get(port, "/v1/entries?kind=device-record&limit=50")
            integrated = [e for e in page["entries"] if e["integrated"]]
            if integrated:
                record_index = integrated[-1]["index"]
        info = get(port, "/v1/gateway")
        assert info["ble"]["mode"] == "virtual"
        devices = get(port, "/v1/devices")["devices"]
        assert len(devices) == 5 and any(d["last_seq"] is not None for d in devices)
        checkpoint = get(port, "/v1/checkpoint")
        assert checkpoint.startswith(info["origin"] + "\n")
        assert "edgeseal-state " in checkpoint
        bundle = tmp_path / "bundle.json"
        # the bundle's canonical bytes as served: a re-serialised copy does not verify
        bundle.write_bytes(get_bytes(port, f"/v1/bundle/{record_index}"))
        res = cli("verify-bundle", str(bundle), "--key", info["vkey"])
        assert res.returncode == 0, res.stderr
        assert f"entry {record_index} (device-record)" in res.stdout

        prov = tmp_path / "board.json"
        pk = bytes(SigningKey(b"\x07" * 32).verify_key).hex()
        prov.write_text(json.dumps({"public_key": pk, "metadata": {"profile": "bench"}}))
        url = f"http://127.0.0.1:{port}"
        res = cli("enroll", str(prov), "--url", url, "--token", TOKEN)
        assert res.returncode == 0, res.stderr
        res = cli("enroll", str(prov), "--url", url, "--token", TOKEN)
        assert res.returncode == 1 and "already-enrolled" in res.stderr
        res = cli("enroll", str(prov), "--url", url, "--token", "wrong-token-0123456789")
        assert res.returncode == 1 and "unauthorized" in res.stderr

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "no BLE adapter" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    res = cli("audit", "--db", str(data / "ledger.db"), "--vkey", info["vkey"])
    assert res.returncode == 0 and "audit: OK" in res.stdout, res.stdout


def test_serve_virtual_fleet_flag_points_to_make_run() -> None:
    res = cli("serve", "--virtual-fleet")
    assert res.returncode == 2
    assert "make run" in res.stderr and "tools.sim.run" in res.stderr
