"""`edgeseal replica` (gateway/replica/cli.py) as its own process against the real gateway: SIGKILL in the middle of a
sync, restart, and it resumes from what it stored (no bundle fetched twice) and converges on the
gateway's state hash; SIGTERM stops it cleanly; and what the command line refuses."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.limits import RateLimits
from gateway.ledger import NoteSigner
from tests.gateway.api.helpers import LiveGateway
from tests.gateway.replica.helpers import (
    TamperingProxy,
    filler_records,
    prepare_log,
    scenario_entries,
    wait_integrated,
)

ROOT = Path(__file__).resolve().parents[3]
HELD_FROM_BUNDLE = 40  # the link stalls from entry bundle 40 on (10,240 entries)
STORED_BEFORE_STALL = 8192  # two chunks of gateway.replica.sync.CHUNK_ENTRIES are committed
DEADLINE_S = 120.0
_BUNDLE = re.compile(r"^/tile/entries/(\d{3})")


def _bundle_index(path: str) -> int | None:
    m = _BUNDLE.match(path)
    return int(m.group(1)) if m else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(source: str, data_dir: Path, vkey: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gateway.cli", "replica", "--from", source]
    cmd += ["--data-dir", str(data_dir), "--key", vkey, "--port", str(port)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stored(db: Path) -> int:
    """Return how many entries the replica's file holds (read-only, beside the writer)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT MAX(idx) FROM entry").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0
    return 0 if row[0] is None else int(row[0]) + 1


def _wait(what: str, cond: Callable[[], Any], proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the replica exited ({proc.returncode}) waiting for {what}")
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
        time.sleep(0.05)


def _status(port: int) -> dict[str, Any] | None:
    with contextlib.suppress(httpx.HTTPError):
        resp = httpx.get(f"http://127.0.0.1:{port}/v1/replica", timeout=10)
        if resp.status_code == 200:
            return resp.json()
    return None


def test_sigkill_mid_sync_then_resume(tmp_path: Path) -> None:
    prepare_log(tmp_path / "gw" / "data", scenario_entries() + filler_records(12_000))
    # a roomier read limit than a gateway's default: the test is about the kill, not the limit
    roomy = RateLimits(read_rate_per_s=1000.0, read_burst=10_000)
    with LiveGateway(tmp_path / "gw", limits=roomy) as gw:
        info = wait_integrated(gw.base)

        def stalled(path: str) -> bool:
            index = _bundle_index(path)
            return index is not None and index >= HELD_FROM_BUNDLE

        with TamperingProxy(gw.base, hold=stalled) as link:
            db = tmp_path / "replica" / "replica.db"
            port = _free_port()
            proc = _start(link.base, tmp_path / "replica", info["vkey"], port)
            try:
                _wait("two committed chunks", lambda: _stored(db) >= STORED_BEFORE_STALL, proc)
                _wait(
                    "a stalled request",
                    lambda: any(stalled(p) for p in list(link.counts)),
                    proc,
                )
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
            kept = _stored(db)
            assert kept >= STORED_BEFORE_STALL
            link.counts.clear()
            link.released.set()
            proc = _start(link.base, tmp_path / "replica", info["vkey"], port)
            try:

                def converged() -> dict[str, Any] | None:
                    status = _status(port)
                    if status and status["tree_size"] == info["tree_size"]:
                        return status
                    return None

                status = _wait("convergence", converged, proc)
                assert status["state_hash"] == info["state_hash"]
                assert status["alarms"] == []
                refetched = [
                    i
                    for p in link.counts
                    if (i := _bundle_index(p)) is not None and i < kept // 256
                ]
                assert refetched == [], f"bundles it had stored were fetched again: {refetched}"
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
                stderr = proc.stderr.read().decode() if proc.stderr else ""
            assert "Traceback" not in stderr, stderr
            assert os.path.exists(db)


def test_the_command_line_refuses_what_it_cannot_use(tmp_path: Path, capsys: Any) -> None:
    from gateway.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["replica", "--from", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert "--data-dir, --key" in capsys.readouterr().err
    bad_key = ["replica", "--from", "http://127.0.0.1:9", "--data-dir", str(tmp_path)]
    assert main([*bad_key, "--key", "not-a-vkey"]) == 2
    vkey = NoteSigner.generate("edgeseal.example/gateway/cli").vkey
    with pytest.raises(SystemExit) as exit_:  # the chain's three settings go together
        main([*bad_key, "--key", vkey, "--anchor-rpc", "http://127.0.0.1:8545"])
    assert exit_.value.code == 2
    assert "go together" in capsys.readouterr().err
    assert main(["replica", "check-evidence", str(tmp_path / "missing.json"), "--key", vkey]) == 1
    assert "NOT PROVEN: bad-evidence" in capsys.readouterr().out
    (tmp_path / "e.json").write_text('{"format": "edgeseal-replica-evidence/v1"}')
    assert main(["replica", "check-evidence", str(tmp_path / "e.json"), "--key", vkey]) == 1
    assert main(["replica", "check-evidence", str(tmp_path / "e.json"), "--key", "x"]) == 2
