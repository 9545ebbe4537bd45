"""The durable ledger (gateway.ledger.store): sequencing, integration, proofs, restart, bad input."""

import os
import sqlite3

import pytest

from gateway.errors import ProofError, WireError
from gateway.ledger import merkle
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_PARTICIPANT_TX
from gateway.ledger.note import NoteSigner, verify_checkpoint
from gateway.ledger.store import Ledger
from tests.gateway.ledger import reference_merkle as ref


def entry_payload(i: int) -> bytes:
    return b"tx-%d-" % i + bytes([i % 251]) * (i % 7)


@pytest.fixture
def signer():
    return NoteSigner.generate("test.example/ledger")


def fill(ledger: Ledger, count: int, start: int = 0, batch: int = 7) -> list[bytes]:
    """Append `count` entries in uneven batches; return their entry bytes."""
    out = []
    i = start
    while i < start + count:
        n = min(batch + i % 5, start + count - i)
        items = [(KIND_PARTICIPANT_TX, entry_payload(j)) for j in range(i, i + n)]
        assert ledger.append(items) == list(range(i, i + n))
        out += [bytes([k]) + p for k, p in items]
        i += n
    return out


def test_small_log_matches_reference_for_every_size_and_index(tmp_path, signer):
    ledger = Ledger.open(str(tmp_path / "l.db"), signer, max_batch_entries=1)
    data = []
    for size in range(1, 65):
        data += fill(ledger, 1, start=size - 1)
        assert ledger.tree_size == size  # max_batch_entries=1 integrates every append
        cp = verify_checkpoint(ledger.checkpoint(), signer.verifier())
        assert (cp.size, cp.root) == (size, ref.mth(data))
    for size in range(1, 65):
        root = ledger.root(size)
        assert root == ref.mth(data[:size])
        for index in range(size):
            proof = ledger.prove_inclusion(index, size)
            assert proof == ref.path(index, data[:size])
            merkle.verify_inclusion(merkle.leaf_hash(ledger.entry(index)), index, size, proof, root)
        for size1 in range(1, size):
            proof = ledger.prove_consistency(size1, size)
            assert proof == ref.proof(size1, data[:size])
    ledger.close()


