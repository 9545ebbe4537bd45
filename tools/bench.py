"""`make bench`: runs every benchmark; each reports ratios against a baseline measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (module in tools/, what it measures). A module that is missing is reported, never faked.
BENCHES = [
    (
        "tools.bench_sign_host",
        "firmware Ed25519 sign in the MicroPython VM: time and allocated bytes per signature"
        " vs the previous signer (and time vs a straightforward one)",
    ),
    ("tools.bench_verify", "gateway record decode + verify vs pycryptodome"),
    ("tools.bench_ledger", "Merkle ledger vs pymerkle 7"),
    ("tools.bench_ingest", "ingest throughput vs bare append and bare verify"),
    (
        "tools.bench_cmdauth_host",
        "board's BLE command check (HMAC-SHA256) in the MicroPython VM vs an Ed25519 verify",
    ),
    ("tools.bench_bundle", "proof bundle building with the device index vs the old log scan"),
    (
        "tools.bench_witness",
        "witness add-checkpoint round trip on loopback vs a bare HTTP echo on the same stack",
    ),
    (
        "tools.bench_replica",
        "replica catch-up (C2SP tiles fetched, verified, stored, replayed) vs the gateway's own"
        " replay of the same log (goal: ratio >= 0.5)",
    ),
    (
        "tools.bench_heap",
        "firmware heap peak (boot and full journal included) in the MicroPython VM, .mpy on the"
        " filesystem and ROMFS, vs the 80 KB budget",
    ),
    (
        "tools.bench_ota",
        "OTA of the whole application over the virtual radio (BleLink -> virtual board) vs a"
        " record upload in the same run and the 60 s goal",
    ),
    (
        "tools.bench_power",
        "battery profiles: average current and life on 2,000 mAh from VM-measured awake time and"
        " datasheet currents vs the always-awake board (goal: cold-chain logger >= 6 months)",
    ),
    (
        "tools.bench_anchor",
        "anchor gas on anvil (per anchor, per record at the default policy) vs a bare calldata"
        " anchor and the 60k/100 gas goals",
    ),
]


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks in order; return non-zero if any failed."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", help="substring of the module names to run")
    ap.add_argument(
        "--quick", action="store_true", help="smaller sizes (every bench takes --quick)"
    )
    args = ap.parse_args(argv)
    failed = 0
    for mod_name, what in BENCHES:
        if args.only and args.only not in mod_name:
            continue
        print(f"\n=== {what} ({mod_name}) ===", flush=True)
        t0 = time.perf_counter()
        mod = importlib.import_module(mod_name)
        rc = mod.main(["--quick"] if args.quick else [])
        failed += rc != 0
        print(f"--- {mod_name}: {time.perf_counter() - t0:.1f} s, exit {rc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
