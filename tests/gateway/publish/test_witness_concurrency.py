"""Concurrent add-checkpoint requests: one root per size, ever, and the size never decreases.

Two real ledgers share a prefix and then fork (same log key, different entries): many threads,
through two WitnessService objects on one data directory (two SQLite connections, as two
processes would have), race both branches' checkpoints of the same sizes.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

from gateway.ledger.merkle import EMPTY_ROOT
from gateway.ledger.note import NoteSigner, parse_checkpoint, parse_note
from gateway.publish.witness_service import WitnessError, WitnessService
from gateway.publish.witness_state import DB_NAME, WitnessState
from tests.gateway.publish.helpers import ORIGIN, Log, body, make_witness

THREADS = 16
REQUESTS_PER_THREAD = 40


def _root(note: bytes) -> tuple[int, bytes]:
    cp = parse_checkpoint(parse_note(note)[0])
    return cp.size, cp.root


def _requests(a: Log, b: Log) -> list[bytes]:
    """Return add-checkpoint bodies of both branches at sizes 8 and 12, from old 4 and 8."""
    out = []
    for log in (a, b):
        for old, new in ((4, 8), (8, 8), (8, 12), (4, 12), (12, 12)):
            out.append(body(old, log.proof(old, new) if old != new else [], log.checkpoint_at(new)))
    return out


def test_racing_forks_get_one_root_per_size_and_never_go_back(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    a, b = Log(tmp_path / "a.db", signer), Log(tmp_path / "b.db", signer)
    for log, tag in ((a, b"a"), (b, b"b")):
        log.grow(4, b"common")
        log.grow(4, tag)
        log.grow(4, tag)
    first = make_witness(tmp_path, signer.vkey)
    second = WitnessService(first.signer, first.logs, WitnessState(str(tmp_path / "witness-data")))
    first.add_checkpoint(body(0, [], a.checkpoint_at(4)))
    requests = _requests(a, b)
    cosigned: list[tuple[int, bytes]] = []
    statuses: list[int] = []
    sizes_seen: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submit(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(REQUESTS_PER_THREAD):
            data = rng.choice(requests)
            service = first if rng.random() < 0.5 else second
            try:
                service.add_checkpoint(data)
                with lock:
                    cosigned.append(_root(data.split(b"\n\n", 1)[1]))
                    statuses.append(200)
            except WitnessError as exc:
                with lock:
                    statuses.append(exc.status)

    def watch() -> None:
        while not stop.is_set():
            sizes_seen.append(first.state.latest(ORIGIN, EMPTY_ROOT).size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=submit, args=(i,)) for i in range(THREADS)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    watcher.join()

    assert set(statuses) <= {200, 409, 422} and {200, 409, 422} <= set(statuses)
    roots_by_size: dict[int, set[bytes]] = {}
    for size, root in cosigned:
        roots_by_size.setdefault(size, set()).add(root)
    assert all(len(roots) == 1 for roots in roots_by_size.values()), roots_by_size
    assert sizes_seen == sorted(sizes_seen)  # never decreases
    db = sqlite3.connect(str(tmp_path / "witness-data" / DB_NAME))
    rows = db.execute("SELECT size, root FROM cosigned_root ORDER BY size").fetchall()
    assert len({size for size, _ in rows}) == len(rows)  # one row (one root) per size
    for size, root in rows:
        assert roots_by_size.get(size, {bytes(root)}) == {bytes(root)}
    db.close()
    first.state.close()
    second.state.close()
