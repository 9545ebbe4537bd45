"""A stand-in board on a pseudo-terminal: tools/boardvm/boardvm.mjs behind os.openpty().

    python -m tools.boardvm.standin --flash /tmp/board1     # prints the port, runs until Ctrl-C
    mpremote connect /dev/pts/N fs ls                       # ... as with /dev/ttyUSB0

StandIn(flash_dir) is the same for tests: start() returns the serial device path (the pty's slave),
stop() ends the VM process by its own pid. Bytes are pumped both ways by two threads; the bridge
keeps a slave descriptor open itself, so the pty survives a client closing and reopening the port
as mpremote does between commands.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "boardvm" / "boardvm.mjs"
READ_BYTES = 4096
# why: a stopped VM must give its pid back; node exits at once on SIGTERM
STOP_TIMEOUT_S = 10.0
# why: node loads the 1 MB WebAssembly VM before it prints its banner; generous for a loaded machine
START_TIMEOUT_S = 60.0
POLL_S = 0.05


class StandIn:
    """One stand-in board: a MicroPython VM (node) whose REPL is the serial device `port`."""

    def __init__(self, flash_dir: Path, heap_kb: int | None = None) -> None:
        """flash_dir: the host directory holding the board's filesystem (created if missing)."""
        self.flash_dir = Path(flash_dir)
        self.heap_kb = heap_kb
        self.port = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1
        self._slave = -1
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()

    def start(self) -> str:
        """Start the VM and return the serial device path of the board (a /dev/pts/N) once it
        has printed its banner; raise RuntimeError when node is missing or the VM does not start."""
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the stand-in needs node (apt install nodejs)")
        cmd = [node, str(SCRIPT), "--flash", str(self.flash_dir)]
        if self.heap_kb is not None:
            cmd += ["--heap-kb", str(self.heap_kb)]
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # a USB serial device has no line discipline of its own
        self.port = os.ttyname(self._slave)
        self._proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self._threads = [
            threading.Thread(target=self._to_vm, daemon=True),
            threading.Thread(target=self._from_vm, daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(POLL_S):  # the banner: the VM reads its stdin now
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the stand-in VM did not start (node exited or timed out)")
        return self.port

    def _to_vm(self) -> None:
        """Pump what the host writes to the port into the VM's stdin until either side closes."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        while True:
            try:
                data = os.read(self._master, READ_BYTES)
            except OSError:
                return
            if not data:
                return
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return

    def _from_vm(self) -> None:
        """Pump the VM's stdout to the port until the VM exits."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            data = os.read(fd, READ_BYTES)
            if not data:
                return
            try:
                os.write(self._master, data)
            except OSError:
                return
            self._ready.set()

    def stop(self) -> None:
        """End the VM (its own pid) and close the pty; the flash directory stays. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
        for fd in (self._slave, self._master):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._slave = self._master = -1

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a stand-in board until interrupted; prints its port. Returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--flash", type=Path, required=True, help="host directory: the board's flash")
    ap.add_argument("--heap-kb", type=int, default=None)
    args = ap.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # sigwait receives them
    with StandIn(args.flash, args.heap_kb) as board:
        print(board.port, flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
