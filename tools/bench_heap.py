"""Host wrapper for tools/firmware_heap.py: runs the firmware heap measurement in the MicroPython VM.

Usage: python3 tools/bench_heap.py [--quick] [--source | --romfs]
From tools/bench.py: `from tools import bench_heap; bench_heap.main(["--quick"])`.

Prints the script's report and returns its exit status: non-zero when the firmware's peak heap
bound exceeds the 80 KB budget of issue 12 (or the firmware misbehaved, or node failed). Without
--source/--romfs it measures both deployments, .mpy files on the filesystem (the RESULT line with
`romfs=0`) and ROMFS (`romfs=1`), and fails when either is over.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "tools/firmware_heap.py"
HEAP_KB = 100


def main(argv=None) -> int:
    """Run `node tools/mpvm.mjs --heap-kb 100 [--romfs IMG] --run tools/firmware_heap.py [ARGS]`
    from the repo root; echo its output; return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    unknown = [a for a in args if a not in ("--quick", "--source", "--romfs")]
    if unknown:
        print(f"bench_heap: unknown arguments {unknown} (takes --quick, --source, --romfs)")
        return 2
    if "--romfs" in args or "--source" in args:
        return _measure(args)
    # make bench: both deployments, each checked against the budget: code loaded as .mpy into
    # the heap (`edgeseal board deploy`) and code executed in place from ROMFS.
    fs_status = _measure(args)
    romfs_status = _measure([*args, "--romfs"])
    print(
        f"bench_heap: .mpy on the filesystem: {'within' if fs_status == 0 else 'OVER'} budget; "
        f"ROMFS: {'within' if romfs_status == 0 else 'OVER'} budget"
    )
    return fs_status or romfs_status


def _measure(args: list[str]) -> int:
    """Run one heap measurement in the VM with args; return its exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        vm_args = ["--heap-kb", str(HEAP_KB)]
        if "--romfs" in args:
            vm_args += ["--romfs", build_romfs(tmp)]
        return _run(["node", "tools/mpvm.mjs", *vm_args, "--run", SCRIPT, *args])


def build_romfs(tmp: str) -> str:
    """Return the path of a ROMFS image of firmware/ (as `mpremote romfs deploy` would write it)."""
    stage = os.path.join(tmp, "stage")
    shutil.copytree(
        os.path.join(ROOT, "firmware"),
        os.path.join(stage, "firmware"),
        ignore=shutil.ignore_patterns("stubs-fix", "*.json", "__pycache__"),
    )
    image = os.path.join(tmp, "firmware.romfs")
    mpremote = os.path.join(os.path.dirname(sys.executable), "mpremote")
    subprocess.run(
        [mpremote, "romfs", "--output", image, "build", stage], check=True, capture_output=True
    )
    return image


def _run(cmd: list[str]) -> int:
    """Run cmd from the repo root, echo its output; return its exit status."""
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        print("bench_heap: node not found (make setup installs the VM)")
        return 1
    sys.stdout.write(proc.stdout)
    if proc.stderr:
        sys.stdout.write(proc.stderr)
    print(f"bench_heap: {time.perf_counter() - t0:.1f} s, exit {proc.returncode}", flush=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
