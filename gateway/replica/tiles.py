"""C2SP tlog-tiles codec: tile and entry-bundle paths, entry bundles, and a Merkle tree read from
tiles. Pure (no I/O): the gateway's tile routes, the replica and the evidence checker share it.

c2sp.org/tlog-tiles:

- tile `<prefix>/tile/<L>/<N>[.p/<W>]`: L in 0..63 (decimal, no leading zero); N the tile index
  in zero-padded 3-digit path elements, all but the last prefixed with "x" (1234067 is
  `x001/x234/067`); `.p/<W>` marks a partial tile of W (1..255) hashes. A full tile is 256
  hashes of 32 bytes (8,192 bytes): hash i of tile (L, N) is MTH(D[(N*256+i)*256**L :
  (N*256+i+1)*256**L]) (RFC 6962 / RFC 9162 2.1.1 hashes), i.e. node (8L, N*256+i).
- entry bundle `<prefix>/tile/entries/<N>[.p/<W>]`: entries N*256 .. N*256+W-1, each as a
  big-endian uint16 length and the entry bytes; entry i hashes (RFC 9162 2.1.1 leaf hash) to
  hash i of level-0 tile N.
- the partial tile at level L of a tree of size s has floor(s / 256**L) mod 256 hashes; empty
  tiles are never served.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.errors import ProofError, RequestError
from gateway.ledger import merkle
from gateway.ledger.merkle import HASH_SIZE, NODE_PREFIX
from gateway.ledger.tiles import tile_widths

TILE_HEIGHT = 8  # tree levels per tile level (c2sp.org/tlog-tiles: 256-wide tiles)
TILE_WIDTH = 1 << TILE_HEIGHT
FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE  # 8,192
MAX_TILE_LEVEL = 63  # c2sp.org/tlog-tiles: "between 0 and 63"
# why: a tile index beyond 2**62 / 256 cannot exist in a SQLite-backed log (int64 rowids), so
# a path naming one is refused before any arithmetic; 7 groups of 3 digits cover that range.
MAX_INDEX_GROUPS = 7
MAX_ENTRY_BYTES = 0xFFFF  # an entry's length is a big-endian uint16 in a bundle

_GROUP = re.compile(r"[0-9]{3}")  # used with fullmatch: "$" would accept a trailing newline
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")


@dataclass(frozen=True)
class TileRef:
    """One tile or entry bundle: level (None for an entry bundle), index, width (None: full)."""

    level: int | None
    index: int
    width: int | None = None

    @property
    def count(self) -> int:
        """Return how many hashes (or entries) the resource holds: width, or 256 when full."""
        return TILE_WIDTH if self.width is None else self.width

    def path(self) -> str:
        """Return the resource path without prefix, e.g. "tile/0/x001/234.p/17"."""
        head = "tile/entries" if self.level is None else f"tile/{self.level}"
        suffix = "" if self.width is None else f".p/{self.width}"
        return f"{head}/{encode_index(self.index)}{suffix}"


def encode_index(n: int) -> str:
    """Return N as c2sp.org/tlog-tiles path elements: "x001/x234/067" for 1234067."""
    if n < 0:
        raise ValueError(f"tile index {n} is negative")
    text = f"{n % 1000:03d}"
    n //= 1000
    while n:
        text = f"x{n % 1000:03d}/{text}"
        n //= 1000
    return text


def _bad(message: str) -> RequestError:
    return RequestError("bad-tile-path", message)


def parse_tile_path(path: str) -> TileRef:
    """Return the TileRef of a path after "tile/": "<L>/<N>[.p/<W>]" or "entries/<N>[.p/<W>]".

    Strict (c2sp.org/tlog-tiles): L in 0..63 without leading zeroes, N canonical (what
    encode_index gives: no "x000" leading group), W in 1..255 without leading zeroes. Raises
    RequestError("bad-tile-path") for anything else; never another exception.
    """
    if len(path) > 64 or not path.isascii():
        raise _bad("not a tile path")
    parts = path.split("/")
    head, rest = parts[0], parts[1:]
    if head == "entries":
        level: int | None = None
    elif _LEVEL.fullmatch(head) and int(head) <= MAX_TILE_LEVEL:
        level = int(head)
    else:
        raise _bad("the tile level must be 0..63 or 'entries'")
    width: int | None = None
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise _bad("a partial tile's width must be 1..255")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    if not 1 <= len(rest) <= MAX_INDEX_GROUPS:
        raise _bad("the tile index is missing or too long")
    digits = ""
    for i, group in enumerate(rest):
        last = i == len(rest) - 1
        if not last:
            if not group.startswith("x"):
                raise _bad("all but the last index element start with 'x'")
            group = group[1:]
        if not _GROUP.fullmatch(group):
            raise _bad("index elements are 3 digits")
        digits += group
    index = int(digits)
    if encode_index(index) != "/".join(rest):
        raise _bad("the tile index is not canonical (leading x000 element)")
    return TileRef(level, index, width)


# ---- entry bundles ---------------------------------------------------------------------------


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Return the entry bundle of entries: each as a big-endian uint16 length and its bytes.

    Raises ValueError for an entry longer than 65,535 bytes (it cannot be encoded).
    """
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise ValueError("an entry longer than 65535 bytes cannot be put in a bundle")
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_bundle(data: bytes, count: int) -> list[bytes]:
    """Return the `count` entries of an entry bundle; ProofError("bad-bundle") unless data holds
    exactly count length-prefixed entries. Reads at most `count` prefixes, whatever data holds."""
    out: list[bytes] = []
    append = out.append
    pos, end = 0, len(data)
    for i in range(count):
        if pos + 2 > end:
            where = "inside a length prefix" if pos < end else f"after {i} entries, not {count}"
            raise ProofError("bad-bundle", f"the bundle ends {where}")
        n = (data[pos] << 8) | data[pos + 1]
        pos += 2 + n
        if pos > end:
            raise ProofError("bad-bundle", "the bundle ends inside an entry")
        append(data[pos - n : pos])
    if pos != end:
        raise ProofError("bad-bundle", f"the bundle holds more than {count} entries")
    return out


