"""Device routes: the registry (read; enroll and revoke for the operator) and ingest events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

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
from gateway.wire import device_id_for

router = APIRouter()


class EnrollRequest(BaseModel):
    """Enroll a device: its Ed25519 public key (64 hex) and optional metadata."""

    public_key: str = Field(pattern=HEX_KEY, description="Ed25519 public key, 64 lowercase hex")
    metadata: dict[str, Any] | None = Field(default=None, description="JSON object, no 'status'")


class RevokeRequest(BaseModel):
    """Revoke a device, with a reason recorded in the log."""

    reason: str = Field(min_length=1, max_length=200)


@router.get("/v1/devices", summary="the device registry")
async def list_devices(reads: Reads) -> dict[str, Any]:
    return {"devices": [d.to_json() for d in reads.devices()]}


@router.get("/v1/devices/{device_id}", summary="one device")
async def get_device(device_id: DeviceId, reads: Reads) -> dict[str, Any]:
    return reads.device(bytes.fromhex(device_id)).to_json()


@router.post(
    "/v1/devices",
    status_code=201,
    summary="enroll a device key (operator)",
    dependencies=[AddressLimited, OperatorOnly],
)
async def enroll(body: EnrollRequest, writer: Writer) -> dict[str, Any]:
    public_key = bytes.fromhex(body.public_key)
    index = await writer.enroll(public_key, body.metadata)
    return {"device_id": device_id_for(public_key).hex(), "index": index}


@router.post(
    "/v1/devices/{device_id}/revoke",
    summary="revoke a device (operator)",
    dependencies=[AddressLimited, OperatorOnly],
)
async def revoke(
    device_id: DeviceId, body: RevokeRequest, reads: Reads, writer: Writer
) -> dict[str, Any]:
    dev_id = bytes.fromhex(device_id)
    reads.device(dev_id)  # NotFound unless enrolled
    index = await writer.revoke(dev_id, body.reason)
    return {"device_id": device_id, "index": index}


@router.get("/v1/events", summary="ingest events and alarms")
async def list_events(
    reads: Reads,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Limit = DEFAULT_PAGE,
    alarms_only: bool = False,
) -> dict[str, Any]:
    events = await reads.ingest_events(since, limit, alarms_only)
    return {"events": [e.to_json() for e in events], "next": events[-1].id if events else since}
