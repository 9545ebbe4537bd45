"""The log's routes: checkpoints (C2SP), entries, RFC 9162 proofs and offline proof bundles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from gateway.api.deps import DEFAULT_PAGE, Count, Index, Limit, Reads
from gateway.api.responses import declare
from gateway.bounds import MAX_INT64
from gateway.errors import NotFound

router = APIRouter()
TEXT = "text/plain; charset=utf-8"
# "<cosigned>/<required>", then " (short)" while the witness quorum does not hold (docs/api.md)
QUORUM_HEADER = "Edgeseal-Witness-Quorum"

# gateway.ledger.entries.KIND_NAMES, spelled out for the schema (a test keeps them equal)
EntryKind = Literal["device-record", "participant-tx", "contract-event", "device-enrollment"]


@router.get(
    "/v1/checkpoint",
    summary="the latest signed checkpoint (C2SP) with its witness cosignatures, or a stored one "
    "by size",
    response_class=PlainTextResponse,
    responses=declare(404),
)
async def checkpoint(
    reads: Reads, size: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None
) -> PlainTextResponse:
    if size is not None:  # a stored checkpoint: the gateway's signature only
        return PlainTextResponse(reads.checkpoint(size), media_type=TEXT)
    newest = reads.newest_cosigned_checkpoint()  # with the witnesses' cosignatures (if any)
    headers = {}
    if newest.quorum is not None:
        headers[QUORUM_HEADER] = newest.quorum.summary
    return PlainTextResponse(newest.note.decode("utf-8"), media_type=TEXT, headers=headers)


@router.get(
    "/v1/witness-policy",
    summary="the gateway's witness policy (C2SP tlog-policy), if one is configured",
    response_class=PlainTextResponse,
    responses=declare(404),
)
async def witness_policy(reads: Reads) -> PlainTextResponse:
    if reads.witnesses is None:
        raise NotFound("not-found", "this gateway has no witness policy")
    return PlainTextResponse(reads.witnesses.policy.text, media_type=TEXT)


@router.get("/v1/entries", summary="a page of entries, decoded", responses=declare())
async def list_entries(
    reads: Reads,
    since: Annotated[int, Query(ge=0, le=MAX_INT64, description="first index")] = 0,
    limit: Limit = DEFAULT_PAGE,
    kind: Annotated[EntryKind | None, Query(description="filter by kind name")] = None,
) -> dict[str, Any]:
    page = reads.entries(since, limit, kind)
    return {
        "entries": [e.to_json() for e in page.entries],
        "next": page.next,
        "sequenced_size": page.sequenced_size,
    }


@router.get(
    "/v1/entries/{index}",
    summary="one entry: exact bytes and decoded view",
    responses=declare(404),
)
async def get_entry(index: Index, reads: Reads) -> dict[str, Any]:
    return reads.entry(index).to_json()


@router.get("/v1/proof/inclusion", summary="RFC 9162 inclusion proof", responses=declare())
async def proof_inclusion(
    reads: Reads,
    index: Count,
    size: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
) -> dict[str, Any]:
    return reads.prove_inclusion(index, size)


@router.get("/v1/proof/consistency", summary="RFC 9162 consistency proof", responses=declare())
async def proof_consistency(
    reads: Reads,
    old: Count,
    new: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
) -> dict[str, Any]:
    return reads.prove_consistency(old, new)


@router.get(
    "/v1/bundle/{index}",
    summary="the offline proof bundle of an entry",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, **declare(404, 409)},
)
async def get_bundle(index: Index, reads: Reads) -> Response:
    # the bundle's canonical bytes, never re-serialised: a verifier refuses any other form
    return Response(await reads.bundle_bytes(index), media_type="application/json")
