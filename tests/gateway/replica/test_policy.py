"""`--policy`: a replica accepts only checkpoints with the witness quorum of a C2SP tlog-policy
file (gateway.publish.policy), and keeps the witnesses' cosignatures with what it serves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.ledger import NoteSigner, load_or_create_signer
from gateway.ledger.note import parse_note
from gateway.publish.cosignature import CosignatureSigner
from gateway.replica.node import ReplicaNode, ReplicaOptions
from tests.gateway.api.helpers import LiveGateway
from tests.gateway.publish.witness_procs import Witness, write_policy
from tests.gateway.replica.helpers import (
    TamperingProxy,
    filler_records,
    prepare_log,
    wait_integrated,
)

WITNESS = CosignatureSigner(NoteSigner.generate("witness.example/w1"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("gw")
    prepare_log(tmp / "data", filler_records(700))
    with LiveGateway(tmp) as gw:
        yield gw, wait_integrated(gw.base)


def policy_file(tmp: Path, log_vkey: str) -> str:
    path = tmp / "policy.txt"
    path.write_text(
        f"log {log_vkey}\nwitness w1 {WITNESS.vkey}\ngroup g any w1\nquorum g\n", encoding="utf-8"
    )
    return str(path)


def cosigned(path: str, body: bytes) -> bytes:
    """The checkpoint as a witness network would serve it: with w1's cosignature appended."""
    if path != "/checkpoint":
        return body
    text = parse_note(body)[0]
    return body + WITNESS.cosign(text, int(time.time())).encode()


def test_without_the_quorum_the_replica_does_not_advance(gateway: Any, tmp_path: Path) -> None:
    gw, info = gateway
    options = ReplicaOptions(
        gw.base, tmp_path / "r", info["vkey"], policy_file(tmp_path, info["vkey"])
    )
    node = ReplicaNode(options)
    try:
        assert node.sync_once() == 0
        assert "lacks the witness quorum" in node.status.last_error
        assert node.alarms() == []  # a missing cosignature is not the gateway's misbehaviour
        assert node.reader.tree_size == 0
    finally:
        node.stop()


def test_with_the_quorum_it_syncs_and_keeps_the_cosignature(gateway: Any, tmp_path: Path) -> None:
    gw, info = gateway
    with TamperingProxy(gw.base, cosigned) as witnessed:
        policy = policy_file(tmp_path, info["vkey"])
        node = ReplicaNode(ReplicaOptions(witnessed.base, tmp_path / "r", info["vkey"], policy))
        try:
            assert node.sync_once() == info["tree_size"]
            assert node.to_json()["state_hash"] == info["state_hash"]
            held = node.reader.checkpoint()
            assert [s.name for s in parse_note(held)[1]] == [info["origin"], WITNESS.name]
        finally:
            node.stop()


def test_a_real_witness_quorum_end_to_end(tmp_path: Path) -> None:
    """The gateway with a witness policy and a real witness process (`edgeseal witness serve`):
    its /checkpoint carries the cosignature, and a replica with the same policy syncs from it."""
    prepare_log(tmp_path / "gw" / "data", filler_records(300))
    log_vkey = load_or_create_signer(str(tmp_path / "gw" / "data" / "gateway.key")).vkey
    witness = Witness(tmp_path, "witness.example/real", log_vkey)
    witness.start()
    try:
        policy = write_policy(tmp_path / "policy.txt", log_vkey, [witness], 1)
        with LiveGateway(tmp_path / "gw", witness_policy=policy) as gw:
            info = wait_integrated(gw.base)
            deadline = time.monotonic() + 60
            while True:  # the gateway's witness client submits in the background
                note = httpx.get(gw.base + "/checkpoint", timeout=10).content
                if len(parse_note(note)[1]) == 2:
                    break
                assert time.monotonic() < deadline, "no cosigned checkpoint within 60 s"
                time.sleep(0.1)
            node = ReplicaNode(ReplicaOptions(gw.base, tmp_path / "r", log_vkey, str(policy)))
            try:
                assert node.sync_once() == info["tree_size"]
                names = [s.name for s in parse_note(node.reader.checkpoint())[1]]
                assert names == [info["origin"], "witness.example/real"]
            finally:
                node.stop()
    finally:
        witness.stop()
