"""HTTP client of a C2SP tlog-tiles log (c2sp.org/tlog-tiles): the checkpoint, tiles, bundles.

Blocking, for the replica's sync thread and its fetch workers: one persistent HTTP/1.1
connection per thread (http.client; a third of httpx's CPU per request, measured by
tools/bench_replica.py: the fetch workers share the GIL with the replay, so every millisecond
they hold it is one the sync loses). Every answer is bounded in size (compressed and
decompressed) and in time before it is read in full; a 429 is waited out (Retry-After,
capped), other failures (connection errors, 5xx, a 404 for a tile the checkpoint implies) are
retried a few times with capped exponential backoff and then raised as Unavailable. Nothing
here judges content: the sync verifies everything. Proxies from the environment are not used:
point the replica at the gateway (or a cache in front of it) directly.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
import urllib.parse
import zlib

from gateway.ledger.merkle import HASH_SIZE
from gateway.replica.tiles import TILE_WIDTH, TileRef

log = logging.getLogger("edgeseal.replica")

# why: a checkpoint is a few hundred bytes plus one line per witness; 64 KiB is far above any
# real one and bounds a hostile answer.
MAX_CHECKPOINT_BYTES = 64 * 1024
# why: 256 entries of at most 65,535 bytes each, with their 2-byte lengths.
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xFFFF)
MAX_TILE_BYTES = TILE_WIDTH * HASH_SIZE
# why: gzip of incompressible data is a few bytes per 16 KB block larger than the data; 1 KiB
# over the decoded limit covers any honest answer.
GZIP_SLACK_BYTES = 1024
# why: an error answer's body is read (to keep the connection) only up to this; a longer one
# costs the connection instead.
MAX_ERROR_BODY_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024
# why: loopback or LAN answers come in milliseconds; 30 s covers a Pi under load and a slow
# link without letting a stalled (or byte-dripping) server hold the sync for ever. It bounds
# each request as a whole, not each socket read.
REQUEST_TIMEOUT_S = 30.0
# why: a gateway restart or a short outage lasts seconds; 5 attempts with backoff (0.5 .. 8 s)
# ride that out, then the sync loop waits its poll interval and starts the step again.
ATTEMPTS = 5
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
# why: the gateway's read limit answers 429 with Retry-After; waits beyond a minute mean the
# limit is far too tight for a replica and the step is better retried later.
MAX_RETRY_AFTER_S = 60.0
# why: a replica catching up on a long log meets the gateway's read limit again and again;
# waiting it out is the point, but a limit that never lets a request through must end the step.
MAX_RATE_LIMITED_WAITS = 100
_HEADERS = {"Accept-Encoding": "gzip, identity", "User-Agent": "edgeseal-replica"}


class Unavailable(Exception):
    """The log did not answer usefully after the retries (not evidence of misbehaviour)."""


class _Refused(Exception):
    """One attempt failed (why in the message); the caller retries."""


class _TooLarge(_Refused):
    """The answer is over its size limit: asking again would not help."""


class TilesClient:
    """GETs against one log's URL prefix (e.g. http://gateway:8080), from any thread."""

    def __init__(self, prefix: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        """Raises ValueError unless prefix is an http or https URL with a host."""
        url = urllib.parse.urlsplit(prefix)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"the log URL must be http(s)://host[:port][/path], not {prefix!r}")
        self.prefix = prefix.rstrip("/")
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._path = url.path.rstrip("/")
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: set[http.client.HTTPConnection] = set()
        self.requests = 0  # answered requests, for the replica's metrics

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()

    def checkpoint(self) -> bytes:
        """Return the body of <prefix>/checkpoint."""
        return self._get("/checkpoint", MAX_CHECKPOINT_BYTES)

    def fetch(self, ref: TileRef) -> bytes:
        """Return the body of a tile or an entry bundle (decompressed if the server gzipped it)."""
        limit = MAX_BUNDLE_BYTES if ref.level is None else MAX_TILE_BYTES
        return self._get("/" + ref.path(), limit)

    def _get(self, path: str, limit: int) -> bytes:
        """Return the 200 body of GET prefix + path (at most `limit` bytes); raise Unavailable."""
        url = self.prefix + path
        delay_s = BACKOFF_FIRST_S
        why = ""
        failures = limited = 0
        while failures < ATTEMPTS and limited < MAX_RATE_LIMITED_WAITS:
            try:
                status, retry_after, body = self._attempt(self._path + path, limit)
                if status == 200:
                    with self._lock:
                        self.requests += 1
                    return body
                why = f"HTTP {status}"
                if status == 429:  # rate-limited: wait as asked, not a failure
                    limited += 1
                    time.sleep(_retry_after(retry_after, delay_s))
                    continue
            except (_Refused, http.client.HTTPException, OSError) as exc:
                self._drop()
                why = str(exc) if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, _TooLarge):
                    raise Unavailable(f"GET {url}: {why}") from None
            failures += 1
            log.debug("GET %s failed (%s); retrying in %.1f s", url, why, delay_s)
            time.sleep(delay_s)
            delay_s = min(BACKOFF_MAX_S, delay_s * 2)
        raise Unavailable(f"GET {url}: {why}")

    def _attempt(self, target: str, limit: int) -> tuple[int, str | None, bytes]:
        """Return (status, Retry-After, body) of one GET on this thread's connection; the body
        only for a 200, decoded and at most `limit` bytes. Raises _Refused, HTTPException,
        OSError (the caller drops the connection)."""
        deadline = time.monotonic() + self._timeout_s
        conn = self._conn()
        if conn.sock is not None:  # a kept-alive connection: _read_until shortened its timeout
            conn.sock.settimeout(self._timeout_s)
        conn.request("GET", target, headers=_HEADERS)
        resp = conn.getresponse()
        if resp.status != 200:
            drained = _read_until(conn, resp, MAX_ERROR_BODY_BYTES, deadline)
            if len(drained) > MAX_ERROR_BODY_BYTES or resp.will_close:
                self._drop()
            return resp.status, resp.getheader("retry-after"), b""
        encoding = (resp.getheader("content-encoding") or "identity").strip().lower()
        if encoding == "gzip":
            raw = _read_until(conn, resp, limit + GZIP_SLACK_BYTES, deadline)
            if len(raw) > limit + GZIP_SLACK_BYTES:
                raise _TooLarge(f"the answer is over {limit + GZIP_SLACK_BYTES} bytes (gzip)")
            body = _gunzip(raw, limit)
        elif encoding == "identity":
            body = _read_until(conn, resp, limit, deadline)
        else:
            raise _Refused(f"in an encoding it was not asked for ({encoding})")
        if len(body) > limit:
            raise _TooLarge(f"the answer is over {limit} bytes")
        if resp.will_close:
            self._drop()
        return 200, None, body

    def _conn(self) -> http.client.HTTPConnection:
        """Return this thread's connection (opened lazily; reconnects by itself after a close)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._scheme == "https":
                conn = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self._timeout_s,
                    context=ssl.create_default_context(),
                )
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            self._local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def _drop(self) -> None:
        """Close this thread's connection; the next request opens a new one."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._conns.discard(conn)
            conn.close()


