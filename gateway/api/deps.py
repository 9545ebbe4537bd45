"""FastAPI dependencies of the routes: the node's parts, operator auth, rate limits, parameters.

Routes take what they need as `Annotated[..., Depends()]` parameters (Reads, Writer, Node) and
declare `dependencies=[OperatorOnly, AddressLimited]` for admin writes; nothing else in a route
module touches the app's state.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.limits import RateLimits
from gateway.api.middleware import client_host
from gateway.bounds import MAX_INT64
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


def get_limits(request: Request) -> RateLimits:
    """Return the app's rate limits (gateway.api.limits.RateLimits)."""
    return request.app.state.limits


NodeDep = Annotated[Node, Depends(get_node)]
Reads = Annotated[ReadModel, Depends(get_reads)]
Writer = Annotated[Sequencer, Depends(get_writer)]
Limits = Annotated[RateLimits, Depends(get_limits)]


def limit_address(request: Request, limits: Limits) -> None:
    """Take a write token for the client address; raise RateLimited if none is left."""
    limits.check_address(client_host(request.scope))


# declares the scheme in the OpenAPI schema (admin routes: security HTTPBearer); the check is ours
_BEARER = HTTPBearer(auto_error=False, description="the operator token (docs/api.md)")


def require_operator(
    node: NodeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
) -> None:
    """Return None if the request carries the operator bearer token; raise AuthError."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token or not hmac.compare_digest(token.encode(), node.operator_token.encode()):
        raise AuthError("unauthorized", "this endpoint needs the operator bearer token")


AddressLimited = Depends(limit_address)
OperatorOnly = Depends(require_operator)

# ---- parameters ------------------------------------------------------------------------------

# Every integer parameter is bounded: SQLite holds signed 64-bit integers, and a larger one bound
# into a query fails inside the driver (a 500), so the parameters refuse it first (a typed 400).
Since = Annotated[int, Query(ge=-1, le=MAX_INT64, description="cursor: the last index or id seen")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Index = Annotated[int, PathParam(ge=0, le=MAX_INDEX)]
Count = Annotated[int, Query(ge=0, le=MAX_INT64)]  # a log index, size or event id
DeviceId = Annotated[str, PathParam(pattern=HEX_DEVICE)]
TxHash = Annotated[str, PathParam(pattern=HEX_KEY)]
