"""Benchmarks ingest (decode, verify, chain, dedup, durable commit) against same-run baselines.

Baselines measured in the same run: the bare PyNaCl verify loop (the ceiling when every record is
signed) and the bare ledger append of the same entries (the ceiling when few are signed).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from nacl.bindings import crypto_sign_open

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.ingest import Ingest  # noqa: E402
from gateway.ledger import KIND_DEVICE_RECORD, Ledger  # noqa: E402
from gateway.ledger.note import NoteSigner  # noqa: E402
from tests.support import ChainDevice, Value  # noqa: E402

# Records per upload: what one BLE connection delivers from a board's journal in a typical window.
UPLOAD_RECORDS = 100
DEVICES = 10


def make_uploads(
    records_per_device: int, sign_every: int
) -> list[tuple[bytes, bytes, list[bytes]]]:
    """Return [(device_id, public_key, records)] with chained readings, every sign_every-th signed
    (and always the last of each upload, as the board does)."""
    out = []
    for d in range(DEVICES):
        dev = ChainDevice(str(d), tag=b"bench device ")
        recs = dev.readings(
            records_per_device, _values, sign_every=sign_every, upload=UPLOAD_RECORDS
        )
        out.append((dev.device_id, dev.public_key, [r for _, r in recs]))
    return out


def _values(i: int) -> list[Value]:
    """Return the values of reading i: temperature ch0 (20.00 + (i % 50) / 100 degC), humidity ch0."""
    return [(1, 0, 2000 + i % 50), (2, 0, 5000)]


def run_ingest(uploads, workdir: Path, group: bool) -> float:
    """Return records/s through Ingest into a fresh ledger: one commit per upload (deliver), or
    one commit per round of all devices' uploads (deliver_many, group commit)."""
    signer = NoteSigner("edgeseal.bench/ingest", hashlib.sha256(b"bench").digest())
    ledger = Ledger.open(str(workdir / "ledger.sqlite"), signer)
    ing = Ingest(ledger, str(workdir / "state.sqlite"))
    for _, pk, _ in uploads:
        ing.enroll(pk)
    total = sum(len(r) for _, _, r in uploads)
    t0 = time.perf_counter()
    for start in range(0, len(uploads[0][2]), UPLOAD_RECORDS):
        batch = [(dev, recs[start : start + UPLOAD_RECORDS]) for dev, _, recs in uploads]
        if group:
            results = ing.deliver_many(batch)
        else:
            results = [ing.deliver(dev, recs) for dev, recs in batch]
        assert all(r.committed == len(b[1]) for r, b in zip(results, batch, strict=True))
        ledger.tick()
    ledger.integrate()
    elapsed = time.perf_counter() - t0
    ing.close()
    ledger.close()
    return total / elapsed


def run_append_baseline(uploads, workdir: Path) -> float:
    """Return entries/s of the bare ledger append of the same records, one commit per round."""
    signer = NoteSigner("edgeseal.bench/append", hashlib.sha256(b"bench").digest())
    ledger = Ledger.open(str(workdir / "append.sqlite"), signer)
    total = sum(len(r) for _, _, r in uploads)
    t0 = time.perf_counter()
    for start in range(0, len(uploads[0][2]), UPLOAD_RECORDS):
        ledger.append(
            [
                (KIND_DEVICE_RECORD, r)
                for _, _, recs in uploads
                for r in recs[start : start + UPLOAD_RECORDS]
            ]
        )
        ledger.tick()
    ledger.integrate()
    elapsed = time.perf_counter() - t0
    ledger.close()
    return total / elapsed


def run_verify_baseline(uploads) -> float:
    """Return signatures/s of the bare libsodium verify over the signed records."""
    items = [(pk, r) for _, pk, recs in uploads for r in recs if len(r) > 100]
    t0 = time.perf_counter()
    for pk, r in items:
        crypto_sign_open(r[-64:] + r[:-64], pk)
    return len(items) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Print ingest throughput for all-signed and 1-in-100-signed uploads with their baselines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000, help="records per device (10 devices)")
    ap.add_argument("--quick", action="store_true", help="200 records per device")
    args = ap.parse_args(argv)
    per_device = 200 if args.quick else args.records
    print(
        f"ingest, {DEVICES} devices x {per_device} records, uploads of {UPLOAD_RECORDS}, one core"
    )
    for sign_every, label in ((1, "every record signed"), (100, "one signature per 100")):
        uploads = make_uploads(per_device, sign_every)
        with tempfile.TemporaryDirectory() as d:
            single = run_ingest(uploads, Path(d), group=False)
        with tempfile.TemporaryDirectory() as d:
            grouped = run_ingest(uploads, Path(d), group=True)
            base_append = run_append_baseline(uploads, Path(d))
        base_verify = run_verify_baseline(uploads)
        print(f"  {label}:")
        print(f"    ingest, one commit per upload              {single:10,.0f} records/s")
        print(f"    ingest, group commit of {DEVICES} uploads        {grouped:10,.0f} records/s")
        print(f"    baseline: bare ledger append (same commits) {base_append:10,.0f} entries/s")
        print(f"    baseline: bare PyNaCl verify                {base_verify:10,.0f} signatures/s")
        print(
            f"    group ingest / append {grouped / base_append:5.2f}"
            f"   group ingest / verify {grouped / base_verify:5.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
