"""Shared rig of the node tests: settings without radio, a parking world driven through a node."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from gateway import wire
from gateway.config import Settings
from gateway.node import Node
from tests.gateway.contracts.helpers import Board, Party
from tests.support.aio import run, wait_until  # noqa: F401  (the node tests import them from here)

PARKING = "car-park-1"
PARKING_PARAMS = {
    "bands": [[0, 100], [8 * 3600, 300], [18 * 3600, 100]],
    "daily_cap_minor": 1500,
    "grace_s": 600,
    "utc_offset_s": 3600,
}
CAR = hashlib.sha256(b"salt" + b"AB-123-C").digest()[:16]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Return settings for a service without radio, fast checkpoints, a fixed operator token."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "ble": False,
        "operator_token": "operator-token-for-tests-0123456789",
        "batch_interval_ms": 50,
    }
    values.update(overrides)
    return Settings(**values)


def record_payload(entry: bytes) -> bytes:
    """Return the raw record of a device-record entry (what a board sends)."""
    return entry[1:]


class World:
    """Participants, a parking contract and two bay boards, driven through a running Node."""

    def __init__(self, now_s: int | None = None) -> None:
        self.now = int(time.time()) if now_s is None else now_s
        self.op = Party("svc-op")
        self.driver = Party("svc-driver")
        self.bays = [Board("svc-bay1"), Board("svc-bay2")]

    async def setup(self, service: Node) -> None:
        """Register, create the contract, enroll and bind the bays, open a funded wallet."""
        t = self.now
        op, drv = self.op, self.driver
        reg = {"public_key": op.pk, "name": "op", "roles": ["operator", "parking_operator"]}
        await service.sequencer.submit_tx(op.tx("engine", "register", reg, t)[1:])
        reg = {"public_key": drv.pk, "name": "driver", "roles": ["driver"]}
        await service.sequencer.submit_tx(op.tx("engine", "register", reg, t)[1:])
        create = {"id": PARKING, "type": "parking", "params": PARKING_PARAMS}
        await service.sequencer.submit_tx(op.tx("engine", "create", create, t)[1:])
        for bay in self.bays:
            await service.sequencer.enroll(bay.public_key, {"bay": bay.id[:8]})
            bind = {"contract": PARKING, "device": bay.id}
            await service.sequencer.submit_tx(op.tx("engine", "bind-device", bind, t)[1:])
        wallet = {"vehicle": CAR.hex(), "limit_minor": 1000}
        await service.sequencer.submit_tx(drv.tx(PARKING, "open-wallet", wallet, t)[1:])
        topup = {"vehicle": CAR.hex(), "amount_minor": 2000}
        await service.sequencer.submit_tx(drv.tx(PARKING, "top-up", topup, t)[1:])

    def arrival(self, bay: Board, t: int) -> bytes:
        """Return a signed arrival record (event code 6) of CAR."""
        return record_payload(bay.record(t, [(21, 0, 6), (11, 0, CAR)], kind=wire.EVENT))

    def departure(self, bay: Board, t: int) -> bytes:
        """Return a signed departure record (event code 7) of CAR."""
        return record_payload(bay.record(t, [(21, 0, 7), (11, 0, CAR)], kind=wire.EVENT))


async def started(settings: Settings) -> Node:
    """Return an opened and started service."""
    service = await asyncio.to_thread(Node, settings)
    await service.start()
    return service
