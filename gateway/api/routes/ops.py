"""Operations routes: the dashboard redirect, liveness, Prometheus metrics, gateway info."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from gateway.api.deps import NodeDep, Reads
from gateway.api.responses import declare
from gateway.node.reads import redact_urls

router = APIRouter()


def package_version() -> str:
    """Return the installed edgeseal version, "0+unknown" from a bare checkout."""
    try:
        return version("edgeseal")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/", include_in_schema=False)
async def root(request: Request) -> Response:
    if request.app.state.has_dashboard:
        return RedirectResponse("/ui/")
    return JSONResponse({"api": "/openapi.json", "docs": "/docs"})


@router.get(
    "/healthz",
    summary="liveness and a summary",
    responses={**declare(), 503: {"description": "starting or stopping: the same body"}},
)
async def healthz(node: NodeDep) -> JSONResponse:
    sizes = node.reads.sizes()
    storage = node.sequencer.uploads.storage  # the full-disk alarm (docs/operations.md)
    status = ("degraded" if storage.alarm else "ok") if node.phase == "running" else node.phase
    body = {
        "status": status,
        "tree_size": sizes.tree_size if sizes else None,
        "sequenced_size": sizes.sequenced_size if sizes else None,
        "pending": sizes.pending if sizes else None,
        "ble": node.ble.status if node.ble.mode != "off" else "off",
        "storage": storage.to_json(),
        "uptime_s": round(time.monotonic() - node.started_at, 3),
    }
    return JSONResponse(body, status_code=200 if node.phase == "running" else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=declare())
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/gateway", summary="origin, verifier key, sizes, BLE status", responses=declare())
async def gateway_info(node: NodeDep, reads: Reads) -> dict[str, Any]:
    led = reads.ledger()
    return {
        "origin": led.origin,
        "vkey": led.vkey,
        "tree_size": led.tree_size,
        "sequenced_size": led.sequenced_size,
        "pending": led.pending,
        "state_hash": reads.state_hash_hex(),
        "ble": {"mode": node.ble.mode, "status": node.ble.status, "detail": node.ble.detail},
        "version": package_version(),
        # the witness quorum of the newest checkpoint and each witness (docs/witness.md)
        "witnesses": reads.witnesses.to_json() if reads.witnesses is not None else None,
        # the on-chain anchoring: outbox, newest anchored and final sizes (docs/anchoring.md)
        "anchor": reads.anchor_status(),
        # the MQTT bridge: connected, its durable cursor (docs/mqtt.md)
        "mqtt": _mqtt_status(node),
    }


def _mqtt_status(node: Any) -> dict[str, Any] | None:
    """Return the MQTT bridge's state for /v1/gateway, None when no bridge is configured. The
    broker URL is left out: it may hold a password."""
    if node.mqtt is None:
        return None
    st = node.mqtt.status
    return {
        "connected": st.connected,
        "next_index": st.next_index,
        "published": st.published,
        "connects": st.connects,
        "last_error": redact_urls(st.last_error) if st.last_error else None,
    }
