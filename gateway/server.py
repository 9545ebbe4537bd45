"""One gateway process: a Node and its HTTP API (uvicorn) until SIGTERM or SIGINT.

`edgeseal serve` calls `serve(settings)`; tools/sim/run.py calls it with the virtual fleet as
the node's Extension. On a signal the API stops taking requests, the node finishes the batch in
flight, integrates and closes; sd_notify tells systemd READY and STOPPING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

from gateway.config import Settings
from gateway.errors import StartupRefused
from gateway.node import Extension, Node

EXIT_OK = 0
EXIT_FAILED = 1
# Start-up refusals (gateway.errors.StartupRefused), one exit code per thing the operator must
# do (docs/operations.md, Recovery). systemd does not restart on them (RestartPreventExitStatus).
EXIT_BAD_CONFIG = 2  # an unusable setting: an operator token under 16 characters, a bad link.key,
# witness policy, MQTT URL or MQTT cursor file
EXIT_LEDGER_ROLLED_BACK = 3  # the ledger is missing, emptied, rolled back or forked
EXIT_ACKED_DATA_LOST = 4  # the derived state saw acknowledged records the ledger lacks
EXIT_KEY_MISSING = 5  # a ledger exists but the gateway key does not
_EXIT_BY_CODE = {
    "bad-operator-token": EXIT_BAD_CONFIG,
    "bad-link-key": EXIT_BAD_CONFIG,
    "bad-witness-policy": EXIT_BAD_CONFIG,
    "bad-mqtt-url": EXIT_BAD_CONFIG,
    "bad-mqtt-topic-prefix": EXIT_BAD_CONFIG,
    "bad-mqtt-cursor": EXIT_BAD_CONFIG,
    "ledger-missing": EXIT_LEDGER_ROLLED_BACK,
    "ledger-behind-checkpoint": EXIT_LEDGER_ROLLED_BACK,
    "ledger-fork": EXIT_LEDGER_ROLLED_BACK,
    "bad-checkpoint-file": EXIT_LEDGER_ROLLED_BACK,
    "ledger-unreadable": EXIT_LEDGER_ROLLED_BACK,
    "acked-data-lost": EXIT_ACKED_DATA_LOST,
    "key-missing": EXIT_KEY_MISSING,
}
# why: the HTTP server gets this long to come up (bind the port) before serve gives up.
SERVER_START_TIMEOUT_S = 30
# why: how often serve looks whether uvicorn has bound its port while starting.
SERVER_POLL_S = 0.02
log = logging.getLogger("edgeseal")


class _QuietSignalsServer:
    """Factory for a uvicorn.Server that leaves signal handling to `serve` (uvicorn would
    re-raise SIGTERM after shutdown, turning a clean stop into exit status -15)."""

    @staticmethod
    def make(config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


async def serve(settings: Settings, extension: Extension | None = None) -> int:
    """Run a node (with extension, if any) and its API until SIGTERM/SIGINT; return the exit
    code: EXIT_OK after a clean stop, exit_code_for(code) if the node refused to start
    (StartupRefused), EXIT_FAILED if the node or the API could not start otherwise."""
    from gateway.api import create_app
    from gateway.api.serving import uvicorn_config

    try:
        node = await asyncio.to_thread(Node, settings)
    except StartupRefused as exc:
        log.error("refusing to start: %s: %s", exc.code, exc.message)
        return exit_code_for(exc.code)
    except Exception as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start(extension)
    except Exception as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return EXIT_FAILED
    # limits against slow and greedy clients, proxy trust: gateway.api.serving (why-comments)
    config = uvicorn_config(create_app(node), settings)
    server = _QuietSignalsServer.make(config)
    server_task = asyncio.create_task(server.serve())
    deadline = loop.time() + SERVER_START_TIMEOUT_S
    while not server.started and not server_task.done() and loop.time() < deadline:
        await asyncio.sleep(SERVER_POLL_S)
    if not server.started:
        log.error("the HTTP API could not start on %s:%s", settings.host, settings.port)
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await server_task
        await node.stop()
        return EXIT_FAILED
    _log_serving(node, server)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, server_task}, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping: finishing the batch in flight")
    node.notifier.stopping("finishing the batch in flight")
    server.should_exit = True
    with contextlib.suppress(BaseException):
        await server_task
    waiter.cancel()
    await node.stop()
    log.info("stopped cleanly")
    return EXIT_OK


def exit_code_for(code: str) -> int:
    """Return the exit status of `edgeseal serve` for a StartupRefused code (EXIT_FAILED for a
    code this version does not know)."""
    return _EXIT_BY_CODE.get(code, EXIT_FAILED)


def _log_serving(node: Node, server: Any) -> None:
    """Log where the node serves and tell systemd it is ready."""
    s = node.settings
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else s.port
    token_src = "from configuration" if s.operator_token else str(s.token_path)
    led = node.sequencer.ledger
    log.info(
        "edgeseal serving %s on http://%s:%s (data %s; operator token %s; BLE %s %s)",
        led.origin if led else "?",
        s.host,
        port,
        s.data_dir,
        token_src,
        node.ble.mode,
        node.ble.status,
    )
    node.notifier.ready(f"serving on {s.host}:{port}")
