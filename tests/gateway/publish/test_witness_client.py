"""The gateway's witness client against real witness processes and a real gateway node.

Every checkpoint is cosigned by a 2-of-3 quorum; one witness down leaves the quorum and ingest
going; with two down the newest checkpoint is served marked short; a witness that lost its state
answers 409 and the client proves again from its size; a gateway that forks its log (same key,
another history) is refused by the witnesses and raises the witness alarm.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.bundle import verify_bundle_bytes
from gateway.ledger.note import create_signer, parse_note
from gateway.publish.policy import load_policy
from gateway.publish.witness import DB_NAME
from tests.gateway.api.helpers import Api, open_api
from tests.gateway.contracts.helpers import Board
from tests.gateway.publish.witness_procs import Witness, write_policy

# why: cosigning goes through three processes on a loaded 2-core machine; generous, not timed.
DEADLINE_S = 60.0


def wait_for(pred: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Return once pred() is true; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout_s} s"
        time.sleep(0.02)


def enroll(api: Api, name: str) -> None:
    """Append one entry (a device enrollment) through the node's sequencer."""
    board = Board(name)
    api.run(api.service.sequencer.enroll(board.public_key, {"board": name[:8]}))


def gateway_key(tmp: Path) -> str:
    """Create the gateway key the node will use; return its vkey."""
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    return create_signer(str(tmp / "data" / "gateway.key"), origin="edgeseal.example/gw/t").vkey


def newest(api: Api) -> tuple[bytes, str]:
    """Return GET /v1/checkpoint's note and its quorum header."""
    resp = api.get("/v1/checkpoint")
    assert resp.status_code == 200
    return resp.content, resp.headers.get("edgeseal-witness-quorum", "")


def tree_size(api: Api) -> int:
    return int(api.get("/v1/gateway").json()["tree_size"])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Api, list[Witness], Path]]:
    """Yield a started gateway with a 2-of-3 policy over three running witnesses."""
    vkey = gateway_key(tmp_path)
    witnesses = [Witness(tmp_path, f"witness.example/w{i}", vkey) for i in range(3)]
    try:
        for w in witnesses:
            w.start()
        policy = write_policy(tmp_path / "policy.txt", vkey, witnesses, 2)
        for api in open_api(tmp_path, witness_policy=policy):
            yield api, witnesses, policy
    finally:
        for w in witnesses:
            w.stop()


def cosigned_by(api: Api) -> list[str]:
    info = api.get("/v1/gateway").json()["witnesses"]
    return list(info["cosigned_by"])


