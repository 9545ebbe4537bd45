"""gateway.client against the real API (uvicorn on a loopback port): typed errors that match the
API's, signing through gateway.txformat, retries on the 429 and 503 a real gateway answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from gateway import errors
from gateway.api import create_app
from gateway.api.limits import RateLimits, TokenBuckets
from gateway.api.serving import uvicorn_config
from gateway.client import (
    Client,
    ClientError,
    NonceFile,
    create_key_file,
    error_from_response,
    load_key_file,
    public_key_hex,
)
from gateway.node import Node
from gateway.txformat import make_tx
from tests.gateway.api.helpers import LiveGateway
from tests.gateway.node.helpers import make_settings

OP = SigningKey(b"\x01" * 32)
OP_PK = public_key_hex(OP)


def _register_self(client: Client, nonce: int = 1) -> Any:
    args = {"public_key": OP_PK, "name": "op", "roles": ["operator", "grower"]}
    return client.transact([OP], "engine", "register", args, nonce=nonce)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """A gateway whose operator OP is registered; its participant bucket holds one token and
    refills at 2/s, so a second quick transaction is answered 429."""
    limits = RateLimits()
    limits.participants = TokenBuckets(2.0, 1)
    with LiveGateway(tmp_path_factory.mktemp("gw"), limits=limits) as live:
        with Client(live.base) as client:
            _register_self(client)
            # the rate-limit tests' own contract: xdist may run them on a worker (and a
            # gateway of this fixture) where the transact test did not run; a 429 on the way
            # (one token, 2/s) is retried by the client
            args = {"id": "agri-ticks", "type": "agri", "params": {"certifiers": [OP_PK]}}
            client.transact([OP], "engine", "create", args, nonce=2)
        yield live


def test_transact_signs_submits_and_waits_for_the_checkpoint(gw: LiveGateway) -> None:
    with Client(gw.base) as client:
        args = {"id": "agri-client", "type": "agri", "params": {"certifiers": [OP_PK]}}
        done, status = client.transact([OP], "engine", "create", args, nonce=10)
        assert status is not None and status.integrated and status.index == done.index
        assert [e["type"] for e in done.events] == ["contract-created"]
        assert status.events == [e["index"] for e in done.events]
        assert client.contract("agri-client")["type"] == "agri"
        assert client.participants()[OP_PK]["roles"] == ["grower", "operator"]
        assert any(e["type"] == "contract-created" for e in client.contract_events())
        assert client.view("agri-client", "lots") == {"lots": {}}
        bundle = client.bundle(done.index)
        from gateway.bundle import verify_bundle_bytes

        assert verify_bundle_bytes(bundle, client.gateway()["vkey"]).index == done.index
        assert client.last_server_time_s is not None  # the Date header: the gateway's clock


def test_errors_are_the_servers_typed_errors(gw: LiveGateway) -> None:
    with Client(gw.base, max_retries=8) as client:
        with pytest.raises(errors.ContractError) as rejected:  # 422: the contract says no
            client.transact([OP], "nope", "tick", {}, nonce=20, wait=False)
        assert type(rejected.value) is errors.ContractError
        assert rejected.value.code == "unknown-contract" and rejected.value.status == 422
        with pytest.raises(errors.TxError) as replay:  # 400: undecodable
            client.submit(b"\x00garbage")
        assert replay.value.code in ("tx-unsigned", "tx-malformed")
        skewed = make_tx([OP], 21, "engine", "tick", {}, int(time.time()) + 3600)
        with pytest.raises(errors.TxError, match="tx-clock-skew"):
            client.submit(skewed)
        with pytest.raises(errors.NotFound):
            client.contract("no-such")
        with pytest.raises(errors.NotFound):
            client.tx_status("0" * 64)


def test_a_wrong_contract_type_is_409(gw: LiveGateway) -> None:
    with Client(gw.base) as client:
        args = {"id": "agri-two", "type": "agri", "params": {"certifiers": [OP_PK]}}
        client.transact([OP], "engine", "create", args, nonce=30, wait=False)
        with pytest.raises(errors.WrongContractType) as wrong:
            client.view("agri-two", "pond")
        assert wrong.value.status == 409 and wrong.value.code == "wrong-contract-type"


def test_429_is_retried_with_backoff_then_succeeds(gw: LiveGateway) -> None:
    seen: list[tuple[int, float]] = []
    with Client(gw.base, on_retry=lambda status, wait_s: seen.append((status, wait_s))) as c:
        now = int(time.time())
        first = c.transact([OP], "agri-ticks", "tick", {}, nonce=41, time_s=now, wait=False)
        second = c.transact([OP], "agri-ticks", "tick", {}, nonce=42, time_s=now, wait=False)
    assert second[0].index > first[0].index
    assert seen and seen[0][0] == 429 and seen[0][1] > 0  # Retry-After honoured


def test_429_after_the_last_retry_is_rate_limited(gw: LiveGateway) -> None:
    with Client(gw.base, max_retries=0) as c:
        now = int(time.time())
        with pytest.raises(errors.RateLimited) as limited:
            for nonce in range(50, 54):
                c.transact([OP], "agri-ticks", "tick", {}, nonce=nonce, time_s=now, wait=False)
        assert limited.value.retry_after_s > 0 and limited.value.status == 429


class LateStartGateway:
    """The real app under uvicorn on a loopback port whose node starts only when `start` is
    set: until then every write is answered 503 (the service is not running)."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = make_settings(tmp_path, host="127.0.0.1", port=0)
        self.start = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: Any = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        import uvicorn

        node = await asyncio.to_thread(Node, self.settings)
        app = create_app(node)
        self.server = uvicorn.Server(uvicorn_config(app, self.settings))

        async def start_later() -> None:
            await asyncio.to_thread(self.start.wait)
            await node.start()

        starter = asyncio.create_task(start_later())
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.start.set()
            await starter
            await node.stop()

    def __enter__(self) -> LateStartGateway:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server is not None and self.server.started):
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.sock.close()


