"""gateway.replica.client.TilesClient against a hostile HTTP server on loopback: bounded answers
(plain, gzip, a gzip bomb), damaged and truncated bodies, 429/5xx handling, dropped and stalled
connections, a URL prefix with a path, and one connection per thread.

The server is a real HTTP/1.1 server (http.server, its own thread, an ephemeral loopback port)
whose first path element picks the behaviour; the client is the replica's, unchanged.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.replica import client as client_mod
from gateway.replica.client import MAX_BUNDLE_BYTES, MAX_TILE_BYTES, TilesClient, Unavailable
from gateway.replica.tiles import TileRef

TILE = TileRef(0, 1)  # /tile/0/001: at most MAX_TILE_BYTES
BUNDLE = TileRef(None, 2)  # /tile/entries/002: at most MAX_BUNDLE_BYTES


def _body(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


class HostileServer:
    """Answers GET /<behaviour>/<rest> as the behaviour says; counts requests per behaviour and
    the connections it accepted."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.connections = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's uvicorn

            def setup(self) -> None:
                super().setup()
                owner.connections += 1

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                behaviour = self.path.split("/")[1]
                owner.counts[behaviour] += 1
                getattr(owner, "on_" + behaviour.replace("-", "_"))(self, owner.counts[behaviour])

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(body)

    # ---- behaviours (the first path element) -------------------------------------------------

    def on_plain(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, h.path.encode() + _body(1000))

    def on_gzip(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, gzip.compress(h.path.encode() + _body(5000)), Content_Encoding="gzip")

    def on_chunked(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        # a cache or proxy in front of the gateway may stream: HTTP/1.1 chunked, gzip inside
        data = gzip.compress(h.path.encode() + _body(5000))
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Content-Encoding", "gzip")
        h.end_headers()
        for i in range(0, len(data), 700):
            part = data[i : i + 700]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        h.wfile.write(b"0\r\n\r\n")

    def on_tile_sized(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, _body(MAX_TILE_BYTES))

    def on_too_big(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, _body(MAX_TILE_BYTES + 1))

    def on_bomb(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        # ~17 KB on the wire, 17 MB decoded: over every limit
        self.send(h, 200, gzip.compress(bytes(MAX_BUNDLE_BYTES + 1)), Content_Encoding="gzip")

    def on_bad_gzip(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, b"\x1f\x8b not really gzip", Content_Encoding="gzip")

    def on_cut_gzip(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, gzip.compress(_body(5000))[:-12], Content_Encoding="gzip")

    def on_brotli(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 200, b"whatever", Content_Encoding="br")

    def on_flaky(self, h: BaseHTTPRequestHandler, n: int) -> None:
        self.send(h, 503, b"busy") if n < 3 else self.on_plain(h, n)

    def on_limited(self, h: BaseHTTPRequestHandler, n: int) -> None:
        self.send(h, 429, b"slow down", Retry_After="0") if n < 4 else self.on_plain(h, n)

    def on_down(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        self.send(h, 500, b"x" * 200_000)  # a long error body costs the connection, not memory

    def on_drop(self, h: BaseHTTPRequestHandler, n: int) -> None:
        if n > 1:
            self.on_plain(h, n)
            return
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"only a part")
        h.close_connection = True

    def on_drip(self, h: BaseHTTPRequestHandler, _n: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(100):  # a byte every 50 ms: each read is quick, the answer never ends
            try:
                h.wfile.write(b"x")
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)


@pytest.fixture
def server() -> Iterator[HostileServer]:
    srv = HostileServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # the retry schedule's shape is what is tested, not its production pauses
    monkeypatch.setattr(client_mod, "BACKOFF_FIRST_S", 0.01)
    monkeypatch.setattr(client_mod, "BACKOFF_MAX_S", 0.02)


def test_plain_and_gzip_answers_under_a_path_prefix(server: HostileServer) -> None:
    c = TilesClient(server.base + "/plain/log/")
    try:
        assert c.fetch(TILE) == b"/plain/log/tile/0/001" + _body(1000)
        assert c.checkpoint() == b"/plain/log/checkpoint" + _body(1000)
    finally:
        c.close()
    c = TilesClient(server.base + "/gzip")
    try:
        assert c.fetch(BUNDLE) == b"/gzip/tile/entries/002" + _body(5000)
        assert c.requests == 1
    finally:
        c.close()
    c = TilesClient(server.base + "/chunked")
    try:
        for _ in range(2):  # the connection is kept across a chunked answer
            assert c.fetch(BUNDLE) == b"/chunked/tile/entries/002" + _body(5000)
    finally:
        c.close()
    assert server.counts["chunked"] == 2


def test_answers_up_to_the_limit_pass_and_over_it_fail_without_retrying(
    server: HostileServer,
) -> None:
    c = TilesClient(server.base + "/tile-sized")
    assert c.fetch(TILE) == _body(MAX_TILE_BYTES)
    c.close()
    for behaviour in ("too-big", "bomb"):
        c = TilesClient(server.base + "/" + behaviour)
        with pytest.raises(Unavailable, match="over"):
            c.fetch(TILE if behaviour == "too-big" else BUNDLE)
        c.close()
        assert server.counts[behaviour] == 1, "asking again would not make it smaller"


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [("bad-gzip", "not valid gzip"), ("cut-gzip", "truncated"), ("brotli", "not asked for")],
)
def test_damaged_answers_are_retried_then_unavailable(
    server: HostileServer, behaviour: str, why: str
) -> None:
    c = TilesClient(server.base + "/" + behaviour)
    with pytest.raises(Unavailable, match=why):
        c.fetch(BUNDLE)
    c.close()
    assert server.counts[behaviour] == client_mod.ATTEMPTS


def test_server_errors_and_rate_limits_are_ridden_out(server: HostileServer) -> None:
    for behaviour in ("flaky", "limited", "drop"):
        c = TilesClient(server.base + "/" + behaviour)
        assert c.fetch(TILE).startswith(b"/" + behaviour.encode() + b"/tile/0/001")
        c.close()
    assert server.counts == Counter(flaky=3, limited=4, drop=2)


def test_a_server_that_stays_down_is_unavailable(server: HostileServer) -> None:
    c = TilesClient(server.base + "/down")
    with pytest.raises(Unavailable, match="HTTP 500"):
        c.checkpoint()
    c.close()
    assert server.counts["down"] == client_mod.ATTEMPTS


def test_a_stalled_answer_is_bounded_by_the_request_timeout(server: HostileServer) -> None:
    c = TilesClient(server.base + "/drip", timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="timed out|timeout"):
        c.fetch(TILE)
    c.close()
    assert time.monotonic() - t0 < 60  # not the 5 s a full drip would take per attempt
    # each of the ATTEMPTS was made and cut at its deadline although every single read is quick
    # (the server counts a request in its own thread: on a loaded machine that may come later)
    deadline = time.monotonic() + 30
    while server.counts["drip"] < client_mod.ATTEMPTS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.counts["drip"] == client_mod.ATTEMPTS


def test_nothing_is_answered_where_no_server_listens() -> None:
    with TilesClientClosed("http://127.0.0.1:9") as c, pytest.raises(Unavailable):
        c.checkpoint()


def test_one_kept_alive_connection_per_thread(server: HostileServer) -> None:
    c = TilesClient(server.base + "/plain")
    refs = [TileRef(None, i) for i in range(64)]
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(c.fetch, refs))
    c.close()
    assert bodies == [b"/plain/" + r.path().encode() + _body(1000) for r in refs]
    assert c.requests == 64
    assert 1 <= server.connections <= 4


@pytest.mark.parametrize("url", ["ftp://host/x", "gateway:8080", "http://", "file:///etc"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        TilesClient(url)


class TilesClientClosed(TilesClient):
    """A TilesClient as a context manager that closes it."""

    def __enter__(self) -> TilesClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
