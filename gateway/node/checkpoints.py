"""The checkpoints view: each recent checkpoint's cosignatures, its anchor and what replicas say.

Read by GET /v1/checkpoints and GET /v1/anchors (gateway/api/routes/checkpoints.py) for the
dashboard's checkpoint panel (docs/dashboard.md). It composes what other parts already hold:
the witness client's collected cosignatures checked against the policy
(gateway.publish.witness, `compose`), the anchoring outbox (gateway.anchor.outbox) with the
chain's latest and final block numbers, and each configured replica's own newest verified
checkpoint (settings `replica_urls`, docs/replica.md).

Replica agreement is decided here, not by the replica: a replica at tree size M agrees with a
checkpoint of size N <= M when the checkpoint it verified at M has exactly the text of the one
this gateway signed at M (origin, size, root, state line) and it raised no alarm; the replica
itself verified that its tree at M extends every earlier tree it saw (docs/replica.md). N > M is
"behind". The gateway fetches the replicas (not the page): the page is the gateway's own code,
so a verdict drawn in the browser would be no more independent, and fetching other origins from
it would need CORS on the replica and a wider Content-Security-Policy on the dashboard. A
participant checks its replica's /v1/replica directly; the view links to it.

Network reads (chain, replicas) are cached for REFRESH_S and done at most one at a time, so a
client polling the route costs the chain node and the replicas at most one request each per
REFRESH_S; a node or replica that does not answer within its timeout is reported as such.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from gateway.errors import ProofError
from gateway.ledger.note import parse_checkpoint, parse_note
from gateway.node.reads import redact_urls

if TYPE_CHECKING:
    from gateway.anchor.outbox import Anchor
    from gateway.node.lifecycle import Node

log = logging.getLogger("edgeseal.checkpoints")

DEFAULT_LIMIT = 10  # checkpoints per answer; the dashboard shows the newest ten
MAX_LIMIT = 64  # why: the witness client caches the cosignatures of 64 recent sizes
# why: the dashboard polls every 2 s; fresher numbers would cost requests, not show more
REFRESH_S = 2.0
# why: a chain node or a replica on a LAN answers in milliseconds; a stalled one must not hold a
# dashboard request longer than a couple of polls
FETCH_TIMEOUT_S = 3.0
MAX_REPLICA_ANSWER_BYTES = 64 * 1024
KEPT_ANCHORS = (
    4 * MAX_LIMIT
)  # why: enough to fill MAX_LIMIT rows even with superseded ones  # why: /v1/replica and a checkpoint are under 4 KiB


@dataclass
class ReplicaSeen:
    """What one replica last said: its verified checkpoint text and size, alarms, or an error."""

    url: str
    size: int | None = None
    body: str = ""
    alarms: int = 0
    error: str = ""
    at: float = 0.0  # time.monotonic() of the fetch (0: never)


@dataclass
class ChainSeen:
    """The chain's latest and final block numbers as last read, or the error."""

    latest: int | None = None
    final: int | None = None
    error: str = ""
    at: float = 0.0


def checkpoint_body(note: bytes | str) -> str:
    """Return the checkpoint text of a signed note (everything before the blank line)."""
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    return text.split("\n\n", 1)[0] + "\n"


