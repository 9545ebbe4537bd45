"""The checkpoint file outside the ledger: written after each integration, checked at open,
never ahead of the ledger after a SIGKILL, and fed a witness-cosigned checkpoint the same way."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ProofError, StartupRefused
from gateway.ledger import merkle
from gateway.ledger.entries import KIND_PARTICIPANT_TX
from gateway.ledger.note import (
    NoteSigner,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from gateway.ledger.store import Ledger
from gateway.ledger.trusted import TrustedCheckpoint
from tests.gateway.ledger.test_crash import ROOT, SIGNER, check_recovered, read_acks

WITNESS = NoteSigner.generate("witness.example/w1")


def _paths(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "ledger.db"), str(tmp_path / "checkpoint")


def _open(tmp_path: Path, accept_loss: bool = False) -> tuple[Ledger, TrustedCheckpoint]:
    db, cp = _paths(tmp_path)
    trusted = TrustedCheckpoint(cp, db, accept_loss=accept_loss)
    return Ledger.open(db, SIGNER, trusted=trusted), trusted


def _grow(ledger: Ledger, n: int, tag: bytes = b"e") -> None:
    first = ledger.sequenced_size
    ledger.append([(KIND_PARTICIPANT_TX, tag + b" %d" % i) for i in range(first, first + n)])
    ledger.integrate()


def ledger_note(tmp_path: Path) -> bytes:
    return (tmp_path / "checkpoint").read_bytes()


def _file_size(tmp_path: Path) -> int:
    return verify_checkpoint((tmp_path / "checkpoint").read_bytes(), SIGNER.verifier()).size


def test_the_file_follows_every_integration(tmp_path: Path) -> None:
    ledger, _ = _open(tmp_path)
    assert _file_size(tmp_path) == 0
    _grow(ledger, 5)
    assert _file_size(tmp_path) == 5
    assert (tmp_path / "checkpoint").read_bytes() == ledger.checkpoint()
    assert (tmp_path / "checkpoint").stat().st_mode & 0o777 == 0o600
    ledger.close()
    ledger, _ = _open(tmp_path)  # a consistent ledger opens
    _grow(ledger, 3)
    assert _file_size(tmp_path) == 8
    ledger.close()


def test_an_upgrade_writes_the_file_from_the_ledger(tmp_path: Path) -> None:
    db, _ = _paths(tmp_path)
    with Ledger.open(db, SIGNER) as ledger:
        _grow(ledger, 7)
    ledger, _ = _open(tmp_path)
    assert _file_size(tmp_path) == 7
    ledger.close()


def test_a_file_one_behind_is_caught_up_at_open(tmp_path: Path) -> None:
    ledger, _ = _open(tmp_path)
    _grow(ledger, 4)
    ledger.close()
    with Ledger.open(_paths(tmp_path)[0], SIGNER) as ledger:  # as if killed before the rename
        _grow(ledger, 4)
    ledger, _ = _open(tmp_path)
    assert _file_size(tmp_path) == 8
    ledger.close()


def test_a_smaller_tree_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    ledger, _ = _open(tmp_path)
    _grow(ledger, 3)
    ledger.close()
    shutil.copyfile(tmp_path / "ledger.db", tmp_path / "old.db")
    ledger, _ = _open(tmp_path)
    _grow(ledger, 3)
    ledger.close()
    shutil.copyfile(tmp_path / "old.db", tmp_path / "ledger.db")
    before = (tmp_path / "checkpoint").read_bytes()
    with pytest.raises(StartupRefused) as refused:
        _open(tmp_path)
    assert refused.value.code == "ledger-behind-checkpoint"
    assert "3 entries" in refused.value.message and "6 entries" in refused.value.message
    assert (tmp_path / "checkpoint").read_bytes() == before


def test_a_different_history_is_refused(tmp_path: Path) -> None:
    ledger, _ = _open(tmp_path)
    _grow(ledger, 5)
    ledger.close()
    os.remove(tmp_path / "ledger.db")
    with Ledger.open(str(tmp_path / "ledger.db"), SIGNER) as other:  # same key, other entries
        _grow(other, 9, b"other")
    with pytest.raises(StartupRefused) as refused:
        _open(tmp_path)
    assert refused.value.code == "ledger-fork"


@pytest.mark.parametrize("how", ["deleted", "emptied", "header only"])
def test_a_missing_ledger_is_refused_and_not_created(tmp_path: Path, how: str) -> None:
    ledger, _ = _open(tmp_path)
    _grow(ledger, 2)
    ledger.close()
    os.remove(tmp_path / "ledger.db")
    if how == "emptied":
        (tmp_path / "ledger.db").write_bytes(b"")
    if how == "header only":  # what a lost WAL leaves of a young ledger
        conn = sqlite3.connect(tmp_path / "ledger.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    size = os.path.getsize(tmp_path / "ledger.db") if how != "deleted" else None
    with pytest.raises(StartupRefused) as refused:
        _open(tmp_path)
    assert refused.value.code == "ledger-missing"
    after = os.path.getsize(tmp_path / "ledger.db") if how != "deleted" else None
    assert after == size and (how != "deleted" or not (tmp_path / "ledger.db").exists())


def test_a_bad_checkpoint_file_is_refused(tmp_path: Path) -> None:
    ledger, _ = _open(tmp_path)
    ledger.close()
    other = NoteSigner.generate(SIGNER.name)  # same name, another key
    forged = sign_checkpoint(verify_checkpoint(ledger_note(tmp_path), SIGNER.verifier()), other)
    for content in (b"garbage", forged):
        (tmp_path / "checkpoint").write_bytes(content)
        with pytest.raises(StartupRefused) as refused:
            _open(tmp_path)
        assert refused.value.code == "bad-checkpoint-file"


def test_accept_loss_keeps_the_evidence_and_goes_on(tmp_path: Path) -> None:
    ledger, _ = _open(tmp_path)
    _grow(ledger, 3)
    ledger.close()
    shutil.copyfile(tmp_path / "ledger.db", tmp_path / "old.db")
    ledger, _ = _open(tmp_path)
    _grow(ledger, 3)
    ledger.close()
    lost = ledger_note(tmp_path)
    shutil.copyfile(tmp_path / "old.db", tmp_path / "ledger.db")
    ledger, trusted = _open(tmp_path, accept_loss=True)
    assert trusted.loss is not None and "ledger-behind-checkpoint" in trusted.loss
    (evidence,) = tmp_path.glob("checkpoint.lost-*")
    assert evidence.read_bytes() == lost and _file_size(tmp_path) == 3
    _grow(ledger, 1)
    assert _file_size(tmp_path) == 4
    ledger.close()


def test_a_witness_cosigned_checkpoint_is_fed_in_the_same_way(tmp_path: Path) -> None:
    ledger, trusted = _open(tmp_path)
    _grow(ledger, 4)
    own = ledger.checkpoint()
    text, sigs = parse_note(own)
    cosigned = sign_note(text, [SIGNER, WITNESS])
    assert len(parse_note(cosigned)[1]) == 2 == len(sigs) + 1
    assert trusted.accept(cosigned, ledger)
    assert ledger_note(tmp_path) == cosigned
    assert not trusted.accept(ledger.checkpoint_at(0), ledger)  # older: kept the newer one
    foreign = sign_note(text, [NoteSigner.generate(SIGNER.name)])
    with pytest.raises(ProofError):
        trusted.accept(foreign, ledger)
    cp = verify_checkpoint(own, SIGNER.verifier())
    wrong = sign_checkpoint(type(cp)(cp.origin, cp.size, merkle.EMPTY_ROOT, cp.extensions), SIGNER)
    with pytest.raises(ProofError):
        trusted.accept(wrong, ledger)
    assert ledger_note(tmp_path) == cosigned
    ledger.close()


@pytest.mark.parametrize("mode", ["kill-in-integrate", "kill-in-append"])
def test_sigkill_never_leaves_the_file_ahead(tmp_path: Path, mode: str) -> None:
    db, cp = _paths(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.ledger.crash_child", db, SIGNER.skey, mode, cp],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    last = read_acks(child, None, 0)
    assert last >= 0
    with Ledger.open_readonly(db) as ro:
        assert _file_size(tmp_path) <= ro.tree_size
    ledger, _ = _open(tmp_path)  # no false alarm after a crash
    assert _file_size(tmp_path) == ledger.tree_size
    ledger.close()
    check_recovered(db, last)
