"""EdgesealAnchor on a real anvil: it accepts consistent heads and refuses forks and rollbacks."""

from __future__ import annotations

import json
import random
import time

import pytest
from eth_account import Account

from gateway.anchor.chain import (
    ARTEFACT_PATH,
    AnchorChain,
    AnchorRefused,
    Head,
    commitment,
)
from tests.gateway.anchor.trees import head, proof, root
from tests.support.anvil import CHAIN_ID, DEV_KEY_2
from tools.compile_anchor import compile_contract, render

ORIGIN = "anchor.test/contract"
RECEIPT_TIMEOUT_S = 30.0


def anchor(chain: AnchorChain, prev: Head | None, new: Head, origin: str = ORIGIN) -> dict:
    """Send an anchor of new over prev and return its receipt (anvil mines at once)."""
    hashes = proof(prev.size, new.size) if prev and prev.size and new.size > prev.size else []
    tx_hash = chain.broadcast(chain.send_anchor(origin, prev, new, hashes))
    deadline = time.monotonic() + RECEIPT_TIMEOUT_S
    while (receipt := chain.receipt(tx_hash)) is None:
        assert time.monotonic() < deadline, "no receipt"
        time.sleep(0.02)
    assert receipt["status"] == 1
    return receipt


def test_recompiling_gives_the_committed_artefact() -> None:
    committed = ARTEFACT_PATH.read_text()
    assert render(compile_contract()) == committed
    art = json.loads(committed)
    assert art["solcVersion"].startswith("0.8.37+")
    assert art["settings"]["optimizer"] == {"enabled": True, "runs": 100000}


RANDOM_SIZES = tuple(sorted(random.Random(7).sample(range(1, 5000), 8)))


@pytest.mark.parametrize(
    "sizes", [(1, 2, 3, 8, 9, 1000), (4, 5, 64, 65, 4096, 70000), RANDOM_SIZES]
)
def test_consistent_heads_are_accepted(chain: AnchorChain, sizes: tuple[int, ...]) -> None:
    prev = None
    for size in sizes:
        new = head(size, bytes([size % 251]) * 32)
        anchor(chain, prev, new)
        assert chain.stored(ORIGIN) == commitment(new)
        prev = new


def test_the_contract_refuses_a_fork_a_rollback_and_a_bad_proof(chain: AnchorChain) -> None:
    prev = head(1000)
    anchor(chain, None, prev)
    before = chain.stored(ORIGIN)
    fork = Head(1000, root(999), bytes(32))  # same size, another root
    rollback = head(999)
    bad = proof(1000, 1500)
    bad[1] = bytes(32)
    cases = [
        ("NotNewer", prev, fork, []),
        ("NotNewer", prev, prev, []),
        ("Rollback", prev, rollback, []),
        ("BadProof", prev, head(1500), bad),
        ("BadProof", prev, Head(1500, root(1499), bytes(32)), proof(1000, 1500)),
        ("BadProof", prev, head(1500), proof(1000, 1500)[:-1]),
        ("BadProof", prev, head(1500), []),
        ("WrongPrevious", head(999), head(1500), proof(999, 1500)),
        ("WrongPrevious", None, head(1500), []),
    ]
    for code, old, new, hashes in cases:
        with pytest.raises(AnchorRefused) as err:
            chain.send_anchor(ORIGIN, old, new, hashes)
        assert err.value.code == code, (old, new)
    assert chain.stored(ORIGIN) == before  # nothing changed


def test_only_the_submitter_can_anchor(chain: AnchorChain) -> None:
    anchor(chain, None, head(10))
    assert chain.submitter() == chain.account.address
    other = AnchorChain(chain.w3.provider.endpoint_uri, chain.address, Account.from_key(DEV_KEY_2),
                        CHAIN_ID)  # fmt: skip
    for origin, prev, new in ((ORIGIN, head(10), head(20)), (ORIGIN + "/new", None, head(10))):
        with pytest.raises(AnchorRefused) as err:  # neither extend a head nor claim an origin
            other.send_anchor(origin, prev, new, proof(10, 20) if prev else [])
        assert err.value.code == "NotSubmitter"
