"""The replica's sync step: from its verified checkpoint to the log's newest, verifying everything.

One `Syncer.step()` (c2sp.org/tlog-tiles client, RFC 9162):

1. GET /checkpoint; verify the gateway's signature with its vkey and, with a witness policy, the
   quorum of cosignatures (gateway.publish.policy). A note that fails is not the gateway's word
   (anyone can serve bytes): the step waits and tries again, no alarm.
2. Compare with the held checkpoint (size n, root r): a smaller tree must be a prefix of ours, the
   same size must have the same root (and the same state line), a larger tree must extend ours:
   its tiles (verified against its root, gateway.replica.tiles.TileTree) give its root at n and
   an RFC 9162 2.1.4 consistency proof. Otherwise: a fork.
3. For every entry bundle from n on: its entries' RFC 9162 2.1.1 leaf hashes must be the tree's
   (a full bundle's subtree hash is in the verified level-1 tile, so level-0 tiles are never
   fetched but the right edge's: half the requests); entries already stored by an interrupted
   step are checked the same way and only fetched again if they do not match. Stored in chunks (gateway.replica.store).
4. Replay the new entries through the contract engine (gateway.replica.replay): the log's event
   entries must be what the contracts emit, and the checkpoint's state line what they compute.
5. Commit: the checkpoint, its tiles and tree size in one transaction.

Misbehaviour (fork, state-conflict, tile-mismatch, state-mismatch, event-mismatch) raises
Misbehaviour with the evidence document (gateway.replica.evidence); the caller raises the alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gateway.errors import ContractError, ProofError
from gateway.ledger import Ledger, merkle
from gateway.ledger.merkle import HASH_SIZE
from gateway.ledger.note import (
    Checkpoint,
    NoteVerifier,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
)
from gateway.ledger.tiles import TILE_BYTES
from gateway.publish.policy import WitnessPolicy
from gateway.replica import evidence
from gateway.replica.client import TilesClient
from gateway.replica.replay import Replay
from gateway.replica.store import ReplicaStore
from gateway.replica.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileMismatch,
    TileRef,
    TileTree,
    bundle_for,
    decode_bundle,
    edge_tiles,
    leaf_hashes,
    tile_for,
)

log = logging.getLogger("edgeseal.replica")

# why: one SQLite commit (one fsync) per 4096 entries keeps the commit cost under 1% of the
# replay, and bounds what an interrupted step has to check again.
CHUNK_ENTRIES = 4096
# why: fetching bundles a few ahead overlaps the network round trips with the hashing and the
# replay; 8 bundles (2,048 entries, < 1 MB) is enough on a LAN.
PREFETCH_BUNDLES = 8
# why: two requests in flight hide a LAN's round trip; each fetch thread takes the GIL from the
# replay to parse its answer, and on loopback 1, 2 and 4 threads measured alike (noise), so two.
FETCH_WORKERS = 2


class Misbehaviour(Exception):
    """The gateway misbehaved: kind (evidence.KINDS), what happened, the evidence document."""

    def __init__(self, kind: str, detail: str, doc: dict[str, Any]) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.doc = doc


class NotTrusted(Exception):
    """The served checkpoint is not the gateway's (bad signature) or lacks the witness quorum."""


class _Restart(Exception):
    """Stored entries of an interrupted step do not match the log: drop them, start again."""


