"""The witness client's durable state and how it composes cosigned notes (no network)."""

from __future__ import annotations

from pathlib import Path

from gateway.ledger.note import NoteSigner, parse_note
from gateway.publish.cosignature import CosignatureSigner
from gateway.publish.policy import parse_policy
from gateway.publish.witness import CosignatureStore, WitnessPublisher, split_checkpoint
from tests.gateway.publish.helpers import ORIGIN, Log


def test_sizes_and_cosignatures_survive_a_restart(tmp_path: Path) -> None:
    log = Log(tmp_path / "ledger.db", NoteSigner.generate(ORIGIN))
    witnesses = [CosignatureSigner(NoteSigner.generate(f"w{i}.example")) for i in range(2)]
    policy = parse_policy(
        "".join(f"witness W{i} {w.vkey} http://127.0.0.1:9\n" for i, w in enumerate(witnesses))
        + "group g all W0 W1\nquorum g\n"
    )
    note = log.grow(3)
    body, log_line = split_checkpoint(note)
    store = CosignatureStore(str(tmp_path / "data"))
    client = WitnessPublisher(policy, lambda: log.ledger, store)
    assert client.newest().quorum is not None and client.newest().quorum.summary == "0/2 (short)"
    vkeys = [f"{w.vkey}" for w in witnesses]
    for i, w in enumerate(witnesses):
        store.add(3, body, log_line, vkeys[i], f"W{i}", w.cosign(body, 100 + i), 100 + i)
    store.close()

    store = CosignatureStore(str(tmp_path / "data"))  # a restart: everything comes back
    client = WitnessPublisher(policy, lambda: log.ledger, store)
    assert store.sizes() == {vkeys[0]: 3, vkeys[1]: 3}
    assert {s.name: s.size for s in client.status.values()} == {"W0": 3, "W1": 3}
    newest = client.newest()
    assert newest.quorum is not None and newest.quorum.ok and newest.size == 3
    assert [s.name for s in parse_note(newest.note)[1]] == [ORIGIN, "w0.example", "w1.example"]
    # a newer checkpoint has none yet: served short, the quorum one stays the previous size
    log.grow(2)
    assert client.newest().quorum.summary == "0/2 (short)"  # type: ignore[union-attr]
    best = client.newest_with_quorum()
    assert best is not None and best.size == 3 and best.note == newest.note
    store.close()


def test_a_gateway_refuses_to_start_on_a_bad_policy(tmp_path: Path) -> None:
    import pytest

    from gateway.errors import StartupRefused
    from gateway.node import Node
    from tests.gateway.node.helpers import make_settings

    bad = tmp_path / "policy.txt"
    bad.write_text("witness a not-a-vkey\nquorum a\n")
    with pytest.raises(StartupRefused) as info:
        Node(make_settings(tmp_path, witness_policy=bad))
    assert info.value.code == "bad-witness-policy" and "line 1" in info.value.message
    bad.write_text("quorum none\n")  # fixed: the same data dir starts (nothing was left open)
    node = Node(make_settings(tmp_path, witness_policy=bad))
    node.close()
