"""Benchmarks the witness add-checkpoint round trip on loopback against a bare HTTP echo served by
the same stack (Starlette on uvicorn, one keep-alive connection), measured in the same run.

The witness request includes parsing, the log's Ed25519 signature check, the RFC 9162
consistency proof, the cosignature and one SQLite commit with synchronous=FULL (an fsync): the
ratio says what the witness costs above moving the same bytes over HTTP.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (tools/bench.py imports it as tools.bench_witness)
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from gateway.ledger.note import NoteSigner  # noqa: E402
from gateway.publish.witness_server import build_app  # noqa: E402
from tests.gateway.publish.helpers import ORIGIN, Log, body, make_witness  # noqa: E402

# why: ~1-3 s per side on this machine (an fsync per witness request dominates)
DEFAULT_REQUESTS = 400


def echo_app() -> Starlette:
    """Return the baseline: POST /add-checkpoint echoes a short line, nothing else."""

    async def echo(request: Request) -> Response:
        await request.body()
        return Response("ok\n", media_type="text/plain")

    return Starlette(routes=[Route("/add-checkpoint", echo, methods=["POST"])])


def start(app: Starlette) -> tuple[uvicorn.Server, int]:
    """Return a running uvicorn server of app on a free loopback port, and the port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, int(port)


def run(port: int, bodies: list[bytes]) -> float:
    """Return the seconds to POST every body in order on one keep-alive connection (all 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    t0 = time.perf_counter()
    for data in bodies:
        conn.request("POST", "/add-checkpoint", data)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Print requests/s and ms/request of the witness vs the echo baseline; return 0."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    ap.add_argument("--quick", action="store_true", help="a tenth of the requests")
    args = ap.parse_args(argv)
    n = max(10, args.requests // 10 if args.quick else args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        signer = NoteSigner.generate(ORIGIN)
        log = Log(Path(tmp) / "log.db", signer)
        bodies = [body(0, [], log.grow(1))]
        for size in range(2, n + 1):
            note = log.grow(1)
            bodies.append(body(size - 1, log.proof(size - 1, size), note))
        service = make_witness(Path(tmp), signer.vkey)
        witness, witness_port = start(build_app(service))
        echo, echo_port = start(echo_app())
        base_s = run(echo_port, bodies)
        witness_s = run(witness_port, bodies)
        for server in (witness, echo):
            server.should_exit = True
        service.state.close()
    for name, seconds in (("echo (baseline)", base_s), ("witness add-checkpoint", witness_s)):
        print(f"{name:24} {n / seconds:8.0f} req/s  {1000 * seconds / n:7.3f} ms/req")
    print(f"witness / echo time per request: {witness_s / base_s:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
