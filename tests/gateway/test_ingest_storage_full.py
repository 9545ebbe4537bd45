"""Ingest on a full disk: the commit fails with SQLITE_FULL (not a masking ROLLBACK error), nothing
is acked, no event of the failed batch stays buffered, and a resend after space returns commits
everything exactly once. SQLITE_FULL is injected with `PRAGMA max_page_count`."""

import hashlib
import sqlite3

import pytest

from gateway.ingest import EV_DUPLICATE, EV_SEQ_GAP, Ingest
from gateway.ledger import KIND_DEVICE_RECORD, Ledger
from gateway.ledger.note import NoteSigner
from gateway.node.groupcommit import STORAGE_FULL, storage_error_code
from tests.gateway.simboard import SimBoard

SIGNER_SEED = hashlib.sha256(b"ingest storage-full test gateway").digest()
UPLOAD_RECORDS = 300  # enough rows that the derived state needs new pages


@pytest.fixture
def gw(tmp_path):
    signer = NoteSigner("edgeseal.test/full", SIGNER_SEED)
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"), signer)
    ing = Ingest(ledger, str(tmp_path / "state.sqlite"), clock_ms=lambda: 1)
    yield ing
    ing.close()
    ledger.close()


def _full(conn: sqlite3.Connection) -> int:
    """Cap conn's database at its current size; return the previous cap."""
    before = conn.execute("PRAGMA max_page_count").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return before


def _device_seqs(ing: Ingest) -> list[int]:
    return [
        int.from_bytes(e[20:24], "big")
        for _, e in ing.ledger.entries()
        if e[0] == KIND_DEVICE_RECORD
    ]


def _board(ing: Ingest, n: int) -> SimBoard:
    board = SimBoard("full")
    ing.enroll(board.public_key)
    for i in range(n):
        board.reading(2000 + i)
    return board


def test_a_full_ledger_commits_nothing_and_a_resend_commits_everything_once(gw):
    board = _board(gw, UPLOAD_RECORDS)
    upload = board.upload(None)
    size = gw.ledger.sequenced_size
    cap = _full(gw.ledger._conn)
    with pytest.raises(sqlite3.OperationalError) as err:
        gw.deliver(board.device_id, upload)
    assert storage_error_code(err.value) == STORAGE_FULL
    assert gw.ledger.sequenced_size == size and gw.last_committed_seq(board.device_id) is None
    assert gw._events == []  # the failed batch's events are recorded again with the resend
    gw.ledger._conn.execute(f"PRAGMA max_page_count = {cap}")
    res = gw.deliver(board.device_id, upload)
    assert res.ack_seq == UPLOAD_RECORDS - 1 and res.committed == UPLOAD_RECORDS
    assert _device_seqs(gw) == list(range(UPLOAD_RECORDS))


def test_a_full_derived_state_raises_sqlite_full_and_the_resend_is_deduplicated(gw):
    board = _board(gw, UPLOAD_RECORDS)
    upload = board.upload(None)
    cap = _full(gw._conn)
    with pytest.raises(sqlite3.OperationalError) as err:  # unfixed: "cannot rollback"
        gw.deliver(board.device_id, upload)
    assert storage_error_code(err.value) == STORAGE_FULL, err.value
    # The ledger commit went through before the derivation failed; nothing was acked.
    assert _device_seqs(gw) == list(range(UPLOAD_RECORDS))
    gw._conn.execute(f"PRAGMA max_page_count = {cap}")
    res = gw.deliver(board.device_id, upload)  # the board resends: catch_up derives, dedup
    assert res.ack_seq == UPLOAD_RECORDS - 1
    assert (res.committed, res.duplicates) == (0, UPLOAD_RECORDS)
    assert _device_seqs(gw) == list(range(UPLOAD_RECORDS))
    assert gw.last_committed_seq(board.device_id) == UPLOAD_RECORDS - 1
    kinds = [e.kind for e in gw.events()]
    assert kinds.count(EV_DUPLICATE) == 1 and EV_SEQ_GAP not in kinds


def test_events_are_flushed_all_or_nothing(gw):
    board = _board(gw, 3)
    gw._event(EV_SEQ_GAP, board.device_id, 1, "fits in a free page")
    gw._event(EV_SEQ_GAP, board.device_id, 2, "y" * 50_000)  # needs new pages
    cap = _full(gw._conn)
    with pytest.raises(sqlite3.OperationalError):
        gw._flush_events()
    gw._conn.execute(f"PRAGMA max_page_count = {cap}")
    assert [e.seq for e in gw.events()] == [1, 2]  # both kept, none written twice
