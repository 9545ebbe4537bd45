"""Shared helpers of the API tests: a TestClient on the app of a started service, a real
uvicorn server (gateway.api.serving's configuration) on a loopback port, typed-error asserts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

with warnings.catch_warnings():  # Starlette 1.10 warns that its TestClient still uses httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.api.limits import RateLimits
from gateway.api.serving import HEADER_TIMEOUT_S, uvicorn_config
from gateway.node import Node
from tests.gateway.node.helpers import make_settings

TOKEN = "operator-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """A TestClient on the app of a started service (the portal's loop runs the service)."""

    def __init__(self, client: TestClient, service: Node) -> None:
        self.c = client
        self.service = service

    def get(self, url: str, **kw: Any) -> Any:
        return self.c.get(url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.c.post(url, **kw)

    def tx(self, entry: bytes) -> Any:
        """POST a transaction entry (kind byte stripped)."""
        return self.post("/v1/transactions", json={"payload": base64.b64encode(entry[1:]).decode()})

    def wait_integrated(self, timeout_s: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.get("/v1/gateway").json()
            if info["pending"] == 0:
                return info
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the service's loop."""
        return self.c.portal.call(lambda: coro)  # type: ignore[union-attr]


def open_api(tmp_path: Path, limits: RateLimits | None = None, **overrides: Any) -> Iterator[Api]:
    """Yield an Api on a started service with settings overrides; limits: the app's rate limits
    (default: frozen buckets, which never refill in a test, and every read costs one token)."""
    service = Node(make_settings(tmp_path, **overrides))
    frozen = RateLimits(lambda: 1000.0, cost_clock=lambda: 0.0)
    app = create_app(service, limits=limits or frozen)
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(service.start)
        try:
            yield Api(client, service)
        finally:
            client.portal.call(service.stop)


def assert_typed(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert a typed error body with status (and code); return the body."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error", "code", "message"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


class LiveGateway:
    """The real gateway (a started Node and its app) under uvicorn with the configuration of
    `edgeseal serve` (gateway.api.serving.uvicorn_config), in a thread on a free loopback port.

    Use as a context manager; `port`, `base` (http://127.0.0.1:port) and `app` are set on entry.
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        limits: RateLimits | None = None,
        setup: Callable[[Node], Awaitable[None]] | None = None,
        **overrides: Any,
    ) -> None:
        """header_timeout_s: the server's request-head deadline; limits: the app's rate limits
        (default: real ones); setup: run on the started node before the server listens;
        overrides: settings (tests.gateway.node.helpers.make_settings)."""
        self.settings = make_settings(tmp_path, host="127.0.0.1", port=0, **overrides)
        self.header_timeout_s = header_timeout_s
        self.limits = limits
        self.setup = setup
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        import uvicorn

        node = await asyncio.to_thread(Node, self.settings)
        await node.start()
        if self.setup is not None:
            await self.setup(node)
        self.app = create_app(node, limits=self.limits)
        config = uvicorn_config(self.app, self.settings, header_timeout_s=self.header_timeout_s)
        self._server = uvicorn.Server(config)
        try:
            await self._server.serve(sockets=[self.sock])
        finally:
            await node.stop()

    def __enter__(self) -> LiveGateway:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not (self._server is not None and self._server.started):
            assert self._thread.is_alive(), "the gateway thread exited"
            assert time.monotonic() < deadline, "the gateway did not start within 30 s"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.sock.close()

    def connect(self, timeout_s: float = 10.0) -> socket.socket:
        """Return a new TCP connection to the server (blocking, with timeout_s per operation)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)


def read_response(sock: socket.socket, deadline_s: float = 20.0) -> bytes:
    """Return what the server sends on sock until it closes the connection or a complete
    response head and its Content-Length body have arrived (within deadline_s)."""
    data = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return data
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"no complete response within {deadline_s} s: {data[:200]!r}")


def closed_by_peer(sock: socket.socket, deadline_s: float = 20.0) -> bool:
    """Return True once the server has closed sock (EOF or reset) within deadline_s, reading and
    dropping whatever it still sends; False if it is still open at the deadline."""
    end = time.monotonic() + deadline_s
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False
