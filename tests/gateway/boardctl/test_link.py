"""gateway/boardctl/link.py: the serial REPL link and its errors, against the stand-in board and
against ports that are missing, forbidden, silent or not MicroPython."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from gateway.boardctl.errors import (
    NO_PORT,
    NOT_MICROPYTHON,
    PERMISSION_DENIED,
    PORT_BUSY,
    BoardError,
)
from gateway.boardctl.link import BoardLink, check_port
from tools.boardvm.standin import StandIn

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
ROOT = Path(__file__).resolve().parents[3]


def test_the_real_mpremote_works_with_the_stand_in(blank_board: StandIn, tmp_path: Path) -> None:
    src = tmp_path / "hello.py"
    src.write_text("GREETING = 'hi'\n")
    res = subprocess.run(
        [MPREMOTE, "connect", blank_board.port, "fs", "cp", str(src), ":hello.py", "+",
         "fs", "ls", "+", "exec", "import hello; print(hello.GREETING * 2)"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "hello.py" in res.stdout and "hihi" in res.stdout
    assert (blank_board.flash_dir / "hello.py").read_text() == "GREETING = 'hi'\n"


def test_exec_listing_and_errors_on_the_board(blank_board: StandIn) -> None:
    with BoardLink(blank_board.port) as link:
        assert link.exec("print(6 * 7)").strip() == "42"
        link.mkdir("d")
        link.mkdir("d")  # exists: no error
        link.write_file("d/x.bin", bytes(range(256)) * 5)
        files = {f.path: f for f in link.list_files()}
        assert files["d"].is_dir and files["d/x.bin"].size == 1280
        with pytest.raises(BoardError) as err:
            link.exec("open('missing.txt')")
        assert err.value.code == "board-failed" and "OSError" in err.value.message


def test_a_port_in_use_says_so(blank_board: StandIn) -> None:
    with BoardLink(blank_board.port), pytest.raises(BoardError) as err:
        BoardLink(blank_board.port)
    assert err.value.code == PORT_BUSY and "another program" in err.value.message


def test_a_missing_port_says_so() -> None:
    with pytest.raises(BoardError) as err:
        check_port("/dev/ttyUSB-not-here")
    assert err.value.code == NO_PORT and "plugged in" in err.value.message


def test_a_forbidden_port_gives_the_dialout_hint(tmp_path: Path) -> None:
    """As a user without access to the device: the kernel's own answer (os.access) for that
    user. As root (CI) the check runs as nobody through setpriv when nobody can read this tree;
    a checkout nobody can read (a private temp clone) leaves the kernel's verdict to be stood
    in for, with os.access answering as it would for that user."""
    dev = tmp_path / "ttyUSB9"
    dev.write_bytes(b"")
    dev.chmod(0o600 if os.geteuid() == 0 else 0)
    if os.geteuid() != 0:
        with pytest.raises(BoardError) as err:
            check_port(str(dev))
        assert err.value.code == PERMISSION_DENIED and "dialout" in err.value.message
        return
    res = _check_port_as_nobody(dev)
    if res is None:  # nobody cannot import this checkout: the kernel says no for them
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "access", lambda path, mode: False)
            with pytest.raises(BoardError) as err:
                check_port(str(dev))
        assert err.value.code == PERMISSION_DENIED and "dialout" in err.value.message
        return
    assert res.startswith(PERMISSION_DENIED), res
    assert "dialout" in res


def _check_port_as_nobody(dev: Path) -> str | None:
    """Return what check_port(dev) says when run as the user nobody (setpriv), or None when
    that cannot run here (no setpriv, or nobody cannot read this checkout)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    visible = Path(tempfile.mkdtemp(prefix="edgeseal-dev-"))  # /tmp: nobody may look inside
    visible.chmod(0o755)
    target = Path(shutil.copy(dev, visible / "ttyUSB9"))
    target.chmod(0o600)
    code = (
        "import sys\nfrom gateway.boardctl.link import check_port\n"
        "from gateway.boardctl.errors import BoardError\n"
        "try:\n check_port(sys.argv[1])\nexcept BoardError as e:\n print(e.code, e.message)\n"
    )
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    try:
        probe = subprocess.run([*nobody, "-c", "import gateway.boardctl.link"],
                               capture_output=True, timeout=60, check=False, cwd="/")  # fmt: skip
        if probe.returncode != 0:
            return None
        res = subprocess.run([*nobody, "-c", code, str(target)],
                             capture_output=True, text=True, timeout=60, check=False, cwd="/")  # fmt: skip
    finally:
        shutil.rmtree(visible)
    return res.stdout + res.stderr


def _peer(master: int, answer: bytes | None, stop: threading.Event) -> None:
    """Read what the host sends on the pty; answer each read with answer (None: stay silent)."""
    while not stop.is_set():
        try:
            data = os.read(master, 1024)
        except OSError:
            return
        if data and answer is not None:
            os.write(master, answer)


@pytest.mark.parametrize("answer", [None, b"AT+OK\r\nGARBAGE\r\n"], ids=["silent", "not-mpy"])
def test_a_device_that_is_not_micropython(answer: bytes | None) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()
    t = threading.Thread(target=_peer, args=(master, answer, stop), daemon=True)
    t.start()
    try:
        with pytest.raises(BoardError) as err:
            BoardLink(os.ttyname(slave), repl_timeout_s=1)
        assert err.value.code == NOT_MICROPYTHON and "flash MicroPython" in err.value.message
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
