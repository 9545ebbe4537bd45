"""Ingest: verify, dedup, hold unsigned, evidence, durable commit before ack, rebuild from the log."""

import hashlib

import pytest

from gateway import ingest as ingest_mod
from gateway.errors import SignatureError, WireError
from gateway.ingest import Ingest
from gateway.ledger import KIND_DEVICE_RECORD, Ledger
from gateway.ledger.note import NoteSigner
from tests.gateway.simboard import SimBoard

SIGNER_SEED = hashlib.sha256(b"ingest test gateway").digest()


def _open(tmp_path):
    signer = NoteSigner("edgeseal.test/ingest", SIGNER_SEED)
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"), signer)
    return ledger, Ingest(ledger, str(tmp_path / "state.sqlite"), clock_ms=lambda: 1)


@pytest.fixture
def gw(tmp_path):
    ledger, ing = _open(tmp_path)
    yield ing
    ing.close()
    ledger.close()


def _device_records(ing):
    return [e[1:] for _, e in ing.ledger.entries() if e[0] == KIND_DEVICE_RECORD]


def _kinds(ing):
    return [e.kind for e in ing.events()]


def test_signed_upload_is_committed_and_acked(gw):
    board = SimBoard("a")
    gw.enroll(board.public_key, {"owner": "farm-1", "contract": "agri"})
    for t in range(5):
        board.reading(2500 + t)
    res = gw.deliver(board.device_id, board.upload(None))
    assert res.ack_seq == 4 and res.committed == 5 and res.pending == 0
    assert _device_records(gw) == [raw for _, raw in board.produced]
    assert gw.last_committed_seq(board.device_id) == 4


def test_redelivery_is_deduplicated_exactly(gw):
    board = SimBoard("a")
    gw.enroll(board.public_key)
    for _ in range(3):
        board.reading()
    upload = board.upload(None)
    gw.deliver(board.device_id, upload)
    res = gw.deliver(board.device_id, upload)  # the ack was lost: the board sends again
    assert (res.committed, res.duplicates, res.ack_seq) == (0, 3, 2)
    assert len(_device_records(gw)) == 3
    assert "duplicate" in _kinds(gw)


def test_unsigned_tail_is_held_not_acked_then_closed_by_a_signed_successor(gw):
    board = SimBoard("a", sign_every=4)
    gw.enroll(board.public_key)
    for _ in range(6):
        board.reading()  # seq 3 signed, 4 and 5 unsigned
    upload = [raw for _, raw in board.journal]  # no closer: the link lost the heartbeat
    res = gw.deliver(board.device_id, upload)
    assert (res.ack_seq, res.committed, res.pending) == (3, 4, 2)
    board.ack(res.ack_seq)
    res = gw.deliver(board.device_id, board.upload(gw.last_committed_seq(board.device_id) + 1))
    assert (res.ack_seq, res.committed, res.pending) == (6, 3, 0)
    assert _device_records(gw) == [raw for _, raw in board.produced]


def test_unknown_and_revoked_devices_are_reported_and_never_ingested(gw):
    stranger = SimBoard("stranger")
    stranger.reading()
    res = gw.deliver(stranger.device_id, stranger.upload(None))
    assert res.ack_seq is None and res.committed == 0
    board = SimBoard("a")
    gw.enroll(board.public_key)
    gw.revoke(board.device_id, "stolen")
    board.reading()
    assert gw.deliver(board.device_id, board.upload(None)).ack_seq is None
    assert _device_records(gw) == []
    assert _kinds(gw)[:2] == ["unknown-device", "revoked-device"]


def test_enrollment_errors_change_nothing(gw):
    board = SimBoard("a")
    gw.enroll(board.public_key)
    size = gw.ledger.sequenced_size
    with pytest.raises(WireError) as exc:
        gw.enroll(board.public_key)
    assert exc.value.code == "already-enrolled"
    with pytest.raises(SignatureError) as exc:
        gw.enroll((1).to_bytes(32, "little"))  # the identity point: small order
    assert exc.value.code == "bad-public-key"
    with pytest.raises(WireError) as exc:
        gw.revoke(b"\x00" * 16, "x")
    assert exc.value.code == "unknown-device"
    assert gw.ledger.sequenced_size == size


def test_clone_record_under_a_used_seq_is_evidence_and_an_alarm(gw):
    board = SimBoard("a")
    twin = SimBoard("a")  # same key: a cloned board with its own history
    gw.enroll(board.public_key)
    board.reading(2500)
    gw.deliver(board.device_id, board.upload(None))
    twin.reading(9999)
    res = gw.deliver(board.device_id, twin.upload(None))
    assert res.committed == 0 and res.rejected == 1
    ev = [e for e in gw.events() if e.kind == "clone-or-rollback"]
    assert ev and ev[0].alarm and ev[0].seq == 0 and ev[0].evidence == twin.produced[0][1]
    assert len(_device_records(gw)) == 1


def test_forged_signature_stops_the_upload_and_raises_an_alarm(gw):
    board = SimBoard("a")
    gw.enroll(board.public_key)
    good = board.reading()
    bad = bytearray(board.reading())
    bad[-1] ^= 1
    after = board.reading()
    res = gw.deliver(board.device_id, [good, bytes(bad), after])
    assert (res.committed, res.rejected, res.ack_seq) == (1, 2, 0)
    assert [e.kind for e in gw.events() if e.alarm] == ["bad-signature"]


