"""Transaction routes: submit a signed participant transaction, find one, list participants."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway import bundle as bundles
from gateway.api.deps import AddressLimited, Limits, Reads, TxHash, Writer
from gateway.api.responses import declare
from gateway.bounds import MAX_BODY_BYTES
from gateway.errors import EdgesealError, RequestError

router = APIRouter()


class TxRequest(BaseModel):
    """A participant transaction payload (n_sigs || signatures || body), base64; the request
    body as a whole is at most bounds.MAX_BODY_BYTES (RequestGuard)."""

    model_config = ConfigDict(extra="forbid")  # the schema says so: no other fields

    payload: str = Field(min_length=4, max_length=MAX_BODY_BYTES)


@router.post(
    "/v1/transactions",
    status_code=201,
    summary="submit a participant transaction",
    dependencies=[AddressLimited],
    responses=declare(422, 503),
)
async def submit(body: TxRequest, writer: Writer, limits: Limits) -> dict[str, Any]:
    try:
        payload = bundles.unb64(body.payload, "payload")
    except EdgesealError as exc:
        raise RequestError("bad-base64", exc.message) from None
    tx = writer.check_tx(payload)
    limits.check_participant(tx.participant)
    admitted = await writer.submit_tx(payload)
    return {"index": admitted.index, "tx_hash": admitted.tx_hash, "events": admitted.events}


@router.get(
    "/v1/transactions/{tx_hash}",
    summary="an accepted transaction's place in the log",
    responses=declare(404),
)
async def get_tx(tx_hash: TxHash, reads: Reads) -> dict[str, Any]:
    loc = reads.tx_location(tx_hash)
    return {
        "tx_hash": loc.tx_hash,
        "index": loc.index,
        "integrated": loc.integrated,
        "events": loc.events,
    }


@router.get("/v1/participants", summary="registered participants and roles", responses=declare())
async def participants(reads: Reads) -> dict[str, Any]:
    return {"participants": reads.participants()}
