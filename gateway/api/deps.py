"""FastAPI dependencies of the routes: the node's parts, operator auth, write limits, parameters.

Routes take what they need as `Annotated[..., Depends()]` parameters (Reads, Writer, Node) and
declare `dependencies=[OperatorOnly, AddressLimited]` for admin writes; nothing else in a route
module touches the app's state.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam

from gateway.api.limits import WriteLimits
from gateway.errors import AuthError
from gateway.node import Node, ReadModel, Sequencer
from gateway.node.reads import MAX_INDEX

MAX_PAGE = 1000  # entries/events per list request
DEFAULT_PAGE = 100
HEX_KEY = r"^[0-9a-f]{64}$"
HEX_DEVICE = r"^[0-9a-f]{32}$"


def get_node(request: Request) -> Node:
    """Return the node the app serves (set by create_app)."""
    return request.app.state.node


def get_reads(request: Request) -> ReadModel:
    """Return the node's read model."""
    return get_node(request).reads


def get_writer(request: Request) -> Sequencer:
    """Return the node's sequencer (the only writer)."""
    return get_node(request).sequencer


def get_limits(request: Request) -> WriteLimits:
    """Return the app's write limits."""
    return request.app.state.limits


NodeDep = Annotated[Node, Depends(get_node)]
Reads = Annotated[ReadModel, Depends(get_reads)]
Writer = Annotated[Sequencer, Depends(get_writer)]
Limits = Annotated[WriteLimits, Depends(get_limits)]


def client_host(request: Request) -> str:
    """Return the client's address as the server saw it ("unknown" if none)."""
    return request.client.host if request.client else "unknown"


def limit_address(request: Request, limits: Limits) -> None:
    """Take a write token for the client address; raise RateLimited if none is left."""
    limits.check_address(client_host(request))


def require_operator(request: Request, node: NodeDep) -> None:
    """Return None if the request carries the operator bearer token; raise AuthError."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), node.operator_token.encode()
    ):
        raise AuthError("unauthorized", "this endpoint needs the operator bearer token")


AddressLimited = Depends(limit_address)
OperatorOnly = Depends(require_operator)

# ---- parameters ------------------------------------------------------------------------------

Since = Annotated[int, Query(ge=-1, description="cursor: the last index or id seen")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Index = Annotated[int, PathParam(ge=0, le=MAX_INDEX)]
DeviceId = Annotated[str, PathParam(pattern=HEX_DEVICE)]
TxHash = Annotated[str, PathParam(pattern=HEX_KEY)]