def test_chain_break_and_malformed_records_are_flagged(gw):
    board = SimBoard("a")
    gw.enroll(board.public_key)
    board.reading()
    board.reading()
    upload = board.upload(None)
    res = gw.deliver(board.device_id, upload[1:])  # the first record is missing
    assert res.committed == 0 and "chain-break" in _kinds(gw)
    res = gw.deliver(board.device_id, [b"\x01\x02garbage"])
    assert res.committed == 0 and "malformed-record" in _kinds(gw)


def test_record_of_another_device_in_an_upload_is_rejected(gw):
    a, b = SimBoard("a"), SimBoard("b")
    gw.enroll(a.public_key)
    gw.enroll(b.public_key)
    b.reading()
    res = gw.deliver(a.device_id, b.upload(None))
    assert res.committed == 0 and "wrong-device" in _kinds(gw)


def test_seq_gap_after_reboot_is_an_event_not_an_error(gw):
    board = SimBoard("a")
    gw.enroll(board.public_key)
    board.reading()
    board.reboot(skip=16)
    board.reading()
    res = gw.deliver(board.device_id, board.upload(None))
    assert res.committed == 2
    gaps = [e for e in gw.events() if e.kind == "seq-gap"]
    assert len(gaps) == 1 and not gaps[0].alarm and gaps[0].seq == 17


def test_key_rotation_survives_a_restart(tmp_path):
    ledger, gw = _open(tmp_path)
    board = SimBoard("a")
    gw.enroll(board.public_key)
    board.reading()
    board.rotate_key(hashlib.sha256(b"new key").digest())
    board.reading()
    assert gw.deliver(board.device_id, board.upload(None)).committed == 3
    gw.close()
    ledger.close()
    ledger, gw = _open(tmp_path)
    assert gw.registry.get(board.device_id).current_key == board.key.public_key
    board.ack(2)
    board.reading()
    assert gw.deliver(board.device_id, board.upload(3)).committed == 1
    gw.close()
    ledger.close()


def test_derived_state_is_rebuilt_from_the_log(tmp_path, monkeypatch):
    ledger, gw = _open(tmp_path)
    board = SimBoard("a")
    gw.enroll(board.public_key)
    for _ in range(4):
        board.reading()

    def crash(*_args, **_kwargs):
        raise RuntimeError("power cut between the ledger commit and the derived state")

    monkeypatch.setattr(gw, "_apply_decoded", crash)
    with pytest.raises(RuntimeError):
        gw.deliver(board.device_id, board.upload(None))
    monkeypatch.undo()
    gw.close()
    ledger.close()
    ledger, gw = _open(tmp_path)  # the log has the records; the state catches up on open
    assert gw.last_committed_seq(board.device_id) == 3
    res = gw.deliver(board.device_id, board.upload(None))  # the board never got its ack
    assert (res.committed, res.duplicates, res.ack_seq) == (0, 4, 3)
    (tmp_path / "state.sqlite").unlink()  # even a lost state file is rebuilt
    gw.close()
    ledger.close()
    ledger, gw = _open(tmp_path)
    assert gw.last_committed_seq(board.device_id) == 3
    assert gw.through_index == ledger.sequenced_size
    gw.close()
    ledger.close()


def test_catch_up_reads_the_log_in_bounded_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_mod, "CATCH_UP_CHUNK_ENTRIES", 3)
    ledger, gw = _open(tmp_path)
    board = SimBoard("a")
    gw.enroll(board.public_key)
    for _ in range(10):
        board.reading()
    gw.deliver(board.device_id, board.upload(None))
    gw.close()
    (tmp_path / "state.sqlite").unlink()
    gw = Ingest(ledger, str(tmp_path / "state.sqlite"))
    assert gw.last_committed_seq(board.device_id) == 9
    gw.close()
    ledger.close()


def test_audit_accepts_what_ingest_wrote_and_flags_records_after_revocation(tmp_path):
    from gateway.ledger.audit import audit

    ledger, gw = _open(tmp_path)
    a, b = SimBoard("a", sign_every=3), SimBoard("b")
    gw.enroll(a.public_key, {"owner": "farm"})
    gw.enroll(b.public_key)
    for _ in range(7):
        a.reading()
    a.rotate_key(hashlib.sha256(b"rotated").digest())
    a.reading()
    b.reading()
    gw.deliver_many([(a.device_id, a.upload(None)), (b.device_id, b.upload(None))])
    gw.revoke(b.device_id, "decommissioned")
    ledger.integrate()
    assert audit(str(tmp_path / "ledger.sqlite"), ledger.vkey).ok
    ledger.append([(KIND_DEVICE_RECORD, b.reading(signed=True))])  # bypassing ingest
    ledger.integrate()
    report = audit(str(tmp_path / "ledger.sqlite"), ledger.vkey)
    assert [f.code for f in report.findings] == ["revoked-device"]
    assert report.first_bad_index == ledger.sequenced_size - 1
    gw.close()
    ledger.close()