def leaf_hashes(entries: Iterable[bytes]) -> bytes:
    """Return the concatenated RFC 9162 2.1.1 leaf hashes of entries (a level-0 tile's bytes)."""
    sha256 = hashlib.sha256
    return b"".join(sha256(b"\x00" + e).digest() for e in entries)


# ---- which tiles a tree has ------------------------------------------------------------------


def tile_for(level: int, index: int, size: int) -> TileRef:
    """Return the tile of a tree of `size` leaves holding hash `index` of tile level `level`
    (node (8*level, index)): the full tile if the tree completes it, else its partial tile.

    Precondition: the node is complete in the tree (index < size >> (8 * level)).
    """
    nodes = size >> (TILE_HEIGHT * level)
    if index >= nodes:
        raise ValueError(f"node ({TILE_HEIGHT * level}, {index}) is not in a tree of {size}")
    tile_index = index >> TILE_HEIGHT
    if (tile_index + 1) << TILE_HEIGHT <= nodes:
        return TileRef(level, tile_index)
    return TileRef(level, tile_index, nodes & (TILE_WIDTH - 1))


def bundle_for(tile_index: int, size: int) -> TileRef:
    """Return the entry bundle `tile_index` of a tree of `size` leaves (full or partial)."""
    ref = tile_for(0, tile_index << TILE_HEIGHT, size)
    return TileRef(None, ref.index, ref.width)