def _read_until(
    conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, limit: int, deadline: float
) -> bytes:
    """Return the body as sent, at most limit + 1 bytes (more means "over the limit": the rest
    is not read). Raises _Refused once the request's deadline passes (each read waits at most
    until then: a server dripping bytes cannot stretch it) or if the connection closes before
    the announced Content-Length."""
    out = bytearray()
    while len(out) <= limit:
        if resp.length == 0:  # all that Content-Length announced (read1 would not say so)
            resp.close()  # the connection can carry the next request
            break
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise _Refused("not complete within the request timeout")
        if conn.sock is not None:
            conn.sock.settimeout(left_s)
        chunk = resp.read1(min(READ_CHUNK_BYTES, limit + 1 - len(out)))
        if not chunk:
            if resp.length:  # http.client counts down what Content-Length announced
                raise _Refused("the connection closed inside the answer")
            break
        out += chunk
    return bytes(out)


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Return the decoded gzip member raw (RFC 1952), at most limit + 1 bytes; raise _Refused
    for a damaged or truncated one (a decompression bomb stops at limit + 1)."""
    z = zlib.decompressobj(wbits=31)
    try:
        out = z.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise _Refused(f"not valid gzip ({exc})") from None
    if len(out) <= limit and not z.eof:
        raise _Refused("a truncated gzip stream")
    return out


def _retry_after(value: str | None, default_s: float) -> float:
    """Return the wait a Retry-After header asks for (seconds form), capped."""
    try:
        wait_s = float(value) if value is not None else default_s
    except ValueError:
        wait_s = default_s
    return min(max(wait_s, 0.0), MAX_RETRY_AFTER_S)
