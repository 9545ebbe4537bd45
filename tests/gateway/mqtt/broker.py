"""A real Mosquitto broker for the MQTT tests: its own process on a loopback port, stopped by pid.

`Broker(tmp)` writes a config file (listener 127.0.0.1 PORT, anonymous access, persistence in tmp
so a persistent subscriber session survives a broker restart) and `start()` runs
/usr/sbin/mosquitto -c on it, returning once the port accepts TCP connections. `stop()` sends
SIGTERM (mosquitto saves its sessions) and `kill()` SIGKILL, both to this process's own pid.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# why: mosquitto starts in milliseconds, but a loaded 2-core machine can stall a process for seconds.
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0
POLL_S = 0.02


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process (module doc)."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.dir = tmp / "mosquitto"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # run as whoever runs the tests: started as root, mosquitto would switch to the
            # `mosquitto` user, which cannot write its persistence file in the test's directory
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 0\n"  # 0: no limit, queued QoS 1 messages are never dropped
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the broker's mqtt:// URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start mosquitto and return once it accepts connections; raise AssertionError (with
        its log) if it exits or does not listen within START_DEADLINE_S."""
        assert self.proc is None, "already running"
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=err, stderr=err)
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"mosquitto not listening after {START_DEADLINE_S} s")
            time.sleep(POLL_S)

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop mosquitto with SIGTERM (it saves the persistent sessions) and wait for it."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill mosquitto with SIGKILL and wait for it."""
        self._signal(signal.SIGKILL)
