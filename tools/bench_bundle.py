"""Bundle building: the LogIndex's device records (O(log n) reads) against the old scan, same run.

Usage: python tools/bench_bundle.py [--quick] [--sizes 10000,100000]

For each size, a ledger holds one board's enrollment at index 0, then `size` filler records of
another board, then the board's unsigned reading and the signed record that closes its chain.
The bundle of that unsigned reading needs the board's key rotations since enrollment (none) and
its signed successor: the scan (gateway.bundle.ScanChains, the only way before the index) reads
every entry since the enrollment, the index (gateway.node.index.LogIndex) bisects. Measured:
median milliseconds per bundle over BUILDS builds, entry rows read per bundle, and the index's
cost on the writer thread (LogIndex.observe per entry over the whole log, entries already read). The two bundles
must be byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (tools/bench.py imports it as tools.bench_bundle)
    sys.path.insert(0, str(ROOT))

from gateway.bundle import ScanChains, build_bundle, encode_bundle  # noqa: E402
from gateway.ledger import Ledger, NoteSigner, enrollment_entry  # noqa: E402
from gateway.ledger.entries import KIND_DEVICE_RECORD  # noqa: E402
from gateway.node.index import LogIndex  # noqa: E402
from tests.support import ChainDevice  # noqa: E402
from tools.gen_vectors import READING  # noqa: E402

SIZES = (10_000, 100_000)
QUICK_SIZES = (10_000,)
BUILDS = 20  # bundles per measurement (median)
APPEND_BATCH_ENTRIES = 1000


class Counting:
    """The ledger, counting entry rows read (point reads and scanned rows)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.rows = 0

    @property
    def tree_size(self) -> int:
        return self.ledger.tree_size

    def entry(self, index: int) -> bytes:
        self.rows += 1
        return self.ledger.entry(index)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        for item in self.ledger.entries(start, end):
            self.rows += 1
            yield item

    def prove_inclusion(self, index: int, size: int) -> list[bytes]:
        return self.ledger.prove_inclusion(index, size)

    def checkpoint(self) -> bytes:
        return self.ledger.checkpoint()


def build_log(path: str, size: int) -> tuple[Ledger, ChainDevice, int]:
    """Return (the ledger of the module doc, the board, the index of its unsigned reading)."""
    board = ChainDevice("bench-board", seed=hashlib.sha256(b"bench bundle").digest())
    other = ChainDevice("bench-filler", seed=hashlib.sha256(b"bench filler").digest())
    led = Ledger.open(path, NoteSigner.generate(), max_batch_entries=10 * size)
    led.append([enrollment_entry(board.device_id, board.public_key)])
    for start in range(0, size, APPEND_BATCH_ENTRIES):
        n = min(APPEND_BATCH_ENTRIES, size - start)
        led.append([(KIND_DEVICE_RECORD, r) for _, r in other.readings(n, sign_every=10**9)])
    target = led.append([(KIND_DEVICE_RECORD, board.emit(READING, [(1, 0, 2000)], signed=False))])
    led.append([(KIND_DEVICE_RECORD, board.emit(READING, [(1, 0, 2001)], signed=True))])
    led.integrate()
    return led, board, target[0]


def measure(led: Ledger, target: int, lookup: Any, chains: Any) -> tuple[float, int, bytes]:
    """Return (median ms per bundle, entry rows read per bundle, the bundle's bytes)."""
    times, rows, data = [], 0, b""
    for _ in range(BUILDS):
        counting = Counting(led)
        t0 = time.perf_counter()
        doc = build_bundle(counting, target, lookup, chains=chains or ScanChains(counting))
        times.append((time.perf_counter() - t0) * 1000)
        rows, data = counting.rows, encode_bundle(doc)
    return statistics.median(times), rows, data


def run(size: int) -> None:
    """Print one size's line: scan vs index ms/bundle, rows read, ratio, observe cost."""
    with tempfile.TemporaryDirectory(prefix="edgeseal-bench-bundle-") as tmp:
        led, board, target = build_log(str(Path(tmp) / "ledger.db"), size)
        try:
            index = LogIndex()
            entries = list(led.entries())  # read first: the replay's SQLite reads are not timed
            t0 = time.perf_counter()
            for i, entry in entries:
                index.observe(i, entry)
            observe_us = (time.perf_counter() - t0) * 1e6 / len(entries)

            def lookup(device_id: bytes) -> tuple[bytes, int] | None:
                return (board.public_key, 0) if device_id == board.device_id else None

            scan_ms, scan_rows, scanned = measure(led, target, lookup, None)
            index_ms, index_rows, indexed = measure(led, target, lookup, index)
            assert scanned == indexed, "the index and the scan must give the same bundle"
        finally:
            led.close()
    print(
        f"{size:>9,} entries: scan {scan_ms:8.2f} ms ({scan_rows:,} rows), "
        f"index {index_ms:6.3f} ms ({index_rows} rows): {scan_ms / index_ms:7.1f}x faster; "
        f"observe {observe_us:.1f} us/entry",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark at each size; return 0."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    ap.add_argument("--sizes", help="comma-separated log sizes")
    args = ap.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    for size in sizes:
        run(size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
