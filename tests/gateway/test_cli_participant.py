"""`edgeseal participant`: the journey from no key to an accepted transaction, against a real
gateway (uvicorn on a loopback port), and the messages of every way it can fail."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import participant_cli
from gateway.cli import main
from gateway.client import Client
from gateway.contracts.epcis import CONTEXT
from tests.gateway.api.helpers import LiveGateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("gw")) as live:
        yield live


class Cli:
    """Runs `edgeseal participant ...` in process against one gateway; keys live in folder."""

    def __init__(self, gw: LiveGateway, folder: Path, capsys: pytest.CaptureFixture[str]):
        self.url = gw.base
        self.folder = folder
        self.capsys = capsys

    def key(self, name: str) -> str:
        return str(self.folder / f"{name}.key")

    def run(self, *argv: str, url: bool = True) -> tuple[int, str, str]:
        """Return (exit code, stdout, stderr) of `edgeseal participant argv... --url URL`."""
        self.capsys.readouterr()
        extra = ["--url", self.url] if url else []
        code = main(["participant", *argv, *extra])
        out, err = self.capsys.readouterr()
        return code, out, err

    def keygen(self, name: str) -> str:
        code, out, err = self.run("keygen", "--key", self.key(name), url=False)
        assert code == 0, err
        return out.strip()


@pytest.fixture
def cli(gw: LiveGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(gw, tmp_path, capsys)


@pytest.fixture(scope="module")
def operator_key(gw: LiveGateway, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The gateway's operator: the first participant, registered by itself (bootstrap)."""
    path = str(tmp_path_factory.mktemp("op") / "operator.key")
    assert main(["participant", "keygen", "--key", path]) == 0
    code = main(
        ["participant", "register", "--key", path, "--name", "operator", "--roles", "operator",
         "--url", gw.base]
    )  # fmt: skip
    assert code == 0
    return path


def _register(cli: Cli, operator_key: str, pk: str, name: str, roles: str) -> None:
    code, out, err = cli.run(
        "register", "--key", operator_key, "--public-key", pk, "--name", name, "--roles", roles
    )
    assert code == 0, err
    assert "participant-registered" in out


