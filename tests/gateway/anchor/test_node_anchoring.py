"""The node with anchoring configured, against a real anvil that is stopped and started again:
ingest and the API go on while the chain node is down, and the anchors catch up after."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from gateway.anchor.chain import connect, deploy
from gateway.anchor.outbox import FINAL
from gateway.api.app import create_app
from gateway.node import Node
from tests.gateway.contracts.helpers import Board
from tests.gateway.node.helpers import make_settings, run, wait_until
from tests.support.anvil import CHAIN_ID, DEV_KEY, Anvil

CATCH_UP_TIMEOUT_S = 60.0  # why: generous for a loaded machine; it takes well under a second


def anchored_size(node: Node) -> int:
    """Return the largest final anchored size (0 if none)."""
    assert node.anchor is not None
    finals = [a.head.size for a in node.anchor.outbox.anchors() if a.state == FINAL]
    return max(finals, default=0)


def test_ingest_and_api_go_on_while_the_chain_is_down_then_anchors_catch_up(
    tmp_path: Path, anvil_session: Anvil, account
) -> None:
    address, _tx, _gas = deploy(connect(anvil_session.url), account)
    key = tmp_path / "anchor.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, DEV_KEY.encode())
    os.close(fd)
    settings = make_settings(
        tmp_path, anchor_rpc_url=anvil_session.url, anchor_chain_id=CHAIN_ID,
        anchor_contract=address, anchor_key_file=key, anchor_entries=1, anchor_finality_depth=0,
        anchor_poll_s=0.05,
    )  # fmt: skip

    async def scenario() -> None:
        node = await asyncio.to_thread(Node, settings)
        assert node.anchor is not None
        node.anchor.backoff_base_s, node.anchor.backoff_max_s = 0.05, 0.5
        await node.start()
        transport = httpx.ASGITransport(app=create_app(node))
        try:
            await node.sequencer.enroll(Board("anchor-1").public_key, {})
            await wait_until(lambda: node.reads.ledger().tree_size > 0, 30, "integrated")
            size = node.reads.ledger().tree_size
            await wait_until(lambda: anchored_size(node) >= size, CATCH_UP_TIMEOUT_S, "anchor")
            anvil_session.stop()
            try:
                for i in range(3):  # ingest goes on
                    await node.sequencer.enroll(Board(f"anchor-down-{i}").public_key, {})
                target = node.sequencer.open_ledger().sequenced_size
                await wait_until(lambda: node.reads.ledger().tree_size >= target, 30, "integrated")
                # the service tries to anchor the new checkpoint, fails, and backs off
                await wait_until(lambda: not node.anchor.status.node_up, 30, "node seen down")
                await wait_until(lambda: node.anchor.status.failures >= 3, 30, "retries")
                await node.sequencer.enroll(Board("anchor-down-3").public_key, {})
                target = node.sequencer.open_ledger().sequenced_size
                await wait_until(lambda: node.reads.ledger().tree_size >= target, 30, "integrated")
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as api:
                    r = await api.get("/v1/checkpoint")  # the API answers too
                    assert r.status_code == 200 and f"\n{target}\n" in r.text
                assert anchored_size(node) == size  # nothing anchored while the chain is down
            finally:
                anvil_session.start()  # the same port, the chain restored from its state file
            await wait_until(lambda: anchored_size(node) >= target, CATCH_UP_TIMEOUT_S, "catch up")
            assert node.anchor.status.node_up
        finally:
            await node.stop()

    run(scenario(), timeout_s=180)
