"""The C2SP tlog-tiles routes against an independent reading of c2sp.org/tlog-tiles.

The log has the spec's own example size, 70,000 entries: "273 full level 0 tiles, one partial
level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
partial level 2 tile of width 1". Every tile is recomputed here from the entries with the
spec's formula, hash i of tile (l, n) = MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]), and a
recursive RFC 9162 MTH (tests.gateway.replica.helpers.mth), not with gateway code.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.api.limits import RateLimits
from tests.gateway.api.helpers import Api, assert_typed, open_api
from tests.gateway.replica.helpers import filler_records, mth, prepare_log

SIZE = 70_000


@pytest.fixture(scope="module")
def log_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, list[bytes]]]:
    """Yield (an Api on a gateway whose log holds SIZE filler entries, those entries)."""
    tmp = tmp_path_factory.mktemp("tiles")
    entries = filler_records(SIZE)
    prepare_log(tmp / "data", entries)
    roomy = RateLimits(lambda: 1000.0, read_burst=1_000_000, cost_clock=lambda: 0.0)
    yield from ((api, entries) for api in open_api(tmp, limits=roomy))


def leaf_hashes(entries: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + e).digest() for e in entries]


def spec_tile(leaves: list[bytes], level: int, n: int, width: int) -> bytes:
    """Return tile (level, n) of `width` hashes by the spec's formula."""
    span = 256**level
    return b"".join(
        mth(leaves[(n * 256 + i) * span : (n * 256 + i + 1) * span]) for i in range(width)
    )