class CheckpointsView:
    """The composed view over one node (module doc). Use from the node's event loop."""

    def __init__(self, node: Node, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """Read node's ledger, witness client and anchor service; replicas from its settings."""
        self.node = node
        self.replica_urls: list[str] = list(getattr(node.settings, "replica_urls", []))
        self._transport = transport
        self._replicas = {url: ReplicaSeen(url) for url in self.replica_urls}
        self._chain = ChainSeen()
        self._lock = asyncio.Lock()  # one refresh at a time
        self._anchor_key: tuple[tuple[str, int], ...] | None = None  # outbox counts last read
        self._anchors: dict[int, Anchor] = {}  # the newest outbox rows of our origin, by id

    # ---- network reads, cached -------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read the chain's block numbers and every replica if older than REFRESH_S (one
        refresh at a time; concurrent callers wait for it). Never raises for a peer's failure."""
        async with self._lock:
            now = time.monotonic()
            jobs = []
            if self.node.anchor is not None and now - self._chain.at >= REFRESH_S:
                jobs.append(self._read_chain())
            stale = [r for r in self._replicas.values() if now - r.at >= REFRESH_S]
            if stale:
                jobs.append(self._read_replicas(stale))
            if jobs:
                await asyncio.gather(*jobs)

    async def _read_chain(self) -> None:
        """Read the latest and final block numbers (in a thread: web3 blocks)."""
        anchor = self.node.anchor
        assert anchor is not None
        chain, depth = anchor.chain, anchor.policy.finality_depth
        seen = ChainSeen(at=time.monotonic())
        try:
            latest, final = await asyncio.wait_for(
                asyncio.to_thread(lambda: (chain.w3.eth.block_number, chain.final_number(depth))),
                FETCH_TIMEOUT_S,
            )
            seen.latest, seen.final = int(latest), int(final)
        except Exception as exc:  # NodeDown, a timeout: shown, retried after REFRESH_S
            seen.error = redact_urls(f"{type(exc).__name__}: {exc}")  # an RPC URL holds keys
            seen.latest, seen.final = self._chain.latest, self._chain.final
        self._chain = seen

    async def _read_replicas(self, stale: list[ReplicaSeen]) -> None:
        """Fetch /v1/replica and /v1/checkpoint of each stale replica."""
        async with httpx.AsyncClient(
            transport=self._transport, timeout=FETCH_TIMEOUT_S, follow_redirects=False
        ) as client:
            await asyncio.gather(*(self._read_replica(client, r.url) for r in stale))

    async def _read_replica(self, client: httpx.AsyncClient, url: str) -> None:
        """Record what the replica at url says (ReplicaSeen), or why it could not be read."""
        seen = ReplicaSeen(url, at=time.monotonic())
        try:
            status = await _get(client, url + "/v1/replica")
            info = status.json()
            note = (await _get(client, url + "/v1/checkpoint")).text
            seen.body = checkpoint_body(note)
            seen.size = parse_checkpoint(seen.body).size
            seen.alarms = len(info.get("alarms") or [])
        except (httpx.HTTPError, ValueError, ProofError, AttributeError, TypeError) as exc:
            seen.error = f"{type(exc).__name__}: {exc}"[:300]
        self._replicas[url] = seen

    # ---- the views -------------------------------------------------------------------------

    async def checkpoints(self, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """Return the newest `limit` checkpoints known to the witnesses or the anchor outbox (and
        the newest signed one), newest first, each with cosignatures, anchor and replicas."""
        await self.refresh()
        led = self.node.reads.ledger()
        sizes: set[int] = set()
        with contextlib.suppress(ProofError):  # none signed yet
            sizes.add(parse_checkpoint(parse_note(led.checkpoint())[0]).size)
        witnesses = self.node.witnesses
        if witnesses is not None:
            sizes.update(s for s, _b, _l, _c in witnesses.store.recent(limit))
        anchors = self._anchors_by_size()
        sizes.update(sorted(anchors)[-limit:])
        rows = []
        for size in sorted(sizes, reverse=True)[:limit]:
            try:
                note = led.checkpoint_at(size)
            except ProofError:
                continue
            rows.append(self._row(size, note, anchors.get(size)))
        return {
            "tree_size": led.tree_size,
            "witnesses": [w.name for w in witnesses.policy.witnesses] if witnesses else None,
            "quorum_required": self._required(),
            "anchoring": self._anchoring(),
            "replicas": [self._replica_json(r) for r in self._replicas.values()],
            "checkpoints": rows,
        }

    async def anchors(self, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """Return the anchoring status and the newest `limit` outbox rows, newest first."""
        await self.refresh()
        rows = sorted(self._anchors_by_size().values(), key=lambda a: a.head.size, reverse=True)
        return {
            "anchoring": self._anchoring(),
            "anchors": [self._anchor_json(a) for a in rows[:limit]],
        }

    def _required(self) -> int | None:
        """Return the fewest cosignatures the policy's quorum needs (None without a policy)."""
        witnesses = self.node.witnesses
        if witnesses is None:
            return None
        quorum = witnesses.newest().quorum
        return quorum.required if quorum is not None else None

    def _anchors_by_size(self) -> dict[int, Anchor]:
        """Return {size: the outbox row} of this log's newest anchors that are not superseded.

        The outbox is read whole once (it has no "newest N" query); after that, only when its
        counts per state change, and then only the rows that were open and the open ones
        (final and superseded rows never change). The newest KEPT_ANCHORS rows are kept.
        """
        anchor = self.node.anchor
        if anchor is None:
            return {}
        from gateway.anchor.outbox import OPEN_STATES, SUPERSEDED

        outbox = anchor.outbox
        key = tuple(sorted(outbox.counts().items()))
        if key != self._anchor_key:
            origin = self.node.reads.ledger().origin
            if self._anchor_key is None:
                rows = outbox.anchors(origin)
            else:
                was_open = [a.id for a in self._anchors.values() if a.state in OPEN_STATES]
                rows = [outbox.get(i) for i in was_open] + outbox.open_anchors()
            for a in rows:
                if a.origin == origin:
                    self._anchors[a.id] = a
            for stale in sorted(self._anchors)[:-KEPT_ANCHORS]:
                del self._anchors[stale]
            self._anchor_key = key
        return {a.head.size: a for a in self._anchors.values() if a.state != SUPERSEDED}

    def _anchoring(self) -> dict[str, Any] | None:
        """Return the chain, contract, block numbers and service status (None: not anchoring)."""
        anchor = self.node.anchor
        if anchor is None:
            return None
        return {
            "chain_id": anchor.outbox.chain_id,
            "contract": anchor.chain.address,
            "latest_block": self._chain.latest,
            "final_block": self._chain.final,
            "finality": "finalized tag"
            if anchor.policy.finality_depth is None
            else f"{anchor.policy.finality_depth} blocks deep",
            "chain_error": self._chain.error,
            "status": self.node.reads.anchor_status(),  # errors with URLs cut (GET /v1/gateway)
        }

    def _anchor_json(self, a: Anchor) -> dict[str, Any]:
        """Return one anchor: state, transaction, block, confirmations, final."""
        latest = self._chain.latest
        confirmations = None
        if a.block_number is not None and latest is not None:
            confirmations = max(0, latest - a.block_number + 1)
        return {
            "size": a.head.size,
            "state": a.state,
            "tx_hash": "0x" + a.tx_hash.hex() if a.tx_hash else None,
            "block_number": a.block_number,
            "block_hash": "0x" + a.block_hash.hex() if a.block_hash else None,
            "confirmations": confirmations,
            "final": a.state == "final",
            "gas_used": a.gas_used,
            "error": redact_urls(a.error) if a.error else None,
        }

    def _row(self, size: int, note: bytes, anchor: Anchor | None) -> dict[str, Any]:
        """Return one checkpoint's row (module doc)."""
        body = checkpoint_body(note)
        cp = parse_checkpoint(body)
        row: dict[str, Any] = {
            "size": size,
            "root": base64.b64encode(cp.root).decode(),
            "cosignatures": None,
            "quorum": None,
            "anchor": self._anchor_json(anchor) if anchor is not None else None,
            "replicas": [self._agreement(r, size, body) for r in self._replicas.values()],
        }
        witnesses = self.node.witnesses
        if witnesses is not None:
            result = witnesses.compose(note).quorum
            assert result is not None  # a publisher always checks against its policy
            row["quorum"] = {"summary": result.summary, "ok": result.ok}
            row["cosignatures"] = [
                {
                    "witness": w.name,
                    "status": "valid"
                    if w.name in result.cosigned_by
                    else "invalid"
                    if w.name in result.invalid
                    else "missing",
                }
                for w in witnesses.policy.witnesses
            ]
        return row

    def _agreement(self, seen: ReplicaSeen, size: int, body: str) -> dict[str, Any]:
        """Return whether the replica agrees with the checkpoint of `size` (module doc):
        agrees, behind, disagrees, alarm or unreachable."""
        if seen.error or seen.size is None:
            status = "unreachable"
        elif seen.alarms:
            status = "alarm"
        elif seen.size < size:
            status = "behind"
        elif seen.size == size:
            status = "agrees" if seen.body == body else "disagrees"
        else:
            status = "agrees" if self._ours_at(seen.size) == seen.body else "disagrees"
        return {"url": seen.url, "status": status, "replica_size": seen.size}

    def _ours_at(self, size: int) -> str | None:
        """Return this gateway's checkpoint text at size, or None if it signed none there."""
        try:
            return checkpoint_body(self.node.reads.ledger().checkpoint_at(size))
        except ProofError:
            return None

    def _replica_json(self, seen: ReplicaSeen) -> dict[str, Any]:
        """Return what the replica said: URL, its verified size, whether it matches us."""
        ours = self._ours_at(seen.size) if seen.size is not None else None
        return {
            "url": seen.url,
            "size": seen.size,
            "alarms": seen.alarms,
            "matches": seen.size is not None and ours == seen.body and not seen.alarms,
            "error": seen.error,
        }


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """Return the 200 answer of GET url; raise httpx.HTTPError (or ValueError if too large)."""
    answer = await client.get(url)
    answer.raise_for_status()
    if len(answer.content) > MAX_REPLICA_ANSWER_BYTES:
        raise ValueError(f"{url}: answer over {MAX_REPLICA_ANSWER_BYTES} bytes")
    return answer
