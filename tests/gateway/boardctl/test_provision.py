"""gateway/boardctl/provision.py: a stand-in board with the firmware deployed, provisioned against
a real gateway (LiveGateway: the Node and its API under uvicorn on a loopback port): key made by
the firmware, attestation checked, enrolled, link key installed; a re-run changes nothing; a
refused enrollment changes nothing on the board."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from firmware import provision as fw_provision
from gateway.ble.auth import LINK_KEY_FILE, derive_link_key
from gateway.boardctl import provision as prov
from gateway.boardctl.cli import EXIT_FAILED, EXIT_OK
from gateway.boardctl.errors import BAD_ATTESTATION, ENROLL_REFUSED, KEY_CONFLICT, BoardError
from gateway.boardctl.link import BoardLink
from gateway.cli import main
from tests.gateway.api.helpers import LiveGateway
from tests.gateway.boardctl.conftest import PROFILE
from tools.boardvm.standin import StandIn

TOKEN = "operator-token-for-tests-0123456789"  # tests.gateway.node.helpers.make_settings
LINK_MAGIC = b"LK01"


def _nvs(board: StandIn) -> dict:
    """Return the stand-in's NVS as the shim stores it ({namespace: {key: value}})."""
    path = Path(str(board.flash_dir) + ".nvs.json")
    return json.loads(path.read_text()) if path.exists() else {}


def _link_key_on_board(board: StandIn) -> bytes | None:
    blob = _nvs(board).get("edgeseal", {}).get("link_key")
    if blob is None:
        return None
    raw = bytes.fromhex(blob[1:])
    assert raw[:4] == LINK_MAGIC
    return raw[4:36]


def _cli(board: StandIn, gw: LiveGateway, *extra: str) -> int:
    return main([
        "board", "provision", "--port", board.port, "--gateway", gw.base,
        "--data-dir", str(gw.settings.data_dir), "--profile", str(PROFILE), *extra,
    ])  # fmt: skip


def test_the_constants_agree_with_the_firmware() -> None:
    assert prov.ATTEST_DOMAIN == fw_provision.ATTEST_DOMAIN
    assert prov.LINK_ID_DOMAIN == fw_provision.LINK_ID_DOMAIN
    assert prov.link_key_id(b"k" * 32) == fw_provision.link_key_id(b"k" * 32)


def test_provision_end_to_end_then_again(
    deployed_board: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    release_key = bytes(range(32)).hex()
    with LiveGateway(tmp_path, operator_token=None) as gw:  # the token from data_dir's file
        assert _cli(deployed_board, gw, "--release-key", release_key) == EXIT_OK
        out = capsys.readouterr().out
        assert "enrolled at log index" in out and "link key installed" in out
        assert "release key" in out
        dev_id = out.split("device ", 1)[1].split(":", 1)[0]
        device = httpx.get(f"{gw.base}/v1/devices/{dev_id}", timeout=10).json()
        assert device["status"] == "active"
        assert device["metadata"]["profile"] == "esp32-devkitc"
        assert len(device["metadata"]["attestation"]) == 128
        master = (gw.settings.data_dir / LINK_KEY_FILE).read_bytes()
        assert _link_key_on_board(deployed_board) == derive_link_key(master, bytes.fromhex(dev_id))
        nvs_before = _nvs(deployed_board)

        assert _cli(deployed_board, gw, "--release-key", release_key) == EXIT_OK
        assert "already provisioned; nothing changed" in capsys.readouterr().out
        assert _nvs(deployed_board) == nvs_before
        devices = httpx.get(f"{gw.base}/v1/devices", timeout=10).json()["devices"]
        assert [d["device_id"] for d in devices] == [dev_id]


def test_a_refused_enrollment_changes_nothing_on_the_board(
    deployed_board: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with LiveGateway(tmp_path) as gw:
        assert _cli(deployed_board, gw, "--token", "not-the-operator-token-000") == EXIT_FAILED
        err = capsys.readouterr().err
        assert f"{ENROLL_REFUSED}: the gateway refused: 401" in err
        assert _link_key_on_board(deployed_board) is None
        assert httpx.get(f"{gw.base}/v1/devices", timeout=10).json()["devices"] == []


def test_a_revoked_device_is_not_provisioned_again(deployed_board: StandIn, tmp_path: Path) -> None:
    with LiveGateway(tmp_path) as gw, BoardLink(deployed_board.port) as link:
        client = prov.GatewayClient(gw.base, TOKEN)
        master = prov.read_master(gw.settings.data_dir)
        out = prov.provision(link, client, master, {})
        r = httpx.post(
            f"{gw.base}/v1/devices/{out.device_id}/revoke", json={"reason": "stolen"},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        )  # fmt: skip
        assert r.status_code == 200
        with pytest.raises(BoardError) as err:
            prov.provision(link, client, master, {})
        assert err.value.code == KEY_CONFLICT and "revoked" in err.value.message


def test_a_forged_attestation_is_refused() -> None:
    import nacl.signing

    sk = nacl.signing.SigningKey(b"\x01" * 32)
    pk = bytes(sk.verify_key)
    from gateway.wire import device_id_for

    dev, mac, fw = device_id_for(pk), b"\x24\x0a\xc4\x00\x00\x01", b"\x07" * 32
    sig = sk.sign(prov.ATTEST_DOMAIN + dev + mac + fw).signature
    good = prov.Identity(pk, dev, mac, fw, sig, None, None)
    prov.verify_attestation(good)
    for bad in (
        prov.Identity(pk, dev, mac, b"\x08" * 32, sig, None, None),  # another firmware hash
        prov.Identity(pk, b"\x00" * 16, mac, fw, sig, None, None),  # an id not from the key
        prov.Identity(pk, dev, mac, fw, None, None, None),
    ):
        with pytest.raises(BoardError) as err:
            prov.verify_attestation(bad)
        assert err.value.code == BAD_ATTESTATION


def test_no_master_on_this_host(tmp_path: Path) -> None:
    with pytest.raises(BoardError) as err:
        prov.read_master(tmp_path)
    assert err.value.code == "no-link-master" and "gateway host" in err.value.message


def test_a_battery_profile_tells_the_gateway_its_advertising_period() -> None:
    import json

    from gateway.boardctl.cli import enrollment_metadata

    root = Path(__file__).resolve().parents[3]
    logger = json.loads((root / "boards" / "cold-chain-logger.json").read_text())
    meta = enrollment_metadata(logger)
    assert meta == {
        "profile": "cold-chain-logger",
        "advertise_every_s": logger["power"]["advertise_every_s"],
    }
    assert enrollment_metadata(json.loads(PROFILE.read_text())) == {"profile": "esp32-devkitc"}
