"""Chain segments at the gateway: every fault sequence that loses records before the gateway has
them ends with the board's next records ingested and the audit passing (docs/wire-format.md,
Chain segments). The board is tests.gateway.simboard.SimBoard (the firmware's record builder);
its seq high-water survives every fault, as the firmware keeps it in NVS."""

import hashlib
import os
import shutil

import pytest

from firmware import ed25519
from firmware import wire as fw
from gateway.ingest import ALARMS, EV_CHAIN_SEGMENT, Ingest
from gateway.ledger import KIND_DEVICE_RECORD, Ledger
from gateway.ledger.audit import audit
from gateway.ledger.note import NoteSigner
from tests.gateway.simboard import SimBoard

SIGNER = NoteSigner("edgeseal.test/segments", hashlib.sha256(b"segment test gateway").digest())


class Gateway:
    """A ledger plus its ingest in tmp_path, reopenable (restart, restore of an older copy)."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.ledger_path = str(tmp_path / "ledger.sqlite")
        self.open()

    def open(self, accept_loss=False):
        self.ledger = Ledger.open(self.ledger_path, SIGNER)
        self.ing = Ingest(
            self.ledger, str(self.dir / "state.sqlite"), clock_ms=lambda: 1, accept_loss=accept_loss
        )

    def close(self):
        self.ing.close()
        self.ledger.close()

    def backup(self, name):
        self.close()
        shutil.copy(self.ledger_path, str(self.dir / name))
        self.open()

    def restore(self, name):
        """Restore an older copy of the ledger and start with --accept-loss."""
        self.close()
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.ledger_path + suffix):
                os.remove(self.ledger_path + suffix)
        shutil.copy(str(self.dir / name), self.ledger_path)
        self.open(accept_loss=True)

    def sync(self, board, from_seq=None):
        """One connection: the board uploads from from_seq (the gateway's next seq by default),
        the gateway acks; return the UploadResult."""
        if from_seq is None:
            last = self.ing.last_committed_seq(board.device_id)
            from_seq = 0 if last is None else last + 1
        res = self.ing.deliver(board.device_id, board.upload(from_seq))
        board.ack(res.ack_seq)
        return res

    def segment_events(self):
        return [e for e in self.ing.events() if e.kind == EV_CHAIN_SEGMENT]

    def assert_resumed(self, board):
        """The board's next records are ingested and the audit passes."""
        board.reading(2222)
        board.heartbeat()
        res = self.sync(board)
        assert res.rejected == 0 and res.pending == 0
        assert res.ack_seq == board.produced[-1][0]
        assert board.journal == []
        self.ledger.integrate()
        report = audit(self.ledger_path, self.ledger.vkey)
        assert report.ok, report.findings


@pytest.fixture
def gw(tmp_path):
    g = Gateway(tmp_path)
    yield g
    g.close()


def _board(gw, name="a", sign_every=1):
    board = SimBoard(name, sign_every=sign_every)
    gw.ing.enroll(board.public_key)
    for t in range(3):
        board.reading(2500 + t)
    assert gw.sync(board).ack_seq == 2
    return board


def test_journal_wiped_before_upload_starts_a_segment_and_the_gap_is_an_alarm(gw):
    board = _board(gw)
    for _ in range(3):
        board.reading()  # seqs 3..5, never uploaded
    board.lose_journal()
    seg = board.segment(fw.BRK_JOURNAL_LOST)
    res = gw.sync(board)
    assert res.committed == 1 and res.rejected == 0  # the segment (signed: no closer needed)
    (ev,) = gw.segment_events()
    assert ev.alarm and EV_CHAIN_SEGMENT in ALARMS and ev.evidence == seg
    assert ev.seq == fw.parse(seg)[3] and "seqs 3..21 missing (journal-lost)" in ev.detail
    assert "held nothing" in ev.detail
    gw.assert_resumed(board)


def test_journal_damaged_midway_keeps_the_records_around_the_hole(gw):
    board = _board(gw)
    for _ in range(5):
        board.reading()  # seqs 3..7
    board.journal = [(s, r) for s, r in board.journal if s != 5]  # a CRC failure at seq 5
    board.segment(fw.BRK_FLASH_FAULT, held=7)
    res = gw.sync(board)
    assert res.committed == 5 and res.rejected == 0  # 3, 4, then 6, 7 and the segment
    (ev,) = gw.segment_events()
    assert "seqs 5..5 missing (flash-fault)" in ev.detail
    gw.assert_resumed(board)


def test_hole_without_a_segment_is_a_chain_break_and_nothing_after_it_is_acked(gw):
    board = _board(gw)
    for _ in range(4):
        board.reading()
    board.journal = [(s, r) for s, r in board.journal if s != 4]
    res = gw.sync(board)
    assert res.ack_seq == 3 and res.rejected == 2
    assert [e.kind for e in gw.ing.events() if e.alarm] == ["chain-break"]
    board.segment(fw.BRK_FLASH_FAULT, held=6)  # the board learns of the hole: it heals
    gw.assert_resumed(board)


def test_reflash_with_nvs_kept(gw):
    board = _board(gw)
    board.reading()
    board.lose_journal()  # the filesystem is rewritten; key and seq high-water are in NVS
    board.segment(fw.BRK_REFLASH)
    gw.assert_resumed(board)
    assert "reflash" in gw.segment_events()[0].detail


def test_gateway_restored_an_older_ledger_with_accept_loss(gw):
    board = _board(gw)
    gw.backup("older.sqlite")
    for _ in range(3):
        board.reading()  # seqs 3..5: acked, then deleted by the board
    assert gw.sync(board).ack_seq == 5 and board.journal == []
    board.reading()  # seq 6, unacked, still on the board
    gw.restore("older.sqlite")
    assert gw.ing.last_committed_seq(board.device_id) == 2
    # The gateway asks for seq 3, which the board deleted after its ack: gateway-behind.
    board.segment(fw.BRK_GATEWAY_BEHIND, held=board.produced[-1][0])
    res = gw.sync(board, from_seq=0)
    assert res.rejected == 0 and res.committed == 2  # 6 (after the break) and the segment
    (ev,) = gw.segment_events()
    assert "seqs 3..5 missing (gateway-behind)" in ev.detail
    assert [e.kind for e in gw.ing.events() if e.alarm] == ["acked-data-lost", "chain-segment"]
    gw.assert_resumed(board)


def test_repeated_breaks(gw):
    board = _board(gw)
    for round_ in range(4):
        board.reading()
        board.lose_journal(head_known=bool(round_ % 2))
        board.segment(fw.BRK_JOURNAL_LOST)
        if round_ == 2:
            board.lose_journal()  # lost again before it was uploaded
            board.segment(fw.BRK_FLASH_FAULT)
        gw.assert_resumed(board)
    assert len(gw.segment_events()) == 4


def test_break_right_after_key_rotation(gw):
    board = _board(gw)
    board.rotate_key(hashlib.sha256(b"rotated once").digest())
    gw.sync(board)  # the rotation is acked: the gateway knows the new key
    board.reading()
    board.lose_journal()
    board.segment(fw.BRK_JOURNAL_LOST)  # signed by the new key
    gw.assert_resumed(board)


def test_break_that_loses_an_unacked_key_rotation(gw):
    board = _board(gw)
    old_key = board.key
    board.rotate_key(hashlib.sha256(b"rotated, never acked").digest())
    board.lose_journal()
    # Signed by the new key, the gateway never saw: refused, nothing acked ...
    board.segment(fw.BRK_JOURNAL_LOST)
    res = gw.sync(board)
    assert res.committed == 0 and [e.kind for e in gw.ing.events() if e.alarm] == ["bad-signature"]
    # ... so the board keeps the old key until a rotation is acked: it signs the segment with it
    # and rotates again after it.
    board.journal.clear()
    board.key = old_key
    board.segment(fw.BRK_JOURNAL_LOST)
    board.rotate_key(hashlib.sha256(b"rotated again").digest())
    gw.assert_resumed(board)


def test_forged_segment_is_refused_and_the_board_still_heals(gw):
    board = _board(gw)
    board.lose_journal()
    forger = ed25519.SigningKey(hashlib.sha256(b"someone else").digest())
    forged = board.segment(fw.BRK_JOURNAL_LOST, signer=forger)
    board.journal.clear()
    res = gw.ing.deliver(board.device_id, [forged])
    assert res.committed == 0 and res.ack_seq == 2
    assert [e.kind for e in gw.ing.events() if e.alarm] == ["bad-signature"]
    board.segment(fw.BRK_JOURNAL_LOST)
    gw.assert_resumed(board)


def test_segment_at_or_below_the_last_committed_seq_is_refused(gw):
    board = _board(gw)
    board.seq = 2  # a board that lost its seq high-water (not ours: NVS keeps it)
    board.lose_journal()
    board.seq = 2
    replayed = board.segment(fw.BRK_REFLASH)
    board.journal.clear()
    res = gw.ing.deliver(board.device_id, [replayed])
    assert res.committed == 0 and res.rejected == 1
    assert [e.kind for e in gw.ing.events() if e.alarm] == ["clone-or-rollback"]
    board.seq = 40  # the high-water from NVS
    board.segment(fw.BRK_REFLASH)
    gw.assert_resumed(board)


@pytest.mark.parametrize("cut", ["before-journal", "after-journal", "after-commit"])
def test_power_cut_around_the_segment(gw, cut):
    """before-journal: the segment was built but never written (the next boot builds another
    at a higher seq); after-journal: it is the head the next records chain onto; after-commit:
    the gateway committed it but the ack was lost, so the board sends it again."""
    board = _board(gw)
    board.reading()
    board.lose_journal()
    board.segment(fw.BRK_JOURNAL_LOST)
    if cut == "before-journal":
        board.lose_journal()
        board.segment(fw.BRK_JOURNAL_LOST)
    elif cut == "after-commit":
        gw.ing.deliver(board.device_id, board.upload(0))  # the ack never reaches the board
    else:
        board.boot += 1
    res = gw.sync(board, from_seq=0)
    assert res.rejected == 0
    gw.assert_resumed(board)
    assert len(gw.segment_events()) == 1


def test_segment_records_reach_no_contract_and_bundles_prove_them(gw):
    from gateway.contracts.engine import Engine  # noqa: F401  (import check only)

    board = _board(gw)
    board.lose_journal()
    board.segment(fw.BRK_JOURNAL_LOST)
    gw.assert_resumed(board)
    records = [e[1:] for _, e in gw.ledger.entries() if e[0] == KIND_DEVICE_RECORD]
    assert any(fw.parse(r)[0] == fw.KIND_CHAIN_SEGMENT for r in records)


def test_bundles_prove_segment_records_and_records_of_a_vouched_run(gw):
    from gateway.bundle import build_bundle, encode_bundle, verify_bundle_bytes

    board = _board(gw, sign_every=3)
    gw.backup("older.sqlite")
    for _ in range(3):
        board.reading()
    gw.sync(board)
    board.reading()
    board.reading()  # unsigned, still on the board: the segment vouches for it
    gw.restore("older.sqlite")
    board.segment(fw.BRK_GATEWAY_BEHIND)
    assert gw.sync(board, from_seq=0).rejected == 0
    gw.ledger.integrate()
    first = (board.public_key, 0)
    entries = list(gw.ledger.entries())
    details = []
    for index, entry in entries:
        if entry[0] != KIND_DEVICE_RECORD or index < 4:
            continue
        doc = encode_bundle(build_bundle(gw.ledger, index, {board.device_id: first}.get))
        details.append(verify_bundle_bytes(doc, gw.ledger.vkey).detail)  # raises if bad
    assert any("hash-chain links" in d for d in details)  # an unsigned record of the run
    assert len(details) >= 3


def test_audit_still_rejects_a_real_chain_break(gw):
    board = _board(gw)
    board.reading()
    board.lose_journal()
    board.reading(signed=True)  # a break no chain_segment vouches for, bypassing ingest
    gw.ledger.append([(KIND_DEVICE_RECORD, board.journal[-1][1])])
    gw.ledger.integrate()
    report = audit(gw.ledger_path, gw.ledger.vkey)
    assert [f.code for f in report.findings] == ["chain-break"]
    assert report.first_bad_index == gw.ledger.sequenced_size - 1
