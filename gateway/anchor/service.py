"""The gateway's anchoring service: anchors the newest checkpoint on a policy, waits for finality.

A background task of the node (gateway/node/lifecycle.py). Each round (`step`, blocking, run in
the service's own worker thread so a slow or dead chain node never blocks ingest or the API):
1. policy: if no anchor is pending or sent, and the newest checkpoint is larger than the last
   anchored one by `entries` entries, or `interval_s` passed since the last anchor (or none
   was ever made), add it to the outbox as pending;
2. pending: read the head the contract holds, find it among our anchors (else in the chain's
   recent Anchored events), sign an anchor with the consistency proof from it (simulated first:
   a refusal costs no gas), store the transaction, then broadcast it;
3. sent: look for the receipt; a transaction the node lost is broadcast again (same bytes);
4. included: if the block left the canonical chain (a reorg) the row goes back to sent and the
   same transaction is sent again; once the block is final the evidence is built and stored.
A node that does not answer (NodeDown) makes the task back off exponentially, up to
backoff_max_s, and resume where the outbox says. docs/anchoring.md describes it all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from gateway.anchor.chain import (
    ZERO32,
    AnchorChain,
    AnchorError,
    AnchorRefused,
    Head,
    NodeDown,
    commitment,
)
from gateway.anchor.evidence import build_evidence, verify_anchor_evidence
from gateway.anchor.outbox import INCLUDED, PENDING, SENT, SUPERSEDED, Anchor, Outbox
from gateway.anchor.source import CheckpointSource
from gateway.ledger.note import parse_checkpoint, parse_note

log = logging.getLogger("edgeseal.anchor")

# why: an hourly anchor bounds how long a fork could go unnoticed by a chain observer to an
# hour, and 1024 entries (about 50 gas per record at ~52k gas per anchor) keeps a busy log's
# cost per record within the 100-gas goal (docs/anchoring.md, Cost).
DEFAULT_INTERVAL_S = 3600.0
DEFAULT_ENTRIES = 1024
# why: receipts and finality are polled; a few seconds is below any chain's block time that
# matters here and costs one or two JSON-RPC calls per round.
POLL_S = 5.0
BACKOFF_BASE_S = 1.0  # first retry after a failed round
BACKOFF_MAX_S = 300.0  # why: a node down for hours is retried every 5 minutes, not hammered
# why: a transaction without a receipt this long after it was signed is stuck below the
# chain's fee (a fee spike) or was dropped from the pool: ten minutes is ~50 blocks on Ethereum
# and hundreds on an L2, far beyond an honest wait; it is signed again with higher fees.
DEFAULT_STUCK_AFTER_S = 600.0
# why: a refused or reverted anchor is re-planned from the chain's head this often before the
# row is given up (a race with another sender resolves in one; a forked log never does)
MAX_ATTEMPTS = 3
# why: when our outbox does not know the head the contract holds (a lost outbox), it is looked
# up in the Anchored events of this many recent blocks (public RPC nodes cap eth_getLogs).
LOG_LOOKBACK_BLOCKS = 10_000
# why: a round makes a few JSON-RPC calls of at most RPC_TIMEOUT_S each before a dead node
# fails it; stopping the gateway waits this long for it, within the node's STOP_TIMEOUT_S.
CLOSE_TIMEOUT_S = 12.0


@dataclass(frozen=True)
class AnchorPolicy:
    """When to anchor (every interval_s seconds or entries entries) and when a block is final
    (finality_depth confirmations, or None: the chain's `finalized` block tag)."""

    interval_s: float = DEFAULT_INTERVAL_S
    entries: int = DEFAULT_ENTRIES
    finality_depth: int | None = None
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S  # then the transaction is re-priced
    max_fee_wei: int | None = None  # the highest fee per gas a re-priced one may offer


@dataclass
class AnchorStatus:
    """What the service is doing, for logs, /metrics and tests."""

    node_up: bool = True
    rounds: int = 0
    failures: int = 0  # consecutive failed rounds (the backoff exponent)
    reorgs: int = 0  # included anchors whose block left the canonical chain
    repriced: int = 0  # stuck transactions signed again with higher fees
    last_error: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class AnchorService:
    """Anchors a CheckpointSource's checkpoints through an AnchorChain (module doc)."""

    def __init__(
        self,
        chain: AnchorChain,
        outbox: Outbox,
        source: CheckpointSource,
        policy: AnchorPolicy | None = None,
        *,
        poll_s: float = POLL_S,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        """Compose; nothing is asked of the chain until the first round."""
        self.chain = chain
        self.outbox = outbox
        self.source = source
        self.policy = policy or AnchorPolicy()
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.status = AnchorStatus()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="anchor")
        self._chain_checked = False

    # ---- the background task -----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds until stop is set: every poll_s after a good round, with exponential
        backoff after a failed one. Never raises but CancelledError."""
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                delay = self.poll_s
                try:
                    await loop.run_in_executor(self._executor, self.step)
                    self._recovered()
                except Exception as exc:
                    delay = self._failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Wait up to timeout_s for a round in flight, then close the outbox (if the round is
        still stuck on a dead node, the outbox is left to the process exit: it is durable)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        try:
            await asyncio.wait_for(asyncio.to_thread(self._executor.shutdown, True), timeout_s)
        except TimeoutError:
            log.warning("anchoring: a round is still waiting on the chain node; not waiting")
            return
        self.outbox.close()

    def _recovered(self) -> None:
        """Note a good round (logging once when the node answers again)."""
        if not self.status.node_up:
            log.info("anchoring: the chain node answers again")
        self.status.node_up = True
        self.status.failures = 0
        self.status.rounds += 1

    def _failed(self, exc: Exception) -> float:
        """Note a failed round; return the backoff delay before the next one."""
        self.status.failures += 1
        self.status.last_error = str(exc)
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self.status.failures - 1))
        if isinstance(exc, NodeDown):
            if self.status.node_up:
                log.warning("anchoring: %s; retrying with backoff", exc)
            self.status.node_up = False
        else:
            log.error("anchoring round failed (retry in %.0f s): %s", delay, exc, exc_info=exc)
        return delay

    # ---- one round (worker thread) -----------------------------------------------------

    def step(self) -> None:
        """Run one round (module doc). Raises NodeDown, AnchorError ("wrong-chain",
        "not-submitter", "unknown-head")."""
        if not self._chain_checked:  # a wrong chain or contract is refused before any signing
            self.chain.chain_id()
            if self.chain.submitter() != self.chain.account.address:
                raise AnchorError(
                    "not-submitter", f"the contract takes anchors from {self.chain.submitter()}, "
                    f"not from this account {self.chain.account.address}",
                )  # fmt: skip
            self._chain_checked = True
        self._plan()
        final: list[int] = []  # the final block number, read at most once per round
        waiting = False  # an earlier transaction is still unconfirmed: later ones wait
        for anchor in self.outbox.open_anchors():
            if anchor.state == PENDING and not waiting:
                waiting = self._send(anchor)
            elif anchor.state == SENT:
                waiting = not self._poll_sent(anchor) or waiting
                anchor = self.outbox.get(anchor.id)
            if anchor.state == INCLUDED:  # also one just included: it may be final at once
                waiting = self._check_included(anchor, final) or waiting
        self.status.counts = self.outbox.counts()

    def _plan(self) -> None:
        """Add the newest checkpoint as pending if the policy says so (module doc, 1)."""
        target = self.source.newest()
        if target is None:
            return
        if any(a.state in (PENDING, SENT) for a in self.outbox.open_anchors()):
            return
        last = self.outbox.newest(target.origin)
        if last is not None and last.head.size >= target.head.size:
            return
        due = (
            last is None
            or target.head.size - last.head.size >= self.policy.entries
            or time.time() - last.created_s >= self.policy.interval_s
        )
        if due and self.outbox.add(target.origin, target.head, target.note) is not None:
            log.info("anchoring: checkpoint of size %d is pending", target.head.size)

    def _chain_head(self, anchor: Anchor) -> Head | None:
        """Return the head the contract holds for anchor's origin (None: no anchor yet). Raises
        AnchorError("unknown-head") if it is neither in the outbox nor in the recent events."""
        stored = self.chain.stored(anchor.origin)
        if stored == ZERO32:
            return None
        for other in self.outbox.anchors(anchor.origin):
            if other.state != SUPERSEDED and commitment(other.head) == stored:
                return other.head
        for head, _tx in reversed(self.chain.anchored(anchor.origin, LOG_LOOKBACK_BLOCKS)):
            if commitment(head) == stored:
                return head
        raise AnchorError(
            "unknown-head", f"the contract holds a head of {anchor.origin} that is neither in the "
            f"outbox nor in the last {LOG_LOOKBACK_BLOCKS} blocks' events",
        )  # fmt: skip

    def _send(self, anchor: Anchor) -> bool:
        """Sign, store and broadcast a pending anchor; return True if a transaction is now in
        flight (later pending rows wait for it)."""
        prev = self._chain_head(anchor)
        if prev is not None and prev.size >= anchor.head.size:
            if prev == anchor.head:
                return self._adopt(anchor)
            self.outbox.mark_superseded(anchor.id, f"the chain holds size {prev.size}")
            return False
        proof = self.source.consistency(prev.size, anchor.head.size) if prev and prev.size else []
        try:
            raw = self.chain.send_anchor(anchor.origin, prev, anchor.head, proof)
        except AnchorRefused as exc:
            self._retry_or_give_up(anchor, f"refused: {exc.code}")
            log.error("anchoring: the contract refuses size %d: %s", anchor.head.size, exc)
            return False
        tx_hash = _tx_hash(raw)
        self.outbox.mark_sent(anchor.id, prev.size if prev else 0, tx_hash, raw)
        self.chain.broadcast(raw)
        log.info("anchoring: size %d sent in 0x%s", anchor.head.size, tx_hash.hex())
        return True

    def _adopt(self, anchor: Anchor) -> bool:
        """The chain already holds this anchor (a transaction sent before the outbox recorded
        it): take its transaction from the chain's events; return True if found."""
        for head, tx_hash in self.chain.anchored(anchor.origin, LOG_LOOKBACK_BLOCKS):
            if head == anchor.head:
                self.outbox.mark_sent(anchor.id, 0, tx_hash, b"")
                return True
        self.outbox.mark_superseded(anchor.id, "anchored by a transaction no longer found")
        return False

    def _retry_or_give_up(self, anchor: Anchor, why: str) -> None:
        """Move the row back to pending, or to superseded after MAX_ATTEMPTS."""
        if anchor.attempts + 1 >= MAX_ATTEMPTS:
            self.outbox.mark_superseded(anchor.id, why)
        else:
            self.outbox.mark_pending(anchor.id, why)

    def _poll_sent(self, anchor: Anchor) -> bool:
        """Record a sent anchor's receipt if there is one; re-broadcast a transaction the node
        lost. Return True if the row is settled (included, or back to pending)."""
        assert anchor.tx_hash is not None
        receipt = self.chain.receipt(anchor.tx_hash)
        if receipt is None:
            if not anchor.raw_tx:
                self.outbox.mark_pending(anchor.id, "the adopted transaction is gone")
                return True
            underpriced = False
            if not self.chain.known(anchor.tx_hash):
                try:
                    self.chain.broadcast(anchor.raw_tx)
                except AnchorError as exc:
                    if exc.code == "nonce-used":
                        self.outbox.mark_pending(anchor.id, "its nonce was used by another")
                        return True
                    if exc.code != "underpriced":
                        raise
                    underpriced = True  # the node will not even hold it at these fees
            if underpriced or time.time() - anchor.updated_s >= self.policy.stuck_after_s:
                self._reprice(anchor)
            return False
        if receipt["status"] != 1:
            self._retry_or_give_up(anchor, "the transaction reverted")
            return True
        number, block_hash = int(receipt["blockNumber"]), bytes(receipt["blockHash"])
        self.outbox.mark_included(anchor.id, number, block_hash, int(receipt["gasUsed"]))
        log.info("anchoring: size %d included in block %d", anchor.head.size, number)
        return True

    def _reprice(self, anchor: Anchor) -> None:
        """Replace a stuck transaction (or one the node refuses at its fees) by the same one with
        higher fees (chain.reprice), stored before it is broadcast as the first was. If the
        first is mined after all, the replacement's nonce is taken: _poll_sent then plans again
        and adopts the anchor the chain holds (_adopt). At the fee cap the row waits as it is
        (logged)."""
        assert anchor.raw_tx and anchor.tx_hash is not None
        raw = self.chain.reprice(anchor.raw_tx, self.policy.max_fee_wei)
        if raw is None:
            log.warning(
                "anchoring: size %d is stuck in 0x%s at the fee cap (%s wei)",
                anchor.head.size, anchor.tx_hash.hex(), self.policy.max_fee_wei,
            )  # fmt: skip
            return
        tx_hash = _tx_hash(raw)
        self.outbox.mark_sent(anchor.id, anchor.prev_size or 0, tx_hash, raw)
        self.status.repriced += 1
        log.warning(
            "anchoring: size %d stuck in 0x%s for %.0f s: sent again with higher fees in 0x%s",
            anchor.head.size, anchor.tx_hash.hex(), time.time() - anchor.updated_s, tx_hash.hex(),
        )  # fmt: skip
        with contextlib.suppress(AnchorError):  # still underpriced: the next round prices up
            self.chain.broadcast(raw)

    def _check_included(self, anchor: Anchor, final: list[int]) -> bool:
        """Send an included anchor whose block left the chain again; finalize one whose block
        is final (final caches the final block number for the round). Return True if it was
        dropped (it is in flight again: later anchors wait for it)."""
        assert anchor.block_number is not None and anchor.tx_hash is not None
        receipt = self.chain.receipt(anchor.tx_hash)
        canonical = self.chain.block_hash(anchor.block_number)
        if (
            receipt is None
            or bytes(receipt["blockHash"]) != anchor.block_hash
            or canonical != anchor.block_hash
        ):
            log.warning(
                "anchoring: a reorg dropped size %d from block %d; sending it again",
                anchor.head.size,
                anchor.block_number,
            )
            self.status.reorgs += 1
            self.outbox.mark_dropped(anchor.id)
            self._poll_sent(self.outbox.get(anchor.id))
            return True
        if not final:
            final.append(self.chain.final_number(self.policy.finality_depth))
        if anchor.block_number <= final[0]:
            self._finalize(anchor)
        return False

    def _finalize(self, anchor: Anchor) -> None:
        """Build, self-check and store the evidence of a final anchor."""
        assert anchor.tx_hash is not None
        evidence = build_evidence(self.chain.w3, self.chain.address, anchor.tx_hash)
        checkpoint = parse_checkpoint(parse_note(anchor.note)[0])
        failed = [c for c in verify_anchor_evidence(evidence, checkpoint) if not c[1]]
        if failed:
            raise AnchorError("bad-evidence", f"the evidence of size {anchor.head.size}: {failed}")
        self.outbox.mark_final(anchor.id, evidence)
        log.info("anchoring: size %d is final", anchor.head.size)

    def describe(self) -> dict[str, Any]:
        """Return the status as a JSON-able dict."""
        s = self.status
        return {
            "node_up": s.node_up,
            "rounds": s.rounds,
            "failures": s.failures,
            "reorgs": s.reorgs,
            "repriced": s.repriced,
            "last_error": s.last_error,
            "anchors": dict(s.counts),
        }


def _tx_hash(raw_tx: bytes) -> bytes:
    """Return the hash of a signed raw transaction (keccak256 of its bytes)."""
    return keccak(raw_tx)


def open_service(settings: Any, source: CheckpointSource) -> AnchorService | None:
    """Return the AnchorService gateway Settings configure (anchor_rpc_url set), else None.

    Loads the key (AnchorError "bad-key-file") and opens data_dir/anchor.db; asks nothing of
    the chain (the first round checks the chain id, so a node that is down delays nothing).
    """
    if not settings.anchor_rpc_url:
        return None
    from gateway.anchor.chain import load_key  # here: the key file is read only when anchoring
    from gateway.anchor.outbox import OUTBOX_FILE

    chain = AnchorChain(
        settings.anchor_rpc_url,
        settings.anchor_contract,
        load_key(settings.anchor_key_path),
        settings.anchor_chain_id,
    )
    outbox = Outbox(settings.data_dir / OUTBOX_FILE, settings.anchor_chain_id, chain.address)
    cap = settings.anchor_max_fee_gwei
    policy = AnchorPolicy(
        settings.anchor_interval_s,
        settings.anchor_entries,
        settings.anchor_finality_depth,
        settings.anchor_stuck_after_s,
        None if cap is None else int(cap * 10**9),
    )
    return AnchorService(chain, outbox, source, policy, poll_s=settings.anchor_poll_s)
