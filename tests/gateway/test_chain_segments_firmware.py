"""The firmware's chain segments at the gateway: the board of tests/firmware/test_chain_segment.py
(real Journal, SeqCounter, Sampler on simulated flash) goes through each fault, uploads what its
journal holds, and the gateway ingests its next records; the audit passes afterwards."""

from firmware import wire as fw
from gateway import wire
from gateway.ingest import EV_CHAIN_SEGMENT
from gateway.ledger.audit import audit
from tests.firmware.simflash import PowerCut, SimFlash
from tests.firmware.test_chain_segment import Board
from tests.gateway.test_chain_segments import Gateway


def _sync(gw, board, from_seq=None):
    """One connection as docs/ble-protocol.md runs it: SEND_FROM(next seq), upload, ACK."""
    s = board.sampler
    if from_seq is None:
        last = gw.ing.last_committed_seq(board.dev_id)
        from_seq = 0 if last is None else last + 1
    s.gateway_behind(from_seq)
    s.close_chain()
    res = gw.ing.deliver(board.dev_id, [r for _, r in board.journal.iter_from(from_seq)])
    if res.ack_seq is not None and res.ack_seq > s.acked_seq:
        s.ack(res.ack_seq)
    return res


def _resumes(gw, board):
    board.readings(3)
    res = _sync(gw, board)
    assert res.rejected == 0 and res.pending == 0 and board.sampler.depth == 0
    gw.ledger.integrate()
    report = audit(gw.ledger_path, gw.ledger.vkey)
    assert report.ok, report.findings


def _enrolled(tmp_path, n=5):
    gw, board = Gateway(tmp_path), Board()
    gw.ing.enroll(board.signer.public_key)
    board.readings(n)
    assert _sync(gw, board).rejected == 0
    return gw, board


def test_wiped_journal(tmp_path):
    gw, board = _enrolled(tmp_path)
    board.readings(3)  # never uploaded
    board.fs = SimFlash(seed=9)
    assert board.boot() > 0
    _resumes(gw, board)
    (ev,) = [e for e in gw.ing.events() if e.kind == EV_CHAIN_SEGMENT]
    assert ev.alarm and "journal-lost" in ev.detail
    gw.close()


def test_damaged_journal_midway(tmp_path):
    gw, board = _enrolled(tmp_path, 2)
    board.readings(30)
    names = sorted(n for n in board.fs.files if n.startswith("journal/"))
    f = board.fs.files[names[1]]
    f[len(f) // 2] ^= 0xFF
    assert board.boot() > 0
    _resumes(gw, board)
    (ev,) = [e for e in gw.ing.events() if e.kind == EV_CHAIN_SEGMENT]
    assert "flash-fault" in ev.detail
    gw.close()


def test_gateway_restored_an_older_ledger(tmp_path):
    gw, board = _enrolled(tmp_path)
    gw.backup("older.sqlite")
    board.readings(4)
    assert _sync(gw, board).rejected == 0 and board.sampler.depth == 0
    board.readings(2)  # unacked when the gateway comes back
    gw.restore("older.sqlite")
    _resumes(gw, board)
    (ev,) = [e for e in gw.ing.events() if e.kind == EV_CHAIN_SEGMENT]
    assert "gateway-behind" in ev.detail
    gw.close()


def test_repeated_faults(tmp_path):
    gw, board = _enrolled(tmp_path)
    for i in range(3):
        board.readings(2)
        if i == 1:
            _sync(gw, board)
        board.fs = SimFlash(seed=20 + i)
        board.boot()
        _resumes(gw, board)
    gw.close()


def test_power_cut_at_every_write_point_then_the_gateway_accepts(tmp_path):
    gw, board = _enrolled(tmp_path)
    head = gw.ing.registry.get(board.dev_id)
    board.fs = SimFlash(seed=8)
    fs0, nvs0 = board.fs.snapshot(), board.nvs.snapshot()
    k = 1
    while True:
        board.fs.restore(fs0)
        board.nvs.restore(nvs0)
        board.fs.arm(board.fs.points + k)
        try:
            board.boot()
            board.readings(1)
            cut = False
        except PowerCut:
            cut = True
        board.fs.disarm()
        board.fs.remount()
        board.boot()
        board.readings(1)
        board.sampler.close_chain()
        chain = wire.DeviceChain(board.dev_id, head.current_key, head.last_seq, head.last_hash)
        accepted = []
        for _, raw in board.journal.iter_from(0):
            accepted += chain.push(wire.decode_record(raw))
        chain.finish()
        assert accepted and accepted[-1].seq == board.journal.last_seq, k
        assert chain.breaks and all(b.seq > head.last_seq for b in chain.breaks)
        if not cut:
            break
        k += 1
    assert fw.KIND_CHAIN_SEGMENT == wire.CHAIN_SEGMENT and k > 1
    gw.close()
