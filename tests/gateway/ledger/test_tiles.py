"""Tile layout and TileBuilder (gateway.ledger.tiles) against level-by-level hashing."""

import hashlib

import pytest

from gateway.ledger import merkle, tiles


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00%d" % i).digest() for i in range(n)]


def levels_of(hashes: list[bytes]) -> list[list[bytes]]:
    """Return every level of complete nodes: levels[l][i] = node (l, i)."""
    out = [hashes]
    while len(out[-1]) > 1:
        row = out[-1]
        out.append([merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)])
    return out


def test_layout_is_a_bijection_on_every_position():
    for tile_level in range(3):
        for tile_index in (0, 1, 255, 256, 70_000):
            seen = set()
            for position in range(tiles.TILE_HASHES):
                level, index = tiles.tile_position_node(tile_level, tile_index, position)
                assert tiles.node_location(level, index) == (tile_level, tile_index, position * 32)
                seen.add((level, index))
            assert len(seen) == tiles.TILE_HASHES


def test_partial_tile_counts():
    counts = [tiles.tile_hash_count(w) for w in (0, 1, 2, 3, 4, 255, 256)]
    assert counts == [0, 1, 3, 4, 7, 502, 510]
    assert tiles.tile_widths(0) == []
    assert tiles.tile_widths(256) == [(1, 0, 1)]
    assert tiles.tile_widths(65_536 + 300) == [(0, 257, 44), (1, 1, 1), (2, 0, 1)]


@pytest.fixture(scope="module")
def big_tree():
    """70,000 leaves: crosses full tiles at levels 0 and 1 (65,536 leaves) and starts level 2."""
    hashes = leaves(70_000)
    return hashes, levels_of(hashes)


def test_builder_stores_every_complete_node(big_tree):
    hashes, levels = big_tree
    b = tiles.TileBuilder()
    stored: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(hashes), 9_999):  # uneven chunks
        b.extend(hashes[start : start + 9_999])
        for tile_level, tile_index, blob in b.drain():
            stored[(tile_level, tile_index)] = blob
    assert b.size == len(hashes)
    for level, row in enumerate(levels):
        for index in range(0, len(row), max(1, len(row) // 300)):
            tl, ti, off = tiles.node_location(level, index)
            assert stored[(tl, ti)][off : off + 32] == row[index], (level, index)
    for tile_level, tile_index, width in tiles.tile_widths(len(hashes)):
        assert len(stored[(tile_level, tile_index)]) == tiles.tile_hash_count(width) * 32
    assert b.root() == merkle.root(len(hashes), lambda lv, i: levels[lv][i])


@pytest.mark.parametrize("cut", [1, 255, 256, 257, 511, 65_535, 65_536, 65_537, 69_999])
def test_resume_equals_one_pass(big_tree, cut):
    hashes, _ = big_tree
    one = tiles.TileBuilder()
    one.extend(hashes)
    want = {(t, i): blob for t, i, blob in one.drain()}
    first = tiles.TileBuilder()
    first.extend(hashes[:cut])
    stored = {(t, i): blob for t, i, blob in first.drain()}
    resumed = tiles.TileBuilder.resume(cut, lambda t, i: stored.get((t, i)))
    assert resumed.root() == first.root()
    resumed.extend(hashes[cut:])
    stored.update({(t, i): blob for t, i, blob in resumed.drain()})
    assert stored == want
    assert resumed.root() == one.root()


def test_resume_detects_missing_tiles(big_tree):
    hashes, _ = big_tree
    b = tiles.TileBuilder()
    b.extend(hashes[:300])
    stored = {(t, i): blob for t, i, blob in b.drain()}
    with pytest.raises(ValueError):
        tiles.TileBuilder.resume(300, lambda t, i: None)
    with pytest.raises(ValueError):
        tiles.TileBuilder.resume(301, lambda t, i: stored.get((t, i)))
