"""The HTTP API app (FastAPI): routers over the node's read model and sequencer; docs/api.md.

One exception handler answers every EdgesealError with its `status` and its `to_dict()` body;
request validation errors and unknown routes get the same typed body. Admin writes need the
operator bearer token; participant writes are signed transactions; writes are rate-limited per
participant and per client address (gateway.api.limits).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.limits import WriteLimits
from gateway.api.metrics import ApiMetrics
from gateway.api.routes import contracts, devices, log, ops, transactions
from gateway.api.routes.transactions import MAX_BODY_BYTES
from gateway.errors import EdgesealError, NotFound, RateLimited, RequestError, TooLarge
from gateway.node import Node

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def error_response(exc: EdgesealError, **extra: Any) -> JSONResponse:
    """Return the typed error body with the error's HTTP status (Retry-After when limited)."""
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
    return JSONResponse({**exc.to_dict(), **extra}, status_code=exc.status, headers=headers)


async def _typed(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EdgesealError)
    return error_response(exc)


async def _invalid(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    err = RequestError("bad-request", f"{'.'.join(first['loc'])}: {first['msg']}")
    return error_response(err, details=details)


async def _http(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(NotFound("not-found", "no such route"))
    err = RequestError("bad-request", str(exc.detail))
    return JSONResponse(err.to_dict(), status_code=exc.status_code)


def create_app(node: Node, *, clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """Return the FastAPI app serving node (which the caller starts and stops).

    clock: the rate limiters' time source in seconds (tests freeze it).
    """
    app = FastAPI(
        title="edgeseal gateway",
        version=ops.package_version(),
        description="Signed IoT readings in an RFC 9162 log with C2SP checkpoints; docs/api.md.",
    )
    app.state.node = node
    app.state.limits = WriteLimits(clock)
    app.state.metrics = metrics = ApiMetrics(node)
    app.state.has_dashboard = WEB_DIR.is_dir()
    app.add_exception_handler(EdgesealError, _typed)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)

    @app.middleware("http")
    async def _limit_and_count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response: Response = error_response(
                TooLarge("too-large", f"request body over {MAX_BODY_BYTES} bytes")
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        metrics.count_request(
            getattr(route, "path", None) or "unmatched", request.method, response.status_code
        )
        return response

    for router in (
        ops.router,
        log.router,
        devices.router,
        transactions.router,
        contracts.build_router(node.sequencer.engine.contracts),
    ):
        app.include_router(router)
    if app.state.has_dashboard:
        app.mount("/ui", StaticFiles(directory=str(WEB_DIR), html=True), name="ui")
    return app
