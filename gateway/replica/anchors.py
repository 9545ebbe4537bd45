"""The replica's cross-check with the chain: every head the gateway anchored (gateway/anchor/)
must be a head of the tree the gateway served this replica.

Witnesses (`--policy`) keep the gateway from showing a replica a history they did not cosign;
without them the replica trusts the first checkpoint it sees. The anchor contract is a second
public record of the gateway's history: a gateway that anchored one tree and serves the replica
another has forked its log, and the replica can show it. `AnchorWatch.check` reads the
contract's Anchored events for the log's origin (the last LOG_LOOKBACK_BLOCKS blocks) and
compares each head no larger than the replica's verified tree with that tree: the root at the
anchored size (and, at the replica's own checkpoint size, the contract state hash). A head
beyond the replica's tree is checked once the replica holds it. A contradiction raises
Misbehaviour("anchor-fork") with evidence (gateway.replica.evidence) anyone can check offline.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from gateway.ledger import Ledger
from gateway.ledger.note import NoteVerifier, parse_checkpoint, parse_note
from gateway.replica import evidence
from gateway.replica.sync import Misbehaviour

# why: anchors come every anchor_interval_s (an hour by default) or 1,024 entries; one
# eth_getLogs every 30 s notices a new one soon without loading the participant's RPC node.
CHECK_EVERY_S = 30.0


@dataclass(frozen=True)
class AnchorRef:
    """Where the gateway anchors: a JSON-RPC URL of the participant's choosing, the chain id and
    the EdgesealAnchor contract address (the gateway's `anchor_*` settings)."""

    rpc_url: str
    chain_id: int
    contract: str


@dataclass
class AnchorView:
    """The last check (for /v1/replica): the newest anchored head seen, and whether every head
    no larger than the replica's tree agreed with it."""

    checked_at: float | None = None
    newest_size: int | None = None
    newest_tx: str | None = None
    checked_size: int | None = None  # the largest anchored size compared with our tree
    agrees: bool | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the view as JSON."""
        return dict(self.__dict__)


class AnchorWatch:
    """Reads the gateway's anchors and checks them against the replica's tree (module doc)."""

    def __init__(self, ref: AnchorRef, every_s: float = CHECK_EVERY_S) -> None:
        """Connect lazily (nothing is asked of the node here)."""
        # web3 is imported only by replicas that watch a chain
        from gateway.anchor.chain import AnchorChain
        from gateway.anchor.service import LOG_LOOKBACK_BLOCKS

        self.ref = ref
        self.every_s = every_s
        self.chain = AnchorChain(ref.rpc_url, ref.contract, None, ref.chain_id)
        self.lookback_blocks = LOG_LOOKBACK_BLOCKS
        self.view = AnchorView()
        self._next_s = 0.0

    def due(self) -> bool:
        """Return True when the next check is due (every every_s)."""
        return time.monotonic() >= self._next_s

    def check(self, reader: Ledger, held_note: bytes, verifier: NoteVerifier) -> None:
        """Compare the anchored heads of the log with the replica's verified tree (held_note is
        its newest checkpoint, reader its copy); raise Misbehaviour("anchor-fork") on one that
        contradicts it. Raises NodeDown and AnchorError ("wrong-chain") from the chain."""
        from gateway.anchor.evidence import checkpoint_head

        self._next_s = time.monotonic() + self.every_s
        self.chain.chain_id()  # a wrong chain id is refused before its events are read
        held = parse_checkpoint(parse_note(held_note)[0])
        held_head = checkpoint_head(held)  # what the gateway anchors for our checkpoint
        heads = self.chain.anchored(held.origin, self.lookback_blocks)
        view = AnchorView(checked_at=time.time())
        if heads:
            view.newest_size, view.newest_tx = heads[-1][0].size, heads[-1][1].hex()
        for head, tx_hash in heads:
            if head.size > held.size or head.size == 0:
                continue  # beyond our tree: checked once we hold it
            ours = held.root if head.size == held.size else reader.root(head.size)
            state_differs = head.size == held.size and head.state_hash != held_head.state_hash
            if ours != head.root or state_differs:
                proof = (
                    reader.prove_consistency(head.size, held.size) if head.size < held.size else []
                )
                doc = evidence.anchor_fork(
                    verifier, held_note, ours, proof, self._anchor_field(head, tx_hash)
                )
                what = "contract state" if ours == head.root else "root"
                detail = (
                    f"the gateway anchored size {head.size} (transaction 0x{tx_hash.hex()}) with "
                    f"another {what} than the tree it served this replica"
                )
                doc["detail"] = detail
                self.view = dataclasses.replace(view, checked_size=head.size, agrees=False)
                raise Misbehaviour("anchor-fork", detail, doc)
            view.checked_size = max(view.checked_size or 0, head.size)
        view.agrees = True if view.checked_size else None
        self.view = view

    def _anchor_field(self, head: Any, tx_hash: bytes) -> dict[str, Any]:
        return {
            "chain_id": self.ref.chain_id,
            "contract": self.chain.address,
            "tx_hash": "0x" + tx_hash.hex(),
            "size": head.size,
            "root": evidence.b64(head.root),
            "state_hash": head.state_hash.hex(),
        }
