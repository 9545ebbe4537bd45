"""Tiles: how the ledger stores every complete-subtree hash so a proof needs O(log n) reads.

A tile (tile_level L, tile_index N) holds the nodes of tree levels 8L .. 8L+7 that lie under
the level-(8L+8) node N, in post-order, i.e. in the order they become complete as leaves
are appended (RFC 9162 2.1.1 node hashes; the layout is ours, the idea is C2SP tlog-tiles
with the interior rows stored instead of recomputed):

- a full tile holds 256 + 128 + ... + 2 = 510 hashes (16,320 bytes); its own root is row 0
  of tile (L + 1, N // 256), so nothing is stored twice;
- a partial tile whose bottom row has `width` nodes holds 2*width - popcount(width) hashes,
  and is always a prefix of the full tile it will become: integration only appends bytes,
  and a reader holding a shorter copy can keep using it for smaller tree sizes.

TileBuilder is the one place that extends a tree: the ledger uses it to integrate and the
auditor uses it to recompute every tile from the entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from gateway.ledger.merkle import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX

# why: 256-wide tiles; 3 tile levels cover 2**24 leaves, one ~16 KB read each. Part of the
# stored format, not a tunable: the code below uses level >> 3 and level & 7 for it.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_HASHES = 2 * TILE_WIDTH - 2  # 510: rows of 256, 128, ..., 2 hashes
TILE_BYTES = TILE_HASHES * HASH_SIZE

TileKey = tuple[int, int]  # (tile_level, tile_index)
TileReader = Callable[[int, int], bytes | None]


def tile_hash_count(width: int) -> int:
    """Return how many hashes a tile stores when its bottom row has `width` (0..256) nodes."""
    if not 0 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} out of range")
    if width == TILE_WIDTH:
        return TILE_HASHES
    return 2 * width - width.bit_count()


def node_location(level: int, index: int) -> tuple[int, int, int]:
    """Return (tile_level, tile_index, byte_offset) where node (level, index) is stored.

    The node must be complete; the byte offset is into the tile's post-order blob.
    """
    tile_level = level >> 3
    row = level & 7
    first = index << row  # first bottom-row node (tree level 8 * tile_level) under this node
    tile_index = first >> TILE_HEIGHT
    done = ((index + 1) << row) - (tile_index << TILE_HEIGHT)  # bottom nodes when complete
    trailing = (done & -done).bit_length() - 1
    position = 2 * done - done.bit_count() - 1 - (trailing - row)
    return tile_level, tile_index, position * HASH_SIZE


def tile_position_node(tile_level: int, tile_index: int, position: int) -> tuple[int, int]:
    """Return the node (level, index) stored at hash `position` of a tile (node_location^-1)."""
    if not 0 <= position < TILE_HASHES:
        raise ValueError(f"tile position {position} out of range")
    # Walk the post-order: find the bottom-row count whose completion emits this position.
    done = 1
    while 2 * done - done.bit_count() - 1 < position and done < TILE_WIDTH:
        done += 1
    if done == TILE_WIDTH:
        row = position - (2 * TILE_WIDTH - 1 - 1 - TILE_HEIGHT)
    else:
        last = 2 * done - done.bit_count() - 1
        trailing = (done & -done).bit_length() - 1
        row = trailing - (last - position)
    level = tile_level * TILE_HEIGHT + row
    index = (((tile_index << TILE_HEIGHT) + done) >> row) - 1
    return level, index


def tile_widths(size: int) -> list[tuple[int, int, int]]:
    """Return (tile_level, tile_index, width) of every partial tile of a tree of `size` leaves.

    These are the right-edge tiles that are not full; full tiles left of them never change.
    """
    out: list[tuple[int, int, int]] = []
    tile_level = 0
    while size >> (TILE_HEIGHT * tile_level):
        nodes = size >> (TILE_HEIGHT * tile_level)
        width = nodes & (TILE_WIDTH - 1)
        if width:
            out.append((tile_level, nodes >> TILE_HEIGHT, width))
        tile_level += 1
    return out


class TileBuilder:
    """Extends an RFC 9162 tree leaf by leaf and collects the tiles that changed.

    State: `size`, the frontier (roots of the complete subtrees of sizes given by the bits
    of `size`, largest first) and one buffer per tile level for the current partial tile.
    """

    def __init__(self) -> None:
        self.size = 0
        self.frontier: list[bytes] = []
        self._buffers: list[bytearray] = []
        self._tile_index: list[int] = []
        self._done: list[tuple[int, int, bytes]] = []
        self._dirty: set[int] = set()
        # node (TILE_HEIGHT, k) of the newest full level-0 tile k: the MTH of its 256 leaves
        # (a replica compares it with the signed tree's instead of hashing the leaves again)
        self.last_tile_node: bytes | None = None

    @classmethod
    def resume(cls, size: int, read_tile: TileReader) -> TileBuilder:
        """Return a builder continuing a stored tree of `size` leaves.

        read_tile(tile_level, tile_index) returns the stored tile blob or None. Reads only
        the partial right-edge tiles and the frontier nodes: O(log size) reads.
        Raises ValueError if a stored tile is missing or shorter than `size` implies.
        """
        b = cls()
        b.size = size
        top = 0
        while size >> (TILE_HEIGHT * top):
            top += 1
        b._buffers = [bytearray() for _ in range(top)]
        b._tile_index = [(size >> (TILE_HEIGHT * t)) >> TILE_HEIGHT for t in range(top)]
        for tile_level, tile_index, width in tile_widths(size):
            blob = read_tile(tile_level, tile_index)
            need = tile_hash_count(width) * HASH_SIZE
            if blob is None or len(blob) < need:
                raise ValueError(f"tile ({tile_level}, {tile_index}) is missing or short")
            b._buffers[tile_level] = bytearray(blob[:need])
        cache: dict[TileKey, bytes] = {}
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                index = (size >> level) - 1
                tile_level, tile_index, offset = node_location(level, index)
                key = (tile_level, tile_index)
                if key not in cache:
                    blob = read_tile(tile_level, tile_index)
                    if blob is None:
                        raise ValueError(f"tile {key} is missing")
                    cache[key] = blob
                h = cache[key][offset : offset + HASH_SIZE]
                if len(h) != HASH_SIZE:
                    raise ValueError(f"tile {key} is short")
                b.frontier.append(h)
        return b

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaves (given by their RFC 9162 2.1.1 leaf hashes) to the tree."""
        frontier = self.frontier
        buffers = self._buffers
        dirty = self._dirty
        sha256 = hashlib.sha256
        prefix = NODE_PREFIX
        size = self.size
        if not buffers:
            buffers.append(bytearray())
            self._tile_index.append(0)
        buf0 = buffers[0]
        dirty.add(0)
        top = 0
        for h in leaf_hashes:
            buf0 += h
            n = size
            size += 1
            if n & 1:
                level = 0
                while n & 1:
                    h = sha256(prefix + frontier.pop() + h).digest()
                    level += 1
                    n >>= 1
                    if level < TILE_HEIGHT:
                        buf0 += h
                    else:
                        if not level & 7:
                            if level == TILE_HEIGHT:
                                self.last_tile_node = h
                            self._complete((level >> 3) - 1)
                            if level >> 3 == len(buffers):
                                buffers.append(bytearray())
                                self._tile_index.append(0)
                            buf0 = buffers[0]
                        buffers[level >> 3] += h
                if level > top:
                    top = level
            frontier.append(h)
        dirty.update(range((top >> 3) + 1))
        self.size = size

    def _complete(self, tile_level: int) -> None:
        """Move the now-full tile at `tile_level` to the done list and start the next one."""
        blob = bytes(self._buffers[tile_level])
        assert len(blob) == TILE_BYTES, "a tile completed with the wrong number of hashes"
        self._done.append((tile_level, self._tile_index[tile_level], blob))
        self._buffers[tile_level] = bytearray()
        self._tile_index[tile_level] += 1

    def drain(self) -> list[tuple[int, int, bytes]]:
        """Return (tile_level, tile_index, blob) for every tile changed since the last drain.

        Full tiles come first in completion order, then the non-empty partial tiles.
        """
        out = self._done
        self._done = []
        for tile_level in sorted(self._dirty):
            buf = self._buffers[tile_level]
            if buf:
                out.append((tile_level, self._tile_index[tile_level], bytes(buf)))
        self._dirty = set()
        return out

    def partial_tiles(self) -> list[tuple[int, int, bytes]]:
        """Return (tile_level, tile_index, blob) of every non-empty partial tile right now."""
        return [
            (tile_level, self._tile_index[tile_level], bytes(buf))
            for tile_level, buf in enumerate(self._buffers)
            if buf
        ]

    def root(self) -> bytes:
        """Return the root hash of the tree at its current size (RFC 9162 2.1.1)."""
        if not self.frontier:
            return EMPTY_ROOT
        h = self.frontier[-1]
        for left in reversed(self.frontier[:-1]):
            h = hashlib.sha256(NODE_PREFIX + left + h).digest()
        return h
