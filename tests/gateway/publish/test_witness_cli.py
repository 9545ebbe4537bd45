"""`edgeseal witness keygen|vkey|serve`: keys in the note key file format, clear usage errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.cli import EXIT_OK, EXIT_USAGE, main
from gateway.ledger.note import load_signer
from gateway.publish.cosignature import CosignatureSigner, CosignatureVerifier


def test_keygen_then_vkey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--key", str(key), "--name", "witness.bank.example/w1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert printed == CosignatureSigner(load_signer(str(key))).vkey
    assert CosignatureVerifier.from_vkey(printed).name == "witness.bank.example/w1"
    assert main(["witness", "vkey", "--key", str(key)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == printed
    assert main(["witness", "keygen", "--key", str(key), "--name", "x"]) == EXIT_USAGE


def test_serve_refuses_unusable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "w.key"
    assert main(["witness", "vkey", "--key", str(key)]) == EXIT_USAGE
    main(["witness", "keygen", "--key", str(key), "--name", "w.example"])
    logs = tmp_path / "logs.txt"
    logs.write_text("log not-a-vkey\n")
    args = ["witness", "serve", "--key", str(key), "--logs", str(logs)]
    assert main([*args, "--data-dir", str(tmp_path / "d")]) == EXIT_USAGE
    assert "bad-vkey" in capsys.readouterr().err
    args[-1] = str(tmp_path / "missing.txt")
    assert main([*args, "--data-dir", str(tmp_path / "d")]) == EXIT_USAGE
