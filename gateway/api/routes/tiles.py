"""C2SP tlog-tiles routes: /checkpoint, /tile/<L>/<N>[.p/<W>], /tile/entries/<N>[.p/<W>].

Thin over the read model (gateway.node.reads: tile, entry_bundle, the newest checkpoint); the
path codec is gateway.replica.tiles. A path that is not a canonical tile path is a typed 400, a
tile the tree does not hold (yet) a typed 404, never a 500. Caching (c2sp.org/tlog-tiles): full
tiles and full entry bundles never change (immutable, a year); a partial tile's bytes never
change either, but it may be dropped once its full tile exists, so it is cached briefly; the
checkpoint is mutable and cached for a few seconds at most. Entry bundles are gzip-compressed
when the client accepts gzip (the spec's SHOULD).
"""

from __future__ import annotations

import gzip

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.deps import Reads
from gateway.api.responses import declare
from gateway.node import ReadModel
from gateway.replica.tiles import parse_tile_path

router = APIRouter()

OCTETS = "application/octet-stream"
# why: full tiles and bundles are immutable (c2sp.org/tlog-tiles: "caching headers SHOULD be
# long-lived"); a year is the longest max-age caches honour.
IMMUTABLE = "public, max-age=31536000, immutable"
# why: a partial tile never changes, but the log may stop serving it once the full tile exists;
# a minute spares a polling client's repeats without pinning a resource that may go away.
PARTIAL = "public, max-age=60"
# why: "headers SHOULD prevent caching beyond a few seconds" (the checkpoint is mutable).
CHECKPOINT = "public, max-age=2"
# why: level 1 (fast) already shrinks the repetitive record entries ~3x; higher levels cost a
# Pi's CPU per request for a few percent more.
GZIP_LEVEL = 1


def newest_checkpoint(reads: ReadModel) -> str:
    """Return the checkpoint /checkpoint serves: the newest one with the witness quorum and its
    cosignatures if there is a witness policy and one has it, else the newest signed one."""
    best = reads.newest_quorum_checkpoint() or reads.newest_cosigned_checkpoint()
    return best.note.decode("utf-8")


@router.get(
    "/checkpoint",
    summary="the newest checkpoint (C2SP tlog-tiles), with witness cosignatures if any",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **declare()},
)
async def checkpoint(reads: Reads) -> Response:
    return Response(
        newest_checkpoint(reads),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": CHECKPOINT},
    )


# Not in the OpenAPI schema: its path grammar (3-digit groups, an optional ".p/<W>") is no
# OpenAPI path template; c2sp.org/tlog-tiles specifies it, docs/api.md documents it.
@router.get(
    "/tile/{path:path}",
    summary="a Merkle tile or an entry bundle (C2SP tlog-tiles)",
    response_class=Response,
    include_in_schema=False,
)
async def tile(path: str, reads: Reads, request: Request) -> Response:
    # parse the decoded request path itself: Starlette's {path:path} matches with "$", which
    # lets a trailing newline ("000%0A") fall outside the parameter
    ref = parse_tile_path(str(request.scope["path"]).removeprefix("/tile/"))
    cache = IMMUTABLE if ref.width is None else PARTIAL
    if ref.level is not None:
        data = reads.tile(ref.level, ref.index, ref.width)
        return Response(data, media_type=OCTETS, headers={"Cache-Control": cache})
    data = reads.entry_bundle(ref.index, ref.width)
    headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        data = gzip.compress(data, GZIP_LEVEL, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return Response(data, media_type=OCTETS, headers=headers)


def _accepts_gzip(header: str) -> bool:
    """Return True if an Accept-Encoding value accepts gzip (RFC 9110 12.5.3; q=0 refuses)."""
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower().removeprefix("q=").strip()
            return not q or _q(q) > 0
    return False


def _q(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