def index_path(n: int) -> str:
    """The spec's example encoding, written out independently: 1234067 -> x001/x234/067."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if not n:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def test_index_paths_follow_the_spec() -> None:
    assert index_path(1234067) == "x001/x234/067"
    assert index_path(0) == "000"
    assert index_path(1000) == "x001/000"


def test_the_spec_example_tree_is_served_tile_by_tile(log_api: tuple[Api, list[bytes]]) -> None:
    api, entries = log_api
    api.wait_integrated()
    leaves = leaf_hashes(entries)
    expect = {  # (level, n, width or None) -> bytes, the spec's enumeration of the tree
        (0, 0, None): spec_tile(leaves, 0, 0, 256),
        (0, 272, None): spec_tile(leaves, 0, 272, 256),
        (0, 273, 112): spec_tile(leaves, 0, 273, 112),
        (1, 0, None): spec_tile(leaves, 1, 0, 256),
        (1, 1, 17): spec_tile(leaves, 1, 1, 17),
        (2, 0, 1): spec_tile(leaves, 2, 0, 1),
    }
    for (level, n, width), data in expect.items():
        suffix = f".p/{width}" if width else ""
        resp = api.get(f"/tile/{level}/{index_path(n)}{suffix}")
        assert resp.status_code == 200, (level, n, width, resp.text)
        assert resp.content == data, (level, n, width)
        assert resp.headers["content-type"] == "application/octet-stream"
        assert len(resp.content) == 32 * (width or 256)
    # a smaller partial of a complete range: the same hashes, a prefix of the full tile
    assert api.get("/tile/0/005.p/9").content == spec_tile(leaves, 0, 5, 9)
    # the checkpoint's root is the MTH of all the entries
    note = api.get("/checkpoint").text
    lines = note.split("\n")
    assert lines[1] == str(SIZE)
    assert base64.b64decode(lines[2]) == mth(leaves)
    assert any(line.startswith("edgeseal-state ") for line in lines[3 : lines.index("")])


def test_beyond_the_tree_is_404(log_api: tuple[Api, list[bytes]]) -> None:
    api, _ = log_api
    api.wait_integrated()
    for path in (
        "/tile/0/273",  # the partial level-0 tile is not full yet
        "/tile/0/273.p/113",  # one hash too wide
        "/tile/1/001",
        "/tile/1/001.p/18",
        "/tile/2/000",
        "/tile/2/000.p/2",
        "/tile/3/000.p/1",
        "/tile/63/000.p/1",
        "/tile/0/x001/x234/067",
        "/tile/0/x999/x999/x999/x999/x999/x999/999",
        "/tile/entries/273",
        "/tile/entries/274.p/1",
    ):
        assert_typed(api.get(path), 404, "not-found")


def test_entry_bundles(log_api: tuple[Api, list[bytes]]) -> None:
    api, entries = log_api
    api.wait_integrated()

    def decode(data: bytes) -> list[bytes]:
        out, pos = [], 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 2], "big")
            out.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        return out

    plain = api.get("/tile/entries/000", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert decode(plain.content) == entries[:256]
    assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
    # gzip when accepted (the client decodes it; the raw stream is gzip)
    zipped = api.get("/tile/entries/002", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert decode(zipped.content) == entries[512:768]
    resp = api.get("/tile/entries/273.p/112", headers={"Accept-Encoding": "gzip, identity"})
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == "gzip"
    assert decode(resp.content) == entries[273 * 256 :]
    assert resp.headers["cache-control"] == "public, max-age=60"
    refused = api.get("/tile/entries/001", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    assert decode(refused.content) == entries[256:512]


def test_cache_headers_and_types(log_api: tuple[Api, list[bytes]]) -> None:
    api, _ = log_api
    api.wait_integrated()
    full = api.get("/tile/0/000")
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    partial = api.get("/tile/0/273.p/112")
    assert partial.headers["cache-control"] == "public, max-age=60"
    cp = api.get("/checkpoint")
    assert cp.headers["content-type"] == "text/plain; charset=utf-8"
    assert cp.headers["cache-control"] == "public, max-age=2"


HOSTILE = [
    "/tile/",
    "/tile/0",
    "/tile/0/",
    "/tile/0/0",
    "/tile/0/00",
    "/tile/0/0000",
    "/tile/00/000",
    "/tile/01/000",
    "/tile/-1/000",
    "/tile/64/000",
    "/tile/99999999999999999999/000",
    "/tile/0/x000/001",  # not canonical: a leading x000 element
    "/tile/0/001/x002",  # the x prefix on the last element
    "/tile/0/x001/x002",
    "/tile/0/x01/000",
    "/tile/0/x1000/000",
    "/tile/0/000.p/0",
    "/tile/0/000.p/256",
    "/tile/0/000.p/007",
    "/tile/0/000.p/",
    "/tile/0/000.p",
    "/tile/0/000.p/1/2",
    "/tile/0/000/",
    "/tile/0//000",
    "/tile/0/%00",
    "/tile/0/000%0A",
    "/tile/0/00%0A0",
    "/tile/0/+12",
    "/tile/0/ 12",
    "/tile/0/1e3",
    "/tile/0/\u0660\u0660\u0660",  # Arabic-Indic digits: str.isdigit() says yes
    "/tile/entries",
    "/tile/entries/",
    "/tile/entries/abc",
    "/tile/entrie/000",
    "/tile/ENTRIES/000",
    "/tile/0/" + "x999/" * 100 + "999",
    "/tile/0/" + "9" * 5000,
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_get_typed_errors(log_api: tuple[Api, list[bytes]], path: str) -> None:
    api, _ = log_api
    resp = api.get(path)
    assert resp.status_code in (400, 404), (path, resp.status_code, resp.text)
    body: dict[str, Any] = resp.json()
    assert set(body) >= {"error", "code", "message"}


def test_the_codec_parses_what_it_encodes() -> None:
    from gateway.replica.tiles import TileRef, parse_tile_path

    for ref in (TileRef(0, 0), TileRef(3, 1234067, 17), TileRef(None, 999_999, 255)):
        assert parse_tile_path(ref.path().removeprefix("tile/")) == ref
    assert TileRef(0, 1234067).path() == "tile/0/" + index_path(1234067)


def test_an_empty_log_serves_no_tiles(tmp_path: Path) -> None:
    for api in open_api(tmp_path):
        api.wait_integrated()
        assert_typed(api.get("/tile/0/000.p/1"), 404, "not-found")
        assert_typed(api.get("/tile/entries/000.p/1"), 404, "not-found")
        assert api.get("/checkpoint").text.split("\n")[1] == "0"
