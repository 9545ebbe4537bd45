"""`edgeseal anchor deploy|verify` against the run's anvil."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.anchor.chain import AnchorChain
from gateway.anchor.service import AnchorPolicy
from gateway.cli import main
from tests.gateway.anchor.rig import grow, open_ledger, service, step_until
from tests.support.anvil import DEV_KEY, Anvil


def test_deploy_prints_the_settings(
    tmp_path: Path, anvil_session: Anvil, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "deployer.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, DEV_KEY.encode() + b"\n")
    os.close(fd)
    assert main(["anchor", "deploy", "--rpc", anvil_session.url, "--key", str(key)]) == 0
    out = capsys.readouterr().out
    assert 'anchor_contract = "0x' in out and "anchor_chain_id = 31337" in out
    assert main(["anchor", "deploy", "--rpc", anvil_session.url, "--key", str(key),
                 "--chain-id", "1"]) == 2  # fmt: skip
    os.chmod(key, 0o644)
    assert main(["anchor", "deploy", "--rpc", anvil_session.url, "--key", str(key)]) == 2
    assert "must be 0600" in capsys.readouterr().err
    new = tmp_path / "new.key"
    # a new key has no funds: deploying fails cleanly, the key file stays (mode 0600)
    assert main(["anchor", "deploy", "--rpc", anvil_session.url, "--key", str(new),
                 "--create-key"]) == 1  # fmt: skip
    assert new.stat().st_mode & 0o777 == 0o600


def test_verify_checks_evidence_offline_and_online(
    tmp_path: Path, chain: AnchorChain, anvil_session: Anvil, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = open_ledger(tmp_path / "ledger.db", "anchor.test/cli")
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, 0))
    grow(ledger, 3)
    step_until(svc, lambda: [a.state for a in svc.outbox.anchors()] == ["final"], "final")
    (row,) = svc.outbox.anchors()
    evidence, note = tmp_path / "evidence.json", tmp_path / "checkpoint"
    evidence.write_text(json.dumps(row.evidence))
    note.write_bytes(row.note)
    assert main(["anchor", "verify", "--evidence", str(evidence), "--checkpoint", str(note)]) == 0
    args = ["anchor", "verify", "--evidence", str(evidence), "--checkpoint", str(note)]
    assert main([*args, "--rpc", anvil_session.url, "--depth", "0"]) == 0
    assert "ok   canonical" in capsys.readouterr().out
    evidence.write_text(json.dumps(dict(row.evidence or {}, block_number=1)))
    assert main(args) == 1
    assert "FAIL header" in capsys.readouterr().out
    evidence.write_text("not json")
    assert main(args) == 2
