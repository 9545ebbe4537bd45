"""`edgeseal witness serve`: the C2SP tlog-witness HTTP server a participant runs.

Its own small Starlette app (not the gateway's API): the routes below only read the body within
its bound, call gateway.publish.witness_service.WitnessService in a worker thread (SQLite and
fsync block) and turn its answer or WitnessError into the status and content type of
c2sp.org/tlog-witness:

    POST /add-checkpoint             200 text/plain cosignature line(s); errors: 400 403 404
                                     409 (text/x.tlog.size, "<size>\\n") 413 422; 405 if not POST
    GET  /<sha256(origin) hex>/checkpoint
                                     200 text/plain the latest cosigned checkpoint; 404 if none

The submission and monitoring prefixes are both "/" (tlog-witness: "A witness MAY use the same
value for both"). docs/witness.md has the formats, the response matrix and the guarantees.
"""

from __future__ import annotations

import logging
import sqlite3

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.ledger.note import load_signer
from gateway.publish.cosignature import CosignatureSigner
from gateway.publish.witness_logs import load_logs
from gateway.publish.witness_service import (
    MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
    WitnessError,
    WitnessService,
)
from gateway.publish.witness_state import StaleState, WitnessState

TEXT = "text/plain; charset=utf-8"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8380
log = logging.getLogger("edgeseal.witness")


async def read_bounded(request: Request, max_bytes: int) -> bytes:
    """Return the request body; WitnessError("too-large") as soon as it passes max_bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise WitnessError("too-large", f"body is over {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise WitnessError("too-large", f"body is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(exc: WitnessError) -> Response:
    """Return the HTTP response of a rejection: 409 carries the size as tlog-witness says."""
    if exc.code == "conflict" and exc.size is not None:
        # exactly the spec's type: Starlette would append "; charset=utf-8" to a media_type
        headers = {"content-type": SIZE_CONTENT_TYPE}
        return Response(f"{exc.size}\n".encode(), status_code=409, headers=headers)
    return Response(f"{exc.code}: {exc.message}\n", status_code=exc.status, media_type=TEXT)


def unavailable(exc: Exception) -> Response:
    """Return 503 for a storage failure (busy database, disk error): nothing was cosigned."""
    log.warning("witness storage failure: %s", exc)
    return Response("unavailable: storage failure, retry\n", status_code=503, media_type=TEXT)


def build_app(service: WitnessService) -> Starlette:
    """Return the witness's Starlette app over `service` (routes in the module doc)."""

    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await read_bounded(request, MAX_REQUEST_BYTES)
            lines = await run_in_threadpool(service.add_checkpoint, body)
        except WitnessError as exc:
            return error_response(exc)
        except (sqlite3.Error, StaleState) as exc:
            return unavailable(exc)
        return Response(lines, status_code=200, media_type=TEXT)

    async def checkpoint(request: Request) -> Response:
        try:
            note = await run_in_threadpool(service.checkpoint, request.path_params["origin_hash"])
        except WitnessError as exc:
            return error_response(exc)
        except sqlite3.Error as exc:
            return unavailable(exc)
        return Response(note, status_code=200, media_type=TEXT)

    routes = [
        Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
        Route("/{origin_hash}/checkpoint", checkpoint, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def open_service(key_path: str, logs_path: str, data_dir: str) -> WitnessService:
    """Return the service of a key file (gateway.ledger.note format), a logs file and a data dir.

    Raises KeyFileError, LogsFileError or OSError/sqlite3.Error if one of them is unusable.
    """
    signer = CosignatureSigner(load_signer(key_path))
    return WitnessService(signer, load_logs(logs_path), WitnessState(data_dir))


def serve(service: WitnessService, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the witness on host:port until SIGTERM or SIGINT (uvicorn's handlers)."""
    import uvicorn

    try:
        uvicorn.run(build_app(service), host=host, port=port, log_level="warning")
    finally:
        service.state.close()
