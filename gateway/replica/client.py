"""HTTP client of a C2SP tlog-tiles log (c2sp.org/tlog-tiles): the checkpoint, tiles, bundles.

Blocking (httpx), for the replica's sync thread. Every answer is bounded in size before it is
read in full; a 429 is waited out (Retry-After, capped), other failures (connection errors, 5xx,
a 404 for a tile the checkpoint implies) are retried a few times with capped exponential backoff
and then raised as Unavailable. Nothing here judges content: the sync verifies everything.
"""

from __future__ import annotations

import logging
import time

import httpx

from gateway.ledger.merkle import HASH_SIZE
from gateway.replica.tiles import TILE_WIDTH, TileRef

log = logging.getLogger("edgeseal.replica")

# why: a checkpoint is a few hundred bytes plus one line per witness; 64 KiB is far above any
# real one and bounds a hostile answer.
MAX_CHECKPOINT_BYTES = 64 * 1024
# why: 256 entries of at most 65,535 bytes each, with their 2-byte lengths.
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xFFFF)
MAX_TILE_BYTES = TILE_WIDTH * HASH_SIZE
# why: loopback or LAN answers come in milliseconds; 30 s covers a Pi under load and a slow
# link without letting a stalled server hold the sync for ever.
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


class Unavailable(Exception):
    """The log did not answer usefully after the retries (not evidence of misbehaviour)."""


class TilesClient:
    """GETs against one log's URL prefix (e.g. http://gateway:8080)."""

    def __init__(self, prefix: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.prefix = prefix.rstrip("/")
        self._http = httpx.Client(
            timeout=timeout_s,
            headers={"Accept-Encoding": "gzip, identity", "User-Agent": "edgeseal-replica"},
            follow_redirects=False,
        )
        self.requests = 0  # answered requests, for the replica's metrics

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

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
                with self._http.stream("GET", url) as resp:
                    if resp.status_code == 200:
                        body = _read_bounded(resp, limit, url)
                        self.requests += 1
                        return body
                    why = f"HTTP {resp.status_code}"
                    if resp.status_code == 429:  # rate-limited: wait as asked, not a failure
                        limited += 1
                        time.sleep(_retry_after(resp.headers.get("retry-after"), delay_s))
                        continue
            except (httpx.HTTPError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            failures += 1
            log.debug("GET %s failed (%s); retrying in %.1f s", url, why, delay_s)
            time.sleep(delay_s)
            delay_s = min(BACKOFF_MAX_S, delay_s * 2)
        raise Unavailable(f"GET {url}: {why}")


def _read_bounded(resp: httpx.Response, limit: int, url: str) -> bytes:
    """Return the (decoded) body, raising Unavailable once it passes limit bytes."""
    out = bytearray()
    for chunk in resp.iter_bytes():
        out += chunk
        if len(out) > limit:
            raise Unavailable(f"GET {url}: the answer is over {limit} bytes")
    return bytes(out)


def _retry_after(value: str | None, default_s: float) -> float:
    """Return the wait a Retry-After header asks for (seconds form), capped."""
    try:
        wait_s = float(value) if value is not None else default_s
    except ValueError:
        wait_s = default_s
    return min(max(wait_s, 0.0), MAX_RETRY_AFTER_S)
