"""Host wrapper for tools/bench_sign.py: runs it in the MicroPython VM (node) and under CPython, prints both.

Reports sign time against the naive and the previous signer (tools/ed25519_prev.py) and, from the
VM, the bytes allocated per signature against the previous signer; fails when the VM run does (a
signature over the allocation budget) or the speedup over naive is below 3x.

Usage: python3 tools/bench_sign_host.py [--n N] [--msg-bytes M] [--pairs P] [--vm-only | --cpython-only]
       [--prf-only 1]  (only tools/ed25519_prf.py against the firmware signer)
From tools/bench.py: `from tools import bench_sign_host; bench_sign_host.main(["--n", "20"])`.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "tools/bench_sign.py"


def run_script(cmd, label):
    """Run cmd from the repo root, echo its output; return (exit status, RESULT line or None)."""
    print("$ " + " ".join(cmd))
    # CPython needs the host stand-in of MicroPython's `micropython` module (const) on its path.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests", "shims")]))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0 or proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = line
    if result is None:
        print(f"{label}: no RESULT line (exit {proc.returncode})")
        return proc.returncode or 1, None
    return proc.returncode, result


# Body sizes bench_sign.py reports allocation for (its ALLOC_BODY_BYTES).
ALLOC_SIZES = (64, 100, 176)


def parse_result(line):
    """Return the key=value pairs of a RESULT line as a dict of str."""
    return dict(item.split("=", 1) for item in line.split()[1:])


def _prf_lines(impl, r):
    """Print the tools/ed25519_prf.py variants' lines of one RESULT dict r (if it has them)."""
    for tag, name in (
        ("prf", "HMAC-SHA256 nonce + limb SHA-512 for k"),
        ("prf_lehmer", "+ Lehmer"),
    ):
        if f"time_ratio_{tag}" not in r:
            continue
        alloc = ", ".join(
            r[f"{tag}_alloc_b_{size}"] for size in ALLOC_SIZES if f"{tag}_alloc_b_{size}" in r
        )
        print(
            f"{impl:<11} {name} (tools/ed25519_prf.py): {r[f'time_ratio_{tag}']} x the sign time"
            f" (quartiles {r[f'time_ratio_{tag}_q1']}-{r[f'time_ratio_{tag}_q3']},"
            f" {r['msg_bytes']}-byte body)"
            + (f", {alloc} B per signature of a 64/100/176-byte body" if alloc else "")
        )


def main(argv=None):
    """Run the sign benchmark in the VM and under CPython; return 0 if both ran (and the VM ratio >= 3)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in args:  # make bench --quick: fewer signatures, same comparison
        args = [a for a in args if a != "--quick"] + ["--n", "8", "--rounds", "2", "--pairs", "20"]
    vm = "--cpython-only" not in args
    host = "--vm-only" not in args
    passthrough = [a for a in args if a not in ("--vm-only", "--cpython-only")]
    status = 0
    results = {}
    if vm:
        cmd = ["node", "tools/mpvm.mjs", "--copy", "tools", "--run", SCRIPT] + passthrough
        rc, line = run_script(cmd, "MicroPython VM")
        status |= rc
        if line:
            results["micropython"] = parse_result(line)
    if host:
        rc, line = run_script([sys.executable, SCRIPT] + passthrough, "CPython")
        status |= rc
        if line:
            results["cpython"] = parse_result(line)
    print()
    for impl, r in results.items():
        if "naive_ms" not in r:  # --prf-only 1
            _prf_lines(impl, r)
            continue
        print(
            f"{impl:<11} naive {r['naive_ms']:>8} ms/sign   previous {r['prev_ms']:>7} ms/sign"
            f"   optimised {r['fast_ms']:>7} ms/sign   speedup {r['ratio']:>5}x"
            f"   time/previous {r['time_ratio_prev']}   table {r['table_bytes']} bytes"
        )
        for size in ALLOC_SIZES:
            if f"alloc_b_{size}" in r:
                print(
                    f"{impl:<11} allocated per signature, {size}-byte body: {r[f'alloc_b_{size}']} B"
                    f" (previous {r[f'prev_alloc_b_{size}']} B, ratio {r[f'alloc_ratio_{size}']},"
                    f" budget {r['alloc_budget_b']} B)"
                )
        if "time_ratio_table_file" in r:
            print(f"{impl:<11} table on flash: {r['time_ratio_table_file']} x the sign time")
        if "limbs_sha_alloc_b_100" in r:
            print(
                f"{impl:<11} limb SHA-512 variant (22/21/21-bit limbs, tools/sha512_limbs.py): "
                f"{r['time_ratio_limbs_sha']} x the sign time, {r['limbs_sha_alloc_b_100']} B per"
                " signature of a 100-byte body"
            )
        if "lowgc_alloc_b_100" in r:
            print(
                f"{impl:<11} limb SHA-512 + Lehmer inversion: {r['time_ratio_lowgc']} x the sign"
                f" time, {r['lowgc_alloc_b_100']} B per signature of a 100-byte body"
            )
        _prf_lines(impl, r)
    mp = results.get("micropython")
    if mp is not None and "ratio" in mp and float(mp["ratio"]) < 3.0:
        print(f"FAIL: VM speedup {mp['ratio']} x is below the 3x goal")
        status |= 1
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