def test_keygen_register_tx_show_bundle_epcis(cli: Cli, operator_key: str, gw: LiveGateway):
    # 1. the participant creates a key: a file only its owner can read
    pk = cli.keygen("grower")
    assert len(pk) == 64 and int(pk, 16) >= 0
    assert stat.S_IMODE(os.stat(cli.key("grower")).st_mode) == 0o600
    # 2. the operator registers it (registration is an operator-signed engine transaction)
    _register(cli, operator_key, pk, "grower-1", "grower")
    # 3. the participant transacts: no hand-made JSON beyond the action's args
    op_pk = json.loads(Path(operator_key).read_text())["public_key"]
    create = {"id": "farm-cli", "type": "agri", "params": {"certifiers": [op_pk]}}
    code, out, err = cli.run(
        "tx", "create", "--contract", "engine", "--key", cli.key("grower"),
        "--args", json.dumps(create),
    )  # fmt: skip
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("accepted: log index ") and first.endswith("in a checkpoint")
    assert "contract-created" in out or "event " in out
    lot = cli.folder / "lot.json"
    lot.write_text(json.dumps({"lot": "L1", "product": "apples", "code": "04012345",
                               "quantity": 100, "origin": "NL-Betuwe"}))  # fmt: skip
    code, out, err = cli.run(
        "tx", "register-lot", "--contract", "farm-cli", "--key", cli.key("grower"),
        "--args", f"@{lot}", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["integrated"] is True
    assert [e["type"] for e in result["events"]] == ["lot-registered"]
    index = result["index"]

    # show: the contract's state and events
    code, out, err = cli.run("show", "--contract", "farm-cli")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["contract"]["data"]["lots"]["L1"]["custodian"] == pk
    assert "lot-registered" in [e["type"] for e in shown["events"]]

    # bundle: fetched, verified against a vkey given out of band, written
    with Client(gw.base) as client:
        key = client.gateway()["vkey"]
    target = cli.folder / "tx.bundle.json"
    code, out, err = cli.run("bundle", str(index), "-o", str(target), "--vkey", key)
    assert code == 0, err
    assert out.startswith("verified: ") and target.read_bytes()[:1] == b"{"
    assert main(["verify-bundle", str(target), "--key", key]) == 0
    # without --vkey it warns that it trusted the gateway's word
    code, out, err = cli.run("bundle", str(index), "-o", str(target))
    assert code == 0 and "warning: checked against the vkey the gateway itself reports" in err
    # a wrong vkey: FAILED, nothing written
    other = cli.folder / "other.bundle.json"
    bad_vkey = key.rsplit("+", 1)[0] + "+" + "A" * len(key.rsplit("+", 1)[1])
    code, out, err = cli.run("bundle", str(index), "-o", str(other), "--vkey", bad_vkey)
    assert code == 1 and "FAILED" in err and not other.exists()

    # epcis: the contract as an EPCIS 2.0 document
    code, out, err = cli.run("epcis", "--contract", "farm-cli")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["type"] == "EPCISDocument"
    (event,) = doc["epcisBody"]["eventList"]
    assert event["bizStep"] == "commissioning" and event["edgeseal:logIndex"] == index + 1


def test_a_rejected_transaction_prints_the_contracts_code_and_message(
    cli: Cli, operator_key: str
) -> None:
    pk = cli.keygen("grower2")
    _register(cli, operator_key, pk, "grower-2", "grower")
    code, out, err = cli.run(
        "tx", "register-lot", "--contract", "no-such-contract", "--key", cli.key("grower2"),
        "--args", '{"lot": "L1"}',
    )  # fmt: skip
    assert code == 1 and out == ""
    assert "REJECTED by the contract: unknown-contract: no contract 'no-such-contract'" in err
    # a nonce below the last one this key used: rejected, with what to do
    create = {"id": "farm-nonce", "type": "agri", "params": {"certifiers": [pk]}}
    code, _, err = cli.run(
        "tx", "create", "--contract", "engine", "--key", cli.key("grower2"),
        "--args", json.dumps(create),
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli.run(
        "tx", "register-lot", "--contract", "farm-nonce", "--key", cli.key("grower2"),
        "--args", "{}", "--nonce", "1",
    )  # fmt: skip
    assert code == 1 and "tx-replayed-nonce" in err and "pass --nonce above" in err


def test_a_clock_skewed_machine_is_told_so(
    cli: Cli, operator_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = cli.keygen("skewed")
    _register(cli, operator_key, pk, "skewed", "carrier")
    monkeypatch.setattr(participant_cli, "now_s", lambda: time.time() + 3600)
    code, _, err = cli.run(
        "tx", "tick", "--contract", "engine", "--key", cli.key("skewed"), "--args", "{}"
    )
    assert code == 1
    assert "REFUSED: tx-clock-skew" in err
    assert "s ahead of the gateway's" in err and "NTP" in err


def test_registration_needs_an_operator(cli: Cli, operator_key: str) -> None:
    cli.keygen("self")
    code, _, err = cli.run(
        "register", "--key", cli.key("self"), "--name", "me", "--roles", "grower"
    )
    assert code == 1
    assert "unknown-participant" in err and "operator registers it" in err
    other = cli.keygen("other")
    pk = cli.keygen("lender")
    _register(cli, operator_key, pk, "bank", "lender")
    code, _, err = cli.run(
        "register", "--key", cli.key("lender"), "--public-key", other, "--name", "x",
        "--roles", "grower",
    )  # fmt: skip
    assert code == 1 and "not-operator" in err and "only an operator" in err


def test_bad_inputs_are_usage_errors(cli: Cli, operator_key: str) -> None:
    cli.keygen("k")
    code, _, err = cli.run("keygen", "--key", cli.key("k"), url=False)
    assert code == 2 and "not overwriting" in err
    os.chmod(cli.key("k"), 0o644)
    code, _, err = cli.run("tx", "tick", "--contract", "engine", "--key", cli.key("k"))
    assert code == 2 and "readable by others" in err
    os.chmod(cli.key("k"), 0o600)
    for bad, says in (("[1]", "must be a JSON object"), ('{"a": 1.5}', "not an integer"),
                      ("{", "not JSON"), ("@/nonexistent/args.json", "cannot read")):  # fmt: skip
        code, _, err = cli.run(
            "tx", "tick", "--contract", "engine", "--key", cli.key("k"), "--args", bad
        )
        assert code == 2 and says in err, (bad, err)
    garbage = cli.folder / "garbage.key"
    garbage.write_bytes(b"\x00" * 10)
    garbage.chmod(0o600)
    code, _, err = cli.run("tx", "tick", "--contract", "engine", "--key", str(garbage))
    assert code == 2 and "not a participant key file" in err


def test_an_unreachable_gateway_is_one_line(cli: Cli, tmp_path: Path) -> None:
    cli.keygen("u")
    cli.url = "http://127.0.0.1:9"  # discard port: nothing listens
    code, out, err = cli.run("show", "--contract", "x")
    assert code == 1 and "unreachable" in err and len(err.strip().splitlines()) == 1


def test_import_epcis_signs_and_submits_partner_events(cli: Cli, operator_key: str) -> None:
    pk = cli.keygen("partner")
    _register(cli, operator_key, pk, "partner-grower", "grower")
    create = {"id": "farm-epcis", "type": "agri", "params": {"certifiers": [pk]}}
    code, _, err = cli.run(
        "tx", "create", "--contract", "engine", "--key", cli.key("partner"),
        "--args", json.dumps(create),
    )  # fmt: skip
    assert code == 0, err
    event = {
        "type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
        "eventTime": "2027-01-15T00:00:00Z", "eventTimeZoneOffset": "+00:00",
        "quantityList": [{"epcClass": "https://id.gs1.org/01/04006381333931/10/E1",
                          "quantity": 12}],
        "bizLocation": {"id": "https://id.gs1.org/414/4012345000009"},
        "ilmd": {"edgeseal:product": "plums"},
    }  # fmt: skip
    recall = {**event, "action": "OBSERVE", "bizStep": "holding", "disposition": "recalled"}
    del recall["ilmd"], recall["bizLocation"]
    doc = {"@context": CONTEXT, "type": "EPCISDocument", "schemaVersion": "2.0",
           "creationDate": "2027-01-15T00:00:00Z",
           "epcisBody": {"eventList": [event, recall]}}  # fmt: skip
    path = cli.folder / "partner.jsonld"
    path.write_text(json.dumps(doc))
    code, out, err = cli.run(
        "import-epcis", str(path), "--contract", "farm-epcis", "--key", cli.key("partner")
    )
    assert code == 0, err
    assert out.count("accepted: log index") == 2 and "lot-registered" in out and "recall" in out
    with Client(cli.url) as client:
        lot = client.view("farm-epcis", "lots")["lots"]["E1"]
    assert lot["code"] == "04006381333931" and lot["recall"] is not None
    # a hostile file: a typed error, nothing submitted
    path.write_bytes(b'{"type": "EPCISDocument", "epcisBody": {"eventList": [NaN]}}')
    code, out, err = cli.run(
        "import-epcis", str(path), "--contract", "farm-epcis", "--key", cli.key("partner")
    )
    assert code == 2 and out == "" and "epcis-not-json" in err and "nothing submitted" in err


def test_a_handover_signed_on_two_machines(cli: Cli, operator_key: str) -> None:
    giver, taker = cli.keygen("giver"), cli.keygen("taker")
    _register(cli, operator_key, giver, "giver", "grower")
    _register(cli, operator_key, taker, "taker", "carrier")
    create = {"id": "farm-two", "type": "agri", "params": {"certifiers": [giver]}}
    lot = {"lot": "H1", "product": "pears", "code": "1", "quantity": 5, "origin": "NL"}
    for action, contract, args in (("create", "engine", create), ("register-lot", "farm-two", lot)):
        code, _, err = cli.run(
            "tx", action, "--contract", contract, "--key", cli.key("giver"),
            "--args", json.dumps(args),
        )  # fmt: skip
        assert code == 0, err
    request = str(cli.folder / "handover.json")
    code, out, err = cli.run(
        "tx", "handover", "--contract", "farm-two", "--key", cli.key("giver"),
        "--args", json.dumps({"lot": "H1", "to": taker}), "--cosigner", taker, "--out", request,
    )  # fmt: skip
    assert code == 0 and f"still to sign: {taker}" in out, err
    # submitting before the taker signed: refused here, nothing sent
    code, _, err = cli.run("submit", request)
    assert code == 1 and "tx-signature-count" in err
    # someone who is not a signer cannot sign
    cli.keygen("stranger")
    code, _, err = cli.run("cosign", request, "--key", cli.key("stranger"), url=False)
    assert code == 2 and "is not a signer" in err
    # the taker sees what it signs, signs; then anyone may submit
    code, out, err = cli.run("cosign", request, "--key", cli.key("taker"), url=False)
    assert code == 0 and out.startswith("signing: handover on farm-two") and "ready" in out, err
    tampered = cli.folder / "tampered.json"
    doc = json.loads(Path(request).read_text())
    body = base64.b64decode(doc["body"]).replace(b'"H1"', b'"H2"')
    doc["body"] = base64.b64encode(body).decode()
    tampered.write_text(json.dumps(doc))
    code, _, err = cli.run("submit", str(tampered))
    assert code == 1 and "tx-bad-signature" in err
    code, out, err = cli.run("submit", request)
    assert code == 0 and "handover" in out, err
    with Client(cli.url) as client:
        assert client.view("farm-two", "lots")["lots"]["H1"]["custodian"] == taker
