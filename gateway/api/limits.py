"""Write rate limits of the API: token buckets per participant and per client address."""

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


class WriteLimits:
    """The API's two write limits; each check raises RateLimited with the wait in seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """clock: the buckets' time source in seconds (tests freeze it)."""
        self.participants = TokenBuckets(PARTICIPANT_RATE_PER_S, PARTICIPANT_BURST, clock)
        self.addresses = TokenBuckets(IP_RATE_PER_S, IP_BURST, clock)

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
