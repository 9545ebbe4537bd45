"""Group commit of BLE uploads: queue what the link delivers, commit it in batches, answer each.

The link calls `deliver` once per upload and waits; `run` drains whatever has arrived (up to
MAX_GROUP_UPLOADS) into one call of the commit function, so all boards connected at the time
share one durable commit, then answers every waiting upload with the seq it may ack, and only then runs the follow-up
(feeding the engine and integrating), so acks are not delayed by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import ServiceUnavailable
from gateway.ingest import UploadResult

log = logging.getLogger("edgeseal.groupcommit")

# why: one group commit holds at most this many uploads; at 5 connections (link MAX_CONNECTIONS)
# it is never reached in practice, it only bounds a burst's memory.
MAX_GROUP_UPLOADS = 64

Upload = tuple[bytes, list[bytes]]
CommitFn = Callable[[list[Upload]], Awaitable[list[UploadResult]]]
_Waiting = tuple[bytes, list[bytes], "asyncio.Future[int | None]"]


class GroupCommit:
    """The delivery queue and its commit loop (module doc)."""

    def __init__(self, commit: CommitFn, after: Callable[[], Awaitable[None]]) -> None:
        """commit(uploads) durably commits a batch and returns one UploadResult per upload;
        after() runs once the waiting uploads were answered (integration: acks go out first)."""
        self._commit = commit
        self._after = after
        self._queue: asyncio.Queue[_Waiting | None] = asyncio.Queue()
        self._closed = False

    async def deliver(self, device_id: bytes, records: list[bytes]) -> int | None:
        """Queue one upload for the next group commit; return the seq to ack after it.

        Raises ServiceUnavailable after `close`, or what the commit raised (nothing acked).
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
        try:
            results = await self._commit([(dev, recs) for dev, recs, _ in batch])
        except Exception as exc:  # a storage failure: no ack, the boards keep their records
            log.exception("group commit of %d uploads failed", len(batch))
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, _, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res.ack_seq)
        await self._after()
