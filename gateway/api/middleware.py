"""Pure ASGI middleware of the API: security headers, request counting, and the request guard.

Pure ASGI (no BaseHTTPMiddleware) so that the guard sees the body as the server delivers it,
message by message: a chunked body is counted as it arrives and refused (413, connection
closed) as soon as it passes the limit, never buffered in full. Order, outermost first
(create_app): SecurityHeaders -> CountRequests -> RequestGuard -> the FastAPI app.

- SecurityHeaders: Content-Security-Policy, X-Content-Type-Options, Referrer-Policy and
  X-Frame-Options on every response (the dashboard in gateway/web/ loads only its own files).
- CountRequests: one count per answered request for /metrics (route template, method, status).
- RequestGuard: GET/HEAD take a token of the per-address read bucket (429) and are charged
  afterwards for the server time they took (limits.READ_COST_UNIT_S a token); a request body is
  read here, at most bounds.MAX_BODY_BYTES (413) within BODY_TIMEOUT_S (408), and if it is
  JSON it must pass bounds.loads_strict (400: too-deep, duplicate-key, non-finite, ...) before
  FastAPI parses it; the app then receives the same bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.datastructures import MutableHeaders

from gateway import bounds
from gateway.api.limits import RateLimits
from gateway.api.metrics import ApiMetrics
from gateway.api.responses import error_response
from gateway.errors import EdgesealError, RequestError, RequestTimeout, TooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# why: a legitimate body (<= 64 KiB) arrives in well under a second even over a weak Wi-Fi link;
# a client that trickles its body holds a connection and a task, so it gets 10 s in all.
BODY_TIMEOUT_S = 10.0
READ_METHODS = frozenset({"GET", "HEAD"})
# The dashboard (gateway/web/) loads only its own script, style sheet and JSON, and has no inline
# script or style; the favicon is a data: URL. No framing by anyone (clickjacking).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN and start them with an
# inline script: a policy of their own, still not frameable.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Adds the security headers to every HTTP response the app sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; add CSP (DOCS_CSP on the docs pages) and SECURITY_HEADERS to its start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in DOCS_PATHS else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", csp)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CountRequests:
    """Counts every answered HTTP request in ApiMetrics (labels bounded there)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app and count its answer by route template ("unmatched"), method, status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before starting a response

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.count_request(route, scope["method"], status)


class RequestGuard:
    """The read limit and the body checks of the module doc, before the app sees a request."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a typed 4xx (the app never runs), or run the app on the checked request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(_latin1_headers(scope))
        host = client_host(scope)
        read = scope["method"] in READ_METHODS
        try:
            if read:
                self.limits.check_read(host)
            body = await _read_body(headers, receive) if _has_body(headers) else None
            if body is not None and _is_json(headers.get("content-type")):
                bounds.loads_strict(body, "request body", _request_error)
        except _Disconnected:
            return
        except EdgesealError as exc:
            # a body not read to its end leaves the connection unusable: close it
            close = isinstance(exc, TooLarge | RequestTimeout)
            await error_response(exc, close=close)(scope, receive, send)
            return
        app_receive = receive if body is None else _replay(body, receive)
        if not read:
            await self.app(scope, app_receive, send)
            return
        started = self.limits.cost_clock()
        try:
            await self.app(scope, app_receive, send)
        finally:  # a read is charged for the server time it took
            self.limits.charge_read(host, self.limits.cost_clock() - started)


def client_host(scope: Scope) -> str:
    """Return the client's address as the server saw it ("unknown" if none): the TCP peer, or
    the address a trusted proxy forwarded (uvicorn rewrites scope["client"] only for those)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class _Disconnected(Exception):
    """The client went away while sending its body: nobody to answer."""


def _latin1_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def _has_body(headers: dict[str, str]) -> bool:
    """Return True if the request announces a body (Content-Length > 0 or Transfer-Encoding)."""
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def _request_error(code: str, message: str) -> EdgesealError:
    """Return the API's error for a bounds code: TooLarge (413) or RequestError (400)."""
    return TooLarge(code, message) if code == "too-large" else RequestError(code, message)


def _is_json(content_type: str | None) -> bool:
    """Return True if FastAPI parses a body of this content type as JSON (application/json or
    application/*+json; without a content type it does not parse the body at all)."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _read_body(headers: dict[str, str], receive: Receive) -> bytes:
    """Return the request body; raise TooLarge as soon as it passes bounds.MAX_BODY_BYTES (the
    rest is never read), RequestTimeout after BODY_TIMEOUT_S, RequestError for a malformed
    Content-Length, _Disconnected if the client leaves."""
    limit = bounds.MAX_BODY_BYTES
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise RequestError("bad-request", "Content-Length is not a number")
        if int(length) > limit:
            raise TooLarge("too-large", f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(BODY_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise TooLarge("too-large", f"request body over {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise RequestTimeout(
            "request-timeout", f"the request body did not arrive within {BODY_TIMEOUT_S:g} s"
        ) from None


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive that gives body as one message, then defers to receive (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
