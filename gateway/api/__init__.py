"""The HTTP API: `create_app(node)` (gateway.api.app) with one router per resource in routes/.

deps.py holds the routes' dependencies (the node's parts, operator auth, rate limits),
limits.py the token buckets, metrics.py the Prometheus collector, middleware.py the pure ASGI
middleware (body guard, read limit, security headers, request counts), responses.py the typed
error body, serving.py the uvicorn configuration (connection limits, proxy trust).
"""

from gateway.api.app import create_app
from gateway.api.limits import IP_BURST, PARTICIPANT_BURST, TokenBuckets

__all__ = ["IP_BURST", "PARTICIPANT_BURST", "TokenBuckets", "create_app"]
