"""SIGKILL: the witness as a real process, killed during a stream of submissions, restarted.

After each restart its state must be consistent: never a size below one it answered 200 for,
never a second root for a size it cosigned, and every stored root the real log's root.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.ledger.note import NoteSigner, parse_checkpoint, parse_note
from gateway.publish.witness_state import DB_NAME
from tests.gateway.publish.helpers import ORIGIN, Log, body, write_logs

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 60.0
# why: the kill comes after this many cosigned submissions of each run, counted rather than
# timed so that a slow, loaded machine still cosigns some before it (a timer could fire before
# the first answer); the killer then fires while the stream goes on, so it lands mid-request.
KILL_AFTER_COSIGNED = (3, 7, 12)
# why: how long the killer waits for its count before failing the test (each submission is a
# few ms on loopback; a loaded 2-core machine may be a hundred times slower).
KILL_WAIT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gateway.cli", "witness", "serve", "--key", str(tmp / "w.key")]
    cmd += ["--logs", str(tmp / "logs.txt"), "--data-dir", str(tmp / "data"), "--port", str(port)]
    # stderr to a file: the witness logs every refused fork, a pipe nobody reads would fill up
    with open(tmp / "witness.stderr", "ab") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=err)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert proc.poll() is None, (tmp / "witness.stderr").read_text()
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("witness did not start")


def _post(port: int, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/add-checkpoint", data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, OSError):
        return 0, b""  # killed mid-request


def _stored(tmp: Path) -> tuple[int, dict[int, bytes]]:
    db = sqlite3.connect(str(tmp / "data" / DB_NAME))
    try:
        row = db.execute("SELECT size FROM log_state WHERE origin = ?", (ORIGIN,)).fetchone()
        roots = dict(db.execute("SELECT size, root FROM cosigned_root WHERE origin = ?", (ORIGIN,)))
    finally:
        db.close()
    return (row[0] if row else 0), {k: bytes(v) for k, v in roots.items()}


def _submit_next(port: int, log: Log, fork: Log, known: int) -> tuple[int | None, int]:
    """Grow both ledgers, submit the fork's then the log's checkpoint; return (size answered
    200 or None if the witness is gone, the client's new view of the witness's size)."""
    note = log.grow(1 + log.ledger.tree_size % 3)
    size = log.ledger.tree_size
    fork_note = fork.grow(size - fork.ledger.tree_size)
    if known > 0:  # a forked checkpoint of a size the log also reached: never cosigned
        status, _ = _post(port, body(known, fork.proof(known, size), fork_note))
        if status == 0:
            return None, known
        assert status in (409, 422), status
    status, answer = _post(port, body(known, log.proof(known, size), note))
    if status == 409:
        known = int(answer.decode())
        status, answer = _post(port, body(known, log.proof(known, size), note))
    if status == 0:
        return None, known
    assert status == 200, (status, answer)
    return size, size


def test_sigkill_during_submissions_keeps_the_state_consistent(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    log, fork = Log(tmp_path / "log.db", signer), Log(tmp_path / "fork.db", signer, tag=b"fork")
    from gateway.ledger.note import create_signer

    create_signer(str(tmp_path / "w.key"), origin="witness.example/crash")
    write_logs(tmp_path / "logs.txt", signer.vkey)
    port = _free_port()
    acked = 0  # the largest size the witness answered 200 for
    known = 0  # the client's view of the witness's size
    for kill_after in KILL_AFTER_COSIGNED:
        before = acked
        proc = _start(tmp_path, port)
        reached = threading.Event()

        def kill(pid: int = proc.pid, reached: threading.Event = reached) -> None:
            reached.wait(KILL_WAIT_S)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill)
        killer.start()
        cosigned = 0
        try:
            while True:
                answered, known = _submit_next(port, log, fork, known)
                if answered is None:
                    break  # killed mid-stream
                acked = answered
                cosigned += 1
                if cosigned >= kill_after:
                    reached.set()
        finally:
            reached.set()
            killer.join()
            proc.wait()
        assert acked > before, "no submission was cosigned before the kill"
        stored_size, roots = _stored(tmp_path)
        assert stored_size >= acked
        assert roots, "nothing was cosigned before the kill"
        for size, root in roots.items():
            assert root == log.ledger.root(size), f"size {size} has a root the log never had"
    proc = _start(tmp_path, port)
    try:
        fork_size = fork.ledger.tree_size
        cp = parse_checkpoint(parse_note(fork.checkpoint_at(fork_size))[0])
        assert cp.size == log.ledger.tree_size
        status, _ = _post(port, body(acked, [], fork.checkpoint_at(fork_size)))
        assert status == 422  # a second root for the cosigned size is refused after restart
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
