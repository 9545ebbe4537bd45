"""The systemd unit and sd_notify: directives, systemd-analyze, READY/WATCHDOG/STOPPING, SIGTERM."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.server import (
    EXIT_ACKED_DATA_LOST,
    EXIT_BAD_CONFIG,
    EXIT_KEY_MISSING,
    EXIT_LEDGER_ROLLED_BACK,
)
from gateway.systemd import Notifier

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tools" / "systemd" / "edgeseal.service"
TOKEN = "operator-token-for-tests-0123456789"


def unit_directives() -> dict[str, list[str]]:
    """Return {section.key: [values]} of the unit file (repeated keys keep every value)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def test_unit_is_hardened_and_commented() -> None:
    d = unit_directives()
    s = {k.split(".", 1)[1]: v[-1] for k, v in d.items() if k.startswith("Service.")}
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0
    assert s["User"] == "edgeseal" and s["StateDirectory"] == "edgeseal"
    assert s["ProtectSystem"] == "strict" and s["ProtectHome"] == "yes"
    assert s["PrivateTmp"] == "yes" and s["NoNewPrivileges"] == "yes"
    assert s["CapabilityBoundingSet"] == ""
    assert set(s["RestrictAddressFamilies"].split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_BLUETOOTH",
    }
    assert s["ExecStart"].endswith("edgeseal serve") and s["KillSignal"] == "SIGTERM"
    refusals = (EXIT_BAD_CONFIG, EXIT_LEDGER_ROLLED_BACK, EXIT_ACKED_DATA_LOST, EXIT_KEY_MISSING)
    assert s["RestartPreventExitStatus"].split() == [str(code) for code in refusals]
    assert d["Install.WantedBy"] == ["multi-user.target"]
    # every directive of [Service] follows a comment explaining it (directly or in its group)
    lines = UNIT.read_text().splitlines()
    start = lines.index("[Service]")
    seen_comment = False
    for line in lines[start + 1 :]:
        if line.startswith("["):
            break
        if line.startswith("#"):
            seen_comment = True
        elif not line.strip():
            seen_comment = False
        else:
            assert seen_comment, f"uncommented directive: {line}"
    configparser.ConfigParser(strict=False).read_string(UNIT.read_text())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    true = shutil.which("true") or "/bin/true"
    text = UNIT.read_text().replace("/opt/edgeseal/venv/bin/edgeseal serve", true)
    text = text.replace("User=edgeseal", "User=root").replace("Group=edgeseal", "Group=root")
    unit = tmp_path / "edgeseal.service"
    unit.write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr


def test_install_script_is_valid_sh() -> None:
    script = ROOT / "tools" / "install_gateway.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in m for m in self.messages):
            assert time.monotonic() < deadline, f"{text} not received: {self.messages}"
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())

    def close(self) -> None:
        self.sock.close()


def test_notifier_messages(tmp_path: Path) -> None:
    ns = NotifySocket(tmp_path / "notify")
    try:
        n = Notifier({"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_interval_s == 1.0
        assert n.ready("up") and n.watchdog() and n.stopping() and n.status("x")
        ns.wait_for("STATUS=x", 30)
        assert ns.messages[:3] == ["READY=1\nSTATUS=up", "WATCHDOG=1", "STOPPING=1"]
    finally:
        ns.close()
    off = Notifier({})
    assert not off.enabled and off.watchdog_interval_s is None and not off.ready()
    assert (
        Notifier({"NOTIFY_SOCKET": "@abstract-edgeseal-test"}).address == "\0abstract-edgeseal-test"
    )
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing")}).ready()  # never raises


def free_port() -> int:
    """Return a free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_finishes_in_flight_work_and_exits_0(tmp_path: Path) -> None:
    ns = NotifySocket(tmp_path / "notify")
    port = free_port()
    data = tmp_path / "data"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": ns.path,
        "WATCHDOG_USEC": "400000",
        "EDGESEAL_OPERATOR_TOKEN": TOKEN,
        "EDGESEAL_BATCH_INTERVAL_MS": "60000",  # nothing integrates before the stop
    }
    env.pop("WATCHDOG_PID", None)
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--no-ble", "--data-dir", str(data)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ns.wait_for("READY=1", 30)
        ns.wait_for("WATCHDOG=1", 60)
        from nacl.signing import SigningKey

        for i in range(3):
            pk = bytes(SigningKey(bytes([i + 1]) * 32).verify_key).hex()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/devices",
                data=json.dumps({"public_key": pk}).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 201
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/gateway", timeout=10) as resp:
            assert json.loads(resp.read())["pending"] == 3
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped cleanly" in out
        ns.wait_for("STOPPING=1", 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()
    from gateway.ledger import Ledger

    with Ledger.open_readonly(str(data / "ledger.db")) as led:
        assert led.sequenced_size == 3 and led.tree_size == 3  # the last batch was integrated
