"""The read model's typed queries: what each returns, and the typed error for what is not there."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import NotFound, ProofError, RequestError, WrongContractType
from gateway.ledger import merkle
from gateway.node import Node
from tests.gateway.node.helpers import PARKING, World, make_settings, run, started, wait_until


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node after the parking world's setup and one arrival, fully integrated. Its loops end
    with the event loop that ran them; reads need no loop, only the open databases."""
    tmp: Path = tmp_path_factory.mktemp("reads")

    async def build() -> Node:
        n = await started(make_settings(tmp))
        world = World()
        await world.setup(n)
        bay = world.bays[0]
        await n.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now + 60)])
        led = n.sequencer.open_ledger()
        await wait_until(lambda: led.pending == 0)
        return n

    n = run(build())
    yield n
    n.close()


def test_sizes_entries_and_one_entry(node: Node) -> None:
    sizes = node.reads.sizes()
    assert sizes is not None and sizes.pending == 0 and sizes.tree_size == sizes.sequenced_size
    page = node.reads.entries(0, 5)
    assert [e.index for e in page.entries] == [0, 1, 2, 3, 4] and page.next == 5
    txs = node.reads.entries(0, 1000, "participant-tx").entries
    assert txs and all(e.to_json()["kind"] == "participant-tx" for e in txs)
    last = node.reads.entry(sizes.sequenced_size - 1)
    assert last.integrated and last.to_json()["leaf_hash"]
    with pytest.raises(NotFound):
        node.reads.entry(sizes.sequenced_size)
    with pytest.raises(RequestError, match="kind must be one of"):
        node.reads.entries(0, 10, "no-such-kind")


def test_proofs_verify_and_bad_ranges_are_typed(node: Node) -> None:
    sizes = node.reads.sizes()
    assert sizes is not None
    n = sizes.tree_size
    proof = node.reads.prove_inclusion(1, n)
    assert proof["size"] == n and proof["index"] == 1
    root = node.reads.ledger().root(n)
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    leaf = merkle.leaf_hash(node.reads.entry(1).entry)
    merkle.verify_inclusion(leaf, 1, n, hashes, root)  # RFC 9162 2.1.3.2
    with pytest.raises(ProofError, match="bad-range"):
        node.reads.prove_inclusion(n, n)
    with pytest.raises(ProofError, match="bad-range"):
        node.reads.prove_consistency(n, n + 1)
    assert node.reads.prove_consistency(1, n)["new"] == n


def test_checkpoints_by_size(node: Node) -> None:
    assert node.reads.checkpoint().startswith(node.reads.ledger().origin + "\n")
    assert node.reads.checkpoint(0).split("\n")[1] == "0"
    with pytest.raises(NotFound):
        node.reads.checkpoint(10**9)


def test_devices_transactions_and_contracts(node: Node) -> None:
    devices = node.reads.devices()
    assert len(devices) == 2 and devices[0].enrolled_index < devices[1].enrolled_index
    assert node.reads.device(devices[0].device_id) == devices[0]
    with pytest.raises(NotFound):
        node.reads.device(b"\x00" * 16)
    assert node.reads.find_device(b"\x00" * 16) is None
    with pytest.raises(NotFound):
        node.reads.tx_location("0" * 64)
    assert [c["id"] for c in node.reads.contracts()] == [PARKING]
    assert node.reads.contract(PARKING, "parking")["type"] == "parking"
    with pytest.raises(WrongContractType):
        node.reads.contract(PARKING, "energy")
    with pytest.raises(NotFound):
        node.reads.contract("nope")
    opened = node.reads.contract_events(PARKING, frozenset({"session-opened"}))
    assert len(opened) == 1
    loc = node.reads.tx_location(next(iter(node.index.tx_index)))
    assert loc.integrated and loc.index >= 0
    assert (
        node.reads.contract_events(since=opened[0]["index"], types=frozenset({"session-opened"}))
        == []
    )
