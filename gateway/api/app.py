"""The HTTP API app (FastAPI): routers over the node's read model and sequencer; docs/api.md.

One exception handler answers every EdgesealError with its `status` and its `to_dict()` body;
request validation errors and unknown routes get the same typed body (400, never 422), a 405
carries Allow. Admin writes need the operator bearer token; participant writes are signed
transactions; writes and unauthenticated reads are rate-limited (gateway.api.limits). The pure
ASGI middleware of gateway.api.middleware adds security headers, counts requests, and checks
request bodies as they arrive (size, time, strict JSON) before FastAPI parses them. The OpenAPI
schema declares the statuses each route really answers (gateway.api.responses).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.limits import RateLimits
from gateway.api.metrics import ApiMetrics
from gateway.api.middleware import CountRequests, RequestGuard, SecurityHeaders
from gateway.api.responses import error_response, error_schemas
from gateway.api.routes import checkpoints, contracts, devices, log, ops, tiles, transactions
from gateway.errors import EdgesealError, NotFound, RequestError
from gateway.node import Node

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# FastAPI documents a 422 HTTPValidationError for every route with parameters; this API answers
# validation errors with a typed 400 instead, so the schema drops them (422 stays only where a
# route declares it: a transaction the contracts reject).
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


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
    if exc.status_code == 405:
        err = RequestError("method-not-allowed", "this route does not take that method")
    else:
        err = RequestError("bad-request", str(exc.detail))
    headers = dict(exc.headers or {})  # Allow on a 405 (RFC 9110 15.5.6)
    return JSONResponse(err.to_dict(), status_code=exc.status_code, headers=headers)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Return app.openapi: FastAPI's schema without the 422 validation responses it adds."""
    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = fastapi_openapi()  # cached by FastAPI in app.openapi_schema
            for operations in schema.get("paths", {}).values():
                for op in operations.values():
                    answers = op.get("responses", {})
                    if "HTTPValidationError" in str(answers.get("422", "")):
                        del answers["422"]
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name in _FASTAPI_VALIDATION_SCHEMAS:
                components.pop(name, None)
            components.update(error_schemas())
        assert app.openapi_schema is not None
        return app.openapi_schema

    return openapi


def install_error_handlers(app: FastAPI) -> None:
    """Answer EdgesealError, validation errors and unknown routes with the typed body (module
    doc); shared with the replica's app (gateway.replica.app)."""
    app.add_exception_handler(EdgesealError, _typed)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)


def create_app(
    node: Node, *, clock: Callable[[], float] = time.monotonic, limits: RateLimits | None = None
) -> FastAPI:
    """Return the FastAPI app serving node (which the caller starts and stops).

    clock: the rate limiters' time source in seconds (tests freeze it); limits: the rate limits
    (default RateLimits(clock); tests that make thousands of reads pass a roomier one).
    """
    app = FastAPI(
        title="edgeseal gateway",
        version=ops.package_version(),
        description="Signed IoT readings in an RFC 9162 log with C2SP checkpoints; docs/api.md.",
    )
    app.state.node = node
    app.state.limits = limits = limits or RateLimits(clock)
    app.state.metrics = metrics = ApiMetrics(node)
    app.state.has_dashboard = WEB_DIR.is_dir()
    install_error_handlers(app)
    # added innermost first: SecurityHeaders wraps CountRequests wraps RequestGuard
    app.add_middleware(RequestGuard, limits=limits)
    app.add_middleware(CountRequests, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    for router in (
        ops.router,
        log.router,
        devices.router,
        transactions.router,
        tiles.router,
        contracts.build_router(node.sequencer.engine.contracts),
        checkpoints.build_router(node),
    ):
        app.include_router(router)
    if app.state.has_dashboard:
        app.mount("/ui", StaticFiles(directory=str(WEB_DIR), html=True), name="ui")
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
