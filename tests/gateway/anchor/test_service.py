"""The anchoring service against a real anvil and a real ledger: policy, finality, evidence,
a reorg that drops an anchor, a crash between signing and sending, a refused anchor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from gateway.anchor.bundled import anchor_section, verify_anchor_section
from gateway.anchor.chain import AnchorChain, AnchorError, NodeDown, commitment, connect, deploy
from gateway.anchor.evidence import verify_anchor_evidence
from gateway.anchor.outbox import FINAL, INCLUDED, PENDING, SENT, SUPERSEDED, Outbox
from gateway.anchor.service import AnchorPolicy, AnchorService
from gateway.anchor.source import LedgerSource, NoteSource
from gateway.ledger import Ledger
from gateway.ledger.note import parse_checkpoint, parse_note
from tests.gateway.anchor.rig import grow, open_ledger, service, step_until
from tests.support.anvil import CHAIN_ID, DEV_KEY, DEV_KEY_2, Anvil

DEPTH = 2  # final after two confirmations (anvil mines only when told or on a transaction)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """Return a fresh writable ledger of origin anchor.test/<test dir>."""
    return open_ledger(tmp_path / "ledger.db", f"anchor.test/{tmp_path.name}")


def states(svc: AnchorService) -> list[tuple[int, str]]:
    return [(a.head.size, a.state) for a in svc.outbox.anchors()]


def test_anchors_on_policy_then_finalizes_with_evidence(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path, anvil_session: Anvil
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 10, DEPTH))
    svc.step()  # an empty log: nothing to anchor
    assert states(svc) == []
    grow(ledger, 5)  # the first checkpoint is anchored at once: pending, signed, sent
    step_until(svc, lambda: states(svc) == [(5, INCLUDED)], "included")
    grow(ledger, 3)
    svc.step()  # 3 new entries < 10 and the hour has not passed: no anchor
    assert states(svc) == [(5, INCLUDED)]
    anvil_session.mine(DEPTH)
    svc.step()
    assert states(svc) == [(5, FINAL)]
    grow(ledger, 10)
    step_until(svc, lambda: states(svc)[-1] == (18, INCLUDED), "second included")
    anvil_session.mine(DEPTH)
    svc.step()
    assert states(svc) == [(5, FINAL), (18, FINAL)]
    for row in svc.outbox.anchors():
        assert row.gas_used is not None and row.gas_used < 60_000
        assert row.evidence is not None
        cp = parse_checkpoint(parse_note(row.note)[0])
        assert all(ok for _, ok, _ in verify_anchor_evidence(row.evidence, cp))
    latest = svc.outbox.newest(ledger.origin)
    assert latest is not None
    assert chain.stored(ledger.origin) == commitment(latest.head)
    assert svc.outbox.final_covering(ledger.origin, 7) == latest


def test_the_interval_anchors_a_small_growth(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(0.001, 1000, 0))
    grow(ledger, 2)
    step_until(svc, lambda: states(svc) == [(2, FINAL)], "first final")  # depth 0
    grow(ledger, 1)  # 1 entry, but the interval has passed
    step_until(svc, lambda: states(svc) == [(2, FINAL), (3, FINAL)], "second final")


def test_a_reorg_drops_an_anchor_and_it_is_sent_again(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path, anvil_session: Anvil
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, DEPTH))
    grow(ledger, 4)
    step_until(svc, lambda: states(svc) == [(4, INCLUDED)], "included")
    (row,) = svc.outbox.anchors()
    assert row.block_number == anvil_session.block_number()
    anvil_session.rpc("anvil_reorg", 1, [])  # a new block at that height, without the anchor
    assert chain.receipt(row.tx_hash) is None
    assert chain.stored(ledger.origin) == bytes(32)  # the chain forgot the anchor
    svc.step()  # sees the block gone: back to sent, the same transaction sent again
    assert svc.status.reorgs == 1
    step_until(svc, lambda: states(svc) == [(4, INCLUDED)], "included again")
    again = svc.outbox.get(row.id)
    assert again.state == INCLUDED and again.tx_hash == row.tx_hash
    assert again.block_hash != row.block_hash
    assert chain.stored(ledger.origin) == commitment(row.head)
    anvil_session.mine(DEPTH)
    svc.step()
    assert svc.outbox.get(row.id).state == FINAL


def test_a_crash_between_signing_and_sending_resends_the_same_transaction(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, 0))
    grow(ledger, 3)

    def crash(_raw: bytes) -> bytes:
        raise NodeDown("node-down", "the process died before the broadcast")

    monkeypatch.setattr(chain, "broadcast", crash)
    with pytest.raises(NodeDown):
        svc.step()
    (row,) = svc.outbox.anchors()
    assert row.state == SENT and row.raw_tx
    svc.outbox.close()
    monkeypatch.undo()

    restarted = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, 0))
    # the node never saw it: the stored transaction is broadcast
    step_until(restarted, lambda: states(restarted) == [(3, FINAL)], "final")
    again = restarted.outbox.get(row.id)
    assert again.state == FINAL and again.tx_hash == row.tx_hash


def test_an_anchor_the_contract_refuses_costs_nothing_and_is_given_up(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path, anvil_session: Anvil
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, 0))
    grow(ledger, 4)
    step_until(svc, lambda: states(svc) == [(4, FINAL)], "final")
    # the operator forks its own log: a new ledger under the same origin, with other entries
    forked = open_ledger(tmp_path / "fork.db", ledger.origin)
    forked.append([(ledger.entry(0)[0], b"other entry")])
    grow(forked, 7)
    fork_svc = AnchorService(
        chain, Outbox(tmp_path / "anchor.db", 31337, chain.address),
        LedgerSource(lambda: forked),
        AnchorPolicy(3600, 1, 0),
    )  # fmt: skip
    balance = chain.w3.eth.get_balance(chain.account.address)
    for _ in range(4):
        fork_svc.step()
    sizes = {a.head.size: (a.state, a.error) for a in fork_svc.outbox.anchors()}
    assert sizes[4][0] == FINAL
    assert sizes[8] == (SUPERSEDED, "refused: BadProof")
    assert chain.w3.eth.get_balance(chain.account.address) == balance  # no gas spent
    assert PENDING not in {a.state for a in fork_svc.outbox.anchors()}


def test_the_bundle_anchor_section_verifies_and_fails_when_changed(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, 0))
    grow(ledger, 6)
    step_until(svc, lambda: states(svc) == [(6, FINAL)], "final")
    grow(ledger, 5)  # the bundle's checkpoint is newer than the anchored one
    size = ledger.tree_size
    cp = parse_checkpoint(parse_note(ledger.checkpoint())[0])
    assert anchor_section(svc.outbox, ledger.origin, 9, size, ledger.prove_consistency) is None
    section = anchor_section(svc.outbox, ledger.origin, 3, size, ledger.prove_consistency)
    assert section is not None
    checks = verify_anchor_section(section, 3, cp, ledger.verifier)
    assert [c[0] for c in checks][:2] == ["anchored-checkpoint", "anchor-consistency"]
    assert all(ok for _, ok, _ in checks), checks
    assert not all(ok for _, ok, _ in verify_anchor_section(section, 6, cp, ledger.verifier))
    for bad in (
        dict(section, consistency=section["consistency"][:-1]),
        dict(section, checkpoint=section["checkpoint"].replace("\n6\n", "\n7\n")),
        dict(section, evidence=dict(section["evidence"], log_index=1)),
        dict(section, extra=1),
        None,
    ):
        assert not all(ok for _, ok, _ in verify_anchor_section(bad, 3, cp, ledger.verifier))


def test_a_note_source_anchors_the_checkpoint_it_names(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path
) -> None:
    grow(ledger, 3)
    named = ledger.checkpoint()  # e.g. the newest checkpoint with witness quorum
    grow(ledger, 4)
    chosen: list[bytes | None] = [None]
    svc = AnchorService(
        chain, Outbox(tmp_path / "anchor.db", 31337, chain.address),
        NoteSource(lambda: chosen[0], lambda: ledger), AnchorPolicy(3600, 1, 0),
    )  # fmt: skip
    svc.step()
    assert states(svc) == []  # nothing named yet
    chosen[0] = named
    step_until(svc, lambda: states(svc) == [(3, FINAL)], "named final")
    chosen[0] = ledger.checkpoint()
    step_until(svc, lambda: states(svc) == [(3, FINAL), (7, FINAL)], "newest final")


def test_a_contract_for_another_submitter_is_refused_before_signing(
    anvil_session: Anvil, ledger: Ledger, tmp_path: Path
) -> None:
    me, other = Account.from_key(DEV_KEY), Account.from_key(DEV_KEY_2)
    address, _tx, _gas = deploy(connect(anvil_session.url), me, other.address)
    svc = service(AnchorChain(anvil_session.url, address, me, CHAIN_ID), ledger, tmp_path,
                  AnchorPolicy(3600, 1, 0))  # fmt: skip
    grow(ledger, 2)
    with pytest.raises(AnchorError) as err:
        svc.step()
    assert err.value.code == "not-submitter"
    assert states(svc) == []


def test_settings_turn_anchoring_on_and_refuse_what_is_incomplete(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.anchor.service import open_service
    from gateway.anchor.source import LedgerSource
    from gateway.config import Settings

    source = LedgerSource(lambda: open_ledger(tmp_path / "l.db", "anchor.test/settings"))
    assert open_service(Settings(data_dir=tmp_path), source) is None
    with pytest.raises(ValidationError, match="anchor_chain_id and anchor_contract"):
        Settings(data_dir=tmp_path, anchor_rpc_url="http://127.0.0.1:1")
    with pytest.raises(ValidationError, match="20-byte hex address"):
        Settings(data_dir=tmp_path, anchor_rpc_url="http://x", anchor_chain_id=1,
                 anchor_contract="0x1234")  # fmt: skip
    settings = Settings(
        data_dir=tmp_path, anchor_rpc_url="http://127.0.0.1:1", anchor_chain_id=1,
        anchor_contract="0x" + "ab" * 20,
    )  # fmt: skip
    with pytest.raises(AnchorError) as err:  # data_dir/anchor.key does not exist
        open_service(settings, source)
    assert err.value.code == "bad-key-file"
    key = tmp_path / "anchor.key"
    key.write_text("0x" + "11" * 32)
    key.chmod(0o644)
    with pytest.raises(AnchorError, match="must be 0600"):
        open_service(settings, source)
    key.chmod(0o600)
    svc = open_service(settings, source)
    assert svc is not None and svc.policy == AnchorPolicy(3600.0, 1024, None)
    svc.outbox.close()


def test_a_reorg_that_drops_two_anchors_replays_both_in_order(
    chain: AnchorChain, ledger: Ledger, tmp_path: Path, anvil_session: Anvil
) -> None:
    svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, DEPTH))
    grow(ledger, 2)
    step_until(svc, lambda: states(svc) == [(2, INCLUDED)], "first included")
    grow(ledger, 3)
    step_until(svc, lambda: states(svc) == [(2, INCLUDED), (5, INCLUDED)], "second included")
    anvil_session.rpc("anvil_reorg", 2, [])
    assert chain.stored(ledger.origin) == bytes(32)
    step_until(svc, lambda: states(svc) == [(2, INCLUDED), (5, INCLUDED)], "both again")
    assert svc.status.reorgs == 2
    assert chain.stored(ledger.origin) == commitment(svc.outbox.anchors()[-1].head)
    anvil_session.mine(DEPTH)
    svc.step()
    assert states(svc) == [(2, FINAL), (5, FINAL)]


def test_a_stuck_transaction_is_sent_again_with_higher_fees(
    ledger: Ledger, tmp_path: Path, account: Any
) -> None:
    # its own anvil: blocks are mined by hand and the base fee is driven up, which would slow
    # every other test of the run's anvil
    node = Anvil(tmp_path / "anvil")
    node.start()
    try:
        address, _tx, _gas = deploy(connect(node.url), account)
        chain = AnchorChain(node.url, address, account, CHAIN_ID)
        node.rpc("evm_setAutomine", False)
        svc = service(chain, ledger, tmp_path, AnchorPolicy(3600, 1, 0))
        grow(ledger, 3)
        svc.step()  # signed and broadcast; nothing is mined
        (row,) = svc.outbox.anchors()
        assert row.state == SENT and row.raw_tx
        first = TypedTransaction.from_bytes(HexBytes(row.raw_tx)).as_dict()
        capped = AnchorPolicy(3600, 1, 0, stuck_after_s=0.0, max_fee_wei=first["maxFeePerGas"])
        svc.policy = capped
        svc.step()  # stuck, but the cap allows no higher fee: it waits as it is
        assert svc.outbox.get(row.id).tx_hash == row.tx_hash and svc.status.repriced == 0
        svc.policy = AnchorPolicy(3600, 1, 0, stuck_after_s=0.0)
        svc.step()  # stuck, no cap: the node takes the replacement in place of the first
        bumped = svc.outbox.get(row.id)
        assert bumped.tx_hash != row.tx_hash and svc.status.repriced == 1
        assert chain.known(bumped.tx_hash) and not chain.known(row.tx_hash)
        fee = TypedTransaction.from_bytes(HexBytes(bumped.raw_tx or b"")).as_dict()["maxFeePerGas"]
        assert fee * 8 >= first["maxFeePerGas"] * 9

        # a fee spike: the next block's base fee is 4x what the transaction offers at most;
        # the node drops it and refuses it again at these fees
        node.rpc("anvil_setNextBlockBaseFeePerGas", hex(4 * fee))
        node.mine()
        assert not chain.known(bumped.tx_hash)
        with pytest.raises(AnchorError, match="underpriced"):
            chain.broadcast(bumped.raw_tx or b"")
        svc.policy = AnchorPolicy(3600, 1, 0, stuck_after_s=3600)
        svc.step()  # refused: re-priced at once (same anchor, same nonce), not after an hour
        again = svc.outbox.get(row.id)
        assert again.state == SENT and again.tx_hash != bumped.tx_hash and svc.status.repriced == 2
        second = TypedTransaction.from_bytes(HexBytes(again.raw_tx or b"")).as_dict()
        assert second["nonce"] == first["nonce"] and second["data"] == first["data"]
        assert second["maxFeePerGas"] >= 4 * fee
        assert chain.known(again.tx_hash)  # the node holds the replacement
        node.mine()
        step_until(svc, lambda: states(svc) == [(3, FINAL)], "the replacement mined and final")
        assert svc.outbox.get(row.id).tx_hash == again.tx_hash
        assert chain.stored(ledger.origin) == commitment(row.head)
        # the others never made it: one anchor, one fee
        assert chain.receipt(row.tx_hash) is None and chain.receipt(bumped.tx_hash) is None
    finally:
        node.stop()
