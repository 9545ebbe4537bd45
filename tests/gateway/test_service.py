"""The service layer: group commit, contract events with causes, checkpoint state hash, restart."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from gateway import wire
from gateway.config import Settings
from gateway.contracts import Engine, decode_event, extension_line
from gateway.ledger import Ledger, parse_checkpoint
from gateway.ledger.note import parse_note
from gateway.service import Service
from tests.gateway.contracts.helpers import Board, Party

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
        "virtual_fleet": False,
        "operator_token": "operator-token-for-tests-0123456789",
        "batch_interval_ms": 50,
        "scenarios": False,
    }
    values.update(overrides)
    return Settings(**values)


def run(coro: Any, timeout_s: float = 30) -> Any:
    """Run coro on a fresh loop with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def wait_until(pred: Any, timeout_s: float = 10) -> None:
    """Poll pred() until it is true or fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def record_payload(entry: bytes) -> bytes:
    """Return the raw record of a device-record entry (what a board sends)."""
    return entry[1:]


class World:
    """Participants, a parking contract and two bay boards, driven through a running Service."""

    def __init__(self, now_s: int | None = None) -> None:
        self.now = int(time.time()) if now_s is None else now_s
        self.op = Party("svc-op")
        self.driver = Party("svc-driver")
        self.bays = [Board("svc-bay1"), Board("svc-bay2")]

    async def setup(self, service: Service) -> None:
        """Register, create the contract, enroll and bind the bays, open a funded wallet."""
        t = self.now
        op, drv = self.op, self.driver
        reg = {"public_key": op.pk, "name": "op", "roles": ["operator", "parking_operator"]}
        await service.submit_tx(op.tx("engine", "register", reg, t)[1:])
        reg = {"public_key": drv.pk, "name": "driver", "roles": ["driver"]}
        await service.submit_tx(op.tx("engine", "register", reg, t)[1:])
        create = {"id": PARKING, "type": "parking", "params": PARKING_PARAMS}
        await service.submit_tx(op.tx("engine", "create", create, t)[1:])
        for bay in self.bays:
            await service.enroll(bay.public_key, {"bay": bay.id[:8]})
            bind = {"contract": PARKING, "device": bay.id}
            await service.submit_tx(op.tx("engine", "bind-device", bind, t)[1:])
        wallet = {"vehicle": CAR.hex(), "limit_minor": 1000}
        await service.submit_tx(drv.tx(PARKING, "open-wallet", wallet, t)[1:])
        topup = {"vehicle": CAR.hex(), "amount_minor": 2000}
        await service.submit_tx(drv.tx(PARKING, "top-up", topup, t)[1:])

    def arrival(self, bay: Board, t: int) -> bytes:
        """Return a signed arrival record (event code 6) of CAR."""
        return record_payload(bay.record(t, [(21, 0, 6), (11, 0, CAR)], kind=wire.EVENT))

    def departure(self, bay: Board, t: int) -> bytes:
        """Return a signed departure record (event code 7) of CAR."""
        return record_payload(bay.record(t, [(21, 0, 7), (11, 0, CAR)], kind=wire.EVENT))


async def started(settings: Settings) -> Service:
    """Return an opened and started service."""
    service = await asyncio.to_thread(Service, settings)
    await service.start()
    return service


def test_group_commit_coalesces_concurrent_deliveries(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = await started(make_settings(tmp_path))
        try:
            boards = [Board(f"gc-{i}") for i in range(6)]
            for b in boards:
                await service.enroll(b.public_key, None)
            t = int(time.time())
            uploads = [
                [record_payload(b.record(t, [(1, 0, 2500)])) for _ in range(3)] for b in boards
            ]
            acks = await asyncio.gather(
                *(service.deliver(b.device_id, up) for b, up in zip(boards, uploads, strict=True))
            )
            assert acks == [3] * 6  # every board's newest seq, acked after the durable commit
            c = service.counters
            assert c.uploads == 6 and c.records_committed == 18
            assert c.group_commits < 6  # concurrent deliveries shared commits
            assert [service.last_committed_seq(b.device_id) for b in boards] == [3] * 6
            assert service.device_for_prefix(boards[0].device_id[:4]) == boards[0].device_id
            # a duplicate upload is dropped and still acked
            assert await service.deliver(boards[0].device_id, uploads[0]) == 3
            assert service.counters.duplicates == 3
        finally:
            await service.stop()

    run(scenario())


def test_events_are_appended_after_their_causes(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = await started(make_settings(tmp_path))
        world = World()
        try:
            await world.setup(service)
            bay = world.bays[0]
            t = world.now + 60
            await service.deliver(bay.device_id, [world.arrival(bay, t)])
            await service.deliver(bay.device_id, [world.departure(bay, t + 2 * 3600)])
            led = service.ledger
            assert led is not None
            await wait_until(lambda: led.pending == 0 and led.tree_size == led.sequenced_size)
            kinds = {}
            events = []
            for index, entry in led.entries():
                kinds[index] = entry[0]
                if entry[0] == 0x03:
                    ev = decode_event(entry)
                    events.append(ev["type"])
                    assert ev["causes"] and all(c < index for c in ev["causes"])
                    assert all(kinds[c] != 0x03 for c in ev["causes"])
            assert "session-opened" in events and "charged" in events
            charged = service.contract_events(PARKING, frozenset({"charged"}))
            assert len(charged) == 1 and all(kinds[c] == 0x01 for c in charged[0]["causes"])
            _, pending = Engine().audit(led.entries())
            assert pending == []  # every event the engine emits is in the log, in order
        finally:
            await service.stop()

    run(scenario())


def test_checkpoint_extension_is_the_state_hash_of_exactly_the_integrated_prefix(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # small batches: appends integrate inside Ledger.append too (the callback path)
        service = await started(make_settings(tmp_path, max_batch_entries=3))
        world = World()
        try:
            await world.setup(service)
            bay = world.bays[1]
            t = world.now + 60
            await service.deliver(bay.device_id, [world.arrival(bay, t)])
            await service.deliver(bay.device_id, [world.departure(bay, t + 3600)])
        finally:
            await service.stop()
        engine = Engine()
        with Ledger.open_readonly(str(service.settings.ledger_path)) as led:
            checkpoints = list(led.checkpoints())
            assert len(checkpoints) > 3
            for size, note in checkpoints:
                cp = parse_checkpoint(parse_note(note)[0])
                state = engine.replay(led.entries(0, size))
                assert cp.extensions == (extension_line(state),), size
            assert led.pending == 0  # stop() integrated everything

    run(scenario())


def test_restart_replays_to_the_same_state(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def first() -> tuple[str, int]:
        service = await started(settings)
        world = World()
        try:
            await world.setup(service)
            bay = world.bays[0]
            await service.deliver(bay.device_id, [world.arrival(bay, world.now + 60)])
        finally:
            await service.stop()  # feeds the engine with everything sequenced
        with Ledger.open_readonly(str(settings.ledger_path)) as led:
            return service.state_hash_hex(), led.sequenced_size

    state_hex, size = run(first())
    again = Service(settings)
    try:
        assert again.state_hash_hex() == state_hex
        assert again.ledger is not None and again.ledger.sequenced_size == size
        assert len(again.devices()) == 2
        assert again.tx_location("0" * 64) is None
        assert again.contract_events(PARKING, frozenset({"session-opened"}))
    finally:
        again.close()


def test_restart_appends_events_a_crash_left_out(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Service(settings)
    led = service.ledger
    assert led is not None
    op = Party("crash-op")
    tx = op.tx(
        "engine",
        "register",
        {"public_key": op.pk, "name": "op", "roles": ["operator"]},
        int(time.time()),
    )
    led.append([(tx[0], tx[1:])])  # appended as if the process died before its events
    service.close()
    again = Service(settings)
    try:
        assert again.ledger is not None
        entries = list(again.ledger.entries())
        assert entries[-1][1][0] == 0x03  # the missing event was appended at start-up
        _, pending = Engine().audit(entries)
        assert pending == []
        assert op.pk in again.state["participants"]
    finally:
        again.close()


def test_rejected_transaction_appends_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = await started(make_settings(tmp_path))
        try:
            op = Party("rej-op")
            reg = {"public_key": op.pk, "name": "op", "roles": ["operator"]}
            entry = op.tx("engine", "register", reg, int(time.time()))
            admitted = await service.submit_tx(entry[1:])
            assert service.tx_location(admitted.tx_hash) == (
                admitted.index,
                [e["index"] for e in admitted.events],
            )
            led = service.ledger
            assert led is not None
            size = led.sequenced_size
            try:
                await service.submit_tx(entry[1:])  # same nonce again
            except Exception as exc:
                assert getattr(exc, "code", None) == "tx-replayed-nonce"
            else:
                raise AssertionError("replayed nonce accepted")
            assert led.sequenced_size == size
            assert service.counters.tx_rejected == 1 and service.counters.tx_accepted == 1
        finally:
            await service.stop()

    run(scenario())
