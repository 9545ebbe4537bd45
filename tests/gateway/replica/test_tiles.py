"""The tlog-tiles codec's verifying tree (gateway.replica.tiles.TileTree) against the gateway's
ledger, and the entry-bundle decoder against hostile bytes."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import ProofError
from gateway.ledger import Ledger, NoteSigner
from gateway.ledger.tiles import node_location
from gateway.replica.tiles import (
    TileMismatch,
    TileRef,
    TileTree,
    decode_bundle,
    encode_bundle,
    tile_for,
)

SIZE = 70_000  # c2sp.org/tlog-tiles's example: tiles at three levels, partial and full
_BOTTOM = [node_location(0, i)[2] for i in range(256)]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    path = tmp_path_factory.mktemp("tiles") / "ledger.db"
    led = Ledger.open(str(path), NoteSigner.generate(), max_batch_entries=10**9)
    led.append([(1, hashlib.sha256(str(i).encode()).digest()) for i in range(SIZE)])
    led.integrate()
    return led


def served(led: Ledger, ref: TileRef) -> bytes:
    """The C2SP tile as the gateway serves it (the bottom row of its stored tile)."""
    assert ref.level is not None
    blob = led._read_tile_uncached(ref.level, ref.index)
    assert blob is not None
    return b"".join(blob[o : o + 32] for o in _BOTTOM[: ref.count])


def test_roots_and_proofs_from_tiles_are_the_ledgers(ledger: Ledger) -> None:
    tree = TileTree(SIZE, ledger.root(), lambda ref: served(ledger, ref))
    tree.check_edge()
    assert {r.path() for r in tree.tiles} == {
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    }
    for n in (1, 255, 256, 257, 65_535, 65_536, 65_537, 69_999, SIZE):
        assert tree.root_at(n) == ledger.root(n), n
    for n in (1, 256, 1000, 65_536, 69_999):
        assert tree.consistency(n) == ledger.prove_consistency(n, SIZE), n


@pytest.mark.parametrize(
    "target", ["tile/0/005", "tile/1/000", "tile/0/273.p/112", "tile/2/000.p/1"]
)
def test_a_changed_tile_is_a_mismatch(ledger: Ledger, target: str) -> None:
    def fetch(ref: TileRef) -> bytes:
        data = served(ledger, ref)
        return data[:-1] + bytes((data[-1] ^ 1,)) if ref.path() == target else data

    tree = TileTree(SIZE, ledger.root(), fetch)
    with pytest.raises(TileMismatch):
        tree.check_edge()
        tree.tile(tile_for(0, 5 * 256, SIZE))
        tree.root_at(1000)


def test_a_short_tile_is_a_mismatch(ledger: Ledger) -> None:
    tree = TileTree(SIZE, ledger.root(), lambda ref: served(ledger, ref)[:-32])
    with pytest.raises(TileMismatch):
        tree.check_edge()


@pytest.mark.parametrize(
    ("data", "count"),
    [
        (b"\x00", 1),  # inside a length
        (b"\x00\x05abc", 1),  # inside an entry
        (b"\x00\x01a\x00\x01b", 1),  # one too many
        (b"\x00\x01a", 2),  # one too few
        (b"", 1),
    ],
)
def test_malformed_bundles_are_refused(data: bytes, count: int) -> None:
    with pytest.raises(ProofError) as err:
        decode_bundle(data, count)
    assert err.value.code == "bad-bundle"


def test_bundles_round_trip() -> None:
    entries = [b"", b"a", bytes(65_535)]
    assert decode_bundle(encode_bundle(entries), 3) == entries
    with pytest.raises(ValueError):
        encode_bundle([bytes(65_536)])
