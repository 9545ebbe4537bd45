"""Start-up refusals and recovery: lost WAL, deleted, emptied, rolled-back or forked ledger,
corrupt derived state, missing key, unusable operator token (docs/operations.md, Recovery)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from gateway.cli import audit_contracts
from gateway.errors import StartupRefused
from gateway.ingest import EV_ACKED_DATA_LOST, EV_CHAIN_BREAK
from gateway.ledger import Ledger, load_or_create_signer
from gateway.ledger.audit import audit
from gateway.ledger.entries import KIND_PARTICIPANT_TX
from gateway.ledger.note import parse_checkpoint
from gateway.node import Node
from gateway.server import (
    EXIT_ACKED_DATA_LOST,
    EXIT_BAD_CONFIG,
    EXIT_KEY_MISSING,
    EXIT_LEDGER_ROLLED_BACK,
    serve,
)
from tests.gateway.node.helpers import make_settings, run, started
from tests.gateway.node.ingest_child import BOARD_NAME, settings_for
from tests.gateway.simboard import SimBoard

with warnings.catch_warnings():  # Starlette 1.10 warns that its TestClient still uses httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[3]
# why: the child imports the gateway and signs in pure Python; on a loaded machine that is slow.
CHILD_DEADLINE_S = 120
ACKS_AFTER_INTEGRATED = 3  # the child is killed this many acks after its last forced checkpoint


def checkpoint_size(path: Path) -> int:
    """Return the tree size of the checkpoint stored in the checkpoint file at path."""
    return parse_checkpoint(path.read_bytes().decode().split("\n\n", 1)[0] + "\n").size


def run_child_until_killed(data_dir: Path) -> tuple[int, int, int]:
    """Run ingest_child, SIGKILL it ACKS_AFTER_INTEGRATED acks after its INTEGRATED line;
    return (last acked seq, tree size copied into ledger.db, tree size of the last checkpoint)."""
    paths = [str(ROOT / "tests" / "shims"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.node.ingest_child", str(data_dir)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    timer = threading.Timer(CHILD_DEADLINE_S, child.kill)
    timer.start()
    last_ack, synced, integrated, after = -1, -1, -1, 0
    try:
        assert child.stdout is not None
        for raw in child.stdout:
            word, _, value = raw.decode().strip().partition(" ")
            if word == "ACK":
                last_ack = int(value)
                after += integrated >= 0
                if after == ACKS_AFTER_INTEGRATED:
                    child.send_signal(signal.SIGKILL)  # in the middle of the next ingest
            elif word == "SYNCED":
                synced = int(value)
            elif word == "INTEGRATED":
                integrated = int(value)
    finally:
        timer.cancel()
    assert child.wait() == -signal.SIGKILL, "the child must die by our SIGKILL"
    return last_ack, synced, integrated


def delete_wal(ledger_path: Path) -> None:
    """Delete ledger.db-wal and ledger.db-shm, as an operator cleaning up after a crash might."""
    for suffix in ("-wal", "-shm"):
        Path(str(ledger_path) + suffix).unlink(missing_ok=True)


def backup(src: Path, dst: Path) -> None:
    """Copy the SQLite database src to dst with SQLite's online backup API."""
    with (
        contextlib.closing(sqlite3.connect(src)) as a,
        contextlib.closing(sqlite3.connect(dst)) as b,
    ):
        a.backup(b)


def alarms(node: Node) -> list[str]:
    """Return the kinds of the ingest alarms the node's derived state holds."""
    return [e.kind for e in node.sequencer.ingest.events() if e.alarm]


