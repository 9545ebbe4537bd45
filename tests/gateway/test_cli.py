"""CLI subcommands added with the service: verify-bundle, enroll, serve (argument handling)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from gateway import wire
from gateway.bundle import build_bundle, encode_bundle
from gateway.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from gateway.ledger import Ledger, NoteSigner, enrollment_entry


@pytest.fixture
def bundle_file(tmp_path: Path) -> tuple[Path, str]:
    """Return (a bundle file of entry 1 of a small ledger, the ledger's vkey)."""
    signer = NoteSigner.generate()
    keys = [bytes(SigningKey(bytes([i + 1]) * 32).verify_key) for i in range(3)]
    with Ledger.open(str(tmp_path / "l.db"), signer) as led:
        led.append([enrollment_entry(wire.device_id_for(k), k) for k in keys])
        led.integrate()
        doc = build_bundle(led, 1, lambda _d: None)
    path = tmp_path / "bundle.json"
    path.write_bytes(encode_bundle(doc))
    return path, signer.vkey


def test_verify_bundle_ok(bundle_file: tuple[Path, str], capsys: pytest.CaptureFixture) -> None:
    path, vkey = bundle_file
    assert main(["verify-bundle", str(path), "--key", vkey]) == EXIT_OK
    assert "OK: entry 1 (device-enrollment)" in capsys.readouterr().out
    key_file = path.parent / "gateway.vkey"
    key_file.write_text(vkey + "\n")
    assert main(["verify-bundle", str(path), "--key", str(key_file)]) == EXIT_OK


def test_verify_bundle_failures(
    bundle_file: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    path, vkey = bundle_file
    doc = json.loads(path.read_text())
    doc["inclusion"]["index"] = 0
    path.write_bytes(encode_bundle(doc))
    assert main(["verify-bundle", str(path), "--key", vkey]) == EXIT_FAILED
    assert "FAILED: index-mismatch" in capsys.readouterr().err
    assert main(["verify-bundle", str(path), "--key", NoteSigner.generate().vkey]) == EXIT_FAILED
    assert "bad-checkpoint" in capsys.readouterr().err
    path.write_text("{not json")
    assert main(["verify-bundle", str(path), "--key", vkey]) == EXIT_FAILED
    assert "FAILED: bad-json" in capsys.readouterr().err
    missing = str(path.parent / "missing.json")
    assert main(["verify-bundle", missing, "--key", vkey]) == EXIT_FAILED


def test_enroll_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prov = tmp_path / "p.json"
    prov.write_text(json.dumps({"public_key": "zz"}))
    assert main(["enroll", str(prov), "--token", "t" * 20]) == EXIT_USAGE
    assert "bad provisioning file" in capsys.readouterr().err
    pk = bytes(SigningKey(b"\x02" * 32).verify_key)
    prov.write_text(json.dumps({"public_key": pk.hex(), "device_id": "00" * 16}))
    assert main(["enroll", str(prov), "--token", "t" * 20]) == EXIT_USAGE
    prov.write_text(json.dumps({"public_key": pk.hex()}))
    missing_token = str(tmp_path / "no-token")
    assert main(["enroll", str(prov), "--token-file", missing_token]) == EXIT_USAGE
    assert "no operator token" in capsys.readouterr().err
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    assert main(["enroll", str(prov), "--token", "t" * 20, "--url", closed]) == EXIT_FAILED
    assert "cannot reach" in capsys.readouterr().err


def test_serve_rejects_bad_configuration(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--data-dir", str(tmp_path), "--port", "70000"]) == EXIT_USAGE
    assert "bad configuration" in capsys.readouterr().err
    missing = str(tmp_path / "missing.toml")
    assert main(["serve", "--config", missing]) == EXIT_USAGE


def test_config_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import load_settings

    conf = tmp_path / "edgeseal.toml"
    conf.write_text('port = 9001\nhost = "127.0.0.2"\nlog_level = "DEBUG"\n')
    s = load_settings(str(conf))
    assert (s.port, s.host, s.log_level) == (9001, "127.0.0.2", "debug")
    monkeypatch.setenv("EDGESEAL_PORT", "9002")
    assert load_settings(str(conf)).port == 9002  # the environment beats the file
    assert load_settings(str(conf), port=9003).port == 9003  # flags beat both
    s = load_settings(str(conf), data_dir=str(tmp_path / "d"))
    assert s.ledger_path == tmp_path / "d" / "ledger.db"
    assert s.key_path.name == "gateway.key" and s.token_path.name == "operator.token"


def test_audit_replays_the_contracts_and_checks_state_lines(tmp_path: Path, capsys) -> None:
    from gateway.cli import audit_contracts
    from gateway.contracts.engine import Engine, extension_line
    from gateway.ledger.entries import KIND_CONTRACT_EVENT
    from tests.gateway.contracts.helpers import Log
    from tests.gateway.contracts.test_agri import scenario

    log = Log()
    scenario(log)
    db = str(tmp_path / "c.db")
    signer = NoteSigner.generate("audit.example/contracts")
    with Ledger.open(db, signer) as led:
        led.append([(e[0], e[1:]) for e in log.entries])
        state, _ = Engine().audit(enumerate(log.entries))
        led.integrate([extension_line(state)])
    assert audit_contracts(db) == []
    assert main(["audit", "--db", db]) == EXIT_OK
    assert "contract replay" in capsys.readouterr().out

    with Ledger.open(db, signer) as led:
        led.integrate(["edgeseal-state " + "00" * 32])  # re-signed with a state line not the replay
        led.append([(KIND_CONTRACT_EVENT, b'{"v":1}')])  # and an event nobody emitted
        led.integrate()
    problems = audit_contracts(db)
    assert any("state hash differs" in p for p in problems)
    assert any("event-mismatch" in p for p in problems)
    assert main(["audit", "--db", db]) == EXIT_FAILED


@pytest.mark.parametrize(
    "make",
    {
        "garbage": lambda p: p.write_bytes(bytes(range(256)) * 12),
        "empty": lambda p: p.write_bytes(b""),
        "directory": lambda p: p.mkdir(),
        "missing": lambda p: None,
    }.items(),
    ids=lambda item: item[0],
)
def test_vkey_of_an_unreadable_ledger_is_a_message_not_a_traceback(
    make: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "ledger.db"
    make[1](db)
    assert main(["vkey", "--db", str(db)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is not a readable edgeseal ledger" in err and "Traceback" not in err


def test_keygen_into_a_missing_directory_is_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["keygen", "--key", str(tmp_path / "no" / "such" / "gateway.key")]) == EXIT_USAGE
    assert "cannot create" in capsys.readouterr().err


def test_an_unexpected_exception_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import gateway.cli as cli

    def boom(_args: object) -> int:
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(cli, "cmd_keygen", boom)
    monkeypatch.delenv("EDGESEAL_DEBUG", raising=False)
    assert main(["keygen", "--key", "x"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("edgeseal keygen: FAILED: unexpected RuntimeError: a bug nobody foresaw")
    assert "Traceback" not in err
