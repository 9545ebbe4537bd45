"""Anchor evidence: built from a real anvil block, checked offline; any flipped bit fails it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gateway.anchor.chain import AnchorChain
from gateway.anchor.evidence import (
    build_evidence,
    encode_header,
    verify_anchor_evidence,
    verify_anchor_online,
)
from gateway.ledger.note import Checkpoint
from tests.gateway.anchor.test_contract import anchor
from tests.gateway.anchor.trees import head, proof
from tests.support.anvil import Anvil

ORIGIN = "anchor.test/evidence"
STATE = bytes.fromhex("5e" * 32)


def checkpoint(size: int) -> Checkpoint:
    """Return the checkpoint of the test tree of `size` leaves with state hash STATE."""
    return Checkpoint(ORIGIN, size, head(size).root, ("edgeseal-state " + STATE.hex(),))


@pytest.fixture
def evidence(chain: AnchorChain, anvil_session: Anvil) -> dict[str, Any]:
    """Return the evidence of the second anchor (size 300) of ORIGIN on a fresh contract."""
    anchor(chain, None, head(100, STATE), ORIGIN)
    receipt = anchor(chain, head(100, STATE), head(300, STATE), ORIGIN)
    return build_evidence(chain.w3, chain.address, bytes(receipt["transactionHash"]))


def ok(checks: list[tuple[str, bool, str]]) -> bool:
    return bool(checks) and all(c[1] for c in checks)


def test_evidence_verifies_offline_and_online(evidence: dict[str, Any], anvil_session: Anvil,
                                              chain: AnchorChain) -> None:  # fmt: skip
    checks = verify_anchor_evidence(json.loads(json.dumps(evidence)), checkpoint(300))
    assert [c[0] for c in checks] == [
        "format", "header", "transaction", "receipt-proof", "receipt-status", "anchor-log",
    ]  # fmt: skip
    assert ok(checks), checks
    assert len(json.dumps(evidence)) < 4096
    online = verify_anchor_online(evidence, chain.w3, depth=0)
    assert ok(online), online
    assert not ok(verify_anchor_online(evidence, chain.w3))  # not yet below `finalized`
    anvil_session.mine(70)  # anvil's `finalized` tag trails the head by 64 blocks
    assert ok(verify_anchor_online(evidence, chain.w3))


def test_evidence_of_another_checkpoint_fails(evidence: dict[str, Any]) -> None:
    assert not ok(verify_anchor_evidence(evidence, checkpoint(100)))
    other_state = Checkpoint(ORIGIN, 300, head(300).root, ("edgeseal-state " + "00" * 32,))
    assert not ok(verify_anchor_evidence(evidence, other_state))
    other_origin = Checkpoint(ORIGIN + "x", 300, head(300).root, checkpoint(300).extensions)
    assert not ok(verify_anchor_evidence(evidence, other_origin))


def _flips(value: Any) -> list[Any]:
    """Return variants of a field value with one bit flipped (hex strings: a few positions)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value ^ 1]
    if isinstance(value, str):
        body = value[2:]
        out = []
        for pos in sorted({0, len(body) - 1, *range(1, len(body), max(1, len(body) // 8))}):
            flipped = format(int(body[pos], 16) ^ 1, "x")
            out.append("0x" + body[:pos] + flipped + body[pos + 1 :])
        return out
    if isinstance(value, list):
        return [value[:i] + [v] + value[i + 1 :] for i, x in enumerate(value) for v in _flips(x)]
    return []


def test_a_bit_flip_in_any_field_fails(evidence: dict[str, Any]) -> None:
    cp = checkpoint(300)
    tried = 0
    for name in evidence:
        for variant in _flips(evidence[name]):
            bad = copy.deepcopy(evidence)
            bad[name] = variant
            assert not ok(verify_anchor_evidence(bad, cp)), (name, variant)
            tried += 1
    assert tried > 60
    for junk in (None, [], {}, {"version": 1}, dict(evidence, receipt_proof="0x00"),
                 dict(evidence, header_rlp="zz"), dict(evidence, block_number=True),
                 dict(evidence, extra=1), {k: v for k, v in evidence.items() if k != "tx_proof"},
                 dict(evidence, block_hash="0x" + evidence["block_hash"][2:].upper())):  # fmt: skip
        assert not ok(verify_anchor_evidence(junk, cp))


def test_the_online_check_refuses_a_block_off_the_chain(evidence: dict[str, Any],
                                                        chain: AnchorChain) -> None:  # fmt: skip
    bad = dict(evidence, block_hash="0x" + "00" * 32)
    checks = dict((name, ok) for name, ok, _ in verify_anchor_online(bad, chain.w3, depth=0))
    assert checks == {"chain-id": True, "canonical": False, "final": False}


def test_the_header_encoding_matches_anvils_hardfork(chain: AnchorChain) -> None:
    block = chain.w3.provider.make_request("eth_getBlockByNumber", ["latest", False])["result"]
    assert "requestsHash" in block  # Prague: every optional header field is present
    from eth_utils import keccak

    assert "0x" + keccak(encode_header(block)).hex() == block["hash"]
    assert proof(1, 2)  # the tree helper works
