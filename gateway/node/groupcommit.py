"""Group commit of BLE uploads: queue what the link delivers, commit it in batches, answer each.

The link calls `deliver` once per upload and waits; `run` drains whatever has arrived (up to
MAX_GROUP_UPLOADS) into one call of the commit function, so all boards connected at the time
share one durable commit, then answers every waiting upload with the seq it may ack, and only
then runs the follow-up (feeding the engine and integrating), so acks are not delayed by it.

A full disk (SQLITE_FULL, ENOSPC) or an I/O error while committing is the storage alarm
(`StorageHealth`): the uploads of that batch get `ServiceUnavailable("storage-full" or
"storage-io")`, so the link acks nothing and the boards keep their records; the alarm is logged
at error level and shown by the node's health and metrics until a commit succeeds again, which
happens on the link's next retry, without a restart (docs/operations.md, Full disk).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable

from gateway.errors import ServiceUnavailable
from gateway.ingest import UploadResult

log = logging.getLogger("edgeseal.groupcommit")

# why: one group commit holds at most this many uploads; at 5 connections (link MAX_CONNECTIONS)
# it is never reached in practice, it only bounds a burst's memory.
MAX_GROUP_UPLOADS = 64
# why: while the disk stays full every retry of every board fails again; one error line per
# minute keeps the alarm in the log without the log itself eating what space is left.
ALARM_LOG_INTERVAL_S = 60.0

STORAGE_FULL = "storage-full"
STORAGE_IO = "storage-io"
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full" (also max_page_count reached)
_SQLITE_IOERR = 10  # SQLITE_IOERR and its extended codes (low byte 10)
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_IO_ERRNOS = frozenset({errno.EIO, errno.EROFS})

Upload = tuple[bytes, list[bytes]]
CommitFn = Callable[[list[Upload]], Awaitable[list[UploadResult]]]
_Waiting = tuple[bytes, list[bytes], "asyncio.Future[int | None]"]


def storage_error_code(exc: BaseException) -> str | None:
    """Return STORAGE_FULL or STORAGE_IO if exc says the store cannot take writes, else None.

    SQLITE_FULL covers ENOSPC on the database or its WAL and `PRAGMA max_page_count`; an
    OSError with ENOSPC/EDQUOT/EFBIG is full too; SQLITE_IOERR, EIO and EROFS are I/O errors.
    """
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code == _SQLITE_FULL:
            return STORAGE_FULL
        if code is not None and code & 0xFF == _SQLITE_IOERR:
            return STORAGE_IO
        return None
    if isinstance(exc, OSError):
        if exc.errno in _FULL_ERRNOS:
            return STORAGE_FULL
        if exc.errno in _IO_ERRNOS:
            return STORAGE_IO
    return None


class StorageHealth:
    """The storage alarm: raised by a failed write of the store, cleared by a successful one.

    `code` is None while healthy, else STORAGE_FULL or STORAGE_IO; `failures` counts every
    failed write (monotonic, for /metrics); `alarms` counts the episodes; `since_s` is when the
    current one began (monotonic clock); `detail` the last error text.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Start healthy; clock (seconds) paces the alarm's log lines."""
        self._clock = clock
        self.code: str | None = None
        self.failures = 0
        self.alarms = 0
        self.since_s: float | None = None
        self.detail = ""
        self._logged_s = 0.0

    @property
    def alarm(self) -> bool:
        """Return True while the last write of the store failed for lack of space or I/O."""
        return self.code is not None

    def failed(self, what: str, exc: BaseException) -> ServiceUnavailable | None:
        """Record a failed write of `what` (e.g. "group commit") if exc is storage trouble.

        Returns the typed error to hand to the writers that waited on it (ServiceUnavailable
        with code STORAGE_FULL or STORAGE_IO), or None if exc is something else (not counted,
        not logged here). Logs at error level when an episode starts and then at most every
        ALARM_LOG_INTERVAL_S.
        """
        code = storage_error_code(exc)
        if code is None:
            return None
        now_s = self._clock()
        self.failures += 1
        self.detail = f"{what}: {exc}"
        if self.code is None:
            self.alarms += 1
            self.since_s = now_s
            self._logged_s = now_s - ALARM_LOG_INTERVAL_S
        self.code = code
        if now_s - self._logged_s >= ALARM_LOG_INTERVAL_S:
            self._logged_s = now_s
            log.error("storage alarm %s: %s failed (%s); uploads are not acked, the boards keep "
                      "their records, until a commit succeeds; %d failed writes so far", code, what,
                      exc, self.failures)  # fmt: skip
        return ServiceUnavailable(code, f"the gateway cannot store records now ({exc})")

    def ok(self) -> None:
        """Record a successful write: clear the alarm (logged once when it was raised)."""
        if self.code is None:
            return
        began = self.since_s if self.since_s is not None else self._clock()
        log.warning("storage alarm %s cleared after %.0f s and %d failed writes: ingest resumes",
                    self.code, self._clock() - began, self.failures)  # fmt: skip
        self.code = None
        self.since_s = None

    def to_json(self) -> dict[str, object]:
        """Return {"status": "ok" | code, "failures", "alarms", "detail"} for the health view."""
        return {
            "status": self.code or "ok",
            "failures": self.failures,
            "alarms": self.alarms,
            "detail": self.detail if self.code else "",
        }


