"""Real witnesses for the gateway-side tests: `edgeseal witness serve` processes on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.ledger.note import create_signer, load_or_create_signer
from gateway.publish.cosignature import CosignatureSigner
from tests.support.procs import stop_process

ROOT = Path(__file__).resolve().parents[3]
# why: a witness process imports Starlette and uvicorn; a loaded 2-core machine may take seconds.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Witness:
    """One witness process: its key (cosignature/v1 vkey), logs file, data dir and port."""

    def __init__(self, tmp: Path, name: str, log_vkey: str) -> None:
        self.dir = tmp / name.replace("/", "_")
        self.dir.mkdir(parents=True, exist_ok=True)
        key = self.dir / "w.key"
        signer = create_signer(str(key), origin=name) if not key.exists() else None
        self.signer = CosignatureSigner(signer or load_or_create_signer(str(key)))
        (self.dir / "logs.txt").write_text(f"log {log_vkey}\n")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the witness's submission prefix URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and return once its port accepts connections."""
        cmd = [sys.executable, "-m", "gateway.cli", "witness", "serve"]
        cmd += ["--key", str(self.dir / "w.key"), "--logs", str(self.dir / "logs.txt")]
        cmd += ["--data-dir", str(self.dir / "data"), "--port", str(self.port)]
        with open(self.dir / "stderr", "ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=err)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.dir / "stderr").read_text()
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"witness on port {self.port} did not start")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL), by its own pid."""
        proc, self.proc = self.proc, None
        stop_process(proc, STOP_TIMEOUT_S)

    def lose_state(self) -> None:
        """Delete the witness's database (it must be stopped): it restarts at size 0."""
        assert self.proc is None
        shutil.rmtree(self.dir / "data", ignore_errors=True)


def write_policy(path: Path, log_vkey: str, witnesses: list[Witness], k: int) -> Path:
    """Write a tlog-policy file: the log, each witness with its URL, k of them as the quorum."""
    lines = ["# the gateway's witnesses", f"log {log_vkey}"]
    lines += [f"witness W{i} {w.signer.vkey} {w.url}" for i, w in enumerate(witnesses)]
    names = " ".join(f"W{i}" for i in range(len(witnesses)))
    lines += [f"group quorum-group {k} {names}", "quorum quorum-group"]
    path.write_text("\n".join(lines) + "\n")
    return path
