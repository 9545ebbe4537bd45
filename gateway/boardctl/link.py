"""The serial link to a MicroPython board: mpremote's SerialTransport (raw REPL, raw-paste), with
clear errors for a missing port, a port the user may not open, and a device that is not MicroPython.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from gateway.boardctl.errors import (
    BOARD_FAILED,
    NO_PORT,
    NOT_MICROPYTHON,
    PERMISSION_DENIED,
    PORT_BUSY,
    BoardError,
)

BAUD = 115200  # MicroPython's USB-serial REPL on every ESP32 board
# why: a board running the firmware answers Ctrl-C within a second; a device that is silent or
# speaks something else for this long is not a MicroPython REPL
REPL_TIMEOUT_S = 8
# why: the slowest command is an Ed25519 key generation and signature on an ESP32 (~2 s) plus the
# fixed-base table (~0.5 s); files are written in chunks well under this
EXEC_TIMEOUT_S = 60
WRITE_CHUNK_BYTES = 512  # per raw-REPL exec: small enough for the board's REPL buffer
# Lists every file under the cwd (the board's / on an ESP32) with size and SHA-256: no firmware
# module needed, so it works on a blank MicroPython.
_LIST_CODE = """import os,hashlib,binascii
def _w(d,o):
 for e in (os.ilistdir(d) if d else os.ilistdir()):
  p=d+'/'+e[0] if d else e[0]
  if e[1]&0x4000:
   o.append((p,-1,''));_w(p,o)
  else:
   h=hashlib.sha256();f=open(p,'rb')
   while 1:
    b=f.read(512)
    if not b:break
    h.update(b)
   f.close();o.append((p,os.stat(p)[6],binascii.hexlify(h.digest()).decode()))
 return o
print(repr(_w('',[])))
del _w
"""


@dataclass(frozen=True, order=True)
class BoardFile:
    """One file (size >= 0, sha256 hex) or directory (size -1, sha256 "") on the board."""

    path: str
    size: int
    sha256: str

    @property
    def is_dir(self) -> bool:
        return self.size < 0


def check_port(port: str) -> None:
    """Raise BoardError NO_PORT / PERMISSION_DENIED when port cannot be opened by this user."""
    if not os.path.exists(port):
        raise BoardError(
            NO_PORT,
            f"{port} does not exist: is the board plugged in with a data cable? "
            "(ls /dev/ttyUSB* /dev/ttyACM* lists the serial ports)",
        )
    if not os.access(port, os.R_OK | os.W_OK):
        raise BoardError(
            PERMISSION_DENIED,
            f"no permission to open {port}: add yourself to the dialout group "
            "(sudo usermod -aG dialout $USER), then log out and in again",
        )


class BoardLink:
    """An open raw-REPL session with the board on port. Use as a context manager.

    Opening interrupts whatever runs (the firmware's main.py) and soft-resets into the raw REPL,
    so every command runs on a fresh heap with the firmware stopped.
    """

    def __init__(self, port: str, repl_timeout_s: int = REPL_TIMEOUT_S) -> None:
        """Raise BoardError (NO_PORT, PERMISSION_DENIED, NOT_MICROPYTHON) when there is no REPL."""
        check_port(port)
        self.port = port
        try:
            # a read timeout: on a pty (the stand-in) mpremote reads without one and would block
            # forever on a silent device
            self._t = SerialTransport(port, baudrate=BAUD, timeout=repl_timeout_s)
        except TransportError as exc:
            raise BoardError(
                PORT_BUSY,
                f"cannot open {port} ({exc}): is another program using it "
                "(mpremote, screen, minicom, another edgeseal board)?",
            ) from None
        try:
            self._t.enter_raw_repl(soft_reset=True, timeout_overall=repl_timeout_s)
        except (TransportError, OSError, ValueError) as exc:
            self._t.close()
            raise BoardError(
                NOT_MICROPYTHON,
                f"no MicroPython REPL answered on {port} ({exc}): flash MicroPython first "
                f"(edgeseal board flash --port {port} --image FILE)",
            ) from None

    def close(self) -> None:
        """Leave the raw REPL and close the port; returns nothing."""
        try:
            self._t.exit_raw_repl()
        finally:
            self._t.close()

    def __enter__(self) -> BoardLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Start machine.reset() on the board without waiting for an answer (there is none)."""
        try:
            self._t.exec_raw_no_follow("import machine\nmachine.reset()\n")
        except TransportError as exc:
            raise BoardError(BOARD_FAILED, f"reset: {exc}") from None

    def exec(self, code: str, timeout_s: int = EXEC_TIMEOUT_S) -> str:
        """Run code on the board; return what it printed. Raise BoardError(BOARD_FAILED) with
        the board's traceback when it raised."""
        try:
            out, err = self._t.exec_raw(code, timeout=timeout_s)
        except TransportError as exc:
            raise BoardError(BOARD_FAILED, f"the board stopped answering: {exc}") from None
        if err:
            raise BoardError(BOARD_FAILED, err.decode(errors="replace").strip()[-1500:])
        return out.decode(errors="replace")

    def exec_json(self, code: str, timeout_s: int = EXEC_TIMEOUT_S) -> Any:
        """Run code that prints one JSON line last; return it parsed."""
        lines = [ln for ln in self.exec(code, timeout_s).splitlines() if ln.strip()]
        if not lines:
            raise BoardError(BOARD_FAILED, "the board printed nothing")
        try:
            return json.loads(lines[-1])
        except ValueError:
            raise BoardError(BOARD_FAILED, f"not JSON from the board: {lines[-1][:200]}") from None

    def list_files(self) -> list[BoardFile]:
        """Return every file and directory under the board's filesystem root, sorted by path."""
        text = self.exec(_LIST_CODE).strip()
        try:
            rows = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise BoardError(BOARD_FAILED, f"unreadable listing: {text[:200]}") from None
        return sorted(BoardFile(str(p), int(s), str(h)) for p, s, h in rows)

    def write_file(
        self, path: str, data: bytes, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Write data to path on the board (replacing it), in WRITE_CHUNK_BYTES pieces."""
        try:
            self._t.fs_writefile(path, data, WRITE_CHUNK_BYTES, progress)
        except (TransportError, OSError) as exc:
            raise BoardError(BOARD_FAILED, f"writing {path}: {exc}") from None

    def mkdir(self, path: str) -> None:
        """Create directory path on the board (no error when it exists)."""
        self.exec(f"import os\ntry:\n os.mkdir({path!r})\nexcept OSError:\n pass\n")

    def remove(self, path: str, is_dir: bool = False) -> None:
        """Remove the file (or empty directory) path from the board."""
        self.exec(f"import os\nos.{'rmdir' if is_dir else 'remove'}({path!r})\n")