def test_lost_wal_is_refused_then_accepted_with_override(tmp_path: Path) -> None:
    data = tmp_path / "data"
    last_ack, synced, integrated = run_child_until_killed(data)
    settings = settings_for(data)
    assert synced < integrated <= checkpoint_size(settings.checkpoint_path)
    delete_wal(settings.ledger_path)

    with pytest.raises(StartupRefused) as refused:
        Node(settings)
    assert refused.value.code == "ledger-behind-checkpoint"
    for name in ("ledger.db", "ledger.db-wal", "checkpoint", "section Recovery"):
        assert name in refused.value.message
    assert run(serve(settings)) == EXIT_LEDGER_ROLLED_BACK
    assert not list(data.glob("*.lost-*"))  # a refusal moves nothing aside

    accepted = settings_for(data, accept_loss=True)

    async def after_loss() -> None:
        node = await started(accepted)
        try:
            assert alarms(node).count(EV_ACKED_DATA_LOST) == 2  # the checkpoint file, state.db
            assert node.counters.ingest_events[EV_ACKED_DATA_LOST] == 2  # shown by /metrics
            dev = node.reads.devices()[0]
            assert dev.last_seq is not None and dev.last_seq < last_ack  # rebuilt from the log
            board = SimBoard(BOARD_NAME)  # the board deleted everything up to last_ack
            for seq in range(last_ack + 1):  # the same records the child sent (seq 0..)
                board.reading(2000 + seq + 1, signed=True)
            board.journal.clear()
            board.reading(signed=True)
            ack = await node.sequencer.deliver(board.device_id, board.upload(None))
            assert ack == dev.last_seq  # nothing new acked: its chain no longer links
            assert EV_CHAIN_BREAK in alarms(node)
        finally:
            await node.stop()

    run(after_loss())
    assert list(data.glob("checkpoint.lost-*")) and list(data.glob("state.db.lost-*"))
    signer = load_or_create_signer(str(accepted.key_path))
    report = audit(str(accepted.ledger_path), signer.vkey)
    assert report.ok, [str(f) for f in report.findings]
    assert audit_contracts(str(accepted.ledger_path)) == []
    again = Node(settings)  # the loss was accepted once: a normal start works again
    again.close()


