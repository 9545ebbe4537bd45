"""A misbehaving gateway is caught by a replica, and the evidence it exports convinces the
offline checker (`edgeseal replica check-evidence`) and nothing else.

The forks are real: the gateway's own key re-signs a different history (a second data dir with
a copy of gateway.key), served by the real gateway code. Tampering is a real HTTP proxy in
front of the real gateway (tests.gateway.replica.helpers.TamperingProxy).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from gateway.anchor.chain import AnchorChain, Head, connect, deploy
from gateway.anchor.evidence import checkpoint_head
from gateway.config import Settings
from gateway.ledger import Ledger, NoteSigner, load_or_create_signer
from gateway.ledger.note import NoteVerifier, parse_checkpoint, parse_note
from gateway.replica import evidence
from gateway.replica.anchors import AnchorRef
from gateway.replica.node import ReplicaNode, ReplicaOptions
from tests.gateway.api.helpers import LiveGateway
from tests.gateway.replica.helpers import (
    TamperingProxy,
    filler_records,
    prepare_log,
    scenario_entries,
    wait_integrated,
)
from tests.support.anvil import CHAIN_ID, DEV_KEY, Anvil

ROOT = Path(__file__).resolve().parents[3]
FILLER = 600


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    """The honest log: the contract scenarios and FILLER device records."""
    return scenario_entries() + filler_records(FILLER)


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory, history: list[bytes]) -> Iterator[Any]:
    """(the honest gateway, its data dir)."""
    tmp = tmp_path_factory.mktemp("honest")
    prepare_log(tmp / "data", history)
    with LiveGateway(tmp) as gw:
        wait_integrated(gw.base)
        yield gw, tmp / "data"


def forked_gateway(tmp: Path, honest_data: Path, entries: list[bytes]) -> LiveGateway:
    """Return (not started) a gateway serving `entries` signed with the honest gateway's key."""
    (tmp / "data").mkdir(parents=True)
    key = Settings(data_dir=honest_data).key_path
    shutil.copy2(key, Settings(data_dir=tmp / "data").key_path)
    prepare_log(tmp / "data", entries)
    return LiveGateway(tmp)


def synced_replica(base: str, data_dir: Path, vkey: str) -> ReplicaNode:
    node = ReplicaNode(ReplicaOptions(base, data_dir, vkey))
    assert node.sync_once() > 0
    assert node.alarms() == []
    return node


