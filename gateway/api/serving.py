"""How uvicorn serves the API: limits against slow and greedy clients, and whom to trust for
the client address.

`uvicorn_config(app, settings)` is the one place the server is configured (gateway.server runs
it; tests run the same configuration on a loopback port). uvicorn bounds idle keep-alive
connections and header size, and answers 503 over a connection limit, but it has no deadline
for the request headers themselves: a client that sends them one byte per second (slowloris)
holds its connection for ever. `GuardedH11Protocol` adds that deadline and a per-address cap on
open connections. Request bodies are bounded in size and time by the app (gateway.api.middleware).

Client address: uvicorn trusts X-Forwarded-For from 127.0.0.1 by default, which would let any
local client pick the address the rate limits key on. Proxy headers are off unless the setting
`trusted_proxies` lists the reverse proxies in front of the gateway; then only their headers count.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config import Settings

# why: any client on a LAN or behind a proxy sends its request line and headers in well under a
# second; 10 s tolerates a congested Wi-Fi link and cuts a slowloris connection soon after.
HEADER_TIMEOUT_S = 10.0
# why: the dashboard polls every 2 s and reuses its connection; an idle one beyond 5 s is closed
# so that idle clients do not hold connection slots (uvicorn's default, stated on purpose).
KEEP_ALIVE_TIMEOUT_S = 5
# why: on SIGTERM uvicorn waits for open connections to finish; a client that keeps one busy
# (a replica syncing, a slow bundle download) would hold the stop for ever. 10 s lets requests in
# flight finish and still leaves the node's own stop within systemd's TimeoutStopSec=30.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 10
# why: request line + headers of every real client are under 8 KiB; h11 buffers at most this much
# of an unfinished request head per connection before answering 400 and closing.
MAX_HEADER_BYTES = 16 * 1024
# why: a Pi serves a few dashboards (a browser opens up to 6 connections), a Prometheus scraper
# and some participants; past 128 open connections or requests in flight uvicorn answers 503
# instead of letting memory and the event loop's work grow without bound.
MAX_CONNECTIONS = 128
# why: one address (a browser with a few tabs, a script) needs far fewer than 32 connections; the
# cap keeps one client from taking all MAX_CONNECTIONS slots. Not applied to trusted proxies,
# whose connections carry every client behind them.
MAX_CONNECTIONS_PER_ADDRESS = 32


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a per-address connection cap.

    The deadline runs from the connection's start, and again from the end of each response,
    until the next request's headers are complete (h11 leaves IDLE); when it passes, the
    connection is closed. Configured per server by `guarded_protocol` (class attributes).
    """

    header_timeout_s: ClassVar[float] = HEADER_TIMEOUT_S
    max_per_address: ClassVar[int] = MAX_CONNECTIONS_PER_ADDRESS
    trusted: ClassVar[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = ()
    open_by_address: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection for its address (closing it over the cap) and start the
        deadline for the first request's headers."""
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        if host is not None and not self._is_trusted(host):
            self._address = host
            self.open_by_address[host] += 1
            if self.open_by_address[host] > self.max_per_address:
                transport.close()
                return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection: its address count and its deadline."""
        self._disarm_head_timer()
        if self._address is not None:
            self.open_by_address[self._address] -= 1
            if self.open_by_address[self._address] <= 0:
                del self.open_by_address[self._address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11; stop the deadline once a request's headers are complete."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        """Let uvicorn finish the cycle; the next request's headers get a fresh deadline."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def trusted_networks(
    proxies: list[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Return the networks of trusted_proxies entries (addresses or CIDR networks).

    Precondition: each entry parses (Settings validates them)."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def guarded_protocol(
    header_timeout_s: float = HEADER_TIMEOUT_S,
    max_per_address: int = MAX_CONNECTIONS_PER_ADDRESS,
    trusted_proxies: list[str] | None = None,
) -> type[GuardedH11Protocol]:
    """Return a GuardedH11Protocol class for one server: these limits, its own address counts."""
    attrs = {
        "header_timeout_s": header_timeout_s,
        "max_per_address": max_per_address,
        "trusted": trusted_networks(trusted_proxies or []),
        "open_by_address": Counter(),
    }
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attrs)


def uvicorn_config(
    app: Any, settings: Settings, *, header_timeout_s: float = HEADER_TIMEOUT_S
) -> uvicorn.Config:
    """Return the uvicorn configuration serving app on settings.host:settings.port.

    header_timeout_s: the request-head deadline (tests shorten it). Logging stays with the
    caller (log_config=None), lifespan is off (the caller starts and stops the node).
    """
    trusted = list(settings.trusted_proxies)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=guarded_protocol(header_timeout_s, trusted_proxies=trusted),
        ws="none",  # the API has no WebSocket route: refuse upgrades outright
        # X-Forwarded-For/-Proto only from the configured proxies (module doc), never by default
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=MAX_CONNECTIONS,
        server_header=False,  # no "server: uvicorn" banner
    )
