"""The API under a real uvicorn on a loopback port, configured as `edgeseal serve` configures it
(gateway/api/serving.py): hostile clients over raw sockets (a 50 MB chunked body, slowloris, a
trickled body, many connections), and which client address the rate limits see."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gateway.api import IP_BURST, middleware
from gateway.api.limits import RateLimits
from gateway.api.serving import (
    KEEP_ALIVE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_ADDRESS,
    MAX_HEADER_BYTES,
    uvicorn_config,
)
from tests.gateway.api.helpers import LiveGateway, closed_by_peer, read_response
from tests.gateway.node.helpers import make_settings

HOSTILE_BODY_BYTES = 50 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# why: what the kernel may buffer between the two ends of a loopback connection (send buffer +
# receive buffer, autotuned up to a few MiB each): a server that stopped reading at 64 KiB
# leaves the client at most this far ahead; one that reads everything lets it send all 50 MB.
SOCKET_BUFFERS_BYTES = 16 * 1024 * 1024


def frozen_limits() -> RateLimits:
    """Return rate limits whose buckets never refill (a test sees exact bursts)."""
    return RateLimits(lambda: 1000.0)


def sequenced(gw: LiveGateway) -> int:
    """Return the ledger's sequenced size through the API."""
    return httpx.get(gw.base + "/v1/gateway", timeout=10).json()["sequenced_size"]


def status_of(response: bytes) -> int:
    """Return the status code of a raw HTTP/1.1 response."""
    return int(response.split(b" ", 2)[1])


def test_the_server_configuration(tmp_path: Path) -> None:
    config = uvicorn_config(object(), make_settings(tmp_path))
    assert config.proxy_headers is False  # X-Forwarded-For from nobody by default
    assert config.limit_concurrency == MAX_CONNECTIONS
    assert config.timeout_keep_alive == KEEP_ALIVE_TIMEOUT_S
    assert config.h11_max_incomplete_event_size == MAX_HEADER_BYTES
    trusting = uvicorn_config(object(), make_settings(tmp_path, trusted_proxies=["10.1.2.3"]))
    assert trusting.proxy_headers is True and trusting.forwarded_allow_ips == ["10.1.2.3"]
    for bad in ("*", "proxy.example", "10.0.0.0/33"):  # "*" would trust every client again
        with pytest.raises(ValidationError, match="trusted_proxies"):
            make_settings(tmp_path, trusted_proxies=[bad])


def test_a_50_mb_chunked_body_is_refused_at_the_limit_and_not_read(tmp_path: Path) -> None:
    with LiveGateway(tmp_path) as gw:
        size = sequenced(gw)
        sock = gw.connect()
        sock.sendall(
            b"POST /v1/transactions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        frame = b"%x\r\n" % CHUNK_BYTES + b"[" * CHUNK_BYTES + b"\r\n"
        sent = 0
        sock.settimeout(2.0)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            while sent < HOSTILE_BODY_BYTES:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered: stop sending
                sock.sendall(frame)
                sent += CHUNK_BYTES
        sock.settimeout(10.0)
        response = read_response(sock)
        assert status_of(response) == 413, response[:300]
        assert b'"code":"too-large"' in response and b"connection: close" in response.lower()
        assert closed_by_peer(sock)  # not kept open to drain the rest
        assert sent < SOCKET_BUFFERS_BYTES < HOSTILE_BODY_BYTES, sent
        sock.close()
        assert sequenced(gw) == size


def test_slowloris_is_cut_off_while_other_clients_are_served(tmp_path: Path) -> None:
    header_timeout_s = 2.0
    with LiveGateway(tmp_path, header_timeout_s=header_timeout_s) as gw:
        slow = gw.connect()
        request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Padding: " + b"a" * 64 + b"\r\n\r\n"
        stop = threading.Event()
        result: dict[str, Any] = {}

        def trickle() -> None:  # one byte per second, as a slowloris client does
            started = time.monotonic()
            for i, byte in enumerate(request):
                try:
                    slow.send(bytes((byte,)))
                except OSError:
                    break
                result["sent"] = i + 1
                if stop.wait(1.0):
                    break
            result["held_s"] = time.monotonic() - started

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        with httpx.Client(base_url=gw.base, timeout=10) as client:
            served = 0
            while not closed_by_peer(slow, deadline_s=0.2):
                assert client.get("/healthz").status_code == 200  # others are served meanwhile
                served += 1
                assert thread.is_alive() or "held_s" in result
                assert served < 500, "the slow connection was never cut off"
        stop.set()
        thread.join(timeout=10)
        assert served >= 1
        assert result["sent"] < len(request)  # cut off long before its headers were complete
        slow.close()


def test_a_trickled_body_gets_408_and_the_connection_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(middleware, "BODY_TIMEOUT_S", 0.5)
    with LiveGateway(tmp_path) as gw:
        size = sequenced(gw)
        sock = gw.connect()
        sock.sendall(
            b"POST /v1/transactions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"payload": '
        )
        response = read_response(sock)
        assert status_of(response) == 408 and b'"code":"request-timeout"' in response
        assert closed_by_peer(sock)
        sock.close()
        assert sequenced(gw) == size


def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    with LiveGateway(tmp_path) as gw:
        socks = [gw.connect() for _ in range(MAX_CONNECTIONS_PER_ADDRESS)]
        extra = gw.connect()
        assert closed_by_peer(extra)  # over the per-address cap: closed at once
        for s in socks:
            s.close()
        extra.close()
        # once they are closed, the address is served again
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(gw.base + "/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)


def hammer_with_forwarded_for(gw: LiveGateway, n: int) -> list[int]:
    """POST n transactions, each claiming another client address in X-Forwarded-For; return
    the status codes."""
    with httpx.Client(base_url=gw.base, timeout=10) as client:
        return [
            client.post(
                "/v1/transactions",
                json={"payload": "AAAA"},
                headers={"X-Forwarded-For": f"198.51.100.{i % 250 + 1}"},
            ).status_code
            for i in range(n)
        ]


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(tmp_path: Path) -> None:
    with LiveGateway(tmp_path / "a", limits=frozen_limits()) as gw:
        size = sequenced(gw)
        codes = hammer_with_forwarded_for(gw, IP_BURST + 3)
        assert codes[0] == 400 and codes[-1] == 429  # one address: the TCP peer's
        assert sequenced(gw) == size
    trusted = {"trusted_proxies": ["127.0.0.1"]}
    with LiveGateway(tmp_path / "b", limits=frozen_limits(), **trusted) as gw:
        codes = hammer_with_forwarded_for(gw, IP_BURST + 3)
        assert 429 not in codes  # the trusted proxy's header names each client


def test_over_the_connection_limit_the_server_answers_503(tmp_path: Path) -> None:
    """uvicorn's limit_concurrency counts open connections; past it, 503 instead of queueing."""
    with LiveGateway(tmp_path) as gw:
        # each new connection's protocol reads the limit from the config: lower it to 2 so that
        # the code path of MAX_CONNECTIONS is reachable with three sockets
        gw._server.config.limit_concurrency = 2
        idle = [gw.connect(), gw.connect()]
        probe = gw.connect()
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        response = read_response(probe)
        assert status_of(response) == 503, response[:200]
        for s in [*idle, probe]:
            s.close()