def subtree_hash(hashes: bytes) -> bytes:
    """Return the MTH of a power-of-two number (1..256) of concatenated 32-byte hashes."""
    row = [hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE)]
    if not row or len(row) & (len(row) - 1):
        raise ValueError("subtree_hash needs a power-of-two number of hashes")
    sha256 = hashlib.sha256
    while len(row) > 1:
        row = [sha256(NODE_PREFIX + row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]
    return row[0]


TileSource = Callable[[TileRef], bytes]


class TileMismatch(ProofError):
    """ProofError("tile-mismatch"): served tiles that do not hash to the signed root; `ref` is
    the tile that failed (None: the right-edge tiles together)."""

    def __init__(self, ref: TileRef | None, message: str) -> None:
        super().__init__("tile-mismatch", message)
        self.ref = ref


def edge_tiles(size: int) -> list[TileRef]:
    """Return the partial tiles of a tree of `size` leaves (one per level whose width is not 0):
    together they hold every complete subtree of MTH(D[0:size])."""
    return [TileRef(level, index, width) for level, index, width in tile_widths(size)]


class TileTree:
    """The Merkle tree of a signed checkpoint (size, root) read from C2SP tiles, each verified.

    fetch(ref) returns a tile's bytes as served (and may raise); each tile is fetched at most
    once. Verification follows c2sp.org/tlog-tiles: the right-edge partial tiles must hash to the
    signed root (RFC 9162 2.1.1), and a full tile at level l must hash (8 tree levels) to its
    hash in the level l + 1 tile, itself verified the same way. Any failure raises TileMismatch.
    node_at(level, index) returns any complete node from verified tiles only, so merkle.root,
    prove_consistency and prove_inclusion run on it and give verified hashes.
    """

    def __init__(self, size: int, root: bytes, fetch: TileSource) -> None:
        self.size = size
        self.root = root
        self._fetch = fetch
        self.tiles: dict[TileRef, bytes] = {}  # every tile fetched, as served
        self._verified: set[TileRef] = set()
        self._edge_checked = False

    def _served(self, ref: TileRef) -> bytes:
        data = self.tiles.get(ref)
        if data is None:
            data = self._fetch(ref)
            self.tiles[ref] = data
            if len(data) != ref.count * HASH_SIZE:
                raise TileMismatch(
                    ref, f"{ref.path()} is {len(data)} bytes, not {ref.count * HASH_SIZE}"
                )
        return data

    def _hash_in(self, ref: TileRef, data: bytes, level: int, index: int) -> bytes:
        """Return node (level, index) from the bytes of tile ref (which must hold it)."""
        row = level - TILE_HEIGHT * (ref.level or 0)
        start = ((index << row) & (TILE_WIDTH - 1)) * HASH_SIZE
        return subtree_hash(data[start : start + (HASH_SIZE << row)])

    def check_edge(self) -> None:
        """Verify the right-edge tiles against the signed root; raise TileMismatch if not."""
        if self._edge_checked:
            return
        edge = {ref.level: ref for ref in edge_tiles(self.size)}

        def node(level: int, index: int) -> bytes:
            ref = edge[level // TILE_HEIGHT]
            return self._hash_in(ref, self._served(ref), level, index)

        if merkle.root(self.size, node) != self.root:
            raise TileMismatch(
                None, f"the right-edge tiles do not hash to the size-{self.size} root"
            )
        self._verified.update(edge.values())
        self._edge_checked = True

    def tile(self, ref: TileRef) -> bytes:
        """Return the verified bytes of tile ref, one of this tree's (tile_for gives them)."""
        if ref in self._verified:
            return self.tiles[ref]
        if ref.width is not None:
            self.check_edge()
            if ref not in self._verified:
                raise ValueError(f"{ref.path()} is not a tile of the tree of size {self.size}")
            return self.tiles[ref]
        data = self._served(ref)
        assert ref.level is not None, "entry bundles are not tiles"
        parent = self.node_at(TILE_HEIGHT * (ref.level + 1), ref.index)
        if subtree_hash(data) != parent:
            raise TileMismatch(ref, f"{ref.path()} does not hash to its hash in the tile above")
        self._verified.add(ref)
        return data

    def bundle_matches(self, ref: TileRef, hashes: bytes) -> bool:
        """Return True if `hashes` (the concatenated RFC 9162 2.1.1 leaf hashes of entry bundle
        ref's entries) are this tree's: for a full bundle N, their MTH is the verified node
        (8, N) of the level-1 tile (so its level-0 tile need not be fetched: the entries give
        it); for the partial bundle, they are the verified partial level-0 tile. Raises
        TileMismatch if a tile on the way does not verify. Precondition: ref is an entry bundle
        of this tree (bundle_for gives them)."""
        if len(hashes) != ref.count * HASH_SIZE:
            return False
        if ref.width is not None:
            return hashes == self.tile(tile_for(0, ref.index * TILE_WIDTH, self.size))
        return subtree_hash(hashes) == self.node_at(TILE_HEIGHT, ref.index)

    def node_at(self, level: int, index: int) -> bytes:
        """Return the verified complete node (level, index) of the tree (RFC 9162 2.1.1)."""
        tile_level, row = divmod(level, TILE_HEIGHT)
        ref = tile_for(tile_level, ((index + 1) << row) - 1, self.size)
        return self._hash_in(ref, self.tile(ref), level, index)

    def root_at(self, size: int) -> bytes:
        """Return the verified MTH(D[0:size]) of a prefix (0 <= size <= self.size)."""
        if size == self.size:
            self.check_edge()
            return self.root
        return merkle.root(size, self.node_at)

    def consistency(self, old_size: int) -> list[bytes]:
        """Return the RFC 9162 2.1.4.1 consistency proof from old_size (>= 1) to self.size."""
        return merkle.prove_consistency(old_size, self.size, self.node_at)
