"""The sequencer: group commit, contract events with causes, checkpoint state hash, rejections."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.contracts import Engine, decode_event, extension_line
from gateway.ledger import Ledger, parse_checkpoint
from gateway.ledger.note import parse_note
from tests.gateway.contracts.helpers import Board, Party
from tests.gateway.node.helpers import (
    PARKING,
    World,
    make_settings,
    record_payload,
    run,
    started,
    wait_until,
)


def test_group_commit_coalesces_concurrent_deliveries(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = await started(make_settings(tmp_path))
        try:
            boards = [Board(f"gc-{i}") for i in range(6)]
            for b in boards:
                await service.sequencer.enroll(b.public_key, None)
            t = int(time.time())
            uploads = [
                [record_payload(b.record(t, [(1, 0, 2500)])) for _ in range(3)] for b in boards
            ]
            acks = await asyncio.gather(
                *(
                    service.sequencer.deliver(b.device_id, up)
                    for b, up in zip(boards, uploads, strict=True)
                )
            )
            assert acks == [3] * 6  # every board's newest seq, acked after the durable commit
            c = service.counters
            assert c.uploads == 6 and c.records_committed == 18
            assert c.group_commits < 6  # concurrent deliveries shared commits
            assert [service.sequencer.last_committed_seq(b.device_id) for b in boards] == [3] * 6
            assert (
                service.sequencer.device_for_prefix(boards[0].device_id[:4]) == boards[0].device_id
            )
            # a duplicate upload is dropped and still acked
            assert await service.sequencer.deliver(boards[0].device_id, uploads[0]) == 3
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
            await service.sequencer.deliver(bay.device_id, [world.arrival(bay, t)])
            await service.sequencer.deliver(bay.device_id, [world.departure(bay, t + 2 * 3600)])
            led = service.sequencer.ledger
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
            charged = service.reads.contract_events(PARKING, frozenset({"charged"}))
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
            await service.sequencer.deliver(bay.device_id, [world.arrival(bay, t)])
            await service.sequencer.deliver(bay.device_id, [world.departure(bay, t + 3600)])
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


def test_rejected_transaction_appends_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = await started(make_settings(tmp_path))
        try:
            op = Party("rej-op")
            reg = {"public_key": op.pk, "name": "op", "roles": ["operator"]}
            entry = op.tx("engine", "register", reg, int(time.time()))
            admitted = await service.sequencer.submit_tx(entry[1:])
            loc = service.reads.tx_location(admitted.tx_hash)
            assert (loc.index, loc.events) == (
                admitted.index,
                [e["index"] for e in admitted.events],
            )
            led = service.sequencer.ledger
            assert led is not None
            size = led.sequenced_size
            try:
                await service.sequencer.submit_tx(entry[1:])  # same nonce again
            except Exception as exc:
                assert getattr(exc, "code", None) == "tx-replayed-nonce"
            else:
                raise AssertionError("replayed nonce accepted")
            assert led.sequenced_size == size
            assert service.counters.tx_rejected == 1 and service.counters.tx_accepted == 1
        finally:
            await service.stop()

    run(scenario())


MAX_ENROLLMENTS_TO_FILL = 200  # ~2 KB each: far more than the free room of the last pages


def test_admin_write_on_a_full_disk_is_a_typed_503_and_raises_the_storage_alarm(
    tmp_path: Path,
) -> None:
    """A full disk answers an enrollment with ServiceUnavailable("storage-full") (503), appends
    nothing, raises the storage alarm; once space returns the same write succeeds and clears it."""
    import pytest

    from gateway.errors import ServiceUnavailable

    async def scenario() -> None:
        service = await started(make_settings(tmp_path))
        seq = service.sequencer
        try:
            led = seq.open_ledger()

            def limit(pages: int | None) -> None:
                conn = led._conn  # the writer thread owns the ledger's one connection
                if pages is None:
                    pages = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {pages}")

            default_pages = await seq.write(lambda: led._conn.execute("PRAGMA max_page_count"))
            default_pages = default_pages.fetchone()[0]
            await seq.write(limit, None)
            # the last pages still have room for a few enrollments; the disk is full once the
            # ledger must grow by a page
            for i in range(MAX_ENROLLMENTS_TO_FILL):
                size = led.sequenced_size
                board = Board(f"full-disk-admin-{i}")
                try:
                    await seq.enroll(board.public_key, {"site": "x" * 2000})
                except ServiceUnavailable as exc:
                    err = exc
                    break
            else:
                pytest.fail(f"{MAX_ENROLLMENTS_TO_FILL} enrollments fit in a full ledger")
            assert err.code == "storage-full" and err.status == 503
            assert led.sequenced_size == size
            assert seq.uploads.storage.alarm
            await seq.write(limit, default_pages)
            await seq.enroll(board.public_key, {"site": "x" * 2000})
            assert led.sequenced_size > size
            assert not seq.uploads.storage.alarm
        finally:
            await service.stop()

    run(scenario())
