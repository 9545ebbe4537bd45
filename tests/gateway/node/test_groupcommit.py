"""Group commit: one commit for concurrent uploads, no ack after a failed commit, refused after close."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3

import pytest

from gateway.errors import ServiceUnavailable
from gateway.ingest import UploadResult
from gateway.node.groupcommit import (
    MAX_GROUP_UPLOADS,
    STORAGE_FULL,
    STORAGE_IO,
    GroupCommit,
    storage_error_code,
)
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


def _sqlite_full() -> sqlite3.OperationalError:
    """Return the error SQLite raises on a full disk (SQLITE_FULL), made by SQLite itself."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("PRAGMA max_page_count = 2")
    try:
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,)] * 20)
    except sqlite3.OperationalError as e:
        return e
    finally:
        conn.close()
    raise AssertionError("SQLite took 20 KB into 2 pages")


def test_storage_errors_are_classified() -> None:
    assert storage_error_code(_sqlite_full()) == STORAGE_FULL
    assert storage_error_code(OSError(errno.ENOSPC, "No space left on device")) == STORAGE_FULL
    assert storage_error_code(OSError(errno.EIO, "I/O error")) == STORAGE_IO
    assert storage_error_code(sqlite3.OperationalError("no such table: t")) is None
    assert storage_error_code(ValueError("bug")) is None


def test_a_full_disk_raises_the_alarm_refuses_typed_and_clears_on_the_next_commit(caplog) -> None:
    caplog.set_level(logging.INFO, logger="edgeseal.groupcommit")

    async def scenario() -> None:
        rec = Recorder()
        rec.fail = _sqlite_full()
        gc = GroupCommit(rec.commit, rec.after)
        loop = asyncio.create_task(gc.run())
        for _ in range(3):
            with pytest.raises(ServiceUnavailable) as err:
                await gc.deliver(b"a" * 16, [b"r"])
            assert err.value.code == STORAGE_FULL and err.value.status == 503
        s = gc.storage
        assert s.alarm and s.code == STORAGE_FULL and (s.failures, s.alarms) == (3, 1)
        assert s.to_json()["status"] == STORAGE_FULL and rec.after_calls == []
        rec.fail = None
        assert await gc.deliver(b"a" * 16, [b"r"]) == 1  # space is back: no restart needed
        assert not s.alarm and s.to_json()["status"] == "ok" and s.failures == 3
        gc.close()
        await loop

    run(scenario())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and STORAGE_FULL in errors[0].getMessage()  # once per episode
    assert any("cleared" in r.getMessage() for r in caplog.records)


def test_a_failed_follow_up_does_not_stop_the_loop() -> None:
    """Regression: an integration that failed after a commit (a full disk) ended `run`, and every
    later delivery waited forever for a commit that never came."""

    async def scenario() -> None:
        rec = Recorder()
        failing = [_sqlite_full()]

        async def after() -> None:
            if failing:
                raise failing.pop()

        gc = GroupCommit(rec.commit, after)
        loop = asyncio.create_task(gc.run())
        assert await gc.deliver(b"a" * 16, [b"r"]) == 1  # acked: the commit itself succeeded
        assert gc.storage.alarm  # the integration after it did not
        assert await asyncio.wait_for(gc.deliver(b"a" * 16, [b"r", b"s"]), 10) == 2
        assert not gc.storage.alarm
        gc.close()
        await loop

    run(scenario())
