"""Benchmarks the gateway's record decode + Ed25519 verify against a pycryptodome baseline, same run."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from Crypto.Signature import eddsa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (tools/bench.py imports it as tools.bench_verify)
    sys.path.insert(0, str(ROOT))

from gateway import wire  # noqa: E402
from tests.support import ChainDevice  # noqa: E402

# Records per measurement: enough for ~0.3 s of the fast path, so timer noise stays < 1 %.
DEFAULT_RECORDS = 3000


def make_records(n: int) -> tuple[bytes, list[bytes]]:
    """Return (public key, n signed, chained reading records of one device)."""
    dev = ChainDevice("", seed=hashlib.sha256(b"bench").digest())
    recs = dev.readings(n, lambda i: [(1, 0, 2000 + i % 100), (2, 0, 5000)])
    return dev.public_key, [r for _, r in recs]


def rate(fn, records: list[bytes]) -> float:
    """Return records per second for fn over records (best of 3 runs)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(records)
        best = min(best, time.perf_counter() - t0)
    return len(records) / best


def main(argv: list[str] | None = None) -> int:
    """Print decode+verify throughput of gateway.wire (PyNaCl) vs pycryptodome; return 0."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    ap.add_argument("--quick", action="store_true", help="a tenth of the records")
    args = ap.parse_args(argv)
    pk, records = make_records(args.records // 10 if args.quick else args.records)

    def gateway_path(recs: list[bytes]) -> None:
        chain = wire.DeviceChain(wire.device_id_for(pk), pk)
        for raw in recs:
            chain.push(wire.decode_record(raw))

    verifier = eddsa.new(eddsa.import_public_key(pk), "rfc8032")

    def baseline(recs: list[bytes]) -> None:
        for raw in recs:
            rec = wire.decode_record(raw)
            assert rec.signature is not None
            verifier.verify(rec.body, rec.signature)

    def decode_only(recs: list[bytes]) -> None:
        for raw in recs:
            wire.decode_record(raw)

    fast = rate(gateway_path, records)
    slow = rate(baseline, records)
    dec = rate(decode_only, records)
    print("record verify (one core, every record signed)")
    print(f"  decode only                       {dec:10,.0f} records/s")
    print(f"  gateway: decode+chain+PyNaCl      {fast:10,.0f} records/s")
    print(f"  baseline: decode+pycryptodome     {slow:10,.0f} records/s")
    print(f"  ratio gateway / baseline          {fast / slow:10.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
