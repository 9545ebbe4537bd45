"""Device routes: the registry (read; enroll and revoke for the operator) and ingest events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import (
    DEFAULT_PAGE,
    HEX_KEY,
    AddressLimited,
    DeviceId,
    Limit,
    OperatorOnly,
    Reads,
    Writer,
)
from gateway.api.responses import declare
from gateway.bounds import MAX_INT64, MAX_METADATA_BYTES, check_metadata
from gateway.ledger.entries import readable_metadata
from gateway.wire import device_id_for

router = APIRouter()

MAX_REASON_CHARS = 200
# why: revoking stores the device's metadata again with "status" and the reason added (up to
# MAX_REASON_CHARS characters, at most 6 bytes each as JSON); keeping this much room free at
# enrollment keeps every enrolled device revocable under bounds.MAX_METADATA_BYTES.
REVOCATION_RESERVE_BYTES = 1280
MAX_ENROLL_METADATA_BYTES = MAX_METADATA_BYTES - REVOCATION_RESERVE_BYTES


class EnrollRequest(BaseModel):
    """Enroll a device: its Ed25519 public key (64 hex) and optional metadata."""

    model_config = ConfigDict(extra="forbid")  # the schema says so: no other fields

    public_key: str = Field(pattern=HEX_KEY, description="Ed25519 public key, 64 lowercase hex")
    metadata: dict[str, Any] | None = Field(default=None, description="JSON object, no 'status'")


class RevokeRequest(BaseModel):
    """Revoke a device, with a reason recorded in the log."""

    model_config = ConfigDict(extra="forbid")  # the schema says so: no other fields

    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


def device_json(device: Any) -> dict[str, Any]:
    """Return the JSON view of a device of the read model (its to_json()); metadata that does
    not have the allowed shape (stored before it was enforced) shows as a typed error field,
    so a read never fails on it."""
    view = device.to_json()
    view["metadata"] = readable_metadata(view.get("metadata"))
    return view


@router.get("/v1/devices", summary="the device registry", responses=declare())
async def list_devices(reads: Reads) -> dict[str, Any]:
    return {"devices": [device_json(d) for d in reads.devices()]}


@router.get("/v1/devices/{device_id}", summary="one device", responses=declare(404))
async def get_device(device_id: DeviceId, reads: Reads) -> dict[str, Any]:
    return device_json(reads.device(bytes.fromhex(device_id)))


@router.post(
    "/v1/devices",
    status_code=201,
    summary="enroll a device key (operator)",
    dependencies=[AddressLimited, OperatorOnly],
    responses=declare(401, 409, 503),
)
async def enroll(body: EnrollRequest, writer: Writer) -> dict[str, Any]:
    public_key = bytes.fromhex(body.public_key)
    if body.metadata is not None:
        check_metadata(body.metadata, MAX_ENROLL_METADATA_BYTES)  # WireError "bad-metadata"
    index = await writer.enroll(public_key, body.metadata)
    return {"device_id": device_id_for(public_key).hex(), "index": index}


@router.post(
    "/v1/devices/{device_id}/revoke",
    summary="revoke a device (operator)",
    dependencies=[AddressLimited, OperatorOnly],
    responses=declare(401, 404, 409, 503),
)
async def revoke(
    device_id: DeviceId, body: RevokeRequest, reads: Reads, writer: Writer
) -> dict[str, Any]:
    dev_id = bytes.fromhex(device_id)
    reads.device(dev_id)  # NotFound unless enrolled
    index = await writer.revoke(dev_id, body.reason)
    return {"device_id": device_id, "index": index}


@router.get("/v1/events", summary="ingest events and alarms", responses=declare())
async def list_events(
    reads: Reads,
    since: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
    limit: Limit = DEFAULT_PAGE,
    alarms_only: bool = False,
) -> dict[str, Any]:
    events = await reads.ingest_events(since, limit, alarms_only)
    return {"events": [e.to_json() for e in events], "next": events[-1].id if events else since}