def _make_log(tmp_path: Path, enrollments: int = 3) -> Path:
    """Run the gateway of tmp_path (creating it on first use) and enroll `enrollments` more
    boards through it; return its ledger path."""
    settings = make_settings(tmp_path)

    async def fill() -> None:
        node = await started(settings)
        try:
            first = len(node.reads.devices())
            for i in range(first, first + enrollments):
                await node.sequencer.enroll(SimBoard(f"fill-{i}").public_key)
        finally:
            await node.stop()

    run(fill())
    return settings.ledger_path


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_missing_or_emptied_ledger_is_refused(tmp_path: Path, how: str) -> None:
    ledger = _make_log(tmp_path)
    settings = make_settings(tmp_path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    if how == "emptied":
        ledger.write_bytes(b"")
    with pytest.raises(StartupRefused) as refused:
        Node(settings)
    assert refused.value.code == "ledger-missing"
    assert ledger.exists() == (how == "emptied")  # no new log was created
    assert how != "emptied" or ledger.stat().st_size == 0


def test_rolled_back_ledger_is_refused(tmp_path: Path) -> None:
    ledger = _make_log(tmp_path, 1)
    old = tmp_path / "old.db"
    backup(ledger, old)  # the online backup API, as docs/operations.md says
    _make_log(tmp_path, 2)  # the gateway runs on and signs bigger checkpoints
    shutil.copyfile(old, ledger)
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    with pytest.raises(StartupRefused) as refused:
        Node(make_settings(tmp_path))
    assert refused.value.code == "ledger-behind-checkpoint"
    assert run(serve(make_settings(tmp_path))) == EXIT_LEDGER_ROLLED_BACK


def test_forked_ledger_is_refused(tmp_path: Path) -> None:
    ledger = _make_log(tmp_path, 1)
    old = tmp_path / "old.db"
    backup(ledger, old)
    _make_log(tmp_path, 2)
    settings = make_settings(tmp_path)
    signer = load_or_create_signer(str(settings.key_path))
    with Ledger.open(str(old), signer) as forked:  # the same key, other entries, a bigger tree
        forked.append([(KIND_PARTICIPANT_TX, b"other history %d" % i) for i in range(20)])
        forked.integrate()
    shutil.copyfile(old, ledger)
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    with pytest.raises(StartupRefused) as refused:
        Node(settings)
    assert refused.value.code == "ledger-fork"


def test_state_ahead_of_the_ledger_is_refused_without_the_override(tmp_path: Path) -> None:
    ledger = _make_log(tmp_path, 2)
    settings = make_settings(tmp_path)
    with contextlib.closing(sqlite3.connect(settings.state_path)) as conn:
        conn.execute("UPDATE meta SET value = value + 5 WHERE key = 'through'")  # lost entries
        conn.commit()
    with pytest.raises(StartupRefused) as refused:
        Node(settings)
    assert refused.value.code == "acked-data-lost" and "state.db" in refused.value.message
    assert run(serve(settings)) == EXIT_ACKED_DATA_LOST
    node = Node(make_settings(tmp_path, accept_loss=True))
    try:
        assert alarms(node) == [EV_ACKED_DATA_LOST]
        assert len(node.reads.devices()) == 2
        assert (
            node.sequencer.ingest.through_index == Ledger.open_readonly(str(ledger)).sequenced_size
        )
    finally:
        node.close()


def test_corrupt_state_is_moved_aside_and_rebuilt(tmp_path: Path, caplog) -> None:
    _make_log(tmp_path, 2)
    settings = make_settings(tmp_path)
    for suffix in ("-wal", "-shm"):
        Path(str(settings.state_path) + suffix).unlink(missing_ok=True)
    settings.state_path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        node = Node(settings)
    try:
        assert len(node.reads.devices()) == 2
        (aside,) = settings.data_dir.glob("state.db.corrupt-*")
        assert str(settings.state_path) in caplog.text and str(aside) in caplog.text
    finally:
        node.close()


def test_missing_key_with_a_ledger_is_refused_without_writing_one(tmp_path: Path) -> None:
    _make_log(tmp_path, 1)
    settings = make_settings(tmp_path)
    settings.key_path.unlink()
    with pytest.raises(StartupRefused) as refused:
        Node(settings)
    assert refused.value.code == "key-missing" and str(settings.key_path) in refused.value.message
    assert not settings.key_path.exists()
    assert run(serve(settings)) == EXIT_KEY_MISSING
    assert not settings.key_path.exists()


@pytest.mark.parametrize("content", ["", "\n", "   \t \n", "short-token\n"])
def test_unusable_token_file_is_refused(tmp_path: Path, content: str) -> None:
    settings = make_settings(tmp_path, operator_token=None)
    settings.data_dir.mkdir(parents=True)
    fd = os.open(settings.token_path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(StartupRefused) as refused:
        Node(settings)
    assert refused.value.code == "bad-operator-token"
    assert str(settings.token_path) in refused.value.message
    assert run(serve(settings)) == EXIT_BAD_CONFIG


def test_a_damaged_link_key_is_refused_with_the_configuration_exit_code(tmp_path: Path) -> None:
    from gateway.ble.auth import LINK_KEY_FILE

    settings = make_settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    fd = os.open(settings.data_dir / LINK_KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    assert run(serve(settings)) == EXIT_BAD_CONFIG
    assert (settings.data_dir / LINK_KEY_FILE).read_bytes() == b"short"  # not replaced


def test_blank_configured_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupRefused, match="bad-operator-token"):
        Node(make_settings(tmp_path, operator_token=" " * 20))


def test_an_empty_bearer_never_authenticates(tmp_path: Path) -> None:
    from gateway.api import create_app

    settings = make_settings(tmp_path, operator_token=None)
    node = Node(settings)  # generates operator.token
    try:
        client = TestClient(create_app(node))
        body = {"public_key": SimBoard("bearer").public_key.hex()}
        for header in ("Bearer ", "Bearer", "Bearer    ", ""):
            resp = client.post("/v1/devices", json=body, headers={"Authorization": header})
            assert resp.status_code == 401, header
    finally:
        node.close()


def test_serve_passes_the_override_to_the_node(tmp_path: Path, monkeypatch) -> None:
    import gateway.server
    from gateway.cli import main

    seen = []

    async def fake_serve(settings, extension=None) -> int:
        seen.append(settings.accept_loss)
        return EXIT_ACKED_DATA_LOST

    monkeypatch.setattr(gateway.server, "serve", fake_serve)
    base = ["serve", "--data-dir", str(tmp_path), "--no-ble"]
    assert main(base) == EXIT_ACKED_DATA_LOST
    assert main([*base, "--accept-loss"]) == EXIT_ACKED_DATA_LOST
    assert seen == [False, True]