def test_large_log_across_tiles_survives_restart(tmp_path, signer):
    path = str(tmp_path / "l.db")
    ledger = Ledger.open(path, signer, max_batch_entries=97)
    data = fill(ledger, 700, batch=13)
    ledger.integrate()
    leaves = [ref.leaf(d) for d in data]
    ledger.close()

    ledger = Ledger.open(path, signer, max_batch_entries=97)
    assert ledger.tree_size == 700
    data += fill(ledger, 300, start=700, batch=50)
    ledger.integrate()
    leaves += [ref.leaf(d) for d in data[700:]]
    for size in (1, 255, 256, 257, 512, 700, 701, 999, 1000):
        root = ledger.root(size)
        assert root == ref.mth(data[:size])
        for index in {0, size // 3, size - 1, min(size - 1, 256)}:
            proof = ledger.prove_inclusion(index, size)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
        for size1 in {1, size // 2, size - 1, size}:
            if size1:
                proof = ledger.prove_consistency(size1, size)
                merkle.verify_consistency(size1, size, proof, ledger.root(size1), root)
    assert [i for i, _ in ledger.entries(998)] == [998, 999]
    sizes = [s for s, _ in ledger.checkpoints()]
    assert sizes[0] == 0 and sizes[-1] == 1000 and sizes == sorted(sizes)
    ledger.close()

    reader = Ledger.open_readonly(path)
    assert reader.tree_size == 1000
    assert reader.prove_inclusion(5, 1000) == Ledger.open(path, signer).prove_inclusion(5, 1000)
    with pytest.raises(PermissionError):
        reader.append([(KIND_PARTICIPANT_TX, b"x")])
    reader.close()


def test_bad_input_is_typed_and_changes_nothing(tmp_path, signer):
    path = str(tmp_path / "l.db")
    ledger = Ledger.open(path, signer)
    fill(ledger, 3)
    before = (ledger.sequenced_size, ledger.tree_size, ledger.checkpoint())
    for bad in [
        [(KIND_PARTICIPANT_TX, b"ok"), (0x09, b"unknown kind")],
        [(KIND_PARTICIPANT_TX, b"ok"), (KIND_PARTICIPANT_TX, "not bytes")],
        [(KIND_PARTICIPANT_TX, b"x" * 70_000)],
        [(KIND_PARTICIPANT_TX,)],
    ]:
        with pytest.raises(WireError):
            ledger.append(bad)  # type: ignore[arg-type]
    assert (ledger.sequenced_size, ledger.tree_size, ledger.checkpoint()) == before
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM entry").fetchone()[0]
    assert count == 3
    ledger.integrate()
    for index, size in [(3, 3), (-1, 3), (0, 4), (0, 0)]:
        with pytest.raises(ProofError, match="bad-range"):
            ledger.prove_inclusion(index, size)
    for size1, size2 in [(2, 1), (1, 4), (-1, 2)]:
        with pytest.raises(ProofError, match="bad-range"):
            ledger.prove_consistency(size1, size2)
    with pytest.raises(ProofError, match="bad-range"):
        ledger.entry(3)
    ledger.close()


def test_batching_policy_and_extension_lines(tmp_path, signer):
    lines = []

    def extension_lines(size, root):
        lines.append(size)
        return [f"state {size} {root.hex()[:8]}"]

    ledger = Ledger.open(
        str(tmp_path / "l.db"),
        signer,
        max_batch_entries=10,
        batch_interval_ms=500,
        extension_lines=extension_lines,
    )
    for i in range(5):
        ledger.append([(KIND_CONTRACT_EVENT, b"e%d" % j) for j in range(i * 5, i * 5 + 5)])
    assert ledger.tree_size == 20 and ledger.pending == 5  # integrated at 10 and 20
    assert lines == [0, 10, 20]
    assert ledger.tick(now_ms=0) is None
    assert not ledger.due(now_ms=0)
    note = ledger.tick(now_ms=10**12)
    assert note is not None and ledger.tree_size == 25 and ledger.pending == 0
    cp = verify_checkpoint(note, signer.verifier())
    assert cp.extensions == (f"state 25 {cp.root.hex()[:8]}",)
    assert ledger.tick(now_ms=10**13) is None  # nothing pending
    assert ledger.integrate() == note  # idempotent
    ledger.close()


def test_store_is_wal_with_full_sync(tmp_path, signer):
    ledger = Ledger.open(str(tmp_path / "l.db"), signer)
    conn = ledger._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.close()


def test_a_ledger_never_signs_with_another_key(tmp_path, signer):
    path = str(tmp_path / "l.db")
    Ledger.open(path, signer).close()
    with pytest.raises(ValueError):
        Ledger.open(path, NoteSigner.generate("test.example/ledger"))
    with pytest.raises(ValueError):
        Ledger.open(path, signer, origin="other.example/log")


def test_crash_leftovers_are_integrated_on_open(tmp_path, signer):
    path = str(tmp_path / "l.db")
    ledger = Ledger.open(path, signer, max_batch_entries=10_000)
    data = fill(ledger, 40)
    assert ledger.tree_size == 0 and ledger.pending == 40
    ledger.close()  # entries are durable, not yet integrated
    assert os.path.exists(path)
    ledger = Ledger.open(path, signer)
    assert ledger.tree_size == 40 and ledger.root() == ref.mth(data)
    ledger.close()


def test_threads_share_one_ledger(tmp_path, signer):
    import threading

    ledger = Ledger.open(str(tmp_path / "l.db"), signer, max_batch_entries=50)
    got: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                got.extend(ledger.append([(KIND_PARTICIPANT_TX, b"%d-%d" % (n, i))] * 3))
                if ledger.tree_size:
                    size = ledger.tree_size
                    proof = ledger.prove_inclusion(size - 1, size)
                    leaf = merkle.leaf_hash(ledger.entry(size - 1))
                    merkle.verify_inclusion(leaf, size - 1, size, proof, ledger.root(size))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(240))
    ledger.integrate()
    assert ledger.root() == ref.mth([e for _, e in ledger.entries()])
    ledger.close()


def test_failed_integration_changes_nothing(tmp_path, signer):
    bad = {"on": False}

    def extension_lines(size, root):
        return [""] if bad["on"] else []  # an empty extension line is not allowed

    ledger = Ledger.open(str(tmp_path / "l.db"), signer, extension_lines=extension_lines)
    data = fill(ledger, 30)
    ledger.integrate()
    bad["on"] = True
    data += fill(ledger, 20, start=30)
    with pytest.raises(ValueError):
        ledger.integrate()
    assert (ledger.tree_size, ledger.pending) == (30, 20)
    bad["on"] = False
    ledger.integrate()
    assert ledger.root() == ref.mth(data)
    ledger.close()
