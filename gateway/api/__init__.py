"""The HTTP API: `create_app(node)` (gateway.api.app) with one router per resource in routes/.

deps.py holds the routes' dependencies (the node's parts, operator auth, write limits),
limits.py the token buckets, metrics.py the Prometheus collector.
"""

from gateway.api.app import create_app
from gateway.api.limits import IP_BURST, PARTICIPANT_BURST, TokenBuckets

__all__ = ["IP_BURST", "PARTICIPANT_BURST", "TokenBuckets", "create_app"]