class Syncer:
    """Brings a replica store up to the log's newest checkpoint (module doc)."""

    def __init__(
        self,
        store: ReplicaStore,
        reader: Ledger,
        replay_factory: Callable[[], Replay],
        client: TilesClient,
        verifier: NoteVerifier,
        policy: WitnessPolicy | None = None,
    ) -> None:
        """store: the replica's file (written here); reader: a read-only Ledger over it (for
        proofs from our own tree); replay_factory: a fresh Replay (the caller's read model
        follows `self.replay`); client: the log's tiles; verifier: the gateway's key."""
        self.store = store
        self.reader = reader
        self.client = client
        self.verifier = verifier
        self.policy = policy
        self._replay_factory = replay_factory
        self.replay = replay_factory()
        self.builder = store.builder()
        self._builder_stale = False  # the builder holds hashes that failed verification
        self._feed_stored(store.tree_size)
        self._pool = ThreadPoolExecutor(FETCH_WORKERS, thread_name_prefix="edgeseal-replica-fetch")
        self._ahead: dict[TileRef, Future[bytes]] = {}

    def close(self) -> None:
        """Stop the fetch workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _feed_stored(self, size: int) -> None:
        """Replay the stored verified entries [0, size) (a restart: what the gateway does too)."""
        for start in range(0, size, CHUNK_ENTRIES):
            self.replay.feed(start, self.store.entries(start, min(size, start + CHUNK_ENTRIES)))

    def _reset(self) -> None:
        """Drop unverified stored entries and rebuild the tree and the replay at tree_size."""
        n = self.store.tree_size
        self.store.truncate(n)
        self.replay.close()
        self.replay = self._replay_factory()
        self.builder = self.store.builder()
        self._builder_stale = False
        self._feed_stored(n)

    # ---- one step ---------------------------------------------------------------------------

    def held(self) -> tuple[bytes | None, Checkpoint]:
        """Return (the held note or None, its checkpoint: size 0 and the empty root if none)."""
        note = self.store.checkpoint()
        if note is None:
            return None, Checkpoint(self.verifier.name, 0, merkle.EMPTY_ROOT)
        return note, parse_checkpoint(parse_note(note)[0])

    def fetch_checkpoint(self) -> tuple[bytes, Checkpoint]:
        """Return the log's newest checkpoint note, verified; raise NotTrusted if it is not."""
        note = self.client.checkpoint()
        try:
            cp = verify_checkpoint(note, self.verifier)
        except ProofError as exc:
            raise NotTrusted(f"the served checkpoint does not verify: {exc.message}") from None
        if self.policy is not None:
            result = self.policy.check(note)
            if not result.ok:
                raise NotTrusted(f"checkpoint {cp.size} lacks the witness quorum")
        return note, cp

    def step(self) -> int:
        """Sync to the log's newest checkpoint; return how many entries were added (0 if none).

        Raises Misbehaviour (evidence attached), NotTrusted, or client.Unavailable.
        """
        note, cp = self.fetch_checkpoint()
        held_note, held = self.held()
        if cp.size < held.size or (cp.size == held.size and held_note is not None):
            self._check_not_newer(note, cp, held_note, held)
            return 0
        tree = TileTree(cp.size, cp.root, self._fetch)
        try:
            self._check_extends(tree, note, held_note, held)
            try:
                self._extend(tree, note, cp)
            except _Restart:
                log.warning("entries stored by an interrupted sync do not match: fetching again")
                self._reset()
                self._extend(tree, note, cp)
        except TileMismatch as exc:
            raise self._tile_alarm(tree, note, exc, None) from None
        finally:
            self._ahead.clear()
        return cp.size - held.size

    def _check_not_newer(
        self, note: bytes, cp: Checkpoint, held_note: bytes | None, held: Checkpoint
    ) -> None:
        """A checkpoint no larger than ours: same tree (maybe more cosignatures), or a fork."""
        assert held_note is not None
        if cp.size == held.size:
            if cp.root != held.root:
                doc = evidence.fork(self.verifier, held_note, note, cp.root, [], "")
                raise _fork(doc, f"two roots for tree size {cp.size}")
            if evidence.state_lines(cp) != evidence.state_lines(held):
                detail = f"two contract states for tree size {cp.size}"
                doc = evidence.base("state-conflict", self.verifier, detail, [held_note, note])
                raise Misbehaviour("state-conflict", detail, doc)
            if _signature_count(note) > _signature_count(held_note):
                self.store.replace_note(cp.size, note)  # more cosignatures of the same tree
            return
        own_root = self.reader.root(cp.size)
        if own_root == cp.root:
            return  # an older checkpoint of our own tree (a stale cache): nothing to do
        proof = self.reader.prove_consistency(cp.size, held.size) if cp.size else []
        doc = evidence.fork(self.verifier, note, held_note, own_root, proof, "")
        raise _fork(doc, f"the log's tree of size {cp.size} is not a prefix of ours ({held.size})")

    def _check_extends(
        self, tree: TileTree, note: bytes, held_note: bytes | None, held: Checkpoint
    ) -> None:
        """Check the new tree's tiles against its root and its consistency with ours."""
        tree.check_edge()
        if held_note is None or held.size == 0:
            return
        prefix_root = tree.root_at(held.size)
        proof = tree.consistency(held.size)
        merkle.verify_consistency(held.size, tree.size, proof, prefix_root, tree.root)
        if prefix_root != held.root:
            doc = evidence.fork(self.verifier, held_note, note, prefix_root, proof, "")
            raise _fork(doc, f"the tree of size {tree.size} does not extend ours ({held.size})")

    # ---- entries ----------------------------------------------------------------------------

    def _fetch(self, ref: TileRef) -> bytes:
        """Return a tile or bundle as served (prefetched if it was asked for ahead)."""
        future = self._ahead.pop(ref, None)
        if future is not None:
            return future.result()
        return self.client.fetch(ref)

    def _prefetch(self, refs: list[TileRef]) -> None:
        for ref in refs:
            if ref not in self._ahead:
                self._ahead[ref] = self._pool.submit(self.client.fetch, ref)

    def _extend(self, tree: TileTree, note: bytes, cp: Checkpoint) -> None:
        """Verify, store and replay entries [builder.size, cp.size); commit the checkpoint."""
        size = cp.size
        # an interrupted step went past this (older) checkpoint, or a bad bundle reached it
        if self.builder.size > size or self._builder_stale:
            self._reset()
        applied = self.builder.size
        replay_error: ContractError | None = None
        stored = self.store.sequenced_size
        buffer: list[bytes] = []
        first, last = applied >> TILE_HEIGHT, (size - 1) >> TILE_HEIGHT
        for k in range(first, last + 1):
            self._prefetch_from(k + 1, min(last, k + PREFETCH_BUNDLES), stored, size)
            ref = bundle_for(k, size)
            start, end = k * TILE_WIDTH, k * TILE_WIDTH + ref.count
            skip = applied - start  # entries of this bundle the tree has already
            entries = self._bundle_entries(tree, note, ref, stored, skip)
            new = entries[skip:]
            if replay_error is None:
                try:
                    self.replay.feed(applied, new)
                except ContractError as exc:  # reported once every entry is verified and stored
                    replay_error = exc
            buffer += new[max(0, stored - applied) :]
            applied = end
            if len(buffer) >= CHUNK_ENTRIES:
                stored = self._flush(buffer, stored)
        stored = self._flush(buffer, stored)
        if self.builder.root() != cp.root:  # verified tile by tile above: cannot happen
            raise RuntimeError("the rebuilt tree does not have the verified root")
        if replay_error is not None:
            raise self._replay_alarm("event-mismatch", note, cp, replay_error.message)
        line = self.replay.state_line()
        if evidence.state_lines(cp) != [line]:
            detail = f"checkpoint {cp.size} says {evidence.state_lines(cp)}, replay gives {line}"
            raise self._replay_alarm("state-mismatch", note, cp, detail)
        tiles = [t for t in self.builder.drain() if len(t[2]) == TILE_BYTES]
        self.store.commit_checkpoint(size, note, tiles + self.builder.partial_tiles())

    def _prefetch_from(self, k0: int, k1: int, stored: int, size: int) -> None:
        refs: list[TileRef] = []
        for k in range(k0, k1 + 1):
            bref = bundle_for(k, size)
            if k * TILE_WIDTH + bref.count > stored:
                refs.append(bref)
        self._prefetch(refs)

    def _bundle_entries(
        self, tree: TileTree, note: bytes, ref: TileRef, stored: int, skip: int
    ) -> list[bytes]:
        """Return bundle ref's entries (from the store if it holds them all), those from skip on
        verified and added to the builder (_add_verified). Raises _Restart (stored ones
        differ) or Misbehaviour."""
        start = ref.index * TILE_WIDTH
        if start + ref.count <= stored:
            entries = self.store.entries(start, start + ref.count)
            if not self._add_verified(tree, ref, entries, skip):
                raise _Restart()
            return entries
        data = self._fetch(ref)
        try:
            entries = decode_bundle(data, ref.count)
        except ProofError as exc:
            raise self._tile_alarm(tree, note, exc, (ref, data)) from None
        if not self._add_verified(tree, ref, entries, skip):
            exc = ProofError("bundle-mismatch", f"{ref.path()} does not hash to the signed tree")
            raise self._tile_alarm(tree, note, exc, (ref, data))
        return entries

    def _add_verified(self, tree: TileTree, ref: TileRef, entries: list[bytes], skip: int) -> bool:
        """Add the RFC 9162 2.1.1 leaf hashes of bundle ref's entries [skip:] (the tree has the
        ones before) to the builder; return False if they are not the signed tree's.

        The partial bundle is checked before it is added (TileTree.bundle_matches: the right
        edge's level-0 tile). A full bundle N completes node (8, N) in the builder, which must be
        the verified hash in the level-1 tile: the rule of bundle_matches without hashing the
        leaves twice, and no level-0 tile is fetched. On False the builder holds unverified
        hashes: the next _extend starts from the store again.
        """
        if ref.width is not None:
            hashes = leaf_hashes(entries)
            if not tree.bundle_matches(ref, hashes):
                return False
            self.builder.extend(
                hashes[i : i + HASH_SIZE] for i in range(skip * HASH_SIZE, len(hashes), HASH_SIZE)
            )
            return True
        hashes = leaf_hashes(entries[skip:])
        self.builder.extend(hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE))
        if self.builder.last_tile_node != tree.node_at(TILE_HEIGHT, ref.index):
            self._builder_stale = True
            return False
        return True

    def _flush(self, buffer: list[bytes], stored: int) -> int:
        """Store buffered verified entries and the full tiles done so far; return the new
        stored size."""
        if not buffer:
            return stored
        tiles = [t for t in self.builder.drain() if len(t[2]) == TILE_BYTES]
        self.store.add_entries(stored, buffer, tiles)
        stored += len(buffer)
        buffer.clear()
        return stored

    # ---- evidence ---------------------------------------------------------------------------

    def _tile_alarm(
        self,
        tree: TileTree,
        note: bytes,
        exc: ProofError,
        bundle: tuple[TileRef, bytes] | None,
    ) -> Misbehaviour:
        """Return the tile-mismatch Misbehaviour: the served tiles that show it."""
        failed: TileRef | None = bundle[0] if bundle else getattr(exc, "ref", None)
        keep = set(edge_tiles(tree.size))
        keep.update(r for r in tree.tiles if r.level)
        if failed is not None and failed.level is not None:
            keep.add(failed)
        if bundle is not None:
            keep.add(tile_for(0, bundle[0].index * TILE_WIDTH + bundle[0].count - 1, tree.size))
        doc = evidence.base("tile-mismatch", self.verifier, exc.message, [note])
        doc["tiles"] = {r.path(): evidence.b64(d) for r, d in tree.tiles.items() if r in keep}
        doc["failed"] = "edge" if failed is None else failed.path()
        if bundle is not None:
            doc["bundle"] = {"path": bundle[0].path(), "base64": evidence.b64(bundle[1])}
        return Misbehaviour("tile-mismatch", exc.message, doc)

    def _replay_alarm(self, kind: str, note: bytes, cp: Checkpoint, detail: str) -> Misbehaviour:
        """Return a state-/event-mismatch Misbehaviour carrying every entry [0, cp.size)."""
        entries = self.store.entries(0, cp.size)
        doc = evidence.base(kind, self.verifier, detail, [note])
        doc["entries"] = evidence.entries_field(entries)
        doc["expected_state_line"] = self.replay.state_line()
        return Misbehaviour(kind, detail, doc)


def _signature_count(note: bytes) -> int:
    """Return how many signature lines a (verified) note has."""
    return len(parse_note(note)[1])


def _fork(doc: dict[str, Any], detail: str) -> Misbehaviour:
    doc["detail"] = detail
    return Misbehaviour("fork", detail, doc)
