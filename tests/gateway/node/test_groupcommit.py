"""Group commit: one commit for concurrent uploads, no ack after a failed commit, refused after close."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ServiceUnavailable
from gateway.ingest import UploadResult
from gateway.node.groupcommit import MAX_GROUP_UPLOADS, GroupCommit
from tests.gateway.node.helpers import run


def _result(ack: int | None) -> UploadResult:
    return UploadResult(ack_seq=ack, committed=1, duplicates=0, pending=0, rejected=0, indexes=())


class Recorder:
    """A commit function that records batches; fails while `fail` is set."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[bytes, list[bytes]]]] = []
        self.after_calls: list[int] = []  # how many batches existed when after() ran
        self.fail: Exception | None = None

    async def commit(self, uploads: list[tuple[bytes, list[bytes]]]) -> list[UploadResult]:
        if self.fail is not None:
            raise self.fail
        self.batches.append(uploads)
        return [_result(len(recs)) for _, recs in uploads]

    async def after(self) -> None:
        self.after_calls.append(len(self.batches))


def test_concurrent_uploads_share_a_commit_and_get_their_own_ack() -> None:
    async def scenario() -> None:
        rec = Recorder()
        gc = GroupCommit(rec.commit, rec.after)
        loop = asyncio.create_task(gc.run())
        acks = await asyncio.gather(*(gc.deliver(bytes([i]) * 16, [b"r"] * i) for i in range(1, 6)))
        assert acks == [1, 2, 3, 4, 5]
        assert sum(len(b) for b in rec.batches) == 5 and len(rec.batches) < 5
        assert rec.after_calls and rec.after_calls[-1] == len(rec.batches)
        gc.close()
        await loop

    run(scenario())


def test_a_batch_holds_at_most_max_group_uploads() -> None:
    async def scenario() -> None:
        rec = Recorder()
        gc = GroupCommit(rec.commit, rec.after)
        n = MAX_GROUP_UPLOADS + 5
        waiting = [asyncio.ensure_future(gc.deliver(b"d" * 16, [b"r"])) for _ in range(n)]
        await asyncio.sleep(0)  # all queued before the loop drains
        loop = asyncio.create_task(gc.run())
        await asyncio.gather(*waiting)
        assert max(len(b) for b in rec.batches) == MAX_GROUP_UPLOADS
        gc.close()
        await loop

    run(scenario())


def test_a_failed_commit_acks_nothing_and_the_loop_goes_on() -> None:
    async def scenario() -> None:
        rec = Recorder()
        rec.fail = OSError("disk full")
        gc = GroupCommit(rec.commit, rec.after)
        loop = asyncio.create_task(gc.run())
        with pytest.raises(OSError, match="disk full"):
            await gc.deliver(b"a" * 16, [b"r"])
        assert rec.after_calls == []  # nothing committed: no integration either
        rec.fail = None
        assert await gc.deliver(b"a" * 16, [b"r", b"s"]) == 2
        gc.close()
        await loop

    run(scenario())


def test_close_commits_what_is_queued_then_refuses() -> None:
    async def scenario() -> None:
        rec = Recorder()
        gc = GroupCommit(rec.commit, rec.after)
        queued = asyncio.ensure_future(gc.deliver(b"q" * 16, [b"r"]))
        await asyncio.sleep(0)
        gc.close()
        gc.close()  # twice is fine
        await gc.run()  # returns once the queue is drained
        assert await queued == 1
        with pytest.raises(ServiceUnavailable):
            await gc.deliver(b"q" * 16, [b"r"])

    run(scenario())
