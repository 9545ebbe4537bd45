"""`edgeseal replica`: run a participant's replica, or check an evidence file offline.

    edgeseal replica --from URL --data-dir DIR --key VKEY [--policy FILE] [--host H --port P]
    edgeseal replica check-evidence FILE --key VKEY

Exit codes: 0 ok (a stopped replica, confirmed evidence), 1 the evidence does not prove its claim
(or the replica stopped on an alarm), 2 bad arguments or unusable input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_HOST = "127.0.0.1"  # why: a participant's own node; expose it deliberately (--host)
DEFAULT_PORT = 8090  # why: beside the gateway's 8080 on one machine
# why: as the gateway (gateway.server): uvicorn gets this long to bind its port.
SERVER_START_TIMEOUT_S = 30.0

log = logging.getLogger("edgeseal.replica")


def add_replica_parser(sub: Any) -> None:
    """Register `edgeseal replica [check-evidence]` on the top-level subparsers."""
    p = sub.add_parser(
        "replica",
        help="a participant's verified replica of a gateway's log (C2SP tlog-tiles)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="source", help="the gateway's URL, e.g. http://gw:8080")
    p.add_argument("--data-dir", help="the replica's directory (replica.db, evidence/)")
    p.add_argument("--key", help="the gateway's verifier key (C2SP vkey, `edgeseal vkey`)")
    p.add_argument("--policy", help="C2SP tlog-policy file: checkpoints need its witness quorum")
    p.add_argument("--anchor-rpc", help="JSON-RPC URL of the chain the gateway anchors on: its "
                   "anchors are checked against the copy (with --anchor-chain-id, "
                   "--anchor-contract)")  # fmt: skip
    p.add_argument("--anchor-chain-id", type=int, help="that chain's id")
    p.add_argument("--anchor-contract", help="the EdgesealAnchor contract address (0x...)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"API address (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"API port ({DEFAULT_PORT})")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_replica, replica_parser=p)
    rsub = p.add_subparsers(dest="replica_command", metavar="REPLICA_COMMAND")
    c = rsub.add_parser("check-evidence", help="check a replica's evidence file offline")
    c.add_argument("file", help="the evidence file (JSON)")
    c.add_argument("--key", dest="check_key", required=True, help="the gateway's vkey")
    c.set_defaults(func=cmd_check_evidence)


def cmd_check_evidence(args: argparse.Namespace) -> int:
    """Print what the evidence file proves and return EXIT_OK, or why not and EXIT_FAILED."""
    from gateway.errors import ProofError
    from gateway.ledger.note import NoteVerifier
    from gateway.replica.evidence import EvidenceError, check_evidence, load

    try:
        verifier = NoteVerifier.from_vkey(args.check_key)
    except ProofError as exc:
        print(f"check-evidence: bad --key: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    try:
        confirmed = check_evidence(load(args.file), verifier)
    except EvidenceError as exc:
        print(f"NOT PROVEN: {exc.code}: {exc.message}")
        return EXIT_FAILED
    print(f"CONFIRMED {confirmed.kind}: {confirmed.summary}")
    return EXIT_OK


def cmd_replica(args: argparse.Namespace) -> int:
    """Run the replica until SIGTERM/SIGINT; return EXIT_OK after a clean stop."""
    missing = [f"--{n}" for n, v in (("from", args.source), ("data-dir", args.data_dir)) if not v]
    if not args.key:
        missing.append("--key")
    if missing:
        args.replica_parser.error(f"the replica needs {', '.join(missing)}")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per tile fetched
    from gateway.errors import EdgesealError
    from gateway.replica.node import ReplicaNode, ReplicaOptions

    anchor_args = (args.anchor_rpc, args.anchor_chain_id, args.anchor_contract)
    if any(a is not None for a in anchor_args) and not all(a is not None for a in anchor_args):
        args.replica_parser.error(
            "--anchor-rpc, --anchor-chain-id and --anchor-contract go together"
        )
    from gateway.replica.anchors import AnchorRef

    anchor = AnchorRef(*anchor_args) if args.anchor_rpc is not None else None
    options = ReplicaOptions(args.source, Path(args.data_dir), args.key, args.policy, anchor=anchor)
    try:
        node = ReplicaNode(options)
    except (EdgesealError, ValueError, OSError) as exc:
        print(f"replica: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(serve(node, args.host, args.port))


def _quiet_server(config: Any) -> Any:
    """Return a uvicorn.Server that leaves SIGTERM/SIGINT to `serve` (as gateway.server does)."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(config)


async def serve(node: Any, host: str, port: int) -> int:
    """Run node's sync loop and its API on host:port until SIGTERM/SIGINT; return the exit code
    (EXIT_FAILED if the API could not start)."""
    from gateway.api.serving import uvicorn_config
    from gateway.config import Settings
    from gateway.replica.app import create_replica_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # the gateway's hardened uvicorn configuration (gateway.api.serving); Settings only carries
    # the address and the (empty) proxy list here
    settings = Settings(data_dir=node.options.data_dir, host=host, port=port, ble=False)
    server = _quiet_server(uvicorn_config(create_replica_app(node), settings))
    node.start()
    task = asyncio.create_task(server.serve())
    deadline = loop.time() + SERVER_START_TIMEOUT_S
    while not server.started and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if not server.started:
        log.error("the replica API could not start on %s:%s", host, port)
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await task
        await asyncio.to_thread(node.stop)
        return EXIT_FAILED
    bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
    log.info("replica of %s serving on http://%s:%s", node.options.source, host, bound)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    with contextlib.suppress(BaseException):
        await task
    waiter.cancel()
    await asyncio.to_thread(node.stop)
    log.info("replica stopped")
    return EXIT_OK
