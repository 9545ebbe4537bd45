"""Building a proof bundle reads O(log n) entries (issue 14 item 15): with the LogIndex's device
records, build_bundle reads the entry, the entries it carries (rotations, successors) and the
RFC 9162 2.1.3 proof, never a scan of the log; the count does not grow with the log.

A CountingLedger wraps the real ledger and counts point reads (`entry`) and scanned rows
(`entries`). The log: one board's enrollment, its key rotation, an unsigned record, an unsigned
successor and the signed record that closes the chain, each separated by FILLER records of
another board.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.bundle import build_bundle, encode_bundle, verify_bundle_bytes
from gateway.errors import NotIntegrated
from gateway.ledger import Ledger, NoteSigner, enrollment_entry
from gateway.ledger.entries import KIND_DEVICE_RECORD
from gateway.node.index import LogIndex
from tests.gateway.simboard import SimBoard


class CountingLedger:
    """A LedgerView that counts entry reads (point reads and scanned rows)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.point_reads = 0
        self.scanned_rows = 0

    @property
    def tree_size(self) -> int:
        return self.ledger.tree_size

    def entry(self, index: int) -> bytes:
        self.point_reads += 1
        return self.ledger.entry(index)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        for item in self.ledger.entries(start, end):
            self.scanned_rows += 1
            yield item

    def prove_inclusion(self, index: int, size: int) -> list[bytes]:
        return self.ledger.prove_inclusion(index, size)

    def checkpoint(self) -> bytes:
        return self.ledger.checkpoint()


class Log:
    """The test log (module doc) and where its interesting entries are."""

    def __init__(self, tmp_path: Path, filler: int) -> None:
        board = SimBoard(f"reads-{filler}", sign_every=10**9)
        other = SimBoard(f"filler-{filler}", sign_every=10**9)
        self.device_id = board.device_id
        self.first_key = board.public_key
        self.signer = NoteSigner.generate()
        self.ledger = Ledger.open(str(tmp_path / f"reads-{filler}.db"), self.signer)
        self.append([enrollment_entry(board.device_id, board.public_key)])
        pad = [(KIND_DEVICE_RECORD, other.reading()) for _ in range(5 * filler)]
        self.append(pad[:filler])
        self.rotation = self.append([(KIND_DEVICE_RECORD, board.rotate_key(b"\x05" * 32))])
        self.append(pad[filler : 2 * filler])
        self.target = self.append([(KIND_DEVICE_RECORD, board.reading(signed=False))])
        self.append(pad[2 * filler : 3 * filler])
        self.middle = self.append([(KIND_DEVICE_RECORD, board.reading(signed=False))])
        self.early_checkpoint = self.ledger.integrate()
        self.append(pad[3 * filler : 4 * filler])
        self.closing = self.append([(KIND_DEVICE_RECORD, board.reading(signed=True))])
        self.append(pad[4 * filler :])
        self.ledger.integrate()
        self.index = LogIndex()
        for i, entry in self.ledger.entries():
            self.index.observe(i, entry)

    def append(self, entries: list[tuple[int, bytes]]) -> int:
        return self.ledger.append(entries)[-1]

    def lookup(self, device_id: bytes) -> tuple[bytes, int] | None:
        return (self.first_key, 0) if device_id == self.device_id else None

    def build(self, chains: Any = None) -> tuple[bytes, CountingLedger]:
        counting = CountingLedger(self.ledger)
        doc = build_bundle(counting, self.target, self.lookup, chains=chains)
        return encode_bundle(doc), counting


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Log]]:
    tmp = tmp_path_factory.mktemp("bundle-reads")
    out = {n: Log(tmp, n) for n in (200, 4_000)}
    yield out
    for log in out.values():
        log.ledger.close()


def test_bundle_reads_do_not_grow_with_the_log(logs: dict[int, Log]) -> None:
    reads = {}
    for n, log in logs.items():
        data, counting = log.build(log.index)
        res = verify_bundle_bytes(data, log.signer.vkey)
        assert res.index == log.target and "2 hash-chain links" in res.detail
        assert counting.scanned_rows == 0
        # the entry, its rotation, its two successors: nothing else
        reads[n] = counting.point_reads
    assert reads == {200: 4, 4_000: 4}


def test_the_index_gives_the_same_bundle_as_the_scan(logs: dict[int, Log]) -> None:
    for n, log in logs.items():
        indexed, _ = log.build(log.index)
        scanned, counting = log.build(None)  # default: ScanChains over the counting ledger
        assert indexed == scanned
        assert counting.scanned_rows >= 4 * n  # what the index saves


def test_a_closing_record_past_the_checkpoint_is_not_integrated(logs: dict[int, Log]) -> None:
    log = logs[200]
    size = log.closing  # the checkpoint covers everything before the closing record
    assert log.index.successors(log.device_id, log.target, size) is None
    assert log.index.successors(log.device_id, log.target, size + 1) == [log.middle, log.closing]
    assert log.index.rotations(log.device_id, 0, log.target) == [log.rotation]
    assert log.index.rotations(log.device_id, log.rotation + 1, log.target) == []
    assert log.index.successors(hashlib.sha256(b"nobody").digest()[:16], 0, size) is None
    with pytest.raises(NotIntegrated, match="not covered"):
        build_bundle(log.ledger, log.target, log.lookup, log.early_checkpoint, log.index)


def test_entries_not_yet_indexed_are_not_integrated(logs: dict[int, Log]) -> None:
    """A checkpoint can cover entries the writer thread has not observed yet (an append that
    fills a batch integrates at once): the bundle is 409 not-integrated, never incomplete."""
    log = logs[200]
    behind = LogIndex()
    for i, entry in log.ledger.entries(0, log.target):
        behind.observe(i, entry)
    assert behind.observed_size == log.target
    with pytest.raises(NotIntegrated, match="not indexed yet"):
        build_bundle(log.ledger, log.middle, log.lookup, chains=behind)
    assert behind.successors(log.device_id, log.target, log.ledger.tree_size) is None
