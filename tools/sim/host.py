"""What the firmware needs from MicroPython when the simulated world runs it on CPython.

The firmware imports `micropython` (for const()); on CPython the repository's host shim
(tests/shims/micropython.py, the same one the firmware tests use) stands in for it. Nothing
else is shimmed: the virtual boards get their radio, flash, clock and buses as arguments.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON_SHIM = ROOT / "tests" / "shims" / "micropython.py"


def install() -> None:
    """Make `import micropython` work: keep a real or already loaded one, else load the shim.

    Raises FileNotFoundError if the checkout has no shim (the simulation needs a checkout).
    """
    if "micropython" in sys.modules or importlib.util.find_spec("micropython") is not None:
        return
    spec = importlib.util.spec_from_file_location("micropython", MICROPYTHON_SHIM)
    if spec is None or spec.loader is None or not MICROPYTHON_SHIM.is_file():
        raise FileNotFoundError(f"{MICROPYTHON_SHIM}: the simulation needs a source checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["micropython"] = module