def test_503_is_retried_until_the_gateway_runs(tmp_path: Path) -> None:
    seen: list[int] = []
    with LateStartGateway(tmp_path) as late:

        def on_retry(status: int, _wait_s: float) -> None:
            seen.append(status)
            late.start.set()  # the gateway comes up while the client backs off

        with Client(late.base, on_retry=on_retry, max_retries=8) as client:
            done, status = _register_self(client)
    assert seen and seen[0] == 503
    assert (
        status is not None
        and status.integrated
        and done.events[0]["type"] == ("participant-registered")
    )


def test_an_unreachable_gateway_is_a_client_error() -> None:
    with Client("http://127.0.0.1:9", max_retries=0) as client, pytest.raises(ClientError) as e:
        client.gateway()
    assert e.value.code == "unreachable"


def test_error_mapping_covers_odd_answers() -> None:
    plain = error_from_response(503, None, None)  # uvicorn's plain-text connection limit
    assert isinstance(plain, errors.ServiceUnavailable) and plain.code == "http-503"
    limited = error_from_response(429, {"error": "RateLimited", "code": "rate-limited"}, 2.0)
    assert isinstance(limited, errors.RateLimited) and limited.retry_after_s == 2.0
    odd = error_from_response(418, {"error": "Teapot", "code": "x", "message": "m"}, None)
    assert isinstance(odd, errors.RequestError) and odd.code == "x"
    busy = error_from_response(409, {"error": "BundleError", "code": "not-integrated"}, None)
    assert isinstance(busy, errors.NotIntegrated)


def test_key_files_are_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "me.key"
    key = create_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert bytes(load_key_file(path)) == bytes(key)
    with pytest.raises(ClientError, match="key-file-exists"):
        create_key_file(path)
    os.chmod(path, 0o640)
    with pytest.raises(ClientError, match="readable by others"):
        load_key_file(path)
    os.chmod(path, 0o600)
    doc = json.loads(path.read_text())
    doc["public_key"] = "00" * 32
    path.write_text(json.dumps(doc))
    with pytest.raises(ClientError, match="does not match"):
        load_key_file(path)


def test_nonces_rise_and_survive_a_lost_file(tmp_path: Path) -> None:
    nonces = NonceFile(tmp_path / "k.key")
    a = nonces.next(now_ms=1000)
    b = nonces.next(now_ms=1000)  # same millisecond: still rises
    c = nonces.next(now_ms=5000)
    assert a == 1000 and b == 1001 and c == 5000
    os.remove(nonces.path)
    assert nonces.next(now_ms=6000) == 6000  # the clock keeps them rising
    nonces.record(10**9)  # an explicit nonce moves the file on
    assert nonces.next(now_ms=7000) == 10**9 + 1
    nonces.record(5)  # never back
    assert nonces.last() == 10**9 + 1


def test_the_client_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, gateway.client\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'uvicorn', 'sqlite3', '_sqlite3') or m.startswith("
        "('gateway.node', 'gateway.api', 'gateway.ledger', 'gateway.contracts'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
