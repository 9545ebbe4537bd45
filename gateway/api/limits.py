"""Rate limits of the API: token buckets per participant, and per client address for writes and
for unauthenticated reads.

The client address is the TCP peer, or the address a trusted proxy forwards (settings
`trusted_proxies`, gateway.api.serving): never a header a client can set on its own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import RateLimited

# why: a participant submits a handful of transactions per minute in every use case (bids,
# handovers, ticks); 5/s sustained with bursts of 20 never limits them and bounds a runaway client.
PARTICIPANT_RATE_PER_S = 5.0
PARTICIPANT_BURST = 20
# why: before any signature is checked, the only identity is the client address; Ed25519
# verification costs ~60 us, so 20/s per address keeps one client far from using a Pi core.
IP_RATE_PER_S = 20.0
IP_BURST = 40
# why: the dashboard makes about a dozen reads per 2 s poll (~6/s) and ~20 at page load; 50/s
# with bursts of 200 per address is several dashboards' worth, so it never limits them, while one
# client can no longer keep the gateway busy with back-to-back reads.
READ_RATE_PER_S = 50.0
READ_BURST = 200
# why: reads differ in cost (measured with 3,000 entries: most 0.2-2 ms, /v1/gateway 10 ms for
# the state hash, a page of 1000 entries 30 ms, a contract view with its full data 25 ms); a
# read token buys this much server time and a dearer read is charged the rest afterwards, so
# one address gets at most READ_RATE_PER_S x 5 ms = 250 ms of server time per second.
READ_COST_UNIT_S = 0.005
# why: the cost is wall time, which overstates server time when a read waits: on a replica or
# the chain node (GET /v1/checkpoints, up to its 3 s timeout), or behind other requests on a
# loaded Pi. Uncapped, one such wait put a client 600 tokens in debt and the dashboard into 429s
# (seen under load in the dashboard test). 20 tokens (100 ms) still charges every genuinely dear
# read measured above (at most 30 ms) in full.
MAX_READ_CHARGE_TOKENS = 20.0
# why: bounds the memory of the limiter under many distinct senders (oldest buckets evicted).
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    """Token buckets per key: `rate_per_s` tokens per second, at most `burst` stored."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for key; return 0.0 if allowed, else the seconds until one is free."""
        now = self._clock()
        b = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at_s) * self.rate_per_s)
        b.at_s = now
        self._buckets[key] = b
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate_per_s

    def charge(self, key: str, tokens: float) -> None:
        """Take `tokens` more from key's bucket after the fact (a request that cost more than
        its one token); the bucket may fall into debt, down to -burst, which later requests
        wait out. Precondition: tokens >= 0."""
        b = self._buckets.get(key)
        if b is not None:
            b.tokens = max(-float(self.burst), b.tokens - tokens)


class RateLimits:
    """The API's limits (writes per address and participant, reads per address); each check
    raises RateLimited with the wait in seconds."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        read_rate_per_s: float = READ_RATE_PER_S,
        read_burst: int = READ_BURST,
        cost_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """clock: the buckets' time source in seconds (tests freeze it); read_rate_per_s and
        read_burst: the per-address read bucket (tests that make thousands of reads raise it);
        cost_clock: what the cost of a read is measured with, in seconds."""
        self.participants = TokenBuckets(PARTICIPANT_RATE_PER_S, PARTICIPANT_BURST, clock)
        self.addresses = TokenBuckets(IP_RATE_PER_S, IP_BURST, clock)
        self.reads = TokenBuckets(read_rate_per_s, read_burst, clock)
        self.cost_clock = cost_clock

    def check_read(self, host: str) -> None:
        """Take a read token for client address host; raise RateLimited if none is left."""
        wait_s = self.reads.take(host)
        if wait_s:
            raise RateLimited(f"too many reads from {host}", wait_s)

    def charge_read(self, host: str, cost_s: float) -> None:
        """Charge host's read bucket for a read that took cost_s seconds of server time: one
        token per READ_COST_UNIT_S beyond the token check_read took, at most
        MAX_READ_CHARGE_TOKENS in all."""
        extra = min(cost_s / READ_COST_UNIT_S, MAX_READ_CHARGE_TOKENS) - 1.0
        if extra > 0:
            self.reads.charge(host, extra)

    def check_address(self, host: str) -> None:
        """Take a write token for client address host; raise RateLimited if none is left."""
        wait_s = self.addresses.take(host)
        if wait_s:
            raise RateLimited(f"too many writes from {host}", wait_s)

    def check_participant(self, participant: str) -> None:
        """Take a transaction token for a participant key; raise RateLimited if none is left."""
        wait_s = self.participants.take(participant)
        if wait_s:
            raise RateLimited(f"too many transactions from {participant[:16]}...", wait_s)
