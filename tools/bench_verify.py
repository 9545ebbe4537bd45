"""Benchmarks the gateway's record decode + Ed25519 verify against a pycryptodome baseline, same run."""

from __future__ import annotations

import argparse
import hashlib
import time

from Crypto.Signature import eddsa
from nacl.signing import SigningKey

from gateway import wire

# Records per measurement: enough for ~0.3 s of the fast path, so timer noise stays < 1 %.
DEFAULT_RECORDS = 3000


def make_records(n: int) -> tuple[bytes, list[bytes]]:
    """Return (public key, n signed, chained reading records of one device)."""
    key = SigningKey(hashlib.sha256(b"bench").digest())
    pk = bytes(key.verify_key)
    dev = wire.device_id_for(pk)
    prev = wire.genesis_hash(dev)
    out = []
    for seq in range(n):
        body = (
            bytes([1, 1, 1])
            + dev
            + seq.to_bytes(4, "big")
            + (1).to_bytes(4, "big")
            + (1795000000 + seq).to_bytes(4, "big")
            + prev
            + bytes([2, 1, 0])
            + (2000 + seq % 100).to_bytes(4, "big")
            + bytes([2, 0])
            + (5000).to_bytes(4, "big")
        )
        prev = hashlib.sha256(body).digest()
        out.append(body + key.sign(body).signature)
    return pk, out


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
