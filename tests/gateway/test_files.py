"""gateway.files: secret and state files are written all or nothing, and never overwritten by create."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from gateway import files
from gateway.ble.auth import load_or_create_master
from gateway.ledger.note import create_signer, load_signer
from gateway.node.lifecycle import load_or_create_token


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != name)


def test_create_exclusive_writes_all_bytes_with_mode_0600_even_under_a_lax_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secret"
    old = os.umask(0)
    try:
        files.create_exclusive(str(path), b"k" * 100_000)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"k" * 100_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _leftovers(tmp_path, "secret") == []


def test_create_exclusive_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        files.create_exclusive(str(path), b"second")
    assert path.read_bytes() == b"first"
    assert _leftovers(tmp_path, "secret") == []


def _power_cut_after(n_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make os.write store at most n_bytes in total, then fail as a dying disk would."""
    real_write = os.write
    budget = [n_bytes]

    def write(fd: int, data: bytes | memoryview) -> int:
        if budget[0] <= 0:
            raise OSError(5, "Input/output error (power cut)")
        n = real_write(fd, bytes(data[: budget[0]]))
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("cut_at", [0, 1, 31])
def test_a_power_cut_while_creating_leaves_no_file_at_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_at: int
) -> None:
    """The failure mode this module exists for: a truncated key file behind the real name."""
    path = tmp_path / "link.key"
    _power_cut_after(cut_at, monkeypatch)
    with pytest.raises(OSError):
        files.create_exclusive(str(path), b"\x01" * 32)
    assert not path.exists()
    assert _leftovers(tmp_path, "link.key") == []


@pytest.mark.parametrize("cut_at", [0, 5])
def test_a_power_cut_while_replacing_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_at: int
) -> None:
    path = tmp_path / "checkpoint"
    files.write_atomically(str(path), b"old checkpoint")
    _power_cut_after(cut_at, monkeypatch)
    with pytest.raises(OSError):
        files.write_atomically(str(path), b"new checkpoint")
    assert path.read_bytes() == b"old checkpoint"
    assert _leftovers(tmp_path, "checkpoint") == []


def test_write_atomically_replaces(tmp_path: Path) -> None:
    path = tmp_path / "cursor"
    files.write_atomically(str(path), b"1")
    files.write_atomically(str(path), b"22", 0o640)
    assert path.read_bytes() == b"22"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def _race(
    path: str, data: bytes, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue
) -> None:
    start.wait(60)
    try:
        files.create_exclusive(path, data)
        out.put(data)
    except FileExistsError:
        out.put(b"")


def test_two_processes_racing_to_create_one_key_one_wins_whole(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.key")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    blobs = [bytes([i]) * 4096 for i in range(1, 5)]
    procs = [ctx.Process(target=_race, args=(path, b, start, out)) for b in blobs]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    winners = [r for r in results if r]
    assert len(winners) == 1
    assert Path(path).read_bytes() == winners[0]
    assert _leftovers(tmp_path, "gateway.key") == []


def test_the_three_secret_files_go_through_create_exclusive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway key, operator token and link master: a power cut at first start leaves no file
    (the next start creates a fresh one) rather than an empty file that refuses to start."""
    _power_cut_after(3, monkeypatch)
    with pytest.raises(OSError):
        create_signer(str(tmp_path / "gateway.key"))
    with pytest.raises(OSError):
        load_or_create_token(tmp_path / "operator.token")
    with pytest.raises(OSError):
        load_or_create_master(tmp_path / "link.key")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    signer = create_signer(str(tmp_path / "gateway.key"))
    assert load_signer(str(tmp_path / "gateway.key")).skey == signer.skey
    assert load_or_create_token(tmp_path / "operator.token") == load_or_create_token(
        tmp_path / "operator.token"
    )
    assert len(load_or_create_master(tmp_path / "link.key")) == 32
