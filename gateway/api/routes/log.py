"""The log's routes: checkpoints (C2SP), entries, RFC 9162 proofs and offline proof bundles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from gateway.api.deps import DEFAULT_PAGE, Index, Limit, Reads

router = APIRouter()


@router.get(
    "/v1/checkpoint",
    summary="the latest signed checkpoint (C2SP), or a stored one by size",
    response_class=PlainTextResponse,
)
async def checkpoint(
    reads: Reads, size: Annotated[int | None, Query(ge=0)] = None
) -> PlainTextResponse:
    return PlainTextResponse(reads.checkpoint(size), media_type="text/plain; charset=utf-8")


@router.get("/v1/entries", summary="a page of entries, decoded")
async def list_entries(
    reads: Reads,
    since: Annotated[int, Query(ge=0, description="first index")] = 0,
    limit: Limit = DEFAULT_PAGE,
    kind: Annotated[str | None, Query(description="filter by kind name")] = None,
) -> dict[str, Any]:
    page = reads.entries(since, limit, kind)
    return {
        "entries": [e.to_json() for e in page.entries],
        "next": page.next,
        "sequenced_size": page.sequenced_size,
    }


@router.get("/v1/entries/{index}", summary="one entry: exact bytes and decoded view")
async def get_entry(index: Index, reads: Reads) -> dict[str, Any]:
    return reads.entry(index).to_json()


@router.get("/v1/proof/inclusion", summary="RFC 9162 inclusion proof")
async def proof_inclusion(
    reads: Reads,
    index: Annotated[int, Query(ge=0)],
    size: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    return reads.prove_inclusion(index, size)


@router.get("/v1/proof/consistency", summary="RFC 9162 consistency proof")
async def proof_consistency(
    reads: Reads,
    old: Annotated[int, Query(ge=0)],
    new: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    return reads.prove_consistency(old, new)


@router.get("/v1/bundle/{index}", summary="the offline proof bundle of an entry")
async def get_bundle(index: Index, reads: Reads) -> dict[str, Any]:
    return await reads.bundle(index)