class GroupCommit:
    """The delivery queue and its commit loop (module doc)."""

    def __init__(
        self,
        commit: CommitFn,
        after: Callable[[], Awaitable[None]],
        storage: StorageHealth | None = None,
    ) -> None:
        """commit(uploads) durably commits a batch and returns one UploadResult per upload;
        after() runs once the waiting uploads were answered (integration: acks go out first).
        storage: the alarm this loop raises and clears (a fresh one if None)."""
        self._commit = commit
        self._after = after
        self.storage = storage or StorageHealth()
        self._queue: asyncio.Queue[_Waiting | None] = asyncio.Queue()
        self._closed = False

    async def deliver(self, device_id: bytes, records: list[bytes]) -> int | None:
        """Queue one upload for the next group commit; return the seq to ack after it.

        Raises ServiceUnavailable after `close` ("unavailable") or while the store cannot take
        the batch ("storage-full", "storage-io"), or what else the commit raised; in every
        case nothing was acked.
        """
        if self._closed:
            raise ServiceUnavailable("unavailable", "the service has stopped")
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((device_id, list(records), fut))
        return await fut

    def close(self) -> None:
        """Let `run` commit what is queued and return; later deliveries are refused."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    async def run(self) -> None:
        """Drain the queue into group commits until `close` was called and the queue is empty."""
        done = False
        while not done:
            item = await self._queue.get()
            batch: list[_Waiting] = []
            if item is None:
                done = True
            else:
                batch.append(item)
            while not self._queue.empty() and len(batch) < MAX_GROUP_UPLOADS:
                nxt = self._queue.get_nowait()
                if nxt is None:
                    done = True
                else:
                    batch.append(nxt)
            if batch:
                await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[_Waiting]) -> None:
        """Commit one batch and answer its uploads; never raises (the loop must go on)."""
        try:
            results = await self._commit([(dev, recs) for dev, recs, _ in batch])
        except Exception as exc:  # no ack: the boards keep their records and send them again
            err: Exception | None = self.storage.failed("group commit", exc)
            if err is None:
                log.exception("group commit of %d uploads failed", len(batch))
                err = exc
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        self.storage.ok()
        for (_, _, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res.ack_seq)
        try:
            await self._after()
        except Exception as exc:  # integration is retried by the next commit or tick
            if self.storage.failed("integration after a commit", exc) is None:
                log.exception("the follow-up of a group commit failed")
