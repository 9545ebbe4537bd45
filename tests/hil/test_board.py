"""On a real ESP32: the firmware test suite runs on the board itself, through mpremote.

Selected by `make hil PORT=...` (pytest -m hil --port PORT); skipped everywhere else.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MPREMOTE = str(Path(sys.executable).parent / "mpremote")
# What the board needs to run tests/firmware: the code, the tests and the shared vectors.
# the firmware suite's bus fakes are tools/sim/buses.py (MicroPython-compatible); the rest of
# tools/sim is CPython only and stays on the host
HIL_DIRS = [
    "firmware",
    "tests/firmware",
    "tests/vectors",
    "boards",
    "tools/__init__.py",
    "tools/sim/__init__.py",
    "tools/sim/buses.py",
]
HIL_ROOT = "/hil"
# The slowest firmware tests (pure-Python signing) take minutes on an ESP32; bound the whole run.
HIL_TIMEOUT_S = 1800

pytestmark = pytest.mark.hil


def _mpremote(port, *args, timeout_s=120):
    return subprocess.run(
        [MPREMOTE, "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_firmware_suite_passes_on_the_board(board_port, tmp_path):
    _mpremote(board_port, "mkdir", HIL_ROOT)  # fails harmlessly if it exists
    for folder in ("tests", "tools", "tools/sim"):
        _mpremote(board_port, "mkdir", HIL_ROOT + "/" + folder)
    (tmp_path / "__init__.py").write_text("")
    res = _mpremote(board_port, "cp", str(tmp_path / "__init__.py"), ":" + HIL_ROOT + "/tests/")
    assert res.returncode == 0, res.stderr
    for rel in HIL_DIRS:
        parent = str(Path(rel).parent)
        dest = ":" + HIL_ROOT + ("/" if parent == "." else "/" + parent + "/")
        res = _mpremote(board_port, "cp", "-r", str(ROOT / rel), dest, timeout_s=600)
        assert res.returncode == 0, res.stderr
    script = tmp_path / "hil_main.py"
    script.write_text(
        "import os, sys\n"
        f"os.chdir({HIL_ROOT!r})\n"
        f"sys.path.insert(0, {HIL_ROOT!r})\n"
        "from tests.firmware.runner import main\n"
        "main()\n"
    )
    res = _mpremote(board_port, "run", str(script), timeout_s=HIL_TIMEOUT_S)
    print(res.stdout)
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", res.stdout, re.M)
    assert m, res.stdout[-2000:] + res.stderr[-2000:]
    assert int(m.group(2)) == 0 and int(m.group(1)) > 0
