"""SIGKILL in the middle of a batch: no acknowledged entry is lost and the reopened log verifies."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from gateway.ledger import merkle
from gateway.ledger.audit import audit
from gateway.ledger.note import NoteSigner, verify_checkpoint
from gateway.ledger.store import Ledger
from tests.gateway.ledger.crash_child import payload

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SIGNER = NoteSigner.generate("crash.example/log")
CHILD_TIMEOUT_S = 30


def start_child(path: str, mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.ledger.crash_child", path, SIGNER.skey, mode],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def read_acks(child: subprocess.Popen, kill_after_acks: int | None, delay_s: float) -> int:
    """Return the highest acknowledged index (-1 if none); optionally SIGKILL the child first."""
    assert child.stdout is not None
    last = -1
    acks = 0
    timer = threading.Timer(CHILD_TIMEOUT_S, child.kill)
    timer.start()
    try:
        for raw in child.stdout:
            line = raw.decode().strip()
            if line.startswith("ACK "):
                last = int(line.split()[1])
                acks += 1
                if kill_after_acks is not None and acks == kill_after_acks:
                    time.sleep(delay_s)  # let it get into the next append or integration
                    child.send_signal(signal.SIGKILL)
                    # Anything it acknowledged before dying is still in the pipe: keep reading.
    finally:
        timer.cancel()
    assert child.wait() == -signal.SIGKILL, "the child must die by SIGKILL"
    return last


def check_recovered(path: str, last_acked: int) -> None:
    """Every acknowledged entry is there, byte for byte, and the reopened log verifies."""
    report = audit(path, SIGNER.vkey)
    assert report.ok, [str(f) for f in report.findings]
    ledger = Ledger.open(path, SIGNER)
    assert ledger.sequenced_size > last_acked
    for index in range(last_acked + 1):
        assert ledger.entry(index) == b"\x02" + payload(index)
    assert ledger.tree_size == ledger.sequenced_size  # leftovers integrated on open
    cp = verify_checkpoint(ledger.checkpoint(), SIGNER.verifier())
    assert cp.size == ledger.tree_size
    for index in {0, last_acked // 2, last_acked} if last_acked >= 0 else ():
        proof = ledger.prove_inclusion(index, cp.size)
        merkle.verify_inclusion(
            merkle.leaf_hash(ledger.entry(index)), index, cp.size, proof, cp.root
        )
    ledger.close()
    report = audit(path, SIGNER.vkey)
    assert report.ok, [str(f) for f in report.findings]


@pytest.mark.parametrize("mode", ["kill-in-integrate", "kill-in-append"])
def test_sigkill_inside_the_commit_loses_nothing_acknowledged(tmp_path, mode):
    path = str(tmp_path / "crash.db")
    last = read_acks(start_child(path, mode), None, 0)
    conn = sqlite3.connect(path)
    (stored,) = conn.execute("SELECT COUNT(*) FROM entry").fetchone()
    (tree_size,) = conn.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()
    conn.close()
    if mode == "kill-in-append":  # the 5th append died inside its commit: 4 batches stored
        assert (last, stored, tree_size) == (4 * 37 - 1, 4 * 37, 0)
    else:  # the 3rd integration died inside its commit: entries stored, tree behind
        assert last >= 2 * 300 and tree_size < stored
    check_recovered(path, last)
    # The log keeps going after recovery, and survives a second crash.
    last2 = read_acks(start_child(path, "kill-in-integrate"), None, 0)
    assert last2 > last
    check_recovered(path, last2)


@pytest.mark.parametrize("seed", range(3))
def test_sigkill_at_a_random_moment(tmp_path, seed):
    rnd = random.Random(seed)
    path = str(tmp_path / "crash.db")
    last = read_acks(start_child(path, "run"), rnd.randrange(5, 40), rnd.uniform(0, 0.02))
    assert last >= 0
    check_recovered(path, last)
