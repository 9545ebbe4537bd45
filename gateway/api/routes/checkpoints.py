"""Checkpoint status routes: recent checkpoints with cosignatures, anchors and replica agreement.

Thin over gateway.node.checkpoints.CheckpointsView (what each field means is there and in
docs/api.md); the dashboard's checkpoint panel reads them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.api.responses import declare
from gateway.node import Node
from gateway.node.checkpoints import DEFAULT_LIMIT, MAX_LIMIT, CheckpointsView

Count = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="how many, newest first")]


def build_router(node: Node) -> APIRouter:
    """Return the router serving node's checkpoints view."""
    view = CheckpointsView(node)
    router = APIRouter()

    @router.get(
        "/v1/checkpoints",
        summary="recent checkpoints: cosignatures by witness, anchor, replica agreement",
        responses=declare(),
    )
    async def recent_checkpoints(limit: Count = DEFAULT_LIMIT) -> dict[str, Any]:
        return await view.checkpoints(limit)

    @router.get(
        "/v1/anchors",
        summary="anchoring status and recent anchors: block, transaction, confirmations, final",
        responses=declare(),
    )
    async def recent_anchors(limit: Count = DEFAULT_LIMIT) -> dict[str, Any]:
        return await view.anchors(limit)

    return router