def test_quorum_outage_and_lost_witness_state(rig: tuple[Api, list[Witness], Path]) -> None:
    api, witnesses, policy_path = rig
    policy = load_policy(str(policy_path))
    vkey = api.get("/v1/gateway").json()["vkey"]
    assert api.get("/v1/witness-policy").text == policy_path.read_text()

    # 1. every checkpoint is cosigned by all three witnesses (the quorum is two)
    for i in range(3):
        enroll(api, f"quorum-{i}")
        size = len(api.get("/v1/entries").json()["entries"])
        wait_for(lambda s=size: tree_size(api) >= s, "integration")
        wait_for(lambda: len(cosigned_by(api)) == 3, "three cosignatures")
        note, header = newest(api)
        assert header == "3/2"
        result = policy.check(note)
        assert result.ok and result.cosigned_by == ["W0", "W1", "W2"]
        text, sigs = parse_note(note)
        assert sigs[0].name == "edgeseal.example/gw/t"  # the gateway's line first
    bundle = api.get("/v1/bundle/2")
    assert bundle.status_code == 200, bundle.text
    assert json.loads(bundle.content)["version"] == 3
    verified = verify_bundle_bytes(bundle.content, vkey, policy)
    quorum = verified.check("witness-quorum")
    assert quorum is not None and quorum.status == "ok" and "W0, W1, W2" in quorum.detail
    unchecked = verify_bundle_bytes(bundle.content, vkey).check("witness-quorum")
    assert unchecked is not None and unchecked.status == "not-checked"

    # 2. one witness down: the quorum holds with the other two, ingest goes on
    witnesses[2].stop()
    enroll(api, "one-down")
    wait_for(lambda: tree_size(api) == 4, "ingest with a witness down")
    wait_for(lambda: cosigned_by(api) == ["W0", "W1"], "two cosignatures")
    assert newest(api)[1] == "2/2"
    info = api.get("/v1/gateway").json()["witnesses"]
    assert info["quorum_ok"] and info["newest_quorum_size"] == 4

    # 3. two down (k-1 cosignatures): served, but marked short; bundles stay on the last quorum
    witnesses[1].stop()
    enroll(api, "two-down")
    wait_for(lambda: tree_size(api) == 5, "ingest with two witnesses down")
    wait_for(lambda: cosigned_by(api) == ["W0"], "one cosignature")
    note, header = newest(api)
    assert header == "1/2 (short)"
    assert not policy.check(note).ok
    assert api.get("/v1/gateway").json()["witnesses"]["newest_quorum_size"] == 4
    assert api.get("/v1/bundle/4").status_code == 409  # not covered by a witnessed checkpoint
    assert "edgeseal_witness_quorum 0.0" in api.get("/metrics").text

    # 4. W1 comes back having lost its state: it answers 409 (size 0), the client proves from 0
    witnesses[1].lose_state()
    witnesses[1].start()
    wait_for(lambda: cosigned_by(api) == ["W0", "W1"], "W1 cosigns again after a 409")
    assert newest(api)[1] == "2/2"
    assert api.get("/v1/bundle/4").status_code == 200
    status = {w["name"]: w for w in api.get("/v1/gateway").json()["witnesses"]["witnesses"]}
    assert status["W1"]["size"] == 5 and status["W1"]["alarms"] == 0
    assert status["W2"]["failures"] > 0 and status["W2"]["alarms"] == 0  # down is no alarm


def test_a_forked_gateway_is_refused_and_raises_the_alarm(tmp_path: Path) -> None:
    vkey = gateway_key(tmp_path / "honest")
    witnesses = [Witness(tmp_path, f"witness.example/f{i}", vkey) for i in range(2)]
    try:
        for w in witnesses:
            w.start()
        policy = write_policy(tmp_path / "policy.txt", vkey, witnesses, 2)
        # the honest history: three entries, cosigned by both witnesses
        for api in open_api(tmp_path / "honest", witness_policy=policy):
            for i in range(3):
                enroll(api, f"honest-{i}")
            wait_for(lambda api=api: tree_size(api) == 3, "integration")
            wait_for(lambda api=api: newest(api)[1] == "2/2", "honest quorum")
        # the same key, another history: (a) a larger tree, (b) one of the same size
        for forked_size, name in ((5, "fork-larger"), (3, "fork-same-size")):
            fork_dir = tmp_path / name
            (fork_dir / "data").mkdir(parents=True)
            shutil.copy(tmp_path / "honest" / "data" / "gateway.key", fork_dir / "data")
            for api in open_api(fork_dir, witness_policy=policy):
                for i in range(forked_size):
                    enroll(api, f"{name}-{i}")
                wait_for(lambda api=api, n=forked_size: tree_size(api) == n, "fork integration")
                wait_for(
                    lambda api=api: api.get("/v1/gateway").json()["witnesses"]["alarms"] >= 2,
                    "the witness alarm of both witnesses",
                )
                note, header = newest(api)
                assert header == "0/2 (short)"
                assert len(parse_note(note)[1]) == 1  # no witness cosigned the fork
                assert "edgeseal_witness_alarms_total" in api.get("/metrics").text
                assert api.get("/v1/bundle/0").status_code == 409  # no witnessed checkpoint
            db = sqlite3.connect(fork_dir / "data" / DB_NAME)
            kinds = {row[0] for row in db.execute("SELECT kind FROM alarm")}
            db.close()
            assert kinds <= {"inconsistent", "ahead"} and kinds, kinds
    finally:
        for w in witnesses:
            w.stop()
