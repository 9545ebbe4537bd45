"""Stateful property test of board -> link -> ingest under faults: nothing acked is lost, nothing doubled.

Faults: dropped, duplicated and reordered records, uploads cut mid-way (disconnects), lost acks,
gateway restarts, board reboots. Invariants: every record the board deleted after an ack is in
the log; no (device, seq) is in the log twice; the log holds each device's records in chain order;
every fault that changes the upload's content is flagged as an event; a clean upload at the end
brings the log to exactly what the boards produced.
"""

import hashlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.ingest import Ingest
from gateway.ledger import KIND_DEVICE_RECORD, Ledger
from gateway.ledger.note import NoteSigner
from tests.gateway.simboard import SimBoard

SEED = hashlib.sha256(b"fault test gateway").digest()


class LinkFaults(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="edgeseal-faults-"))
        self.boards = [SimBoard("f0", sign_every=3), SimBoard("f1", sign_every=1)]
        self._open()
        for b in self.boards:
            self.ingest.enroll(b.public_key)
        self.deleted: dict[bytes, set[int]] = {b.device_id: set() for b in self.boards}
        self.faults_sent = 0

    def _open(self):
        self.ledger = Ledger.open(str(self.dir / "l.sqlite"), NoteSigner("edgeseal.test/f", SEED))
        self.ingest = Ingest(self.ledger, str(self.dir / "s.sqlite"), clock_ms=lambda: 0)

    def teardown(self):
        self.ingest.close()
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _log(self):
        out: dict[bytes, list[bytes]] = {b.device_id: [] for b in self.boards}
        for _, entry in self.ledger.entries():
            if entry[0] == KIND_DEVICE_RECORD:
                out[entry[4:20]].append(entry[1:])  # record bytes 3..19 are the device id
        return out

    @rule(board=st.integers(0, 1), n=st.integers(1, 5))
    def sample(self, board, n):
        for _ in range(n):
            self.boards[board].reading()

    @rule(board=st.integers(0, 1))
    def reboot(self, board):
        self.boards[board].reboot(skip=8)

    @rule(
        board=st.integers(0, 1),
        fault=st.sampled_from(["none", "drop", "dup", "swap", "cut"]),
        pos=st.integers(0, 30),
        lose_ack=st.booleans(),
    )
    def upload(self, board, fault, pos, lose_ack):
        b = self.boards[board]
        last = self.ingest.last_committed_seq(b.device_id)
        sent = b.upload(None if last is None else last + 1)
        if not sent:
            return
        i = pos % len(sent)
        intact = list(sent)
        events_before = len(self.ingest.events())
        if fault == "drop" and len(sent) > 1:
            del sent[i]
        elif fault == "dup":
            sent.insert(i, sent[i])
        elif fault == "swap" and len(sent) > 1:
            j = (i + 1) % len(sent)
            sent[i], sent[j] = sent[j], sent[i]
        elif fault == "cut":
            sent = sent[:i]
        res = self.ingest.deliver(b.device_id, sent)
        if fault in ("drop", "swap", "dup") and sent != intact[: len(sent)]:
            assert len(self.ingest.events()) > events_before, f"{fault} was not flagged"
        if res.ack_seq is not None and not lose_ack:
            self.deleted[b.device_id] |= {s for s, _ in b.journal if s <= res.ack_seq}
            b.ack(res.ack_seq)

    @rule()
    def restart_gateway(self):
        self.ingest.close()
        self.ledger.close()
        self._open()

    @invariant()
    def nothing_acked_is_lost_and_nothing_doubled(self):
        log = self._log()
        for b in self.boards:
            seqs = [int.from_bytes(r[19:23], "big") for r in log[b.device_id]]
            assert len(seqs) == len(set(seqs)), "a (device, seq) is in the log twice"
            assert seqs == sorted(seqs), "the log is not in chain order"
            assert self.deleted[b.device_id] <= set(seqs), "an acked record is missing"
            produced = dict(b.produced)
            assert all(produced[int.from_bytes(r[19:23], "big")] == r for r in log[b.device_id])

    @rule()
    def final_clean_upload_commits_everything(self):
        for b in self.boards:
            last = self.ingest.last_committed_seq(b.device_id)
            res = self.ingest.deliver(b.device_id, b.upload(None if last is None else last + 1))
            assert res.pending == 0
            b.ack(res.ack_seq)
            assert b.journal == []
        log = self._log()
        for b in self.boards:
            assert log[b.device_id] == [raw for _, raw in b.produced]


TestLinkFaults = LinkFaults.TestCase
TestLinkFaults.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
