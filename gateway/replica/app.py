"""The replica's HTTP API: the gateway's read routes over the replica's own copy.

Mounted unchanged from gateway.api.routes: the log (checkpoints, entries, RFC 9162 proofs, proof
bundles), the contracts (instances, events, every contract view) and the C2SP tiles (so other
replicas can sync from this one); plus /v1/replica (sync status, alarms), /healthz and /metrics.
No write route: the replica accepts nothing but what it verified. The same typed errors, security
headers and per-address read limits as the gateway (gateway.api).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.api.app import install_error_handlers
from gateway.api.limits import RateLimits
from gateway.api.middleware import RequestGuard, SecurityHeaders
from gateway.api.routes import contracts, log, ops, tiles
from gateway.replica.node import ReplicaNode


class ReplicaMetrics(Collector):
    """The replica's numbers, read at every scrape."""

    def __init__(self, node: ReplicaNode) -> None:
        self.node = node

    def collect(self) -> Any:
        """Yield the replica's gauges."""
        node = self.node
        st = node.status
        for name, text, value in (
            ("tree_size", "entries of the newest verified checkpoint", node.reader.tree_size),
            ("entries_synced", "entries verified and replayed since start", st.entries_synced),
            ("sync_steps", "successful sync steps since start", st.steps),
            ("alarms", "alarms raised (the replica stops advancing)", len(node.alarms())),
            ("sync_running", "1 while the sync loop runs", int(st.running)),
        ):
            yield _gauge(f"edgeseal_replica_{name}", text, value)


def _gauge(name: str, text: str, value: float) -> Metric:
    g = GaugeMetricFamily(name, text)
    g.add_metric([], value)
    return g


def create_replica_app(node: ReplicaNode, *, limits: RateLimits | None = None) -> FastAPI:
    """Return the app serving node's copy (the caller starts and stops the node)."""
    app = FastAPI(
        title="edgeseal replica",
        version=ops.package_version(),
        description="A participant's verified copy of an edgeseal gateway's log; docs/replica.md.",
    )
    app.state.node = node  # what gateway.api.deps reads `reads` from
    app.state.limits = limits = limits or RateLimits()
    registry = CollectorRegistry()
    registry.register(ReplicaMetrics(node))
    install_error_handlers(app)
    app.add_middleware(RequestGuard, limits=limits)
    app.add_middleware(SecurityHeaders)
    for router in (log.router, tiles.router, contracts.build_router(node.engine.contracts)):
        app.include_router(router)

    @app.get("/v1/replica", summary="source, sizes, state hash, sync status, alarms")
    async def replica() -> dict[str, Any]:
        return node.to_json()

    @app.get("/healthz", summary="liveness: ok, or alarm (503) once the gateway misbehaved")
    async def healthz() -> JSONResponse:
        alarms = node.alarms()
        body = {
            "status": "alarm" if alarms else "ok",
            "tree_size": node.reader.tree_size,
            "alarms": len(alarms),
            "uptime_s": round(time.monotonic() - node.started_at, 3),
        }
        return JSONResponse(body, status_code=503 if alarms else 200)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return app
