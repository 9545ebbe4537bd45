"""Shared rig of the tile and replica tests: a gateway data dir holding a prepared log."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.config import Settings
from gateway.ledger import Ledger, load_or_create_signer
from gateway.ledger.entries import KIND_DEVICE_RECORD
from tests.support import ChainDevice

APPEND_BATCH_ENTRIES = 5000


def scenario_entries() -> list[bytes]:
    """Return the log of the five contract scenarios (entries and their events, in log order)."""
    from tests.gateway.contracts import (
        test_agri,
        test_collateral,
        test_energy,
        test_fishfarm,
        test_parking,
    )
    from tests.gateway.contracts.helpers import Log

    log = Log()
    for module in (test_agri, test_fishfarm, test_collateral, test_energy, test_parking):
        module.scenario(log)
    return log.entries


def filler_records(count: int, name: str = "filler") -> list[bytes]:
    """Return count device-record entries of a board nobody enrolled (the contracts skip them)."""
    board = ChainDevice(name, seed=hashlib.sha256(name.encode()).digest())
    return [bytes((KIND_DEVICE_RECORD,)) + r for _, r in board.readings(count, sign_every=10**9)]


def prepare_log(data_dir: Path, entries: list[bytes]) -> None:
    """Write entries into data_dir/ledger.db under data_dir/gateway.key, sequenced but not
    integrated: the gateway integrates them (with its state line) when it opens the ledger."""
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    signer = load_or_create_signer(str(settings.key_path), None)
    led = Ledger.open(str(settings.ledger_path), signer, max_batch_entries=10**9)
    try:
        for start in range(0, len(entries), APPEND_BATCH_ENTRIES):
            chunk = entries[start : start + APPEND_BATCH_ENTRIES]
            led.append([(e[0], e[1:]) for e in chunk])
    finally:
        led.close()


def mth(leaves: list[bytes]) -> bytes:
    """Return MTH(D) by the recursive definition of RFC 9162 2.1.1 over leaf *hashes*: a
    reference independent of gateway.ledger (the split is the largest power of two below n)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


# ---- a hostile network in front of the real gateway ------------------------------------------

Tamper = Callable[[str, bytes], bytes]


class TamperingProxy:
    """A real HTTP server (uvicorn, loopback, own thread) that forwards GETs to the gateway and
    lets tamper(path, body) change what it answers: the gateway's operator or a man in the middle
    serving bytes that do not match the signed checkpoint. Use as a context manager; `base`."""

    def __init__(
        self, upstream: str, tamper: Tamper | None = None, hold: Callable[[str], bool] | None = None
    ) -> None:
        """tamper(path, body): what to answer instead (default: the body); hold(path): True to
        keep that request waiting until release() (a stalled link), default never."""
        self.upstream = upstream
        self.tamper = tamper or (lambda _path, body: body)
        self.hold = hold or (lambda _path: False)
        self.released = threading.Event()
        self.counts: Counter[str] = Counter()  # requests seen, by path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._server: Any = None
        self._client: httpx.AsyncClient | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.counts[path] += 1
        while self.hold(path) and not self.released.is_set():
            await asyncio.sleep(0.02)
        assert self._client is not None
        resp = await self._client.get(self.upstream + path, headers={"Accept-Encoding": "identity"})
        body = self.tamper(path, resp.content)
        headers = [(b"content-type", resp.headers.get("content-type", "").encode())]
        await send({"type": "http.response.start", "status": resp.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        async with httpx.AsyncClient(timeout=60) as self._client:  # one pool: no TLS setup per call
            await self._server.serve(sockets=[self.sock])

    def __enter__(self) -> TamperingProxy:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not (self._server is not None and self._server.started):
            assert time.monotonic() < deadline, "the proxy did not start within 30 s"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.sock.close()


def gateway_info(base: str) -> dict[str, Any]:
    """Return the gateway's /v1/gateway (origin, vkey, sizes, state hash)."""
    return httpx.get(base + "/v1/gateway", timeout=30).json()


def wait_integrated(base: str, timeout_s: float = 60) -> dict[str, Any]:
    """Return /v1/gateway once nothing is pending (generous deadline, polled)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = gateway_info(base)
        if info["pending"] == 0:
            return info
        assert time.monotonic() < deadline, "the gateway did not integrate in time"
        time.sleep(0.05)