def check_cli(path: str, vkey: str) -> tuple[int, str]:
    """Run `edgeseal replica check-evidence` in its own process; return (exit code, stdout)."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "replica", "check-evidence", path, "--key", vkey],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def the_alarm(node: ReplicaNode, kind: str) -> dict[str, Any]:
    alarms = node.alarms()
    assert [a["kind"] for a in alarms] == [kind], alarms
    return alarms[0]


def assert_tampered_evidence_is_refused(doc: dict[str, Any], verifier: NoteVerifier) -> None:
    """A checkpoint changed after signing, or a check under another key, proves nothing."""
    forged = json.loads(json.dumps(doc))
    forged["checkpoints"][-1] = forged["checkpoints"][-1].replace("\n\n", "\nx\n\n", 1)
    with pytest.raises(evidence.EvidenceError):
        evidence.check_evidence(forged, verifier)
    stranger = NoteSigner.generate(verifier.name).verifier()  # same name, another key
    with pytest.raises(evidence.EvidenceError):
        evidence.check_evidence(doc, stranger)


# ---- forks -----------------------------------------------------------------------------------


def test_two_roots_for_one_size_are_caught(
    honest: Any, history: list[bytes], tmp_path: Path
) -> None:
    gw, data = honest
    vkey = wait_integrated(gw.base)["vkey"]
    node = synced_replica(gw.base, tmp_path / "replica", vkey)
    size = node.reader.tree_size
    node.stop()
    # the same key signs another history of exactly the same size
    fork = history[:300] + filler_records(len(history) - 300, "forked")
    with forked_gateway(tmp_path / "fork", data, fork) as bad:
        assert wait_integrated(bad.base)["tree_size"] == size
        node = ReplicaNode(ReplicaOptions(bad.base, tmp_path / "replica", vkey))
        try:
            assert node.sync_once() == 0
            alarm = the_alarm(node, "fork")
            assert node.reader.tree_size == size  # it did not advance
            code, out = check_cli(alarm["evidence"], vkey)
            assert code == 0, out
            assert out.startswith("CONFIRMED fork: the log signed two different roots"), out
            doc = evidence.load(alarm["evidence"])
            assert len({json.dumps(c) for c in doc["checkpoints"]}) == 2
            assert_tampered_evidence_is_refused(doc, NoteVerifier.from_vkey(vkey))
            # the alarm stays: a restarted node does not advance either
            assert node.to_json()["alarms"][0]["kind"] == "fork"
        finally:
            node.stop()


def test_a_longer_fork_is_caught_with_a_consistency_proof(
    honest: Any, history: list[bytes], tmp_path: Path
) -> None:
    gw, data = honest
    vkey = wait_integrated(gw.base)["vkey"]
    node = synced_replica(gw.base, tmp_path / "replica", vkey)
    size = node.reader.tree_size
    node.stop()
    fork = history[:500] + filler_records(len(history) - 500 + 700, "forked-longer")
    with forked_gateway(tmp_path / "fork", data, fork) as bad:
        assert wait_integrated(bad.base)["tree_size"] == size + 700
        node = ReplicaNode(ReplicaOptions(bad.base, tmp_path / "replica", vkey))
        try:
            assert node.sync_once() == 0
            alarm = the_alarm(node, "fork")
            doc = evidence.load(alarm["evidence"])
            assert doc["proof"]["old_size"] == size and doc["proof"]["new_size"] == size + 700
            assert doc["proof"]["consistency"]
            code, out = check_cli(alarm["evidence"], vkey)
            assert code == 0 and "does not extend its own checkpoint" in out, out
            # flip one proof hash: the proof no longer leads to the signed root
            broken = json.loads(json.dumps(doc))
            h = broken["proof"]["consistency"][0]
            broken["proof"]["consistency"][0] = ("B" if h[0] == "A" else "A") + h[1:]
            with pytest.raises(evidence.EvidenceError):
                evidence.check_evidence(broken, NoteVerifier.from_vkey(vkey))
            assert_tampered_evidence_is_refused(doc, NoteVerifier.from_vkey(vkey))
        finally:
            node.stop()


def test_honest_growth_is_not_a_fork(honest: Any, history: list[bytes], tmp_path: Path) -> None:
    gw, data = honest
    vkey = wait_integrated(gw.base)["vkey"]
    node = synced_replica(gw.base, tmp_path / "replica", vkey)
    node.stop()
    longer = history + filler_records(300, "more")
    with forked_gateway(tmp_path / "grown", data, longer) as grown:
        node = ReplicaNode(ReplicaOptions(grown.base, tmp_path / "replica", vkey))
        try:
            assert node.sync_once() == 300
            assert node.alarms() == []
        finally:
            node.stop()


# ---- tampered tiles and bundles ----------------------------------------------------------------


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 1,)) + data[at + 1 :]


@pytest.mark.parametrize(
    ("path", "at", "failed"),
    [
        ("/tile/entries/002", 30, "tile/entries/002"),  # an entry's bytes in a bundle
        ("/tile/1/000.p/3", 5, "edge"),  # the right-edge tile above
    ],
)
def test_a_tampered_tile_is_caught(
    honest: Any, tmp_path: Path, path: str, at: int, failed: str
) -> None:
    gw, _ = honest
    vkey = wait_integrated(gw.base)["vkey"]

    def tamper(p: str, body: bytes) -> bytes:
        return _flip(body, at) if p == path else body

    with TamperingProxy(gw.base, tamper) as proxy:
        node = ReplicaNode(ReplicaOptions(proxy.base, tmp_path / "replica", vkey))
        try:
            assert node.sync_once() == 0
            alarm = the_alarm(node, "tile-mismatch")
            assert node.reader.tree_size == 0
            doc = evidence.load(alarm["evidence"])
            assert doc["failed"] == failed
            code, out = check_cli(alarm["evidence"], vkey)
            assert code == 0 and out.startswith("CONFIRMED tile-mismatch"), out
            # the honest bytes in place of the tampered ones prove nothing
            if failed != "edge":
                honest_doc = json.loads(json.dumps(doc))
                honest_bytes = evidence.b64(httpx_get(gw.base + path))
                if "bundle" in doc:
                    honest_doc["bundle"]["base64"] = honest_bytes
                else:
                    honest_doc["tiles"][failed] = honest_bytes
                with pytest.raises(evidence.EvidenceError):
                    evidence.check_evidence(honest_doc, NoteVerifier.from_vkey(vkey))
        finally:
            node.stop()


def test_full_level0_tiles_are_never_needed(honest: Any, tmp_path: Path) -> None:
    # a full bundle is checked against its hash in the level-1 tile (TileTree.bundle_matches):
    # garbage served for every full level-0 tile changes nothing, because none is fetched
    gw, _ = honest
    info = wait_integrated(gw.base)
    asked: list[str] = []

    def tamper(p: str, body: bytes) -> bytes:
        asked.append(p)
        full_level0 = p.startswith("/tile/0/") and ".p/" not in p
        return bytes(len(body)) if full_level0 else body

    with TamperingProxy(gw.base, tamper) as proxy:
        node = ReplicaNode(ReplicaOptions(proxy.base, tmp_path / "replica", info["vkey"]))
        try:
            assert node.sync_once() == info["tree_size"]
            assert node.alarms() == []
            assert node.to_json()["state_hash"] == info["state_hash"]
        finally:
            node.stop()
    assert [p for p in asked if p.startswith("/tile/0/")] == ["/tile/0/003.p/61"]


def httpx_get(url: str) -> bytes:
    import httpx

    return httpx.get(url, headers={"Accept-Encoding": "identity"}, timeout=30).content


def test_a_checkpoint_that_does_not_verify_is_not_evidence(honest: Any, tmp_path: Path) -> None:
    gw, _ = honest
    vkey = wait_integrated(gw.base)["vkey"]

    def tamper(p: str, body: bytes) -> bytes:
        return body.replace(b"\n\n", b"\nforged\n\n", 1) if p == "/checkpoint" else body

    with TamperingProxy(gw.base, tamper) as proxy:
        node = ReplicaNode(ReplicaOptions(proxy.base, tmp_path / "replica", vkey))
        try:
            assert node.sync_once() == 0
            assert node.alarms() == []  # anyone can serve bytes: no alarm, no progress
            assert "does not verify" in node.status.last_error
            assert node.reader.tree_size == 0
        finally:
            node.stop()


# ---- a state line that replay does not reproduce -----------------------------------------------


def test_a_wrong_state_hash_is_caught(history: list[bytes], tmp_path: Path) -> None:
    data = tmp_path / "gw" / "data"
    data.mkdir(parents=True)
    settings = Settings(data_dir=data)
    signer = load_or_create_signer(str(settings.key_path), None)
    lie = ["edgeseal-state " + "ab" * 32]
    led = Ledger.open(
        str(settings.ledger_path), signer, max_batch_entries=10**9, extension_lines=lambda s, r: lie
    )
    led.append([(e[0], e[1:]) for e in history])
    led.integrate()
    led.close()
    with LiveGateway(tmp_path / "gw") as gw:  # the gateway serves the lying checkpoint it holds
        vkey = wait_integrated(gw.base)["vkey"]
        node = ReplicaNode(ReplicaOptions(gw.base, tmp_path / "replica", vkey))
        try:
            assert node.sync_once() == 0
            alarm = the_alarm(node, "state-mismatch")
            assert node.reader.tree_size == 0
            assert node.store.sequenced_size == len(history)  # verified and kept, not committed
            code, out = check_cli(alarm["evidence"], vkey)
            assert code == 0 and out.startswith("CONFIRMED state-mismatch"), out
        finally:
            node.stop()


# ---- the gateway's anchors (gateway.replica.anchors) -------------------------------------------


def _anchor_rig(anvil: Anvil) -> tuple[AnchorChain, AnchorRef]:
    """Return a fresh EdgesealAnchor on the run's anvil (the gateway's submitter account) and
    what a replica is told of it."""
    account = Account.from_key(DEV_KEY)
    address, _tx, _gas = deploy(connect(anvil.url), account)
    return AnchorChain(anvil.url, address, account, CHAIN_ID), AnchorRef(
        anvil.url, CHAIN_ID, address
    )


def _anchor(chain: AnchorChain, origin: str, head: Head) -> None:
    """Anchor head as the first head of origin (no proof needed) and wait for its receipt."""
    tx_hash = chain.broadcast(chain.send_anchor(origin, None, head, []))
    deadline = time.monotonic() + 30  # anvil mines on arrival; a loaded machine may lag
    while chain.receipt(tx_hash) is None:
        assert time.monotonic() < deadline, "the anchor was not mined"
        time.sleep(0.02)


def test_a_replica_finds_the_gateways_anchor_in_its_copy(
    honest: Any, tmp_path: Path, anvil_session: Anvil
) -> None:
    gw, _ = honest
    info = wait_integrated(gw.base)
    chain, ref = _anchor_rig(anvil_session)
    note = httpx_get(gw.base + "/checkpoint")
    cp = parse_checkpoint(parse_note(note)[0])
    _anchor(chain, cp.origin, checkpoint_head(cp))  # what the gateway's anchor service sends
    node = ReplicaNode(ReplicaOptions(gw.base, tmp_path / "replica", info["vkey"], anchor=ref))
    try:
        assert node.sync_once() == info["tree_size"]
        assert node.alarms() == []
        view = node.to_json()["anchor"]
        assert view["agrees"] is True and view["checked_size"] == cp.size == view["newest_size"]
    finally:
        node.stop()


@pytest.mark.parametrize("at", ["prefix", "same-size"])
def test_an_anchor_of_another_history_is_caught(
    honest: Any, tmp_path: Path, anvil_session: Anvil, at: str
) -> None:
    # the gateway anchored one history (here: a prefix root, or its own size with another
    # contract state) and served the replica another
    gw, _ = honest
    info = wait_integrated(gw.base)
    chain, ref = _anchor_rig(anvil_session)
    cp = parse_checkpoint(parse_note(httpx_get(gw.base + "/checkpoint"))[0])
    if at == "prefix":
        forged = Head(cp.size - 100, hashlib.sha256(b"another history").digest(), bytes(32))
    else:
        forged = Head(cp.size, cp.root, hashlib.sha256(b"another state").digest())
    _anchor(chain, cp.origin, forged)
    node = ReplicaNode(ReplicaOptions(gw.base, tmp_path / "replica", info["vkey"], anchor=ref))
    try:
        node.sync_once()
        alarm = the_alarm(node, "anchor-fork")
        assert node.to_json()["anchor"]["agrees"] is False
    finally:
        node.stop()
    code, out = check_cli(alarm["evidence"], info["vkey"])
    assert code == 0 and out.startswith("CONFIRMED anchor-fork"), out
    assert "not checked offline" in out  # the chain is not asked: the output says so
    doc = evidence.load(alarm["evidence"])
    verifier = NoteVerifier.from_vkey(info["vkey"])
    # the file proves nothing once the anchored head is the tree's, or the proof is changed
    honest_doc = json.loads(json.dumps(doc))
    honest_doc["anchor"]["root"] = honest_doc["proof"]["root_in_tree"]
    if at == "same-size":
        honest_doc["anchor"]["state_hash"] = checkpoint_head(cp).state_hash.hex()
    with pytest.raises(evidence.EvidenceError, match="not-proven"):
        evidence.check_evidence(honest_doc, verifier)
    if at == "prefix":
        bent = json.loads(json.dumps(doc))
        bent["proof"]["consistency"][0] = evidence.b64(bytes(32))
        with pytest.raises(evidence.EvidenceError):
            evidence.check_evidence(bent, verifier)
